"""The train and serve state machines, rendered from ``driftloop.pipelines`` (the one definition).

Train (input ``{"train_data": "data/<stage>/train", "val_data": "data/<stage>/val"}``)::

    check input -> run ids and URIs -> read train/latest -> steps (evaluate_champion only when
    there is a champion) -> record_train Lambda (writes train/last-attempt, and train/latest when
    promoted) -> notify

Serve (input ``{}`` in simulation mode, or ``{"batch": "<key prefix>"}``)::

    [next_batch Lambda] -> check input -> run ids and URIs -> read train/latest (no model: fail,
    "run the train pipeline first") -> steps -> decide Lambda -> retrain? -> overlap guard ->
    start the train state machine | record "skipped" -> write serve/latest (last) -> notify on drift

Every job failure is caught: a message goes to the topic and the execution fails; no parameter
is written on that path.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final

from aws_cdk import Duration
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from driftloop.pipelines import SERVE_PIPELINE, TRAIN_PIPELINE, Component, Pipeline
from driftloop.records import ServeRecord
from stacks.config import DeploymentConfig
from stacks.decision import DecisionFunctions
from stacks.jobs import JobStates, RunPaths, add_error_handling, state_name
from stacks.logs import log_group
from stacks.parameters import RunParameters

# The execution input field that names each external artifact (an object-key prefix in the bucket).
EXTERNAL_INPUTS: Final = {"raw_train": "train_data", "raw_val": "val_data", "raw_batch": "batch"}
# Fields of the serve record that the state machine sets from the retrain outcome ($.outcome).
OUTCOME_FIELDS: Final = {"retrain": "retrain", "retrain_reason": "reason", "retrain_run_id": "run_id"}


class PipelineStateMachines(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        images: dict[Component, ecr_assets.DockerImageAsset],
        bucket: s3.IBucket,
        sagemaker_role: iam.Role,
        parameters: RunParameters,
        functions: DecisionFunctions,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.images = images
        self.bucket = bucket
        self.sagemaker_role = sagemaker_role
        self.parameters = parameters
        self.functions = functions
        self.topic = topic
        self.train = self._train_state_machine()
        self.serve = self._serve_state_machine(self.train)

    # ------------------------------------------------------------------ shared pieces

    def _state_machine(
        self, pipeline: Pipeline, start: sfn.IChainable, minutes: int, jobs: JobStates
    ) -> sfn.StateMachine:
        logs = log_group(self, f"{pipeline.name.title()}Logs", self.config)
        machine = sfn.StateMachine(
            self,
            pipeline.name.title(),
            definition_body=sfn.DefinitionBody.from_chainable(start),
            timeout=Duration.minutes(minutes),
            tracing_enabled=self.config.tracing,
            logs=sfn.LogOptions(destination=logs, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment=f"driftloop {pipeline.name} pipeline (rendered from driftloop.pipelines)",
        )
        jobs.grant(machine)
        self.topic.grant_publish(machine)
        return machine

    def _failure(self, scope: Construct, pipeline: Pipeline) -> sfn.IChainable:
        notify = tasks.SnsPublish(
            scope,
            "NotifyFailure",
            topic=self.topic,
            subject=f"driftloop: {pipeline.name} run failed",
            message=sfn.TaskInput.from_text(
                sfn.JsonPath.format(
                    f"driftloop {pipeline.name} run {{}} failed: {{}}: {{}}. No parameter was changed.",
                    sfn.JsonPath.execution_name,
                    sfn.JsonPath.string_at("$.error.Error"),
                    sfn.JsonPath.string_at("$.error.Cause"),
                )
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        return notify.next(sfn.Fail(scope, "Failed", error_path="$.error.Error", cause_path="$.error.Cause"))

    def _check_input(self, scope: Construct, names: tuple[str, ...], then: sfn.IChainable, usage: str) -> sfn.Choice:
        """Each named input must be an object-key prefix: a string without s3:// or slashes at its ends."""
        bad = sfn.Fail(scope, "InvalidInput", error="InvalidInput", cause=usage)
        paths = [f"$.{name}" for name in names]
        return (
            sfn.Choice(scope, "InputValid?")
            .when(sfn.Condition.or_(*(sfn.Condition.not_(sfn.Condition.is_present(p)) for p in paths)), bad)
            .when(sfn.Condition.or_(*(sfn.Condition.not_(sfn.Condition.is_string(p)) for p in paths)), bad)
            .when(
                sfn.Condition.or_(
                    *(
                        condition
                        for p in paths
                        for condition in (
                            sfn.Condition.string_equals(p, ""),
                            sfn.Condition.string_matches(p, "*/"),
                            sfn.Condition.string_matches(p, "/*"),
                            sfn.Condition.string_matches(p, "s3:*"),
                        )
                    )
                ),
                bad,
            )
            .otherwise(then)
        )

    def _start(self, scope: Construct, pipeline: Pipeline) -> sfn.Pass:
        """The run's id, time, inputs and every artifact's URI; the rest of the state reads these."""
        paths = RunPaths(pipeline)
        bucket = self.bucket.bucket_name
        given = {EXTERNAL_INPUTS[a]: sfn.JsonPath.string_at(f"$.{EXTERNAL_INPUTS[a]}") for a in pipeline.external}
        uris: dict[str, Any] = {
            artifact: sfn.JsonPath.format("s3://{}/{}", bucket, given[EXTERNAL_INPUTS[artifact]])
            for artifact in pipeline.external
        }
        uris.update(
            {
                artifact: sfn.JsonPath.format(f"s3://{{}}/{template}", bucket, sfn.JsonPath.execution_name)
                for artifact, template in paths.uri_templates().items()
            }
        )
        return sfn.Pass(
            scope,
            "Start",
            parameters={
                "run_id": sfn.JsonPath.execution_name,
                "started": sfn.JsonPath.string_at("$$.Execution.StartTime"),
                "input": given,
                "uri": uris,
                "attempts": {step.name: {"n": 0} for step in pipeline.steps},
            },
        )

    def _read_train_record(self, scope: Construct) -> tasks.CallAwsService:
        return tasks.CallAwsService(
            scope,
            "ReadTrainRecord",
            service="ssm",
            action="getParameter",
            parameters={"Name": self.parameters.train_latest.parameter_name},
            iam_resources=[self.parameters.train_latest.parameter_arn],
            iam_action="ssm:GetParameter",
            result_selector={"record": sfn.JsonPath.string_to_json(sfn.JsonPath.string_at("$.Parameter.Value"))},
            result_path="$.current",
        )

    def _steps(
        self, scope: Construct, jobs: JobStates, then: sfn.IChainable, on_failure: sfn.IChainable
    ) -> sfn.IChainable:
        """The pipeline's steps in order, each a job; a step with ``only_if`` sits behind a Choice."""
        entry = then
        for step in reversed(jobs.pipeline.steps):
            job = jobs.job(step)
            add_error_handling(scope, job, step=step, config=self.config, on_failure=on_failure)
            job.next(entry)
            if step.only_if:
                present = [sfn.Condition.is_present(jobs.paths.artifact(a)) for a in step.only_if]
                entry = (
                    sfn.Choice(scope, f"{state_name(step)}?")
                    .when(sfn.Condition.and_(*present) if len(present) > 1 else present[0], job)
                    .otherwise(entry)
                )
            else:
                entry = job
        return entry

    def _artifacts(self, paths: RunPaths) -> dict[str, str]:
        pipeline = paths.pipeline
        every = (*pipeline.external, *pipeline.resolved, *pipeline.produced())
        return {artifact: sfn.JsonPath.string_at(paths.artifact(artifact)) for artifact in every}

    def _jobs(self, pipeline: Pipeline, scope: Construct) -> JobStates:
        return JobStates(scope, pipeline=pipeline, config=self.config, images=self.images, role=self.sagemaker_role)

    # ------------------------------------------------------------------ train

    def _train_state_machine(self) -> sfn.StateMachine:
        pipeline = TRAIN_PIPELINE
        scope = Construct(self, "TrainStates")
        jobs = self._jobs(pipeline, scope)
        failure = self._failure(scope, pipeline)
        paths = RunPaths(pipeline)

        record = tasks.LambdaInvoke(
            scope,
            "RecordTrain",
            lambda_function=self.functions.record_train,
            payload=sfn.TaskInput.from_object(
                {
                    "run_id": sfn.JsonPath.string_at("$.run_id"),
                    "time": sfn.JsonPath.string_at("$.started"),
                    "train_data": sfn.JsonPath.string_at("$.input.train_data"),
                    "artifacts": {
                        a: p for a, p in self._artifacts(paths).items() if a not in pipeline.resolved
                    },
                    "champion": sfn.JsonPath.object_at("$.current.record"),
                }
            ),
            payload_response_only=True,
            result_path="$.outcome",
        )
        record.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        notify = tasks.SnsPublish(
            scope,
            "NotifyTrainResult",
            topic=self.topic,
            subject="driftloop: train run finished",
            message=sfn.TaskInput.from_json_path_at("$.outcome.summary"),
            result_path=sfn.JsonPath.DISCARD,
        )
        tail = record.next(notify).next(sfn.Succeed(scope, "Done"))

        read = self._read_train_record(scope)
        read.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        read.next(self._steps(scope, jobs, tail, failure))
        start = self._start(scope, pipeline).next(read)
        usage = (
            'start the train pipeline with {"train_data": "data/<stage>/train", "val_data": "data/<stage>/val"}: '
            "object-key prefixes in the data bucket, without s3:// and without slashes at either end"
        )
        entry = self._check_input(scope, ("train_data", "val_data"), start, usage)
        return self._state_machine(pipeline, entry, self.config.train_timeout_minutes, jobs)

    # ------------------------------------------------------------------ serve

    def _serve_state_machine(self, train: sfn.StateMachine) -> sfn.StateMachine:
        pipeline = SERVE_PIPELINE
        scope = Construct(self, "ServeStates")
        jobs = self._jobs(pipeline, scope)
        failure = self._failure(scope, pipeline)
        paths = RunPaths(pipeline)

        done = sfn.Succeed(scope, "Done")
        notify_drift = tasks.SnsPublish(
            scope,
            "NotifyDrift",
            topic=self.topic,
            subject="driftloop: drift detected",
            message=sfn.TaskInput.from_text(
                sfn.JsonPath.format(
                    "driftloop serve run {} on {}: drift (smallest p-value {} < threshold {}). Retrain: {}",
                    sfn.JsonPath.string_at("$.record.run_id"),
                    sfn.JsonPath.string_at("$.record.input"),
                    sfn.JsonPath.string_at("$.record.statistic"),
                    sfn.JsonPath.string_at("$.record.threshold"),
                    sfn.JsonPath.string_at("$.record.retrain_reason"),
                )
            ),
            result_path=sfn.JsonPath.DISCARD,
        ).next(done)
        write = tasks.CallAwsService(
            scope,
            "WriteServeRecord",
            service="ssm",
            action="putParameter",
            parameters={
                "Name": self.parameters.serve_latest.parameter_name,
                "Value": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.record")),
                "Overwrite": True,
            },
            iam_resources=[self.parameters.serve_latest.parameter_arn],
            iam_action="ssm:PutParameter",
            result_path=sfn.JsonPath.DISCARD,
        )
        write.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        write.next(
            sfn.Choice(scope, "Drift?")
            .when(sfn.Condition.boolean_equals("$.record.is_drift", True), notify_drift)
            .otherwise(done)
        )
        # The record as decide built it, with the retrain outcome of this execution.
        build_record = sfn.Pass(
            scope,
            "BuildServeRecord",
            parameters={
                f.name: sfn.JsonPath.string_at(
                    f"$.outcome.{OUTCOME_FIELDS[f.name]}" if f.name in OUTCOME_FIELDS else f"$.decision.record.{f.name}"
                )
                for f in fields(ServeRecord)
            },
            result_path="$.record",
        ).next(write)

        def outcome(construct_id: str, retrain: bool, reason: str, run_id: str) -> sfn.Pass:
            return sfn.Pass(
                scope,
                construct_id,
                parameters={"retrain": retrain, "reason": reason, "run_id": sfn.JsonPath.string_at(run_id)},
                result_path="$.outcome",
            )

        no_retrain = outcome(
            "NoRetrain", False, sfn.JsonPath.string_at("$.decision.reason"), "$.decision.record.retrain_run_id"
        ).next(build_record)
        skipped = outcome(
            "RetrainSkipped",
            False,
            sfn.JsonPath.format(
                "skipped: a retrain is already running ({}); {}",
                sfn.JsonPath.string_at("$.guard.running[0].Name"),
                sfn.JsonPath.string_at("$.decision.reason"),
            ),
            "$.decision.record.retrain_run_id",
        ).next(build_record)
        started = outcome(
            "RetrainStarted", True, sfn.JsonPath.string_at("$.decision.reason"), "$.retrain.run_id"
        ).next(build_record)

        start_train = tasks.StepFunctionsStartExecution(
            scope,
            "StartRetrain",
            state_machine=train,
            integration_pattern=sfn.IntegrationPattern.REQUEST_RESPONSE,
            associate_with_parent=True,
            input=sfn.TaskInput.from_object(
                {
                    "train_data": sfn.JsonPath.string_at("$.decision.train_data"),
                    "val_data": sfn.JsonPath.string_at("$.decision.val_data"),
                }
            ),
            result_selector={
                # arn:<partition>:states:<region>:<account>:execution:<state machine>:<execution name>
                "run_id": sfn.JsonPath.array_get_item(
                    sfn.JsonPath.string_split(sfn.JsonPath.string_at("$.ExecutionArn"), ":"), 7
                )
            },
            result_path="$.retrain",
        )
        start_train.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        start_train.next(started)
        guard = tasks.CallAwsService(
            scope,
            "TrainRunning?",
            service="sfn",
            action="listExecutions",
            parameters={"StateMachineArn": train.state_machine_arn, "StatusFilter": "RUNNING", "MaxResults": 1},
            iam_resources=[train.state_machine_arn],
            iam_action="states:ListExecutions",
            result_selector={"running": sfn.JsonPath.object_at("$.Executions")},
            result_path="$.guard",
        )
        guard.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        guard.next(
            sfn.Choice(scope, "AlreadyTraining?")
            .when(sfn.Condition.is_present("$.guard.running[0]"), skipped)
            .otherwise(start_train)
        )
        retrain = (
            sfn.Choice(scope, "Retrain?")
            .when(sfn.Condition.boolean_equals("$.decision.retrain", True), guard)
            .otherwise(no_retrain)
        )
        decide = tasks.LambdaInvoke(
            scope,
            "Decide",
            lambda_function=self.functions.decide,
            payload=sfn.TaskInput.from_object(
                {
                    "run_id": sfn.JsonPath.string_at("$.run_id"),
                    "time": sfn.JsonPath.string_at("$.started"),
                    "batch": sfn.JsonPath.string_at("$.input.batch"),
                    "artifacts": self._artifacts(paths),
                    "model": sfn.JsonPath.object_at("$.current.record"),
                }
            ),
            payload_response_only=True,
            result_path="$.decision",
        )
        decide.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        decide.next(retrain)

        no_model = sfn.Fail(
            scope,
            "NoModel",
            error="NoModel",
            cause=f"there is no trained model yet ({self.parameters.names.train_latest} holds no train run): "
            "run the train pipeline first",
        )
        read = self._read_train_record(scope)
        read.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        read.next(
            sfn.Choice(scope, "HaveModel?")
            .when(
                sfn.Condition.and_(*(sfn.Condition.is_present(paths.artifact(a)) for a in pipeline.resolved)),
                self._steps(scope, jobs, decide, failure),
            )
            .otherwise(no_model)
        )
        start = self._start(scope, pipeline).next(read)
        usage = (
            'start the serve pipeline with {"batch": "<key prefix>"} (e.g. "batches/2026-01-01" or '
            '"data/stage-1/test"), or with {} in simulation mode: a prefix without s3:// or slashes at its ends'
        )
        checked = self._check_input(scope, ("batch",), start, usage)
        if self.functions.next_batch is not None:
            next_batch = tasks.LambdaInvoke(
                scope,
                "NextSimulationBatch",
                lambda_function=self.functions.next_batch,
                payload=sfn.TaskInput.from_object({}),
                payload_response_only=True,
                result_path="$",
            )
            next_batch.add_catch(failure, errors=["States.ALL"], result_path="$.error")
            pick: sfn.IChainable = next_batch.next(checked)
        else:
            pick = checked
        entry = sfn.Choice(scope, "BatchGiven?").when(sfn.Condition.is_present("$.batch"), checked).otherwise(pick)
        return self._state_machine(pipeline, entry, self.config.serve_timeout_minutes, jobs)
