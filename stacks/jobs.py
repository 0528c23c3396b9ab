"""SageMaker job states rendered from ``driftloop.pipelines``, and the IAM they need.

Every job is a ``createProcessingJob.sync`` task (there is no CDK task for it: a ``CustomState``);
the S3 URIs come from the run's plan (see ``artifact_path``), so every run writes its own
``runs/<pipeline>/<run_id>/<artifact>`` prefixes, and job names are made per attempt (``<prefix>-<uuid>``),
so a retried or re-started job never collides with an earlier one. There are two forms:

* **One job a run** (``JobStates.one_job``: every step on one instance; the train pipeline always,
  the serve pipeline by default): ``python -m driftloop.components.pipeline --pipeline <name>``
  runs the definition's steps in-process. Its channels are artifacts (``artifact_channel``), each
  output uploaded to the URI its step's job would write. Named ``<stack token>-<pipeline>-run-<uuid>``.
  A Processing job trains on CPU as well as a Training job does, and writes the model's files under
  the model prefix, which every reader takes as it takes SageMaker's ``model.tar.gz``.
* **One job a step** (a serve step on N > 1 instances): each step's channels at SageMaker's
  container paths (``container_path``), named ``<stack token>-<pipeline>-<step>-<uuid>``; a scaled-out
  step runs on ``DeploymentConfig.instances`` instances with its sharded inputs ``ShardedByS3Key``,
  every host writing its own files under the output's one prefix (``driftloop.hosts``).

Every job name starts with its stack's token (``stack_token``), and each state machine may start,
describe and stop only the jobs named with its own stack's token: two stacks in one account and
region never reach each other's jobs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Final

from aws_cdk import Duration, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from driftloop.components import pipeline as pipeline_entrypoint
from driftloop.pipelines import (
    RUN_FACTS_ENV,
    RUN_SETTINGS_ENV,
    Component,
    JobKind,
    Pipeline,
    Step,
    container_path,
)
from stacks import nag
from stacks.config import DeploymentConfig, JobResources

# What a later attempt can get past, and nothing else (a ValidationException or AccessDenied fails
# the run at once):
# * quota exhaustion (too many jobs at once): ResourceLimitExceededException, retried in place;
# * throttling of the API call: Step Functions names it only by the generic AmazonSageMakerException,
#   with the error code in its cause, so a Choice on the cause starts the job again after a pause;
# * a job that ran and failed for want of instances: States.TaskFailed with "CapacityError" in its
#   cause, started again (new name) after a longer pause.
QUOTA_ERRORS: Final = ("SageMaker.ResourceLimitExceededException",)
QUOTA_RETRY: Final = {"interval_s": 30, "max_attempts": 4, "backoff_rate": 2.0}
API_ERROR: Final = "SageMaker.AmazonSageMakerException"
THROTTLING_PATTERNS: Final = ("*ThrottlingException*", "*Rate exceeded*")
THROTTLING_WAIT_S: Final = 30
CAPACITY_ERROR_PATTERN: Final = "*CapacityError*"
# Lambda states and their retries, the retrain lease and notifications: a generous allowance.
CONTROL_ALLOWANCE_MINUTES: Final = 30
PROCESSING_EVENTS_RULE: Final = "StepFunctionsGetEventsForSageMakerProcessingJobsRule"
UUID_LENGTH: Final = 36
MAX_JOB_NAME: Final = 63
STACK_TOKEN_LENGTH: Final = 5
# The whole-pipeline job's command. Every component image carries the whole package; it runs in the
# algorithm image, the one with the heaviest step's entrypoint (all four share their layers).
PIPELINE_JOB_ENTRYPOINT: Final = ("python", "-m", pipeline_entrypoint.__name__)
PIPELINE_JOB_IMAGE: Final = Component.ALGORITHM
# The whole-pipeline job's name in job names (``<token>-<pipeline>-run-<uuid>``), states and attempt counters.
RUN: Final = "run"


# Where a state machine keeps each artifact's S3 URI and each step's per-run settings: the run's
# plan (``driftloop.loop.RunPlan``, at ``$.plan``).


def artifact_path(artifact: str) -> str:
    return f"$.plan.uri.{artifact}"


def run_settings_path(step: Step) -> str:
    return f"$.plan.settings.{step.name}"


# The run's facts, for the whole-pipeline job (``RUN_FACTS_ENV``), which makes every step's settings from them.
RUN_FACTS_PATH: Final = "$.plan.facts"


def state_name(step: Step, without: tuple[str, ...] = ()) -> str:
    """``train_model`` -> ``TrainModel``; the job without optional channels: ``TrainModelWithoutChampion``."""
    name = "".join(part.title() for part in step.name.split("_"))
    return name + ("Without" + "".join(channel.title() for channel in without) if without else "")


def pipeline_state_name(pipeline: Pipeline, without: tuple[str, ...] = ()) -> str:
    """``serve`` -> ``ServeRun``; the job without optional artifacts: ``TrainRunWithoutChampionModel``."""
    name = f"{pipeline.name.title()}{RUN.title()}"
    return name + ("Without" + "".join(_camel(a) for a in without) if without else "")


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


def stack_token(stack_name: str) -> str:
    """The first part of every job name of the stack: a few characters of a digest of its name.

    IAM keeps a stack's state machines to its own jobs by the names in the jobs' ARNs
    (``JobStates.grant``), and the stack's name rarely fits there beside ``<pipeline>-<step>-<uuid>``
    (``job_name_prefix``). CloudFormation keeps stack names unique in an account and region; two of
    them share a token once in 32 ** ``STACK_TOKEN_LENGTH`` pairs (33 million).
    """
    digest = base64.b32encode(hashlib.sha256(stack_name.encode()).digest()).decode().lower()
    return digest[:STACK_TOKEN_LENGTH]


def job_name_prefix(token: str, pipeline: Pipeline, step: Step | None) -> str:
    """``<token>-<pipeline>-<step>``, or ``<token>-<pipeline>-run`` for the whole-pipeline job (``step`` None)."""
    prefix = f"{token}-{pipeline.name}-{RUN if step is None else step.name}".replace("_", "-")
    excess = len(prefix) + 1 + UUID_LENGTH - MAX_JOB_NAME
    if excess > 0:
        raise ValueError(
            f"job names {prefix}-<uuid> would be {MAX_JOB_NAME + excess} characters, and SageMaker allows "
            f"{MAX_JOB_NAME}: shorten the name of pipeline {pipeline.name!r} or of its step "
            f"{RUN if step is None else step.name!r} (driftloop.pipelines) by {excess} characters"
        )
    return prefix


def resources_for(config: DeploymentConfig, pipeline: Pipeline, step: Step) -> JobResources:
    if step.job is JobKind.TRAINING:
        return config.training
    if pipeline.name == "serve" and step.component is Component.ALGORITHM and step.mode == "serve":
        return config.inference
    return config.processing


def pipeline_resources(config: DeploymentConfig, pipeline: Pipeline) -> JobResources:
    """The whole-pipeline job's: the instance of its heaviest step (training for train, inference for
    serve), the largest volume of any step and the sum of the steps' time limits (it does all their work)."""
    steps = [resources_for(config, pipeline, step) for step in pipeline.steps]
    main = config.training if any(step.job is JobKind.TRAINING for step in pipeline.steps) else config.inference
    return JobResources(
        main.instance_type,
        max(r.volume_size_gb for r in steps),
        sum(r.max_runtime_minutes for r in steps),
    )


def instance_count(config: DeploymentConfig, step: Step) -> int:
    """The step's instances (``DeploymentConfig.instances``; one unless the step scales out)."""
    return step.instance_count(config.runtime_settings.instances)


def _channel(step: Step, direction: str, channel: str, artifact: str) -> dict[str, str]:
    """A processing channel's S3 URI (from the run's plan) and its folder in the container."""
    return {
        "S3Uri.$": artifact_path(artifact),
        "LocalPath": str(container_path(step.component, step.mode, direction, channel)),
    }


def _processing_input(step: Step, channel: str, artifact: str) -> dict[str, str]:
    """An input channel: a sharded one splits its objects across the step's instances."""
    return {
        **_channel(step, "input", channel, artifact),
        "S3DataType": "S3Prefix",
        "S3InputMode": "File",
        "S3DataDistributionType": "ShardedByS3Key" if channel in step.sharded else "FullyReplicated",
    }


class JobStates:
    """Builds one pipeline's SageMaker job states; ``grant`` gives a state machine what they need.

    ``one_job``: every step runs on one instance, so the run is one whole-pipeline job (``pipeline_job``);
    otherwise each step is its own job (``job``). Decided here, at synthesis, from the deployment's
    instance counts: the state machine holds only the form it runs.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        pipeline: Pipeline,
        config: DeploymentConfig,
        images: dict[Component, ecr_assets.DockerImageAsset],
        role: iam.Role,
    ) -> None:
        self.scope = scope
        self.pipeline = pipeline
        self.config = config
        self.images = images
        self.role = role
        self.one_job = runs_as_one_job(config, pipeline)
        self.token = stack_token(Stack.of(scope).stack_name)

    def job(self, step: Step, without: tuple[str, ...] = ()) -> sfn.CustomState:
        """The step's job state; ``without`` names optional input channels it starts without.

        SageMaker refuses an input channel whose S3 prefix holds nothing, so a run whose plan lacks
        an optional input (no champion yet) needs a job request without that channel.
        """
        optional = {channel for channel, _ in step.optional_inputs()}
        if not set(without) <= optional:
            raise ValueError(f"step {step.name}: only its optional channels {sorted(optional)} may be left out")
        if step.job is JobKind.TRAINING:
            raise ValueError(f"step {step.name}: a training step runs only inside its pipeline's one job "
                             "(the train pipeline has no step that scales out)")
        state_json = self._task(self._processing_job_request(step, without), step.name)
        return sfn.CustomState(self.scope, state_name(step, without), state_json=state_json)

    def pipeline_job(self, without: tuple[str, ...] = ()) -> sfn.CustomState:
        """The whole run as one processing job; ``without`` names input artifacts the run lacks."""
        if not set(without) <= set(self.pipeline.optional_inputs()):
            raise ValueError(f"{self.pipeline.name}: only {self.pipeline.optional_inputs()} may be left out")
        state_json = self._task(self._pipeline_job_request(without), RUN)
        return sfn.CustomState(self.scope, pipeline_state_name(self.pipeline, without), state_json=state_json)

    def _task(self, request: dict[str, Any], result: str) -> dict[str, Any]:
        """A ``createProcessingJob.sync`` state, as Amazon States Language (CDK has no task for it)."""
        return {
            "Type": "Task",
            "Resource": Stack.of(self.scope).format_arn(
                service="states", region="", account="", resource="sagemaker:createProcessingJob.sync"
            ),
            "Parameters": request,
            "ResultSelector": {"job.$": "$.ProcessingJobName"},
            "ResultPath": f"$.jobs.{result}",
        }

    def _processing_job_request(self, step: Step, without: tuple[str, ...]) -> dict[str, Any]:
        """SageMaker's ``CreateProcessingJob`` request, its S3 URIs and run settings read from the run's plan."""
        request = self._request(
            step, resources_for(self.config, self.pipeline, step), instance_count(self.config, step),
            {"ImageUri": self.images[step.component].image_uri,
             "ContainerArguments": ["--mode", step.mode, "--settings", self._settings_argument(step.component)]},
        )
        request["ProcessingInputs"] = [
            {"InputName": channel, "S3Input": _processing_input(step, channel, artifact)}
            for channel, artifact in step.inputs
            if channel not in without
        ]
        request["ProcessingOutputConfig"] = {"Outputs": [
            {"OutputName": channel, "S3Output": {**_channel(step, "output", channel, artifact),
                                                 "S3UploadMode": "EndOfJob"}}
            for channel, artifact in step.outputs
        ]}
        if step.run_settings:
            request["Environment"] = {f"{RUN_SETTINGS_ENV}.$": f"States.JsonToString({run_settings_path(step)})"}
        return request

    def _pipeline_job_request(self, without: tuple[str, ...]) -> dict[str, Any]:
        """The whole-pipeline job's request: one channel per artifact, at the URI of the run's plan."""
        pipeline = self.pipeline
        arguments = ["--pipeline", pipeline.name]
        for component in sorted({step.component for step in pipeline.steps}):
            if self.config.component_settings(component):
                arguments += [f"--settings-{component.value}", self._settings_argument(component)]
        request = self._request(
            None, pipeline_resources(self.config, pipeline), 1,
            {"ImageUri": self.images[PIPELINE_JOB_IMAGE].image_uri,
             "ContainerEntrypoint": list(PIPELINE_JOB_ENTRYPOINT), "ContainerArguments": arguments},
        )
        inputs = [a for a in (*pipeline.external_artifacts(), *pipeline.resolved_artifacts()) if a not in without]
        request["ProcessingInputs"] = [
            {"InputName": artifact, "S3Input": {
                "S3Uri.$": artifact_path(artifact),
                "LocalPath": str(pipeline_entrypoint.artifact_channel("input", artifact)),
                "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}
            for artifact in inputs
        ]
        request["ProcessingOutputConfig"] = {"Outputs": [
            {"OutputName": artifact, "S3Output": {
                "S3Uri.$": artifact_path(artifact),
                "LocalPath": str(pipeline_entrypoint.artifact_channel("output", artifact)),
                "S3UploadMode": "EndOfJob"}}
            for artifact in pipeline.produced()
        ]}
        if any(step.run_settings for step in pipeline.steps):
            request["Environment"] = {f"{RUN_FACTS_ENV}.$": f"States.JsonToString({RUN_FACTS_PATH})"}
        return request

    def _request(self, step: Step | None, resources: JobResources, count: int, app: dict[str, Any]
                 ) -> dict[str, Any]:
        """What every processing job request has: name, role, image and command, instances, time limit, tags."""
        return {
            "ProcessingJobName.$": f"States.Format('{self._name_prefix(step)}-{{}}', States.UUID())",
            "RoleArn": self.role.role_arn,
            "AppSpecification": app,
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": count,
                    "InstanceType": resources.instance_type,
                    "VolumeSizeInGB": resources.volume_size_gb,
                }
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": resources.max_runtime_minutes * 60},
            "Tags": self._tags(step),
        }

    def _settings_argument(self, component: Component) -> str:
        """The component's settings as one container argument (compact JSON), within SageMaker's limit."""
        settings = json.dumps(self.config.component_settings(component), separators=(",", ":"), sort_keys=True)
        if len(settings) > 256:
            raise ValueError(f"{component} settings are {len(settings)} characters; SageMaker allows 256 per "
                             "container argument: keep only the settings that differ from the defaults")
        return settings

    def _tags(self, step: Step | None) -> list[dict[str, str]]:
        return [
            {"Key": "driftloop:pipeline", "Value": self.pipeline.name},
            {"Key": "driftloop:step", "Value": RUN if step is None else step.name},
        ]

    def _name_prefix(self, step: Step | None) -> str:
        return job_name_prefix(self.token, self.pipeline, step)

    def grant(self, state_machine: sfn.StateMachine) -> None:
        """What ``createProcessingJob.sync`` needs, for the job names this state machine makes (one per attempt):
        its own stack's (``stack_token``), none of another's."""
        steps: list[Step | None] = [None] if self.one_job else list(self.pipeline.steps)
        self._grant_processing(state_machine, [f"{self._name_prefix(step)}-*" for step in steps])

    def _grant_processing(self, state_machine: sfn.StateMachine, names: list[str]) -> None:
        stack = Stack.of(self.scope)
        state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                resources=[
                    stack.format_arn(service="sagemaker", resource="processing-job", resource_name=name)
                    for name in names
                ],
            )
        )
        state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[stack.format_arn(service="events", resource="rule", resource_name=PROCESSING_EVENTS_RULE)],
            )
        )
        state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        nag.wildcards(
            state_machine.role,
            "Processing job names are <stack token>-<pipeline>-<step|run>-<uuid>, made per attempt; each job is "
            "limited to its prefix, which no other stack's jobs have.",
            resources=tuple(nag.arn("sagemaker", f"processing-job/{name}") for name in names),
        )


def quota_retry_seconds() -> int:
    """The longest the quota retry waits in all (30 + 60 + 120 + 240 s)."""
    interval, attempts, rate = QUOTA_RETRY["interval_s"], int(QUOTA_RETRY["max_attempts"]), QUOTA_RETRY["backoff_rate"]
    return int(sum(interval * rate**i for i in range(attempts)))


def worst_case_minutes(config: DeploymentConfig, resources: JobResources) -> int:
    """How long one job may take: every attempt to its limit, with every pause between them."""
    limit = resources.max_runtime_minutes
    pauses_s = config.capacity_retries * max(config.capacity_retry_wait_seconds, THROTTLING_WAIT_S)
    return -(-(limit * 60 * (1 + config.capacity_retries) + pauses_s + quota_retry_seconds()) // 60)


def runs_as_one_job(config: DeploymentConfig, pipeline: Pipeline) -> bool:
    """Every step on one instance: the run is one whole-pipeline job (else a job a step)."""
    return pipeline.on_one_host(config.runtime_settings.instances)


def state_machine_timeout(config: DeploymentConfig, pipeline: Pipeline) -> Duration:
    """Above the sum of every job's worst case: a run is stopped only when something hangs.

    An execution timeout cannot be caught inside the state machine, so it must never cut short a run
    that SageMaker would still finish. The retrain lease lasts as long (``RETRAIN_LEASE_SECONDS``):
    a train run that never let it go has surely ended when it expires.
    """
    jobs = ([pipeline_resources(config, pipeline)] if runs_as_one_job(config, pipeline)
            else [resources_for(config, pipeline, step) for step in pipeline.steps])
    return Duration.minutes(sum(worst_case_minutes(config, resources) for resources in jobs)
                            + CONTROL_ALLOWANCE_MINUTES)


def add_error_handling(
    scope: Construct,
    job: sfn.TaskStateBase | sfn.CustomState,
    *,
    counter: str,
    config: DeploymentConfig,
    on_failure: sfn.IChainable,
) -> None:
    """Retry quota errors; start the job again after throttling or a capacity error; else ``on_failure``.

    A retry of the same state evaluates the job name again, so every attempt has a fresh name.
    The loop counts its attempts in ``$.attempts.<counter>.n`` (set to 0 by the plan state; the step's
    name, or ``run`` for the whole-pipeline job); the states it adds are named after the job's state (a
    job may have two: with and without an optional channel).
    """
    job.add_retry(
        errors=list(QUOTA_ERRORS), interval=Duration.seconds(int(QUOTA_RETRY["interval_s"])),
        max_attempts=int(QUOTA_RETRY["max_attempts"]), backoff_rate=float(QUOTA_RETRY["backoff_rate"]),
    )
    name = job.state_id
    count_at = f"$.attempts.{counter}.n"
    attempts_left = sfn.Condition.number_less_than(count_at, config.capacity_retries)

    def again(kind: str, seconds: int) -> sfn.IChainable:
        count = sfn.Pass(
            scope,
            f"{name}Count{kind}Attempt",
            parameters={"n": sfn.JsonPath.math_add(sfn.JsonPath.number_at(count_at), 1)},
            result_path=f"$.attempts.{counter}",
        )
        wait = sfn.Wait(scope, f"{name}WaitFor{kind}", time=sfn.WaitTime.duration(Duration.seconds(seconds)))
        return count.next(wait).next(job)

    throttled = sfn.Condition.or_(*(sfn.Condition.string_matches("$.error.Cause", p) for p in THROTTLING_PATTERNS))
    retry = (
        sfn.Choice(scope, f"{name}Retryable?")
        .when(sfn.Condition.not_(sfn.Condition.is_present("$.error.Cause")), on_failure)
        .when(
            sfn.Condition.and_(sfn.Condition.string_matches("$.error.Cause", CAPACITY_ERROR_PATTERN), attempts_left),
            again("Capacity", config.capacity_retry_wait_seconds),
        )
        .when(sfn.Condition.and_(throttled, attempts_left), again("Throttling", THROTTLING_WAIT_S))
        .otherwise(on_failure)
    )
    job.add_catch(retry, errors=["States.TaskFailed", API_ERROR], result_path="$.error")
    catch_all(job, on_failure)


def catch_all(state: sfn.TaskStateBase | sfn.CustomState, on_failure: sfn.IChainable) -> None:
    """Every error not caught before goes to ``on_failure`` with the error at ``$.error`` (the run's failure path)."""
    state.add_catch(on_failure, errors=[sfn.Errors.ALL], result_path="$.error")
