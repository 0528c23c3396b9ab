"""cdk-nag's AwsSolutions pack finds nothing unsuppressed; cfn-lint finds nothing (but W3005)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Annotations, Match, Template

from .conftest import Synthesized


@pytest.mark.parametrize("variant", ["development", "production"])
def test_cdk_nag_reports_no_unsuppressed_error(synthesized: Synthesized, variant: str) -> None:
    stack = getattr(synthesized, variant)
    errors = Annotations.from_stack(stack).find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
    assert [f"{e.id}: {str(e.entry.data)[:160]}" for e in errors] == []
    # The pack did run: its report lists the stack's resources.
    (report,) = synthesized.outdir.glob(f"AwsSolutions-*{stack.artifact_id}-NagReport.csv")
    assert "AwsSolutions-IAM5" in report.read_text()


@pytest.mark.parametrize("variant", ["development", "production"])
def test_every_suppression_is_scoped_and_has_a_reason(synthesized: Synthesized, variant: str) -> None:
    template = Template.from_stack(getattr(synthesized, variant)).to_json()
    suppressed = [
        rule
        for resource in template["Resources"].values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert suppressed
    for rule in suppressed:
        assert len(rule["reason"]) >= 40, rule
        if rule["id"] == "AwsSolutions-IAM5":
            assert rule.get("applies_to"), f"IAM5 suppressed without naming the finding: {rule}"


def test_templates_are_cfn_lint_clean(synthesized: Synthesized) -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    templates = [str(synthesized.template_file(s)) for s in (synthesized.development, synthesized.production)]
    result = subprocess.run(
        [str(cfn_lint), "--ignore-checks", "W3005", "--", *templates], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
