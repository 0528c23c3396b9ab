"""The control steps' Lambdas (``lambdas/control_steps``: plan, decide, record), each with its own role.

The code asset is the repository root reduced to an allow-list: the handlers plus the
``driftloop`` package, whose modules the handlers import are pure Python (no numpy, no TF).
The handlers reach S3 and Parameter Store through driftloop's own stores (boto3, in the runtime).
Powertools for AWS Lambda is a layer of this stack, made at synth from the packages the project
pins and installs (``requirements/``): no public parameter is resolved at deploy time (Powertools
publishes its layer in some regions only), and the handlers run with the versions they are tested
with, on the Python the tests run them on.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Final

import jsii
from aws_cdk import BundlingOptions, DockerImage, Duration, IgnoreMode, ILocalBundling
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from driftloop import telemetry
from driftloop.layout import PipelineName, artifact_prefix
from stacks import checkov, nag
from stacks.config import DeploymentConfig
from stacks.logs import log_group
from stacks.parameters import RunParameters, allow

HANDLER_MODULE: Final = "lambdas.control_steps.handlers"
# Docker-ignore patterns (later ones win; "!" keeps): the handlers and the package's control layer;
# its rooms for the jobs (components, ml) and for the local runner (local) stay out of the bundle.
# Docker's matcher skips an excluded folder whole, so synth never walks .venv or node_modules.
CODE_EXCLUDE: Final = ("*", "!lambdas", "!driftloop", "driftloop/components", "driftloop/ml", "driftloop/local",
                       "**/__pycache__", "**/*.pyc")
# The Python the tests run the handlers on (requires-python in pyproject.toml).
RUNTIME: Final = lambda_.Runtime.PYTHON_3_11
# What the Powertools layer holds: the package and what it imports that the runtime lacks.
POWERTOOLS_PACKAGES: Final = ("aws_lambda_powertools", "jmespath", "typing_extensions")


@jsii.implements(ILocalBundling)
class InstalledPackages:
    """Bundles a Python layer (``python/<package>``) from the packages installed in this environment."""

    def __init__(self, packages: tuple[str, ...]) -> None:
        self.packages = packages

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        target = Path(output_dir) / "python"
        target.mkdir(parents=True, exist_ok=True)
        for package in self.packages:
            origin = Path(importlib.import_module(package).__file__ or "")
            if origin.name == "__init__.py":
                shutil.copytree(origin.parent, target / origin.parent.name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
            else:
                shutil.copy2(origin, target / origin.name)
        return True


def powertools_code() -> lambda_.Code:
    # The image is never pulled: the local bundler always succeeds (no Docker needed at synth).
    bundler = InstalledPackages(POWERTOOLS_PACKAGES)
    return lambda_.Code.from_asset(
        str(Path(__file__).resolve().parent / "layer_source"),
        bundling=BundlingOptions(image=DockerImage.from_registry("scratch"), local=bundler),
    )


def runtime_is_the_tested_python() -> bool:
    return RUNTIME.name == f"python{sys.version_info.major}.{sys.version_info.minor}"


def runs_pattern(pipeline: PipelineName, artifact: str) -> str:
    """Object keys of one artifact in every run: ``runs/<pipeline>/*/<artifact>/*``."""
    return f"{artifact_prefix(pipeline, '*', artifact)}/*"


# Why a Lambda may read objects under a wildcard (cdk-nag IAM5): the run id in their keys.
DRIFT_REPORTS_ONLY: Final = (
    "Reads only drift reports, which sit under each serve run's id (the execution name, made at run time)."
)
NEW_MODEL_AND_CHAMPION_EVAL: Final = (
    "Reads only the new model's archive and the champion's evaluation, under the train run's id "
    "(the execution name, made at run time)."
)
# Why the handlers run on the Python the project pins (cdk-nag L1: not the newest runtime).
TESTED_RUNTIME: Final = (
    "The handlers run on the Python the project pins and tests them on (3.11, requires-python); a newer "
    "runtime would run code no test has run."
)


class ControlStepFunctions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        repo_root: Path,
        bucket: s3.IBucket,
        parameters: RunParameters,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.bucket = bucket
        self.code = lambda_.Code.from_asset(str(repo_root), exclude=list(CODE_EXCLUDE), ignore_mode=IgnoreMode.DOCKER)
        self.layer = lambda_.LayerVersion(
            self,
            "Powertools",
            code=powertools_code(),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.X86_64],
            description="Powertools for AWS Lambda (Python), as pinned by driftloop",
        )
        self.environment = {
            "BUCKET_NAME": bucket.bucket_name,
            "PARAMETER_PREFIX": config.parameter_names.prefix,
            "DECISION_POLICY": json.dumps(config.decision_policy.to_dict(), sort_keys=True),
            "POWERTOOLS_SERVICE_NAME": telemetry.SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": telemetry.NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        self.plan = self._plan(parameters)
        self.decide = self._decide(parameters)
        self.record_serve = self._record_serve(parameters)
        self.record_train = self._record_train(parameters)
        self.next_batch = self._next_batch(parameters) if config.simulation else None

    def all(self) -> list[lambda_.Function]:
        return [f for f in (self.plan, self.decide, self.record_serve, self.record_train, self.next_batch) if f]

    def _plan(self, parameters: RunParameters) -> lambda_.Function:
        """Reads the current train record; names every artifact of the run (writes nothing)."""
        plan = self._function("Plan", "plan", "a run's plan: artifact URIs and the current model")
        allow(plan, "ssm:GetParameter", parameters.train_latest)
        return plan

    def _decide(self, parameters: RunParameters) -> lambda_.Function:
        """Reads the serve runs' drift reports and the previous serve record; writes nothing."""
        decide = self._function("Decide", "decide", "drift report -> retrain decision")
        self._reads(decide, DRIFT_REPORTS_ONLY, runs_pattern("serve", "drift_report"))
        allow(decide, "ssm:GetParameter", parameters.serve_latest)
        return decide

    def _record_serve(self, parameters: RunParameters) -> lambda_.Function:
        """Reads the drift report; writes serve/latest, the serve run's last step."""
        record = self._function("RecordServe", "record_serve", "the serve record")
        self._reads(record, DRIFT_REPORTS_ONLY, runs_pattern("serve", "drift_report"))
        allow(record, "ssm:PutParameter", parameters.serve_latest)
        return record

    def _record_train(self, parameters: RunParameters) -> lambda_.Function:
        """Reads the new model's metrics and the champion's evaluation; writes the train records."""
        record = self._function("RecordTrain", "record_train", "champion/challenger, train records")
        read = (runs_pattern("train", "model"), runs_pattern("train", "champion_eval"))
        self._reads(record, NEW_MODEL_AND_CHAMPION_EVAL, *read)
        # Listing finds the training job's archive under the model prefix, and lets S3 answer
        # "no such key" (not "access denied") for a missing evaluation.
        record.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": list(read)}},
            )
        )
        allow(record, "ssm:PutParameter", parameters.train_latest, parameters.train_last_attempt)
        return record

    def _next_batch(self, parameters: RunParameters) -> lambda_.Function:
        """Simulation only: reads and advances the cycle position."""
        next_batch = self._function("NextBatch", "next_batch", "simulation: next stage's test set")
        allow(next_batch, "ssm:GetParameter", parameters.simulation_position)
        allow(next_batch, "ssm:PutParameter", parameters.simulation_position)
        return next_batch

    def _function(self, construct_id: str, handler: str, purpose: str) -> lambda_.Function:
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"driftloop {handler} Lambda",
        )
        logs = log_group(self, f"{construct_id}Logs", self.config)
        logs.grant_write(role)
        function = lambda_.Function(
            self,
            construct_id,
            description=f"driftloop: {purpose}",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            code=self.code,
            handler=f"{HANDLER_MODULE}.{handler}",
            layers=[self.layer],
            memory_size=256,
            timeout=Duration.seconds(60),
            environment=self.environment,
            role=role,
            log_group=logs,
        )
        nag.suppress(function, "AwsSolutions-L1", TESTED_RUNTIME)
        checkov.skip(function, checkov.CONTROL_STEP_LAMBDA)
        return function

    def _reads(self, function: lambda_.Function, reason: str, *patterns: str) -> None:
        """Lets the function read objects under these key patterns; ``reason`` says why their wildcards are safe."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[self.bucket.arn_for_objects(pattern) for pattern in patterns]
            )
        )
        assert function.role is not None
        nag.wildcards(function.role, reason, resources=tuple(nag.objects(self.bucket, p) for p in patterns))
