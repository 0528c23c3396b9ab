"""The train and serve state machines, rendered from ``driftloop.pipelines`` (the one definition).

The control steps are Lambdas over ``driftloop.loop`` (the local runner calls the same functions);
the state machines only start jobs, wait, branch on the decision and catch failures.

Train (input ``{"train_data": "data/<stage>/train", "val_data": "data/<stage>/val"}``)::

    plan Lambda (checks the input, reads train/latest, names every artifact) -> one job running
    every step (evaluate_champion only when there is a champion) -> record_train Lambda (writes
    train/last-attempt, and train/latest when promoted) -> release_retrain_lease Lambda -> notify;
    on the failure path too, the run lets its retrain lease go before it notifies and fails

Serve (input ``{}`` for a scheduled run, or ``{"batch": "<key prefix>"}`` to serve a batch by name)::

    next_batch Lambda (simulation) | claim_batch Lambda (production: no batch -> "nothing to serve",
    Succeed, no job) -> plan Lambda (no model: fail, "run the train pipeline first") -> jobs ->
    decide Lambda -> retrain? -> take_retrain_lease Lambda -> taken: start the train state machine,
    the execution named by the lease's run id | held by another retrain: "skipped" -> record_serve
    Lambda (writes serve/latest, last) -> notify on drift

The retrain lease (``driftloop.loop.take_retrain_lease``, an object created only if absent) is the one
overlap guard, the local runner's too: of two serve runs that both decide to retrain, exactly one
starts a train run. The train run lets it go when it ends, recorded or failed; a run that never does
(its execution timed out) holds it no longer than the train state machine's timeout.

The jobs: when every step runs on one instance (the default; the train pipeline always), the run is
one processing job, ``python -m driftloop.components.pipeline`` running the steps in-process and
writing every artifact at its step's key; a serve deployment with any step on N > 1 instances runs
a job a step (``stacks.jobs.JobStates.one_job``: chosen at synthesis from the instance counts, so
the state machine holds only the form it runs).

Every job failure is caught: a message goes to the topic and the execution fails; no parameter
is written on that path. Each Lambda's payload is built from its event contract's fields.

Every notice is caught too: a run whose notice cannot be published (SNS, or the topic's KMS key)
fails with ``NOTICE_NOT_SENT`` and a cause that says what the run did (its records written, or its
own error) and why the notice failed; a rule (``stacks.notifications``) tells the topic of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from driftloop import loop
from driftloop.contracts import Contract, field_names
from driftloop.pipelines import BATCH_START_FIELD, SERVE_PIPELINE, TRAIN_PIPELINE, Component, Pipeline, Step
from stacks import nag
from stacks.config import DeploymentConfig
from stacks.control_steps import ControlStepFunctions
from stacks.jobs import (
    RUN,
    JobStates,
    add_error_handling,
    artifact_path,
    catch_all,
    state_machine_timeout,
    state_name,
)
from stacks.logs import log_group
from stacks.notifications import NOTICE_NOT_SENT
from stacks.parameters import RunParameters

# Where a Notify state's Catch puts the publish's error (a failed run's own error stays at $.failure).
NOTICE_ERROR: Final = "$.notice"
# What to do when a notice could not be published; the caught error names what failed.
FIX_NOTICES: Final = ("Fix what that error names (the topic, its KMS key, or what the state machine role may do with "
                      "them) so that later runs are told.")


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


def _notice_error() -> str:
    """The caught publish error as JSON: ``Cause`` may be missing, and reading a missing path would fail the run
    with ``States.Runtime`` instead."""
    return sfn.JsonPath.json_to_string(sfn.JsonPath.object_at(NOTICE_ERROR))


def _all_present(artifacts: Iterable[str]) -> sfn.Condition:
    """True when the run's plan names every one of these artifacts."""
    present = [sfn.Condition.is_present(artifact_path(a)) for a in artifacts]
    return sfn.Condition.and_(*present) if len(present) > 1 else present[0]


@dataclass
class PipelineStates:
    """One pipeline's states while they are built: their scope, job states, failure path and the Lambdas called."""

    pipeline: Pipeline
    scope: Construct
    jobs: JobStates
    failure: sfn.IChainable
    invoked: list[lambda_.IFunction] = field(default_factory=list)

    def lambda_state(
        self,
        construct_id: str,
        function: lambda_.IFunction,
        event: sfn.TaskInput,
        *,
        catches: tuple[tuple[str, sfn.IChainable], ...] = (),
        **options: Any,
    ) -> tasks.LambdaInvoke:
        """A synchronous call of a control-step Lambda whose answer is its result; any error fails the run.

        ``catches`` (error name, next state) are tried first; every other error goes to the failure path.
        """
        self.invoked.append(function)
        state = tasks.LambdaInvoke(
            self.scope, construct_id, lambda_function=function, payload=event, payload_response_only=True, **options
        )
        for error, handler in catches:
            state.add_catch(handler, errors=[error])
        catch_all(state, self.failure)
        return state


class PipelineStateMachines(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        images: dict[Component, ecr_assets.DockerImageAsset],
        sagemaker_role: iam.Role,
        parameters: RunParameters,
        functions: ControlStepFunctions,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.images = images
        self.sagemaker_role = sagemaker_role
        self.parameters = parameters
        self.functions = functions
        self.topic = topic
        self.train = self._train_state_machine()
        self.serve = self._serve_state_machine(self.train)

    # ------------------------------------------------------------------ shared pieces

    def _states(self, pipeline: Pipeline) -> PipelineStates:
        scope = Construct(self, f"{pipeline.name.title()}States")
        jobs = JobStates(scope, pipeline=pipeline, config=self.config, images=self.images, role=self.sagemaker_role)
        return PipelineStates(pipeline, scope, jobs, self._failure(scope, pipeline))

    def _state_machine(self, states: PipelineStates, start: sfn.IChainable) -> sfn.StateMachine:
        pipeline = states.pipeline
        logs = log_group(self, f"{pipeline.name.title()}Logs", self.config)
        machine = sfn.StateMachine(
            self,
            pipeline.name.title(),
            definition_body=sfn.DefinitionBody.from_chainable(start),
            timeout=state_machine_timeout(self.config, pipeline),
            tracing_enabled=self.config.tracing,
            logs=sfn.LogOptions(destination=logs, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment=f"driftloop {pipeline.name} pipeline (rendered from driftloop.pipelines)",
        )
        states.jobs.grant(machine)
        nag.wildcards(
            machine.role,
            "Granted by CDK for the Lambda task: invoking the function's versions and aliases.",
            resources=tuple(f"{nag.ref(f)}:*" for f in states.invoked),
        )
        self.topic.grant_publish(machine)
        nag.wildcards(
            machine.role,
            "Granted by CDK's topic.grant_publish on the topic's own key only: SNS needs "
            "kms:GenerateDataKey* (every data-key variant) to encrypt a message.",
            actions=("kms:GenerateDataKey*",),
        )
        nag.wildcards(
            machine.role,
            "Granted by CDK: CloudWatch Logs delivery and X-Ray tracing of the state machine and "
            "sagemaker:ListTags support no resource-level permissions.",
            resources=("*",),
        )
        return machine

    def _failure(self, scope: Construct, pipeline: Pipeline) -> sfn.IChainable:
        """Notify, then fail: every Catch leads here with ``$.error``, whose ``Cause`` may be missing.

        Step Functions gives a caught error ``Error`` always and ``Cause`` only sometimes (e.g. not for
        ``States.Timeout`` of a task without a heartbeat message); reading a missing path would end the
        execution with an uncaught ``States.Runtime`` error, and nobody would be told.
        """
        summary = sfn.JsonPath.format(
            f"driftloop {pipeline.name} run {{}} failed: {{}}: {{}}. No parameter was changed.",
            sfn.JsonPath.execution_name,
            sfn.JsonPath.string_at("$.failure.error"),
            sfn.JsonPath.string_at("$.failure.cause"),
        )
        # A failure notice that cannot be published: the run fails all the same, its own error in the cause.
        unsent = sfn.Fail(scope, "FailedWithoutNotice", error=NOTICE_NOT_SENT, cause_path=sfn.JsonPath.format(
            f"{{}} Its failure notice could not be published to the SNS topic either: {{}}. {FIX_NOTICES}",
            summary, _notice_error(),
        ))
        notify = self._notify(scope, "NotifyFailure", subject=f"driftloop: {pipeline.name} run failed",
                              message=sfn.TaskInput.from_text(summary), unsent=unsent)
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

    def _notify(self, scope: Construct, construct_id: str, *, subject: str, message: sfn.TaskInput,
                unsent: sfn.IChainable) -> tasks.SnsPublish:
        """A message to the topic. A notice is how a run is seen: one that cannot be published goes to
        ``unsent``, with the error at ``NOTICE_ERROR``, instead of ending the run with no word."""
        notify = tasks.SnsPublish(scope, construct_id, topic=self.topic, subject=subject, message=message,
                                  result_path=sfn.JsonPath.DISCARD)
        notify.add_catch(unsent, errors=[sfn.Errors.ALL], result_path=NOTICE_ERROR)
        return notify

    @staticmethod
    def _notice_not_sent(scope: Construct, pipeline: Pipeline, records: str) -> sfn.Fail:
        """Where a run ends whose records are written but whose notice could not be published: FAILED, so
        that it is seen, with a cause that says the records were written, and where."""
        return sfn.Fail(scope, "NoticeNotSent", error=NOTICE_NOT_SENT, cause_path=sfn.JsonPath.format(
            f"driftloop {pipeline.name} run {{}} finished and wrote its records ({records}): read its outcome there. "
            f"Its notice could not be published to the SNS topic: {{}}. {FIX_NOTICES}",
            sfn.JsonPath.execution_name, _notice_error(),
        ))

    def _plan(self, states: PipelineStates, *, catches: tuple[tuple[str, sfn.IChainable], ...] = ()
              ) -> tasks.LambdaInvoke:
        """The run's plan (``driftloop.loop.plan_run``): the execution input is the run's start."""
        event = payload(
            loop.PlanEvent,
            pipeline=states.pipeline.name,
            run_id=sfn.JsonPath.execution_name,
            time=sfn.JsonPath.string_at("$$.Execution.StartTime"),
            start=sfn.JsonPath.object_at("$"),
        )
        return states.lambda_state(
            "Plan",
            self.functions.plan,
            event,
            catches=catches,
            result_selector={"plan": sfn.JsonPath.object_at("$"), "attempts": self._attempts(states)},
            result_path="$",
        )

    @staticmethod
    def _attempts(states: PipelineStates) -> dict[str, Any]:
        """Each job's capacity-retry counter (``add_error_handling``), starting at 0."""
        if states.jobs.one_job:
            return {RUN: {"n": 0}}
        return {step.name: {"n": 0} for step in states.pipeline.steps}

    def _steps(self, states: PipelineStates, then: sfn.IChainable) -> sfn.IChainable:
        """The pipeline's jobs: the whole run as one job when every step is on one instance, else a job a step."""
        return self._one_job(states, then) if states.jobs.one_job else self._job_per_step(states, then)

    def _one_job(self, states: PipelineStates, then: sfn.IChainable) -> sfn.IChainable:
        """One job for the whole run. A run that lacks an optional input (no champion yet) starts the job
        without its channel, behind a Choice: SageMaker refuses a channel on an empty prefix."""
        job = states.jobs.pipeline_job()
        add_error_handling(states.scope, job, counter=RUN, config=self.config, on_failure=states.failure)
        optional = states.pipeline.optional_inputs()
        if not optional:
            return job.next(then)
        without = states.jobs.pipeline_job(optional)
        add_error_handling(states.scope, without, counter=RUN, config=self.config, on_failure=states.failure)
        return (
            sfn.Choice(states.scope, f"{job.state_id}With{''.join(p.title() for a in optional for p in a.split('_'))}?")
            .when(_all_present(optional), job.next(then))
            .otherwise(without.next(then))
        )

    def _job_per_step(self, states: PipelineStates, then: sfn.IChainable) -> sfn.IChainable:
        """The pipeline's steps in order, each a job; a step with ``only_if`` sits behind a Choice.

        A step with optional inputs is two jobs behind a Choice: with every channel when the plan
        has their artifacts, else without them (e.g. the first training, which has no champion).
        """
        scope = states.scope
        entry = then
        for step in reversed(states.pipeline.steps):
            job = self._job(states, step, (), entry)
            optional = step.optional_inputs()
            if optional:
                without = tuple(channel for channel, _ in optional)
                job = (
                    sfn.Choice(scope, f"{state_name(step)}With{''.join(c.title() for c in without)}?")
                    .when(_all_present(a for _, a in optional), job)
                    .otherwise(self._job(states, step, without, entry))
                )
            if step.only_if:
                job = sfn.Choice(scope, f"{state_name(step)}?").when(_all_present(step.only_if), job).otherwise(entry)
            entry = job
        return entry

    def _job(self, states: PipelineStates, step: Step, without: tuple[str, ...], then: sfn.IChainable
             ) -> sfn.IChainable:
        job = states.jobs.job(step, without)
        add_error_handling(states.scope, job, counter=step.name, config=self.config, on_failure=states.failure)
        return job.next(then)

    # ------------------------------------------------------------------ train

    def _train_state_machine(self) -> sfn.StateMachine:
        states = self._states(TRAIN_PIPELINE)
        states.failure = self._release_lease_on_failure(states)
        scope = states.scope
        record = states.lambda_state(
            "RecordTrain", self.functions.record_train, payload(loop.RecordTrainEvent), result_path="$.outcome"
        )
        release = states.lambda_state(
            "ReleaseRetrainLease", self.functions.release_retrain_lease, self._release_event(), result_path="$.lease"
        )
        names = self.parameters.names
        unsent = self._notice_not_sent(
            scope, states.pipeline, f"{names.train_last_attempt}, and {names.train_latest} when promoted"
        )
        notify = self._notify(scope, "NotifyTrainResult", subject="driftloop: train run finished",
                              message=sfn.TaskInput.from_json_path_at("$.outcome.summary"), unsent=unsent)
        tail = record.next(release).next(notify).next(sfn.Succeed(scope, "Done"))
        plan = self._plan(states)
        plan.next(self._steps(states, tail))
        return self._state_machine(states, plan)

    @staticmethod
    def _release_event() -> sfn.TaskInput:
        """The train run's id is its execution name (a retrain's: the lease's run id, ``_start_retrain``)."""
        return payload(loop.ReleaseRetrainLeaseEvent, run_id=sfn.JsonPath.execution_name)

    def _release_lease_on_failure(self, states: PipelineStates) -> sfn.IChainable:
        """The train run's failure path, entered by letting its retrain lease go, so that a failed retrain
        holds up no other. A release that fails here is passed over (its error discarded): the run still
        notifies and fails with its own error, and the lease expires with the state machine's timeout."""
        function = self.functions.release_retrain_lease
        states.invoked.append(function)
        release = tasks.LambdaInvoke(
            states.scope, "ReleaseRetrainLeaseOnFailure", lambda_function=function, payload=self._release_event(),
            payload_response_only=True, result_path=sfn.JsonPath.DISCARD,
        )
        release.add_catch(states.failure, errors=[sfn.Errors.ALL], result_path=sfn.JsonPath.DISCARD)
        return release.next(states.failure)

    # ------------------------------------------------------------------ serve

    def _serve_state_machine(self, train: sfn.StateMachine) -> sfn.StateMachine:
        """[next batch ->] plan -> steps -> decide -> retrain? -> record -> drift? (see the module docstring)."""
        states = self._states(SERVE_PIPELINE)
        record = self._record_serve(states)
        decide = states.lambda_state("Decide", self.functions.decide, payload(loop.DecideEvent),
                                     result_path="$.decision")
        decide.next(self._retrain(states, train, record))
        no_model = sfn.Fail(
            states.scope,
            "NoModel",
            error="NoModel",
            cause=f"there is no trained model yet ({self.parameters.names.train_latest} holds no train run): "
            "run the train pipeline first",
        )
        plan = self._plan(states, catches=((loop.NoModel.__name__, no_model),))
        plan.next(self._steps(states, decide))
        first = self._next_batch(states, plan) if self.config.simulation else self._claim_batch(states, plan)
        return self._state_machine(states, first)

    def _record_serve(self, states: PipelineStates) -> sfn.IChainable:
        """Write the serve record; tell the topic when the batch drifted, and where its label request is."""
        scope = states.scope
        done = sfn.Succeed(scope, "Done")
        unsent = self._notice_not_sent(scope, states.pipeline, self.parameters.names.serve_latest)
        notify_label_request = self._notify(
            scope,
            "NotifyLabelRequest",
            unsent=unsent,
            subject="driftloop: drift detected, labels requested",
            message=sfn.TaskInput.from_text(
                sfn.JsonPath.format(
                    "driftloop serve run {} on {}: drift (smallest p-value {} < threshold {}). Labels requested: "
                    "{} images are listed in the Ground Truth input manifest {}; put their labels under "
                    "labels/<batch id>/. Retrain: {}",
                    sfn.JsonPath.string_at("$.record.run_id"),
                    sfn.JsonPath.string_at("$.record.input"),
                    sfn.JsonPath.string_at("$.record.statistic"),
                    sfn.JsonPath.string_at("$.record.threshold"),
                    sfn.JsonPath.string_at("$.record.label_request_images"),
                    sfn.JsonPath.string_at("$.record.label_request"),
                    sfn.JsonPath.string_at("$.record.retrain_reason"),
                )
            ),
        ).next(done)
        notify_drift = self._notify(
            scope,
            "NotifyDrift",
            unsent=unsent,
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
        ).next(done)
        record = states.lambda_state(
            "RecordServe", self.functions.record_serve, payload(loop.RecordServeEvent), result_path="$.record"
        )
        return record.next(
            sfn.Choice(scope, "Drift?")
            .when(sfn.Condition.is_string("$.record.label_request"), notify_label_request)
            .when(sfn.Condition.boolean_equals("$.record.is_drift", True), notify_drift)
            .otherwise(done)
        )

    def _retrain(self, states: PipelineStates, train: sfn.StateMachine, record: sfn.IChainable) -> sfn.IChainable:
        """On the decision to retrain, take the retrain lease; start the train state machine only if taken.

        Either way the outcome recorded is the one the lease step returns (``loop.take_retrain_lease``),
        the same the local runner records: started, with the train run's id, or skipped, naming the
        retrain that holds the lease.
        """
        scope = states.scope
        skipped = sfn.Pass(scope, "RetrainSkipped", input_path="$.lease.outcome", result_path="$.outcome")
        take = states.lambda_state(
            "TakeRetrainLease", self.functions.take_retrain_lease, payload(loop.TakeRetrainLeaseEvent),
            result_path="$.lease",
        )
        take.next(
            sfn.Choice(scope, "LeaseTaken?")
            .when(sfn.Condition.boolean_equals("$.lease.taken", True), self._start_retrain(states, train, record))
            .otherwise(skipped.next(record))
        )
        no_retrain = outcome_state(
            scope, "NoRetrain", started=False, reason=sfn.JsonPath.string_at("$.decision.reason")
        ).next(record)
        return (
            sfn.Choice(scope, "Retrain?")
            .when(sfn.Condition.boolean_equals("$.decision.retrain", True), take)
            .otherwise(no_retrain)
        )

    def _start_retrain(self, states: PipelineStates, train: sfn.StateMachine, record: sfn.IChainable
                       ) -> sfn.IChainable:
        """Start a train run on the decision's data (not waiting for it), named by the lease's run id: the
        train run's id is its execution name, so the run that holds the lease is the one that lets it go.

        A start that fails fails the serve run and leaves the lease held until it expires (the train state
        machine's timeout): the execution may have started all the same (a lost response), and letting
        the lease go then could let a second retrain run beside it.
        """
        start_train = tasks.StepFunctionsStartExecution(
            states.scope,
            "StartRetrain",
            state_machine=train,
            integration_pattern=sfn.IntegrationPattern.REQUEST_RESPONSE,
            associate_with_parent=True,
            name=sfn.JsonPath.string_at("$.lease.run_id"),
            input=sfn.TaskInput.from_object(
                {name: sfn.JsonPath.string_at(f"$.decision.{name}") for name in TRAIN_PIPELINE.start_inputs()}
            ),
            result_selector={"execution": sfn.JsonPath.string_at("$.ExecutionArn")},
            result_path="$.retrain",
        )
        catch_all(start_train, states.failure)
        started = sfn.Pass(states.scope, "RetrainStarted", input_path="$.lease.outcome", result_path="$.outcome")
        return start_train.next(started.next(record))

    def _next_batch(self, states: PipelineStates, plan: sfn.IChainable) -> sfn.IChainable:
        """In simulation, a run started without a batch serves the next stage's test set (the NextBatch Lambda)."""
        if self.functions.next_batch is None:
            return plan
        next_batch = states.lambda_state(
            "NextSimulationBatch",
            self.functions.next_batch,
            payload(loop.NextBatchEvent),
            # The serve run's start input: {"batch": ...}.
            result_selector={name: sfn.JsonPath.string_at(f"$.{name}") for name in states.pipeline.start_inputs()},
            result_path="$",
        )
        return (
            sfn.Choice(states.scope, "BatchGiven?")
            .when(sfn.Condition.is_present(f"$.{BATCH_START_FIELD}"), plan)
            .otherwise(next_batch.next(plan))
        )

    def _claim_batch(self, states: PipelineStates, plan: sfn.IChainable) -> sfn.IChainable:
        """Production: the claim (``driftloop.loop.claim_batch``) picks the run's batch, or ends the run
        before any job when there is nothing to serve. A run started on a batch by name serves it again."""
        assert self.functions.claim_batch is not None
        scope = states.scope

        function = self.functions.claim_batch

        def claim(construct_id: str, **batch: str) -> tasks.LambdaInvoke:
            """The claim; a run started without a batch sends none (the contract's default: the next batch)."""
            run = {"run_id": sfn.JsonPath.execution_name, "time": sfn.JsonPath.string_at("$$.Execution.StartTime")}
            event = sfn.TaskInput.from_object(fields_of(loop.ClaimBatchEvent, {**run, **batch}))
            return states.lambda_state(construct_id, function, event, result_path="$.claim")

        nothing = sfn.Succeed(scope, "NothingToServe", comment="nothing to serve: no job is started",
                              output_path="$.claim")
        # The serve run's start input: {"batch": <the claimed batch>}.
        serve = sfn.Pass(scope, "ServeClaimedBatch",
                         parameters={BATCH_START_FIELD: sfn.JsonPath.string_at(f"$.claim.{BATCH_START_FIELD}")},
                         result_path="$").next(plan)
        claimed = (
            sfn.Choice(scope, "NothingToServe?")
            .when(sfn.Condition.is_null(f"$.claim.{BATCH_START_FIELD}"), nothing)
            .otherwise(serve)
        )
        named = claim("ClaimNamedBatch", batch=sfn.JsonPath.string_at(f"$.{BATCH_START_FIELD}"))
        scheduled = claim("ClaimNextBatch")
        named.next(claimed)
        scheduled.next(claimed)
        return (
            sfn.Choice(scope, "BatchNamed?")
            .when(sfn.Condition.is_present(f"$.{BATCH_START_FIELD}"), named)
            .otherwise(scheduled)
        )
