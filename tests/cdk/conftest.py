"""CDK suite: the app is synthesized once per session (development, production and job-a-step variants).

Synthesis is slow (jsii, asset staging), so every template test shares one ``Synthesized``.
CDK's built-in CloudFormation validator is switched off here: the suite runs cfn-lint on the
same templates instead, and the validator alone costs ~20 s per process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # app.py, stacks/ and lambdas/ live at the repository root
    sys.path.insert(0, str(REPO_ROOT))

from aws_cdk.assertions import Template  # noqa: E402
from support.moto_server import moto_env, moto_reset, moto_server  # noqa: E402, F401

# The production variant also turns the other switches: no simulation, schedule off, e-mail, sharding,
# component settings, manual approval of new models. Keys as on the command line (-c driftloop.<key>=<value>).
PRODUCTION_OVERRIDES: dict[str, Any] = {
    "driftloop.stack_name": "DriftloopProd",
    "driftloop.environment": "production",
    "driftloop.simulation": "false",
    "driftloop.schedule_enabled": "false",
    "driftloop.notification_email": "ops@example.com",
    "driftloop.instances.predict": "3",
    "driftloop.instances.process": "2",
    "driftloop.settings.drift": '{"p_val": 0.01}',
    "driftloop.settings.algorithm.epochs": "12",
    "driftloop.decision.approval": "manual",
}


# The development settings with one serve step on four instances: the job-a-step form.
PER_STEP_OVERRIDES: dict[str, Any] = {"driftloop.stack_name": "DriftloopPerStep", "driftloop.instances.process": "4"}


@dataclass(frozen=True)
class Synthesized:
    app: Any
    development: Any  # DriftloopStack
    production: Any
    per_step: Any
    outdir: Path

    def template_file(self, stack: Any) -> Path:
        return self.outdir / stack.template_file

    def template_json(self, stack: Any) -> dict[str, Any]:
        return json.loads(self.template_file(stack).read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    from aws_cdk import App

    from stacks.config import CONTEXT_KEY, DeploymentConfig
    from stacks.driftloop_stack import DriftloopStack, build, cdk_json_context

    outdir = tmp_path_factory.mktemp("cdk.out")
    context = cdk_json_context()
    app = App(context=context, outdir=str(outdir), builtin_cloud_formation_validation=False)
    development = build(app)
    production_config = DeploymentConfig.from_context(context[CONTEXT_KEY], PRODUCTION_OVERRIDES)
    production = DriftloopStack(app, production_config.stack_name, config=production_config)
    per_step_config = DeploymentConfig.from_context(context[CONTEXT_KEY], PER_STEP_OVERRIDES)
    per_step = DriftloopStack(app, per_step_config.stack_name, config=per_step_config)
    app.synth()
    yield Synthesized(app=app, development=development, production=production, per_step=per_step, outdir=outdir)


@dataclass
class LambdaContext:
    """What Powertools' ``inject_lambda_context`` reads from the Lambda context."""

    function_name: str = "driftloop-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:driftloop-test"
    aws_request_id: str = "5f6c1d6e-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def dev(synthesized: Synthesized) -> Template:
    """The development stack's template."""
    return Template.from_stack(synthesized.development)


@pytest.fixture(scope="module")
def prod(synthesized: Synthesized) -> Template:
    """The production stack's template."""
    return Template.from_stack(synthesized.production)


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()
