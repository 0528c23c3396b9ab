"""The loop's control steps, written once: plan a run, decide on drift, promote, record.

Everything here is written against the ``ParameterStore`` and ``ObjectStore`` interfaces. The local
runner (``driftloop.local.runner``) calls it with the SQLite and folder stores; the Lambdas
(``lambdas/control_steps``) with the SSM and S3 stores. The state machines only start jobs, wait,
branch on the decision and catch failures; every rule lives in this module or the pure decisions
of ``driftloop.decision``.

A run goes: ``plan_run`` (its id, every artifact's URI, per-step settings, the train record it
resolved from) -> the pipeline's jobs -> ``record_train``, or ``decide`` then ``record_serve`` (each
given the drift report its caller read once with ``read_drift_report``).
Only standard-library and pure driftloop modules are imported: the Lambda bundle has no numpy.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from driftloop import intake, production
from driftloop.config import ApprovalMode, DecisionPolicy
from driftloop.contracts import Contract, ContractError
from driftloop.decision import PromotionDecision, RetrainDecision, decide_promotion, decide_retrain
from driftloop.drift_report import DriftReport
from driftloop.errors import UserError
from driftloop.hosts import is_part
from driftloop.layout import (
    LEASE_SUFFIX,
    SAGEMAKER_ARCHIVE,
    STAGE_NAMES,
    ParameterNames,
    PipelineName,
    artifact_prefix,
    batch_id_of_prefix,
    lease_key,
    lease_prefix,
    lease_release_key,
    run_claim_key,
    run_record_key,
    simulation_test_set,
    stage_of_data_prefix,
)
from driftloop.pipelines import (
    BATCH_START_FIELD,
    DRIFT_REPORT_FILE,
    EVALUATION_FILE,
    PIPELINES,
    TRAIN_METRICS_FILE,
    Pipeline,
)
from driftloop.plan_checks import (
    InvalidInput,
    check_job_environment,
    check_registrable,
    check_run_id,
    check_start,
    data_name,
)
from driftloop.records import ServeRecord, TrainRecord, last_train_attempt, read_record
from driftloop.registry import ApprovalStatus, ModelPackage, ModelRegistry, TrainedModel
from driftloop.scores import Evaluation, TrainMetrics
from driftloop.stores.objects import ObjectNotFound, ObjectStore
from driftloop.stores.params import ParameterStore

# Step Functions adds this to the input of an execution started by another one (the serve machine
# starting a retrain with ``associate_with_parent``); it is not part of the run's start.
STARTED_BY_KEY: Final = "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID"


class NoModel(LookupError):
    """A run that needs the current model before the train pipeline has promoted one."""


class RunExists(ValueError):
    """A run id that another run already claimed: its prefix is not reused (the message names it)."""


@dataclass(frozen=True)
class Stores:
    """Where one deployment keeps its state: artifacts, and the records that point at them."""

    objects: ObjectStore
    params: ParameterStore
    names: ParameterNames
    # Where every trained model is registered. None: a deployment whose stack has no model package group
    # yet (it promotes automatically, as before the registry); manual approval needs one.
    registry: ModelRegistry | None = None


@dataclass(frozen=True)
class RunPlan(Contract):
    """Everything a run's steps need, fixed when it starts; the state machines carry it as ``$.plan``."""

    pipeline: PipelineName
    run_id: str
    time: str  # ISO 8601
    start: dict[str, str]  # the start input: field -> object-key prefix
    uri: dict[str, str]  # artifact -> URI: the start's data, what was resolved, and what this run writes
    settings: dict[str, dict[str, str]]  # step -> the settings that differ per run
    facts: dict[str, str]  # the run facts those settings are made from (``RunFact``): the one-job form's
    current: TrainRecord | None  # the train record resolved from (None: no model yet)


@dataclass(frozen=True)
class RetrainOutcome(Contract):
    """What became of a serve run's retrain decision: none, started, or skipped (``take_retrain_lease``)."""

    started: bool
    reason: str
    run_id: str | None = None  # the train run started


def claim_run(stores: Stores, pipeline: PipelineName, *, run_id: str, time: str) -> None:
    """Make ``runs/<pipeline>/<run id>/`` this run's: create its claim marker, which only one run can.

    The marker holds the run's id and start time, so a repeated call for the same run (a retried
    step, with the run's own start time) finds its own claim and goes on; any other run with that id
    is refused with RunExists.
    """
    check_run_id(run_id)
    key = run_claim_key(pipeline, run_id)
    claim = json.dumps({"run_id": run_id, "time": time}, sort_keys=True).encode()
    if stores.objects.put_if_absent(key, claim) or stores.objects.get_bytes(key) == claim:
        return
    raise RunExists(
        f"run id {run_id!r} is taken: {stores.objects.uri(key)} claims it for another {pipeline} run "
        f"(started {json.loads(stores.objects.get_bytes(key)).get('time')}); start the run with a new id"
    )


def plan_run(stores: Stores, pipeline_name: PipelineName, *, run_id: str, time: str, start: dict[str, str]) -> RunPlan:
    """Resolve a run's inputs from the current train record and name every artifact it writes.

    The run's id must be claimed first (``claim_run``) where ids are not unique by construction: the
    local runner does; on AWS a Step Functions execution name is unique to its state machine. What AWS
    would refuse later (``driftloop.plan_checks``) is refused here, before the first job.
    """
    pipeline = PIPELINES[pipeline_name]
    start = {name: value for name, value in start.items() if name != STARTED_BY_KEY}
    check_run_id(run_id)
    check_start(pipeline, start)
    check_registrable(pipeline, start)
    current = read_record(stores.params, stores.names.train_latest, TrainRecord)
    required = {a for s in pipeline.steps for a in s.required_artifacts()}
    if current is None and required & set(pipeline.resolved_artifacts()):
        raise NoModel(
            f"there is no trained model yet ({stores.names.train_latest} in {stores.params.describe()} holds no "
            "train run): run the train pipeline first"
        )
    plan = _derive_plan(stores, pipeline, run_id=run_id, time=time, start=start, current=current)
    check_job_environment(_facts(stores, plan), plan.settings)
    return plan


def _facts(stores: Stores, plan: RunPlan) -> dict[str, str]:
    """The run facts its steps' settings may name (``Step.run_settings``)."""
    first = plan.start[PIPELINES[plan.pipeline].start_inputs()[0]]
    return {"run_id": plan.run_id, "data_name": data_name(first, stores.objects.uri(first))}


def _derive_plan(stores: Stores, pipeline: Pipeline, *, run_id: str, time: str, start: dict[str, str],
                 current: TrainRecord | None) -> RunPlan:
    """The plan of a run, all of it determined by its id, time, start and the train record it resolves from."""
    uri = {artifact: stores.objects.uri(start[field]) for artifact, field in pipeline.external}
    if current is not None:
        uri.update({artifact: getattr(current, field) for artifact, field in pipeline.resolved})
    uri.update({a: stores.objects.uri(artifact_prefix(pipeline.name, run_id, a)) for a in pipeline.produced()})
    plan = RunPlan(pipeline=pipeline.name, run_id=run_id, time=time, start=dict(start), uri=uri, settings={},
                   facts={}, current=current)
    facts = _facts(stores, plan)
    return replace(plan, settings=pipeline.run_settings(facts), facts=facts)


def check_plan(stores: Stores, plan: RunPlan) -> RunPlan:
    """A plan that comes back in a control step's event must be one ``plan_run`` made in this store.

    The state machines pass the plan from step to step, and a crafted event could name a detector at
    ``../../etc/passwd`` or an explainer in another bucket for the records to point at: every URI,
    setting and start of the plan must be what its id, start and train record derive, and that
    record's artifacts must be its own train run's.
    """
    pipeline = PIPELINES[plan.pipeline]
    check_run_id(plan.run_id)
    check_start(pipeline, plan.start)
    if plan.current is not None:
        check_run_id(plan.current.run_id)
        own = {field: stores.objects.uri(artifact_prefix("train", plan.current.run_id, field))
               for _, field in pipeline.resolved}
        if any(getattr(plan.current, field) != uri for field, uri in own.items()):
            raise InvalidInput(f"the plan of run {plan.run_id} names a current model whose artifacts are not "
                               f"those of its train run {plan.current.run_id} ({sorted(own)}): not recorded")
    derived = _derive_plan(stores, pipeline, run_id=plan.run_id, time=plan.time, start=plan.start,
                           current=plan.current)
    if derived != plan:
        fields = [name for name in ("uri", "settings", "facts") if getattr(derived, name) != getattr(plan, name)]
        raise InvalidInput(f"the plan of run {plan.run_id} is not the one planned for it ({', '.join(fields)} "
                           "differ): not recorded; start the run again")
    return plan


# ----------------------------------------------------------------------------- reading artifacts


def artifact_file(stores: Stores, artifact_uri: str, file_name: str) -> str:
    """The object key of a file inside an artifact (artifact URIs carry no trailing slash)."""
    return f"{stores.objects.key_from_uri(artifact_uri)}/{file_name}"


def read_drift_report(stores: Stores, plan: RunPlan) -> DriftReport:
    return DriftReport.from_json(stores.objects.get_bytes(artifact_file(stores, plan.uri["drift_report"],
                                                                        DRIFT_REPORT_FILE)))


def read_train_metrics(stores: Stores, model_uri: str) -> TrainMetrics:
    """``metrics.json`` of a model artifact: beside the model, or inside SageMaker's ``model.tar.gz``."""
    prefix = stores.objects.key_from_uri(model_uri)
    keys = stores.objects.list(prefix)
    if f"{prefix}/{TRAIN_METRICS_FILE}" in keys:
        return TrainMetrics.from_json(stores.objects.get_bytes(f"{prefix}/{TRAIN_METRICS_FILE}"))
    archives = [key for key in keys if key.rsplit("/", 1)[-1] == SAGEMAKER_ARCHIVE]
    if len(archives) != 1:
        raise FileNotFoundError(
            f"{model_uri} holds {len(archives)} {SAGEMAKER_ARCHIVE} archives and no {TRAIN_METRICS_FILE}: "
            "expected the output of exactly one training job"
        )
    with tarfile.open(fileobj=io.BytesIO(stores.objects.get_bytes(archives[0])), mode="r:*") as tar:
        for member in tar:
            if member.isfile() and member.name.removeprefix("./") == TRAIN_METRICS_FILE:
                extracted = tar.extractfile(member)
                if extracted is not None:
                    return TrainMetrics.from_json(extracted.read())
    raise FileNotFoundError(f"{archives[0]} has no {TRAIN_METRICS_FILE}")


def read_evaluation(stores: Stores, predictions_uri: str) -> Evaluation | None:
    """``evaluation.json`` of a predictions artifact (every host's part, merged); None when the
    images were not labelled."""
    prefix = stores.objects.key_from_uri(predictions_uri)
    keys = [key for key in stores.objects.list(prefix)
            if key.rpartition("/")[0] == prefix and is_part(key.rpartition("/")[2], EVALUATION_FILE)]
    if not keys:
        return None
    return Evaluation.merge([Evaluation.from_json(stores.objects.get_bytes(key)) for key in sorted(keys)])


# ----------------------------------------------------------------------------- the control steps


def runs_since_retrain(previous: ServeRecord | None, last_train: TrainRecord | None = None) -> int | None:
    """Serve runs since the last one that started a retrain, seen from the run after ``previous``.

    A train run that started after ``previous`` counts as a retrain just started: it is one whose serve
    run was killed before its record (or one started by hand), and the cool-down holds after it too.
    """
    if previous is None:
        return None
    if previous.retrain or (last_train is not None and _after(last_train.time, previous.time)):
        return 0
    return None if previous.runs_since_retrain is None else previous.runs_since_retrain + 1


def _after(time: str, other: str) -> bool:
    return datetime.fromisoformat(time) > datetime.fromisoformat(other)


def decide(stores: Stores, plan: RunPlan, report: DriftReport, policy: DecisionPolicy) -> RetrainDecision:
    """The serve run's retrain decision, from its drift report, the previous serve record and the last train run."""
    return decide_and_join(stores, plan, report, policy).decision


def decide_and_join(stores: Stores, plan: RunPlan, report: DriftReport, policy: DecisionPolicy
                    ) -> production.LabelledDecision:
    """``decide``, with the batches whose labels it joined (none outside production mode)."""
    previous = read_record(stores.params, stores.names.serve_latest, ServeRecord)
    since = runs_since_retrain(previous, last_train_attempt(stores.params, stores.names))
    batch = plan.start[BATCH_START_FIELD]
    batch_id = batch_id_of_prefix(batch)
    if batch_id is None or plan.current is None:  # a data set of the simulation (data/<stage>/test)
        decision = decide_retrain(report, batch_source=batch, policy=policy, runs_since_retrain=since)
        return production.LabelledDecision(decision=decision, joined=[])
    return production.join_and_decide(stores.objects, current=plan.current, batch_id=batch_id, run_id=plan.run_id,
                                      predictions_uri=plan.uri["predictions"], report=report, policy=policy,
                                      runs_since_retrain=since)


def record_train(stores: Stores, plan: RunPlan, *, approval: ApprovalMode = "automatic",
                 image: str | None = None) -> TrainRecord:
    """Champion/challenger, the model's package in the registry, then the pointers: ``train/latest`` if
    promoted, then ``train/last-attempt``.

    ``approval`` (``DecisionPolicy.approval``): "manual" leaves a winner's package pending and serving on
    the champion until ``approve``. ``image``: the algorithm image the package names, where one ran.
    """
    metrics = read_train_metrics(stores, plan.uri["model"])
    champion = plan.current
    evaluation = None if champion is None else read_evaluation(stores, plan.uri["champion_eval"])
    if champion is not None and evaluation is None:
        raise ContractError(
            f"there is a current model (run {champion.run_id}) but no evaluation of it on the new validation "
            "set: the validation images must be labelled (val/<class>/<image>)"
        )
    promotion = decide_promotion(metrics, evaluation)
    record = TrainRecord(
        run_id=plan.run_id,
        time=plan.time,
        train_data=plan.uri["raw_train"],
        val_data=plan.uri["raw_val"],
        stage=stage_of_data_prefix(plan.start["train_data"]),
        model=plan.uri["model"],
        detector=plan.uri["detector"],
        explainer=plan.uri["explainer"],
        val_accuracy=promotion.challenger_accuracy,
        val_loss=metrics.val_loss,
        champion_val_accuracy=promotion.champion_accuracy,
        promoted=promotion.promote,
        reason=promotion.reason,
        champion_run_id=None if champion is None else champion.run_id,
        lineage=production.lineage_uri(stores.objects, plan.start["train_data"]),
    )
    # Registered first: train/latest only ever points at an Approved package's model.
    record = _register(stores, record, _status(promotion, approval), image)
    stores.objects.put_bytes(run_record_key("train", plan.run_id), record.to_json().encode())
    # Every artifact the record names is complete (this is the run's last step): now the pointers, the
    # model that serves first. Killed between the two writes, train/latest is the newer record, which
    # records.last_train_attempt reads as the last attempt: nothing says "promoted" while the old model serves.
    if record.promoted:
        stores.params.put(stores.names.train_latest, record.to_json())
    stores.params.put(stores.names.train_last_attempt, record.to_json())
    return record


def _status(promotion: PromotionDecision, approval: ApprovalMode) -> ApprovalStatus:
    """The package status of champion/challenger's verdict under the approval mode."""
    if not promotion.promote:
        return "Rejected"
    return "Approved" if approval == "automatic" else "PendingManualApproval"


def trained_model(record: TrainRecord, image: str | None) -> TrainedModel:
    """What the model's package carries, from its train record."""
    return TrainedModel(run_id=record.run_id, time=record.time, model=record.model, image=image,
                        val_accuracy=record.val_accuracy, champion_val_accuracy=record.champion_val_accuracy,
                        train_data=record.train_data, val_data=record.val_data, lineage=record.lineage)


def _register(stores: Stores, record: TrainRecord, status: ApprovalStatus, image: str | None) -> TrainRecord:
    """The record of a model registered with ``status`` (the package a retried step registered, if any):
    promoted only if the package is Approved; it names the package."""
    if stores.registry is None:
        if status == "PendingManualApproval":
            raise UserError("manual approval needs a model registry, and this deployment has none: set the "
                            "decision's approval to automatic, or deploy the stack with its model package group")
        return record
    package = stores.registry.register(trained_model(record, image), status, record.reason)
    return replace(record, promoted=package.status == "Approved", package_id=package.package_id,
                   approval=package.status)


# ----------------------------------------------------------------------------- approval by a person


class NotApprovable(UserError):
    """A package that cannot be approved or rejected now; the message says why and what to do."""


# The most characters of a person's reason a record keeps (``--reason``, or the ApprovalDescription given in
# the console, up to 1,024 there): with the longest package ARN, a train record stays within a Standard
# parameter's 4 KB (``tests/test_records.py``).
REASON_MAX: Final = 200


def check_reason(reason: str) -> str:
    """A person's reason as given, refused (saying the limit) if it is empty or longer than ``REASON_MAX``."""
    if not reason.strip() or len(reason) > REASON_MAX:
        raise UserError(f"a reason of {len(reason)} characters: give 1 to {REASON_MAX}")
    return reason


def _kept(reason: str) -> str:
    """A reason as a record keeps it: at most ``REASON_MAX`` characters (a console approval's can be longer)."""
    return reason if len(reason) <= REASON_MAX else reason[:REASON_MAX - 1] + "…"


def approve(stores: Stores, run_id: str, reason: str) -> TrainRecord:
    """A person approves train run ``run_id``'s pending package: its model is promoted (``train/latest``).

    Refused, saying why, for a rejected package or one out of order (not newer than the current
    model's, or older than a package still pending). The package is Approved first, then the
    pointers move; a package already Approved (in the console, or by an approval killed before the
    pointers moved) is promoted without a second status change.
    """
    check_reason(reason)
    registry = _registry(stores)
    package = registry.get(run_id)
    if package.status == "Rejected":
        raise NotApprovable(f"model package v{package.version} of train run {run_id} was rejected ({package.reason}): "
                            "train a new model instead")
    _check_in_order(stores, registry, package)
    if package.status == "PendingManualApproval":
        package = registry.set_status(run_id, "Approved", reason)
    return _promote(stores, package)


def _check_in_order(stores: Stores, registry: ModelRegistry, package: ModelPackage) -> None:
    """Only the newest model still in the running may be approved: serving never goes back to an older one."""
    current = read_record(stores.params, stores.names.train_latest, TrainRecord)
    champion = None if current is None else registry.find(current.run_id)
    if champion is not None and champion.version >= package.version:
        which = "is" if champion.version == package.version else f"is older than v{champion.version}, run"
        raise NotApprovable(f"model package v{package.version} of train run {package.run_id} {which} the current "
                            f"model{'' if champion.version == package.version else f' {champion.run_id}'}: "
                            "nothing to promote")
    newer = [p for p in registry.packages() if p.version > package.version and p.status != "Rejected"]
    if newer:
        raise NotApprovable(f"model package v{package.version} of train run {package.run_id} is older than v"
                            f"{newer[-1].version} of train run {newer[-1].run_id} ({newer[-1].status}): approve "
                            "that one, or reject it first")


def approved_in_registry(stores: Stores, package_id: str) -> TrainRecord:
    """A package a person approved in the registry itself (on AWS: the console, or ``aws sagemaker
    update-model-package``; EventBridge tells the ``promote`` Lambda): its model is promoted.

    A package of another group is refused; so is one out of order (``approve``'s rules), and it is left
    as the person set it: the message says what to do. The current model's own package (an event
    delivered twice) is nothing to do: its record is returned.
    """
    registry = _registry(stores)
    package = _package_of(registry, package_id, "nothing promoted")
    current = read_record(stores.params, stores.names.train_latest, TrainRecord)
    if current is not None and current.run_id == package.run_id and current.package_id == package.package_id:
        return current
    if package.status != "Approved":
        raise NotApprovable(f"model package v{package.version} of train run {package.run_id} is {package.status} now, "
                            "not Approved: nothing promoted")
    try:
        _check_in_order(stores, registry, package)
    except NotApprovable as refused:
        raise NotApprovable(f"{refused} (its approval in the registry was not acted on: set it back to "
                            "PendingManualApproval or Rejected)") from refused
    return _promote(stores, package)


def _promote(stores: Stores, package: ModelPackage) -> TrainRecord:
    """Serve an Approved package's model: ``train/latest``, then ``train/last-attempt`` if it is that run."""
    record = _run_record(stores, package.run_id)
    promoted = replace(record, promoted=True, approval=package.status, package_id=package.package_id,
                       reason=f"{record.reason}; approved: {_kept(package.reason)}")
    stores.params.put(stores.names.train_latest, promoted.to_json())
    _update_last_attempt(stores, promoted)
    return promoted


def reject(stores: Stores, run_id: str, reason: str) -> ModelPackage:
    """A person rejects train run ``run_id``'s pending package: the champion keeps serving."""
    check_reason(reason)
    registry = _registry(stores)
    package = registry.get(run_id)
    if package.status != "PendingManualApproval":
        raise NotApprovable(f"model package v{package.version} of train run {run_id} is {package.status}, not "
                            "pending approval: only a pending package can be rejected")
    rejected = registry.set_status(run_id, "Rejected", reason)
    _record_rejection(stores, _run_record(stores, run_id), rejected)
    return rejected


def rejected_in_registry(stores: Stores, package_id: str) -> TrainRecord | None:
    """A package a person rejected in the registry itself (on AWS: the console, or ``aws sagemaker
    update-model-package``; EventBridge tells the ``promote`` Lambda): recorded as ``reject`` records it,
    so both backends' records read alike; the champion keeps serving.

    SageMaker also tells of a package's creation, and may tell of one change more than once, so this is
    idempotent: nothing is written (None) for a package champion/challenger registered Rejected (its run
    record already says so), for one whose run is still being recorded (``record_train`` records the status
    it finds), or for a rejection already recorded. The serving model's package is refused: serving never
    moves on a rejection, and the message says so.
    """
    registry = _registry(stores)
    package = _package_of(registry, package_id, "nothing recorded")
    if package.status != "Rejected":
        raise NotApprovable(f"model package v{package.version} of train run {package.run_id} is {package.status} "
                            "now, not Rejected: nothing recorded")
    try:
        record = _run_record(stores, package.run_id)
    except ObjectNotFound:
        return None
    if record.approval == "Rejected":
        return None
    current = read_record(stores.params, stores.names.train_latest, TrainRecord)
    if current is not None and current.run_id == package.run_id:
        raise NotApprovable(f"model package v{package.version} of train run {package.run_id} is the current "
                            "model's: its rejection in the registry was not acted on, it serves until a newer "
                            "model is approved")
    return _record_rejection(stores, record, package)


def _package_of(registry: ModelRegistry, package_id: str, outcome: str) -> ModelPackage:
    """The registry's package ``package_id``; one of another group is refused, saying ``outcome``."""
    package = next((p for p in registry.packages() if p.package_id == package_id), None)
    if package is None:
        raise NotApprovable(f"model package {package_id} is not one of {registry.describe()}: {outcome}")
    return package


def _record_rejection(stores: Stores, record: TrainRecord, package: ModelPackage) -> TrainRecord | None:
    """``train/last-attempt`` says a person rejected the run's model, and why (the package's reason); the
    record written, or None if there was nothing to write (not the last attempt, or already said)."""
    rejected = replace(record, approval="Rejected", reason=f"{record.reason}; rejected: {_kept(package.reason)}")
    return rejected if _update_last_attempt(stores, rejected) else None


def _run_record(stores: Stores, run_id: str) -> TrainRecord:
    """A train run's record as it wrote it beside its artifacts (``record_train``)."""
    return TrainRecord.from_json(stores.objects.get_bytes(run_record_key("train", run_id)))


def _update_last_attempt(stores: Stores, record: TrainRecord) -> bool:
    """``train/last-attempt`` says what became of its run, when ``record`` is of that run (and it does not
    say so already: a repeated event writes nothing). Whether it was written."""
    attempt = read_record(stores.params, stores.names.train_last_attempt, TrainRecord)
    if attempt is None or attempt.run_id != record.run_id or attempt == record:
        return False
    stores.params.put(stores.names.train_last_attempt, record.to_json())
    return True


def _registry(stores: Stores) -> ModelRegistry:
    if stores.registry is None:
        raise UserError("this deployment has no model registry: there is nothing to approve or reject")
    return stores.registry


def record_serve(
    stores: Stores, plan: RunPlan, report: DriftReport, decision: RetrainDecision, outcome: RetrainOutcome
) -> ServeRecord:
    """The serve run's record, written last: ``serve/latest``."""
    if plan.current is None:
        raise NoModel("a serve run's plan names no model: plan it with plan_run")
    record = ServeRecord(
        run_id=plan.run_id,
        time=plan.time,
        input=plan.uri["raw_batch"],
        stage=stage_of_data_prefix(plan.start[BATCH_START_FIELD]),
        model_run_id=plan.current.run_id,
        reference_trained_on=report.detector.trained_on,
        drift_report=plan.uri["drift_report"],
        predictions=plan.uri["predictions"],
        explanations=plan.uri["explanations"],
        is_drift=report.is_drift,
        statistic=report.statistic,
        threshold=report.threshold,
        n_images=report.batch_size,
        n_skipped=report.n_skipped,
        retrain=outcome.started,
        retrain_reason=outcome.reason,
        retrain_run_id=outcome.run_id,
        runs_since_retrain=decision.runs_since_retrain,
        accuracy_estimate=report.accuracy_estimate,
        rule_fired=decision.fired,
        label_request=decision.label_request,
        label_request_images=decision.label_request_images,
        labels_joined=decision.labels_joined,
    )
    stores.objects.put_bytes(run_record_key("serve", plan.run_id), record.to_json().encode())
    stores.params.put(stores.names.serve_latest, record.to_json())
    return record


# ----------------------------------------------------------------------------- the retrain lease
# One retrain at a time, on both backends: a lease in the object store. Its generations are objects
# ``leases/retrain/<n>.json`` created with ``put_if_absent``; whoever creates generation n+1 holds the
# lease, and may do so only when generation n is released or expired. Of two takers (also of two that
# take over an expired lease at once) exactly one creates n+1, so there is never a second holder.

RETRAIN_LEASE: Final = "retrain"


@dataclass(frozen=True)
class Lease(Contract):
    """One generation of a lease: who holds it (a train run's id) and until when, unless released first."""

    name: str
    generation: int
    holder: str
    taken: str  # ISO 8601
    expires: str  # ISO 8601: a holder that crashed holds it no longer than this

    def expired(self, now: datetime) -> bool:
        return now >= datetime.fromisoformat(self.expires)


@dataclass(frozen=True)
class LeaseResult(Contract):
    taken: bool  # True: ``lease`` is ours; False: ``lease`` is the holder's
    lease: Lease


def _lease_generations(stores: Stores, name: str) -> list[int]:
    prefix = lease_prefix(name) + "/"
    stems = (key[len(prefix):].removesuffix(LEASE_SUFFIX) for key in stores.objects.list(prefix)
             if key.endswith(LEASE_SUFFIX))
    return sorted(int(stem) for stem in stems if stem.isdigit())


def _lease(stores: Stores, name: str, generation: int) -> Lease:
    return Lease.from_json(stores.objects.get_bytes(lease_key(name, generation)))


def take_lease(stores: Stores, name: str, *, holder: str, now: datetime, ttl: timedelta) -> LeaseResult:
    """Take lease ``name`` for ``holder`` until ``now + ttl``, unless someone holds it (then their lease)."""
    generations = _lease_generations(stores, name)
    last = generations[-1] if generations else 0
    if generations:
        current = _lease(stores, name, last)
        if not stores.objects.exists(lease_release_key(name, last)) and not current.expired(now):
            return LeaseResult(taken=False, lease=current)
    mine = Lease(name=name, generation=last + 1, holder=holder, taken=now.isoformat(), expires=(now + ttl).isoformat())
    if stores.objects.put_if_absent(lease_key(name, mine.generation), mine.to_json().encode()):
        return LeaseResult(taken=True, lease=mine)
    return LeaseResult(taken=False, lease=_lease(stores, name, mine.generation))  # another taker was first


def release_lease(stores: Stores, name: str, *, holder: str) -> bool:
    """Let lease ``name`` go if ``holder`` holds its newest generation; False (and nothing changed) if not,
    e.g. for a train run that took no lease, or whose lease expired and was taken over."""
    generations = _lease_generations(stores, name)
    if not generations or _lease(stores, name, generations[-1]).holder != holder:
        return False
    stores.objects.put_if_absent(lease_release_key(name, generations[-1]), holder.encode())
    return True


@dataclass(frozen=True)
class RetrainLease(Contract):
    """A serve run's try at starting its retrain: the train run to start (when ``taken``) and the
    outcome to record either way."""

    taken: bool
    run_id: str  # the train run to start, named here; when not taken, the one that holds the lease
    outcome: RetrainOutcome


def take_retrain_lease(stores: Stores, decision: RetrainDecision, *, run_id: str, now: datetime,
                       ttl: timedelta) -> RetrainLease:
    """Before a retrain starts: take the retrain lease for its train run ``run_id`` (a new id,
    ``make_run_id``). If another retrain holds the lease, the outcome to record says so and no retrain
    is started."""
    result = take_lease(stores, RETRAIN_LEASE, holder=run_id, now=now, ttl=ttl)
    if result.taken:
        return RetrainLease(taken=True, run_id=run_id,
                            outcome=RetrainOutcome(started=True, reason=decision.reason, run_id=run_id))
    held = result.lease
    reason = (f"skipped: a retrain is already running ({held.holder}, lease {held.generation} "
              f"until {held.expires}); {decision.reason}")
    return RetrainLease(taken=False, run_id=held.holder, outcome=RetrainOutcome(started=False, reason=reason))


def release_retrain_lease(stores: Stores, run_id: str) -> bool:
    """When a train run ends (recorded or failed): its retrain lease, if it holds it, is let go."""
    return release_lease(stores, RETRAIN_LEASE, holder=run_id)


# ----------------------------------------------------------------------------- Lambda events
# What the state machines send each control step; they build each payload from these fields.


@dataclass(frozen=True)
class PlanEvent(Contract):
    pipeline: PipelineName
    run_id: str
    time: str
    start: dict[str, str]


@dataclass(frozen=True)
class DecideEvent(Contract):
    plan: RunPlan


@dataclass(frozen=True)
class RecordServeEvent(Contract):
    plan: RunPlan
    decision: RetrainDecision
    outcome: RetrainOutcome


@dataclass(frozen=True)
class RecordTrainEvent(Contract):
    plan: RunPlan


@dataclass(frozen=True)
class RecordTrainResult(Contract):
    promoted: bool
    summary: str
    record: TrainRecord


@dataclass(frozen=True)
class TakeRetrainLeaseEvent(Contract):
    decision: RetrainDecision  # the serve run's decision to retrain


@dataclass(frozen=True)
class ReleaseRetrainLeaseEvent(Contract):
    run_id: str  # the train run that ends (its execution name)


@dataclass(frozen=True)
class ReleaseRetrainLeaseResult(Contract):
    released: bool


@dataclass(frozen=True)
class NextBatchEvent(Contract):
    """The simulation's next batch takes no input."""


@dataclass(frozen=True)
class NextBatchResult(Contract):
    batch: str  # the start input of the serve run: the test set at ``position``
    position: int


def next_batch(stores: Stores) -> NextBatchResult:
    """Simulation mode: the test set at the cycle position (Original, Stage-1, …, Noisy, Original, …)."""
    position = int(stores.params.get(stores.names.simulation_position))
    stores.params.put(stores.names.simulation_position, str((position + 1) % len(STAGE_NAMES)))
    return NextBatchResult(batch=simulation_test_set(position), position=position)


# ----------------------------------------------------------------------------- production intake


@dataclass(frozen=True)
class ClaimBatchEvent(Contract):
    """A production serve run's start: the batch it names, or none (then the oldest unserved one)."""

    run_id: str
    time: str
    batch: str | None = None


@dataclass(frozen=True)
class ClaimBatchResult(Contract):
    batch: str | None  # the serve run's start field; None: nothing to serve, the run ends without a job
    summary: str


def claim_batch(stores: Stores, event: ClaimBatchEvent) -> ClaimBatchResult:
    """Production intake: a named batch is served (again) as asked; else the oldest complete unserved one.

    The claim is the ledger's create-only entry (``driftloop.intake``), so no batch is served twice
    by the schedule, and a run with nothing to serve says so and starts no job. A named prefix that is
    not a batch (``data/<stage>/test`` in a simulation) is served without a ledger entry.
    """
    now = datetime.fromisoformat(event.time)
    if event.batch is not None:
        batch_id = batch_id_of_prefix(event.batch)
        if batch_id is not None:
            entry = intake.claim_named_batch(stores.objects, batch_id, event.run_id, now=now)
            return ClaimBatchResult(event.batch, f"serving batch {batch_id} as named (serve {entry.serve})")
        return ClaimBatchResult(event.batch, f"serving {event.batch} as named")
    claim = intake.claim_next_batch(stores.objects, event.run_id, now=now)
    if claim is None:
        scan = intake.scan_batches(stores.objects)
        waiting = f"; {len(scan.waiting)} without their _READY marker yet" if scan.waiting else ""
        return ClaimBatchResult(None, f"nothing to serve: every complete batch was served{waiting}")
    return ClaimBatchResult(claim.batch.prefix, f"serving batch {claim.batch.batch_id} (ready {claim.batch.ready_at})")
