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
from driftloop.layout import artifact_prefix
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


def runs_pattern(pipeline: str, artifact: str) -> str:
    """Object keys of one artifact in every run: ``runs/<pipeline>/*/<artifact>/*``."""
    return f"{artifact_prefix(pipeline, '*', artifact)}/*"  # type: ignore[arg-type]


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

        # plan: reads the current train record; names every artifact of the run (writes nothing).
        self.plan = self._function("Plan", "plan", "a run's plan: artifact URIs and the current model")
        allow(self.plan, "ssm:GetParameter", parameters.train_latest)

        # decide: reads the serve runs' drift reports and the previous serve record; writes nothing.
        self.decide = self._function("Decide", "decide", "drift report -> retrain decision")
        self._allow_get(self.decide, bucket, runs_pattern("serve", "drift_report"))
        allow(self.decide, "ssm:GetParameter", parameters.serve_latest)

        # record_serve: reads the drift report; writes serve/latest, the serve run's last step.
        self.record_serve = self._function("RecordServe", "record_serve", "the serve record")
        self._allow_get(self.record_serve, bucket, runs_pattern("serve", "drift_report"))
        allow(self.record_serve, "ssm:PutParameter", parameters.serve_latest)

        # record_train: reads the new model's metrics and the champion's evaluation; writes the train records.
        self.record_train = self._function("RecordTrain", "record_train", "champion/challenger, train records")
        self._allow_get(
            self.record_train, bucket, runs_pattern("train", "model"), runs_pattern("train", "champion_eval")
        )
        # Listing finds the training job's archive under the model prefix, and lets S3 answer
        # "no such key" (not "access denied") for a missing evaluation.
        listed = [runs_pattern("train", artifact) for artifact in ("model", "champion_eval")]
        self.record_train.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": listed}},
            )
        )
        allow(self.record_train, "ssm:PutParameter", parameters.train_latest, parameters.train_last_attempt)

        # next_batch (simulation only): reads and advances the cycle position.
        self.next_batch: lambda_.Function | None = None
        if config.simulation:
            self.next_batch = self._function("NextBatch", "next_batch", "simulation: next stage's test set")
            allow(self.next_batch, "ssm:GetParameter", parameters.simulation_position)
            allow(self.next_batch, "ssm:PutParameter", parameters.simulation_position)

    def all(self) -> list[lambda_.Function]:
        return [f for f in (self.plan, self.decide, self.record_serve, self.record_train, self.next_batch) if f]

    def _function(self, construct_id: str, handler: str, purpose: str) -> lambda_.Function:
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"driftloop {handler} Lambda",
        )
        logs = log_group(self, f"{construct_id}Logs", self.config)
        logs.grant_write(role)
        return lambda_.Function(
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

    @staticmethod
    def _allow_get(function: lambda_.Function, bucket: s3.IBucket, *patterns: str) -> None:
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[bucket.arn_for_objects(pattern) for pattern in patterns]
            )
        )

