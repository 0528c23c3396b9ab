"""checkov (its own environment, ``.venv-checkov``) finds nothing unsuppressed in either template.

Each construct skips checks on its own resources (their ``checkov`` metadata), each with its reason
from ``stacks/checkov.py``.
``--skip-download`` keeps checkov offline (it would fetch guidelines from its vendor's API).
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from .conftest import REPO_ROOT, Synthesized

CHECKOV_VENV = REPO_ROOT / ".venv-checkov"
CHECKOV = CHECKOV_VENV / "bin" / "checkov"
REQUIREMENTS = REPO_ROOT / "requirements"


def _checkov(template: str) -> dict[str, Any]:
    result = subprocess.run(
        [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "--output", "json", "--file", template],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-2000:]  # 1: failed checks
    report = json.loads(result.stdout)
    (report,) = report if isinstance(report, list) else [report]
    assert report["check_type"] == "cloudformation", report
    return report  # type: ignore[no-any-return]


@pytest.mark.parametrize("variant", ["development", "production"])
def test_checkov_reports_no_unsuppressed_failure(synthesized: Synthesized, variant: str) -> None:
    if not CHECKOV.exists():
        pytest.skip(".venv-checkov is not installed: run `make install` (requirements/checkov.txt)")
    template = synthesized.template_file(getattr(synthesized, variant))
    report = _checkov(str(template))
    failed = [f"{f['check_id']} {f['resource']}: {f['check_name']}" for f in report["results"]["failed_checks"]]
    assert failed == []
    # It did check the stack, and every check skipped is one a construct skipped with a reason.
    summary = report["summary"]
    assert summary["parsing_errors"] == 0 and summary["resource_count"] > 30 and summary["passed"] > 100, summary
    skipped = report["results"]["skipped_checks"]
    assert skipped
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment", "")) >= 40, check["check_id"]
    resources = synthesized.template_json(getattr(synthesized, variant))["Resources"]
    declared = {
        (logical_id, skip["id"])
        for logical_id, resource in resources.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    # checkov applied every suppression in the template (a mistyped id or a check of another type shows here).
    assert {(c["resource"].split(".", 1)[1], c["check_id"]) for c in skipped} == declared


def test_checkov_is_the_pinned_release_from_its_own_lock() -> None:
    (pin,) = re.findall(r"^checkov==(\S+)$", (REQUIREMENTS / "checkov.in").read_text(), re.MULTILINE)
    lock = (REQUIREMENTS / "checkov.txt").read_text()
    locked = re.search(rf"^checkov=={re.escape(pin)} \\\n\s+--hash=sha256:[0-9a-f]{{64}}", lock, re.MULTILINE)
    assert locked, "requirements/checkov.txt is stale: run `make lock`"
    if not CHECKOV.exists():
        pytest.skip(".venv-checkov is not installed: run `make install` (requirements/checkov.txt)")
    assert list(CHECKOV_VENV.glob(f"lib/python*/site-packages/checkov-{pin}.dist-info")), "run `make install`"
