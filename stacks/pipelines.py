"""The train and serve state machines, rendered from ``driftloop.pipelines`` (the one definition).

The control steps are Lambdas over ``driftloop.loop`` (the local runner calls the same functions);
the state machines only start jobs, wait, branch on the decision and catch failures.

Train (input ``{"train_data": "data/<stage>/train", "val_data": "data/<stage>/val"}``)::

    plan Lambda (checks the input, reads train/latest, names every artifact) -> steps
    (evaluate_champion only when there is a champion) -> record_train Lambda (writes
    train/last-attempt, and train/latest when promoted) -> notify

Serve (input ``{}`` in simulation mode, or ``{"batch": "<key prefix>"}``)::

    [next_batch Lambda] -> plan Lambda (no model: fail, "run the train pipeline first") -> steps ->
    decide Lambda -> retrain? -> overlap guard -> start the train state machine | "skipped" ->
    record_serve Lambda (writes serve/latest, last) -> notify on drift

Every job failure is caught: a message goes to the topic and the execution fails; no parameter
is written on that path. Each Lambda's payload is built from its event contract's fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from driftloop import loop
from driftloop.contracts import Contract, field_names
from driftloop.pipelines import BATCH_START_FIELD, SERVE_PIPELINE, TRAIN_PIPELINE, Component, Pipeline, Step
from stacks.config import DeploymentConfig
from stacks.control_steps import ControlStepFunctions
from stacks.jobs import JobStates, add_error_handling, artifact_path, state_machine_timeout_minutes, state_name
from stacks.logs import log_group
from stacks.parameters import RunParameters


def fields_of(contract: type[Contract], values: dict[str, Any]) -> dict[str, Any]:
    """``values``, refused if it names a field the contract does not have: a renamed field breaks synth."""
    unknown = set(values) - set(field_names(contract))
    if unknown:
        raise ValueError(f"{contract.__name__} has no field(s) {sorted(unknown)}")
    return values


def payload(contract: type[Contract], **values: Any) -> sfn.TaskInput:
    """A Lambda payload with exactly the contract's fields.

    A field not given reads the state path of the same name (``plan`` -> ``$.plan``).
    """
    given = fields_of(contract, values)
    return sfn.TaskInput.from_object(
        {name: given.get(name, sfn.JsonPath.object_at(f"$.{name}")) for name in field_names(contract)}
    )


def outcome_state(scope: Construct, construct_id: str, **values: Any) -> sfn.Pass:
    """A ``$.outcome`` (``driftloop.loop.RetrainOutcome``) of the serve run's retrain decision."""
    return sfn.Pass(scope, construct_id, parameters=fields_of(loop.RetrainOutcome, values), result_path="$.outcome")


def _all_present(artifacts: Iterable[str]) -> sfn.Condition:
    """True when the run's plan names every one of these artifacts."""
    present = [sfn.Condition.is_present(artifact_path(a)) for a in artifacts]
    return sfn.Condition.and_(*present) if len(present) > 1 else present[0]


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
        functions: ControlStepFunctions,
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

    def _state_machine(self, pipeline: Pipeline, start: sfn.IChainable, jobs: JobStates) -> sfn.StateMachine:
        logs = log_group(self, f"{pipeline.name.title()}Logs", self.config)
        machine = sfn.StateMachine(
            self,
            pipeline.name.title(),
            definition_body=sfn.DefinitionBody.from_chainable(start),
            timeout=Duration.minutes(state_machine_timeout_minutes(self.config, pipeline)),
            tracing_enabled=self.config.tracing,
            logs=sfn.LogOptions(destination=logs, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment=f"driftloop {pipeline.name} pipeline (rendered from driftloop.pipelines)",
        )
        jobs.grant(machine)
        self.topic.grant_publish(machine)
        return machine

    def _failure(self, scope: Construct, pipeline: Pipeline) -> sfn.IChainable:
        """Notify, then fail: every Catch leads here with ``$.error``, whose ``Cause`` may be missing.

        Step Functions gives a caught error ``Error`` always and ``Cause`` only sometimes (e.g. not for
        ``States.Timeout`` of a task without a heartbeat message); reading a missing path would end the
        execution with an uncaught ``States.Runtime`` error, and nobody would be told.
        """
        notify = tasks.SnsPublish(
            scope,
            "NotifyFailure",
            topic=self.topic,
            subject=f"driftloop: {pipeline.name} run failed",
            message=sfn.TaskInput.from_text(
                sfn.JsonPath.format(
                    f"driftloop {pipeline.name} run {{}} failed: {{}}: {{}}. No parameter was changed.",
                    sfn.JsonPath.execution_name,
                    sfn.JsonPath.string_at("$.failure.error"),
                    sfn.JsonPath.string_at("$.failure.cause"),
                )
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        notify.next(sfn.Fail(scope, "Failed", error_path="$.failure.error", cause_path="$.failure.cause"))

        def failure(construct_id: str, cause: str) -> sfn.IChainable:
            parameters = {"error": sfn.JsonPath.string_at("$.error.Error"), "cause": cause}
            return sfn.Pass(scope, construct_id, parameters=parameters, result_path="$.failure").next(notify)

        return (
            sfn.Choice(scope, "FailureHasCause?")
            .when(
                sfn.Condition.is_present("$.error.Cause"),
                failure("DescribeFailure", sfn.JsonPath.string_at("$.error.Cause")),
            )
            .otherwise(failure("DescribeFailureWithoutCause", "Step Functions gave no cause"))
        )

    def _plan(self, scope: Construct, pipeline: Pipeline) -> tasks.LambdaInvoke:
        """The run's plan (``driftloop.loop.plan_run``): the execution input is the run's start."""
        return tasks.LambdaInvoke(
            scope,
            "Plan",
            lambda_function=self.functions.plan,
            payload=payload(
                loop.PlanEvent,
                pipeline=pipeline.name,
                run_id=sfn.JsonPath.execution_name,
                time=sfn.JsonPath.string_at("$$.Execution.StartTime"),
                start=sfn.JsonPath.object_at("$"),
            ),
            payload_response_only=True,
            result_selector={"plan": sfn.JsonPath.object_at("$"), "attempts": self._attempts(pipeline)},
            result_path="$",
        )

    @staticmethod
    def _attempts(pipeline: Pipeline) -> dict[str, Any]:
        """Each step's capacity-retry counter (``add_error_handling``), starting at 0."""
        return {step.name: {"n": 0} for step in pipeline.steps}

    def _steps(
        self, scope: Construct, jobs: JobStates, then: sfn.IChainable, on_failure: sfn.IChainable
    ) -> sfn.IChainable:
        """The pipeline's steps in order, each a job; a step with ``only_if`` sits behind a Choice.

        A step with optional inputs is two jobs behind a Choice: with every channel when the plan
        has their artifacts, else without them (e.g. the first training, which has no champion).
        """
        entry = then
        for step in reversed(jobs.pipeline.steps):
            job = self._job(scope, jobs, step, (), entry, on_failure)
            optional = step.optional_inputs()
            if optional:
                without = tuple(channel for channel, _ in optional)
                job = (
                    sfn.Choice(scope, f"{state_name(step)}With{''.join(c.title() for c in without)}?")
                    .when(_all_present(a for _, a in optional), job)
                    .otherwise(self._job(scope, jobs, step, without, entry, on_failure))
                )
            if step.only_if:
                job = sfn.Choice(scope, f"{state_name(step)}?").when(_all_present(step.only_if), job).otherwise(entry)
            entry = job
        return entry

    def _job(self, scope: Construct, jobs: JobStates, step: Step, without: tuple[str, ...], then: sfn.IChainable,
             on_failure: sfn.IChainable) -> sfn.IChainable:
        job = jobs.job(step, without)
        add_error_handling(scope, job, step=step, config=self.config, on_failure=on_failure)
        return job.next(then)

    def _jobs(self, pipeline: Pipeline, scope: Construct) -> JobStates:
        return JobStates(scope, pipeline=pipeline, config=self.config, images=self.images, role=self.sagemaker_role)

    # ------------------------------------------------------------------ train

    def _train_state_machine(self) -> sfn.StateMachine:
        pipeline = TRAIN_PIPELINE
        scope = Construct(self, "TrainStates")
        jobs = self._jobs(pipeline, scope)
        failure = self._failure(scope, pipeline)

        record = tasks.LambdaInvoke(
            scope,
            "RecordTrain",
            lambda_function=self.functions.record_train,
            payload=payload(loop.RecordTrainEvent),
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

        plan = self._plan(scope, pipeline)
        plan.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        plan.next(self._steps(scope, jobs, tail, failure))
        return self._state_machine(pipeline, plan, jobs)

    # ------------------------------------------------------------------ serve

    def _serve_state_machine(self, train: sfn.StateMachine) -> sfn.StateMachine:
        pipeline = SERVE_PIPELINE
        scope = Construct(self, "ServeStates")
        jobs = self._jobs(pipeline, scope)
        failure = self._failure(scope, pipeline)

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
        record = tasks.LambdaInvoke(
            scope,
            "RecordServe",
            lambda_function=self.functions.record_serve,
            payload=payload(loop.RecordServeEvent),
            payload_response_only=True,
            result_path="$.record",
        )
        record.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        record.next(
            sfn.Choice(scope, "Drift?")
            .when(sfn.Condition.boolean_equals("$.record.is_drift", True), notify_drift)
            .otherwise(done)
        )

        no_retrain = outcome_state(
            scope, "NoRetrain", started=False, reason=sfn.JsonPath.string_at("$.decision.reason")
        ).next(record)
        skipped = outcome_state(
            scope,
            "RetrainSkipped",
            started=False,
            reason=sfn.JsonPath.format(
                "skipped: a retrain is already running ({}); {}",
                sfn.JsonPath.string_at("$.guard.running[0].Name"),
                sfn.JsonPath.string_at("$.decision.reason"),
            ),
        ).next(record)
        started = outcome_state(
            scope,
            "RetrainStarted",
            started=True,
            reason=sfn.JsonPath.string_at("$.decision.reason"),
            run_id=sfn.JsonPath.string_at("$.retrain.run_id"),
        ).next(record)

        start_train = tasks.StepFunctionsStartExecution(
            scope,
            "StartRetrain",
            state_machine=train,
            integration_pattern=sfn.IntegrationPattern.REQUEST_RESPONSE,
            associate_with_parent=True,
            input=sfn.TaskInput.from_object(
                {
                    field: sfn.JsonPath.string_at(f"$.decision.{field}")
                    for field in TRAIN_PIPELINE.start_inputs()
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
            payload=payload(loop.DecideEvent),
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
        plan = self._plan(scope, pipeline)
        plan.add_catch(no_model, errors=[loop.NoModel.__name__])
        plan.add_catch(failure, errors=["States.ALL"], result_path="$.error")
        plan.next(self._steps(scope, jobs, decide, failure))
        if self.functions.next_batch is not None:
            next_batch = tasks.LambdaInvoke(
                scope,
                "NextSimulationBatch",
                lambda_function=self.functions.next_batch,
                payload=payload(loop.NextBatchEvent),
                payload_response_only=True,
                # The serve run's start input: {"batch": ...}.
                result_selector={field: sfn.JsonPath.string_at(f"$.{field}") for field in pipeline.start_inputs()},
                result_path="$",
            )
            next_batch.add_catch(failure, errors=["States.ALL"], result_path="$.error")
            entry: sfn.IChainable = (
                sfn.Choice(scope, "BatchGiven?")
                .when(sfn.Condition.is_present(f"$.{BATCH_START_FIELD}"), plan)
                .otherwise(next_batch.next(plan))
            )
        else:
            entry = plan
        return self._state_machine(pipeline, entry, jobs)
