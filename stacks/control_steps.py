"""The control steps' Lambdas (``lambdas/control_steps``: claim, plan, decide, record, the retrain lease),
each with its own role.

Each role reads and writes only the key patterns its step touches (``driftloop.layout`` names them):
the claim lists ``batches/`` and the ledger and creates ledger entries (create-only); the decision
reads the labels, the ledger, the served batches, the serve runs' predictions and the run records,
and writes joins, label requests and retrain sets; each record step writes its run's record; the
retrain lease's two steps list and read its generations and create (never replace) a generation or
its release marker.

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
from aws_cdk import (
    BundlingOptions,
    CustomResource,
    DockerImage,
    Duration,
    IgnoreMode,
    ILocalBundling,
    RemovalPolicy,
    Stack,
    custom_resources,
)
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from driftloop import telemetry
from driftloop.layout import (
    BATCHES,
    DATA_ROOT,
    LABEL_REQUESTS,
    LABELS,
    LEASE_RELEASED_SUFFIX,
    LEASE_SUFFIX,
    LEDGER_LABELLED,
    LEDGER_SERVED,
    LEDGER_SERVED_AGAIN,
    RETRAIN_SET,
    RUN_RECORD_FILE,
    PipelineName,
    artifact_prefix,
    lease_prefix,
    run_prefix,
)
from driftloop.loop import RETRAIN_LEASE
from driftloop.pipelines import TRAIN_PIPELINE
from stacks import checkov, nag
from stacks.config import DeploymentConfig
from stacks.jobs import state_machine_timeout
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


def records_pattern(pipeline: PipelineName | str) -> str:
    """Every run's record object: ``runs/<pipeline>/*/record.json`` (``*`` as the pipeline: any pipeline's)."""
    return f"{run_prefix(pipeline, '*')}/{RUN_RECORD_FILE}"  # type: ignore[arg-type]


# The production intake's and label join's key patterns (driftloop.layout, driftloop.intake, driftloop.production).
BATCH_OBJECTS: Final = f"{BATCHES}/*"
LEDGER_SERVED_OBJECTS: Final = (f"{LEDGER_SERVED}/*", f"{LEDGER_SERVED_AGAIN}/*")
LEDGER_OBJECTS: Final = "ledger/*"
LABEL_OBJECTS: Final = f"{LABELS}/*"
LABEL_REQUEST_OBJECTS: Final = f"{LABEL_REQUESTS}/*"
DATA_OBJECTS: Final = f"{DATA_ROOT}/*"
RETRAIN_SET_OBJECTS: Final = f"{DATA_ROOT}/{RETRAIN_SET}-*/*"
LINEAGE_OBJECTS: Final = f"{DATA_ROOT}/*/lineage.json"
# The retrain lease (driftloop.loop): its generations, and their release markers.
RETRAIN_LEASE_OBJECTS: Final = f"{lease_prefix(RETRAIN_LEASE)}/*"
RETRAIN_LEASE_GENERATIONS: Final = f"{lease_prefix(RETRAIN_LEASE)}/*{LEASE_SUFFIX}"
RETRAIN_LEASE_RELEASES: Final = f"{lease_prefix(RETRAIN_LEASE)}/*{LEASE_RELEASED_SUFFIX}"

# Why a Lambda may read objects under a wildcard (cdk-nag IAM5): the run id in their keys.
DRIFT_REPORTS_ONLY: Final = (
    "Reads only drift reports, which sit under each serve run's id (the execution name, made at run time)."
)
NEW_MODEL_AND_CHAMPION_EVAL: Final = (
    "Reads only the new model's archive and the champion's evaluation, under the train run's id "
    "(the execution name, made at run time)."
)
CLAIMS_BATCHES: Final = (
    "The claim lists the uploaded batches (any batch id, made by the uploader) and the ledger of served "
    "batches, and creates one ledger entry per serve (named by batch id, known only at run time); the "
    "PutObject grant requires If-None-Match, so it can create entries but never overwrite one."
)
JOINS_LABELS_AND_BUILDS_RETRAIN_SETS: Final = (
    "The production decision (driftloop.production) joins label files (labels/<batch id>/, any name the "
    "labeller gives) to the served batch's predictions (runs/serve/<run id>/predictions/) found through "
    "the ledger and the run records (runs/<pipeline>/<run id>/record.json); it writes the joins "
    "(ledger/labelled/<batch id>.json) and label requests (label-requests/<batch id>/), and copies the "
    "current model's base data sets (data/...) and the labelled images (batches/<batch id>/...) into a "
    "retrain set data/retrain-<serve run id>/ (CopyObject reads the source and writes the target). Batch "
    "ids, run ids and data set names are made at run time."
)
WRITES_ITS_RUN_RECORD: Final = (
    "Writes only its pipeline's run record, runs/<pipeline>/<run id>/record.json, under the run id (the "
    "execution name, made at run time)."
)
READS_LINEAGE: Final = (
    "Reads only a retrain set's lineage.json beside the data set the train run started on "
    "(data/<data set>/lineage.json; data set names are made at run time)."
)
HOLDS_THE_RETRAIN_LEASE: Final = (
    "The retrain lease's generations (leases/retrain/<n>.json) and release markers (<n>.released) are "
    "numbered at run time; the steps list and read them, and the PutObject grant requires If-None-Match, "
    "so a generation or marker is created, never replaced (that is what makes the lease hold)."
)
LISTS_MODEL_PACKAGES: Final = (
    "sagemaker:ListModelPackages grants on no resource type (the Service Authorization Reference lists none), "
    "so only '*'; the handlers list this stack's group only (ModelPackageGroupName), and every other grant "
    "is on this group's packages."
)
PACKAGES_OF_THE_GROUP: Final = (
    "Model packages are numbered by SageMaker as they are registered (model-package/<group>/<version>): "
    "the wildcard is the version, within this stack's group."
)
# The custom resource that empties the model package group on the stack's delete (development only).
PACKAGE_GROUP_EMPTIED: Final = "Custom::DriftloopPackageGroupEmptied"
PROVIDER_FRAMEWORK: Final = (
    "CDK's custom-resource Provider framework (aws-cdk-lib custom_resources): its onEvent Lambda is CDK's own "
    "Node.js code on the runtime CDK picks, with the basic execution role CDK gives it; it only invokes "
    "this stack's empty_package_group function (any version of it: '<arn>:*') and answers CloudFormation."
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
        topic: sns.ITopic,
        algorithm_image: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.bucket = bucket
        self.topic = topic
        # One model package group per stack: every trained model is registered in it (driftloop.registry).
        self.package_group = sagemaker.CfnModelPackageGroup(
            self, "ModelPackageGroup", model_package_group_name=config.package_group,
            model_package_group_description=f"driftloop: the models stack {config.stack_name} trained",
        )
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
            "MODEL_PACKAGE_GROUP": config.package_group,
        }
        self.algorithm_image = algorithm_image
        self.plan = self._plan(parameters)
        self.decide = self._decide(parameters)
        self.record_serve = self._record_serve(parameters)
        self.record_train = self._record_train(parameters)
        self.take_retrain_lease = self._take_retrain_lease()
        self.release_retrain_lease = self._release_retrain_lease()
        self.next_batch = self._next_batch(parameters) if config.simulation else None
        self.claim_batch = None if config.simulation else self._claim_batch()
        self.empty_package_group, self.package_group_emptied = self._package_group_teardown()
        # Manual approval only: in automatic mode a winner is registered Approved and promoted by record_train
        # itself, and SageMaker's state change event for that new package must not start a second promotion.
        self.promote: lambda_.Function | None = None
        self.decisions: events.Rule | None = None
        if config.decision_policy.approval == "manual":
            self.promote, self.decisions = self._promote(parameters)

    def all(self) -> list[lambda_.Function]:
        return [f for f in (self.claim_batch, self.plan, self.decide, self.record_serve, self.record_train,
                            self.take_retrain_lease, self.release_retrain_lease, self.next_batch, self.promote) if f]

    # ------------------------------------------------------------------------- the model registry
    def group_arn(self) -> str:
        """The group's ARN as IAM matches it: SageMaker writes resource names in its ARNs in lower case."""
        return Stack.of(self).format_arn(service="sagemaker", resource="model-package-group",
                                         resource_name=self.config.package_group.lower())

    def packages_arn(self) -> str:
        return Stack.of(self).format_arn(service="sagemaker", resource="model-package",
                                         resource_name=f"{self.config.package_group.lower()}/*")

    def _uses_registry(self, function: lambda_.Function, *actions: str) -> None:
        """Lets the function list and describe this stack's model packages, and do ``actions`` on them."""
        function.node.add_dependency(self.package_group)
        self._acts_on_packages(function, ["sagemaker:DescribeModelPackage", *actions],
                               [self.group_arn(), self.packages_arn()])

    def _acts_on_packages(self, function: lambda_.Function, actions: list[str], resources: list[str]) -> None:
        """Lets the function list model packages (the action takes no narrower resource) and do ``actions`` on
        ``resources`` (this stack's group and packages), each wildcard told to cdk-nag with its reason."""
        function.add_to_role_policy(iam.PolicyStatement(actions=["sagemaker:ListModelPackages"], resources=["*"]))
        function.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=resources))
        assert function.role is not None
        packages = nag.arn("sagemaker", f"model-package/{self.config.package_group.lower()}/*")
        nag.wildcards(function.role, LISTS_MODEL_PACKAGES, resources=("*",))
        nag.wildcards(function.role, PACKAGES_OF_THE_GROUP, resources=(packages,))

    def _package_group_teardown(self) -> tuple[lambda_.Function | None, CustomResource | None]:
        """Development deletes the group, emptied first (CloudFormation cannot delete a group that holds
        packages); production keeps it, as it keeps the bucket and the records its packages point into."""
        if self.config.destroy_on_teardown:
            return self._empties_package_group_on_delete()
        self.package_group.apply_removal_policy(RemovalPolicy.RETAIN)
        return None, None

    def _empties_package_group_on_delete(self) -> tuple[lambda_.Function, CustomResource]:
        """A custom resource that, when the stack is deleted, deletes every package of the group before
        CloudFormation deletes the group (as CDK's autoDeleteObjects empties a bucket).

        It depends on the group, so CloudFormation creates it after the group and deletes it before; its
        Lambda (``empty_package_group``, behind CDK's Provider framework) may list the packages and delete
        this group's only.
        """
        empty = self._function("EmptyPackageGroup", "empty_package_group",
                               "on the stack's delete: the model package group's packages deleted",
                               skips=checkov.TEARDOWN_LAMBDA)
        self._acts_on_packages(empty, ["sagemaker:DeleteModelPackage"], [self.packages_arn()])
        provider = custom_resources.Provider(self, "EmptyPackageGroupProvider", on_event_handler=empty,
                                             log_group=log_group(self, "EmptyPackageGroupProviderLogs", self.config))
        self._suppress_provider_findings(provider, empty)
        emptied = CustomResource(self, "PackageGroupEmptied", service_token=provider.service_token,
                                 resource_type=PACKAGE_GROUP_EMPTIED,
                                 properties={"ModelPackageGroupName": self.config.package_group})
        emptied.node.add_dependency(self.package_group)
        return empty, emptied

    def _suppress_provider_findings(self, provider: custom_resources.Provider, target: lambda_.Function) -> None:
        """CDK's Provider framework: its onEvent Lambda (Node.js, CDK's code) only relays CloudFormation's
        event to ``empty_package_group`` and answers CloudFormation."""
        framework = provider.node.find_child("framework-onEvent")
        assert isinstance(framework, lambda_.Function) and framework.role is not None
        nag.suppress(framework, "AwsSolutions-L1", PROVIDER_FRAMEWORK)
        nag.wildcards(framework.role, PROVIDER_FRAMEWORK,
                      resources=(f"{nag.ref(target)}:*",))
        nag.managed_policy(framework.role, PROVIDER_FRAMEWORK, "service-role/AWSLambdaBasicExecutionRole")
        checkov.skip(framework, checkov.PROVIDER_FRAMEWORK_LAMBDA)

    def _promote(self, parameters: RunParameters) -> tuple[lambda_.Function, events.Rule]:
        """A package of this stack's group approved in the registry (console or CLI): its model is promoted;
        one rejected there: the rejection is recorded as ``driftloop reject`` records it (train/last-attempt).

        Made in manual mode only, where no package is created Approved (winners wait as pending, losers
        are Rejected), so every Approved the rule sees is a person's. SageMaker also tells of the creation of a
        package champion/challenger registered Rejected: the handler (``loop.rejected_in_registry``) finds
        its run already recorded so and writes nothing.

        An EventBridge rule on SageMaker's package state change, for this group and Approved or Rejected,
        invokes it. A refused approval or rejection (out of order, the serving model's) is logged and told on
        the topic; an invocation that fails after Lambda's retries goes to the topic too (its dead-letter target).
        """
        promote = self._function("Promote", "promote", "a model package approved (promoted) or rejected in the "
                                 "registry", dead_letter_topic=self.topic)
        promote.add_environment("TOPIC_ARN", self.topic.topic_arn)
        self.topic.grant_publish(promote)
        assert promote.role is not None
        nag.wildcards(promote.role, "Granted by CDK's topic.grant_publish on the topic's own key only: SNS needs "
                      "kms:GenerateDataKey* (every data-key variant) to encrypt a message.",
                      actions=("kms:GenerateDataKey*",))
        self._uses_registry(promote)
        self._reads(promote, WRITES_ITS_RUN_RECORD, records_pattern("train"))
        allow(promote, "ssm:GetParameter", parameters.train_latest, parameters.train_last_attempt)
        allow(promote, "ssm:PutParameter", parameters.train_latest, parameters.train_last_attempt)
        rule = events.Rule(
            self,
            "PackageDecided",
            description=f"driftloop: a model package of group {self.config.package_group} approved or rejected",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={"ModelPackageGroupName": [self.config.package_group],
                        "ModelApprovalStatus": ["Approved", "Rejected"]},
            ),
        )
        rule.add_target(targets.LambdaFunction(promote, retry_attempts=2))
        return promote, rule

    def _claim_batch(self) -> lambda_.Function:
        """Production: lists the batches and the ledger; creates the serve's ledger entry (create-only)."""
        claim = self._function("ClaimBatch", "claim_batch", "production intake: the batch a serve run serves")
        self._lists(claim, BATCH_OBJECTS, *LEDGER_SERVED_OBJECTS)
        self._creates(claim, CLAIMS_BATCHES, *LEDGER_SERVED_OBJECTS)
        return claim

    def _take_retrain_lease(self) -> lambda_.Function:
        """Before a retrain: creates the lease's next generation, for as long as a train run can last."""
        take = self._function("TakeRetrainLease", "take_retrain_lease", "the retrain lease, before a retrain")
        seconds = state_machine_timeout(self.config, TRAIN_PIPELINE).to_seconds()
        take.add_environment("RETRAIN_LEASE_SECONDS", str(int(seconds)))
        self._lists(take, RETRAIN_LEASE_OBJECTS)
        self._reads(take, HOLDS_THE_RETRAIN_LEASE, RETRAIN_LEASE_OBJECTS)
        self._creates(take, HOLDS_THE_RETRAIN_LEASE, RETRAIN_LEASE_GENERATIONS)
        return take

    def _release_retrain_lease(self) -> lambda_.Function:
        """When a train run ends: creates its lease generation's release marker (if it holds the lease)."""
        release = self._function("ReleaseRetrainLease", "release_retrain_lease",
                                 "the retrain lease let go, when a train run ends")
        self._lists(release, RETRAIN_LEASE_OBJECTS)
        self._reads(release, HOLDS_THE_RETRAIN_LEASE, RETRAIN_LEASE_GENERATIONS)
        self._creates(release, HOLDS_THE_RETRAIN_LEASE, RETRAIN_LEASE_RELEASES)
        return release

    def _plan(self, parameters: RunParameters) -> lambda_.Function:
        """Reads the current train record; names every artifact of the run (writes nothing)."""
        plan = self._function("Plan", "plan", "a run's plan: artifact URIs and the current model")
        allow(plan, "ssm:GetParameter", parameters.train_latest)
        return plan

    def _decide(self, parameters: RunParameters) -> lambda_.Function:
        """Reads the drift report and the previous serve record; on a production batch (``batches/<id>``)
        also joins labels, asks for labels and assembles the retrain set (``driftloop.production``)."""
        decide = self._function("Decide", "decide", "drift report and labels -> retrain decision")
        self._reads(decide, DRIFT_REPORTS_ONLY, runs_pattern("serve", "drift_report"))
        allow(decide, "ssm:GetParameter", parameters.serve_latest, parameters.train_latest,
              parameters.train_last_attempt)
        predictions = runs_pattern("serve", "predictions")
        reads = (LABEL_OBJECTS, LEDGER_OBJECTS, BATCH_OBJECTS, predictions, records_pattern("*"), DATA_OBJECTS)
        writes = (f"{LEDGER_LABELLED}/*", LABEL_REQUEST_OBJECTS, RETRAIN_SET_OBJECTS)
        self._reads(decide, JOINS_LABELS_AND_BUILDS_RETRAIN_SETS, *reads)
        self._lists(decide, LABEL_OBJECTS, LEDGER_OBJECTS, predictions, DATA_OBJECTS)
        self._writes(decide, JOINS_LABELS_AND_BUILDS_RETRAIN_SETS, *writes)
        return decide

    def _record_serve(self, parameters: RunParameters) -> lambda_.Function:
        """Reads the drift report; writes the run's record object, then serve/latest (the serve run's last step)."""
        record = self._function("RecordServe", "record_serve", "the serve record")
        self._reads(record, DRIFT_REPORTS_ONLY, runs_pattern("serve", "drift_report"))
        self._writes(record, WRITES_ITS_RUN_RECORD, records_pattern("serve"))
        allow(record, "ssm:PutParameter", parameters.serve_latest)
        return record

    def _record_train(self, parameters: RunParameters) -> lambda_.Function:
        """Reads the new model's metrics and the champion's evaluation; writes the train records."""
        record = self._function("RecordTrain", "record_train", "champion/challenger, train records")
        read = (runs_pattern("train", "model"), runs_pattern("train", "champion_eval"))
        self._reads(record, NEW_MODEL_AND_CHAMPION_EVAL, *read)
        self._reads(record, READS_LINEAGE, LINEAGE_OBJECTS)
        # Listing finds the training job's archive under the model prefix, and lets S3 answer
        # "no such key" (not "access denied") for a missing evaluation or lineage.
        self._lists(record, *read, LINEAGE_OBJECTS)
        self._writes(record, WRITES_ITS_RUN_RECORD, records_pattern("train"))
        allow(record, "ssm:PutParameter", parameters.train_latest, parameters.train_last_attempt)
        record.add_environment("ALGORITHM_IMAGE", self.algorithm_image)
        self._uses_registry(record, "sagemaker:CreateModelPackage")
        return record

    def _next_batch(self, parameters: RunParameters) -> lambda_.Function:
        """Simulation only: reads and advances the cycle position."""
        next_batch = self._function("NextBatch", "next_batch", "simulation: next stage's test set")
        allow(next_batch, "ssm:GetParameter", parameters.simulation_position)
        allow(next_batch, "ssm:PutParameter", parameters.simulation_position)
        return next_batch

    def _function(self, construct_id: str, handler: str, purpose: str, *,
                  dead_letter_topic: sns.ITopic | None = None, skips: dict[str, str] | None = None
                  ) -> lambda_.Function:
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
            dead_letter_topic=dead_letter_topic,
        )
        nag.suppress(function, "AwsSolutions-L1", TESTED_RUNTIME)
        checkov.skip(function, skips or (checkov.CONTROL_STEP_LAMBDA if dead_letter_topic is None
                                         else checkov.PROMOTE_LAMBDA))
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

    def _writes(self, function: lambda_.Function, reason: str, *patterns: str) -> None:
        """Lets the function write objects under these key patterns; ``reason`` says why their wildcards are safe."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[self.bucket.arn_for_objects(pattern) for pattern in patterns]
            )
        )
        assert function.role is not None
        nag.wildcards(function.role, reason, resources=tuple(nag.objects(self.bucket, p) for p in patterns))

    def _creates(self, function: lambda_.Function, reason: str, *patterns: str) -> None:
        """Lets the function create (never replace) objects under these key patterns: a conditional
        write only (If-None-Match: *); ``reason`` says why their wildcards are safe."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects(pattern) for pattern in patterns],
                conditions={"Null": {"s3:if-none-match": "false"}},
            )
        )
        assert function.role is not None
        nag.wildcards(function.role, reason, resources=tuple(nag.objects(self.bucket, p) for p in patterns))

    def _lists(self, function: lambda_.Function, *patterns: str) -> None:
        """Lets the function list the bucket under these key patterns only (``s3:prefix``)."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": list(patterns)}},
            )
        )
