"""What the parameter store holds: typed records of train and serve runs (stored as JSON).

A record names artifacts by URI (``s3://<bucket>/runs/…`` on AWS; locally a key relative to the
store, ``runs/…``, so a workdir can be moved). It is written only after
every artifact it names is complete, so a reader never follows a pointer to a half-written run.

A train run writes two records, ``train/latest`` (if promoted) and then ``train/last-attempt``; a run
killed between the two leaves the newer run in ``train/latest`` only, so the last attempt is read as
the newer of the two (``last_train_attempt``), and never says "promoted" while an older model serves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, TypeVar

from driftloop.config import Fired
from driftloop.contracts import Contract, ContractError
from driftloop.drift_report import EstimatedAccuracy
from driftloop.errors import UserError
from driftloop.layout import ParameterNames
from driftloop.registry import ApprovalStatus
from driftloop.stores.params import ParameterStore

# The initial value of every record parameter on AWS (CloudFormation cannot create an empty
# parameter): "no run yet". ``read_record`` treats it as missing.
NO_RECORD: Final = json.dumps({"status": "none"}, sort_keys=True)


@dataclass(frozen=True)
class LabelledSummary(Contract):
    """A batch's labelled accuracy as a record carries it (the whole join is ``ledger/labelled/<id>.json``)."""

    batch_id: str
    n_labelled: int
    accuracy: float | None
    lower: float | None
    upper: float | None
    estimate_error: float | None  # the label-free estimate minus the labelled accuracy
    bad_rows: int

    def summary(self) -> str:
        if self.accuracy is None or self.lower is None or self.upper is None:
            return f"{self.batch_id}: no usable labels ({self.bad_rows} bad rows)"
        error = "" if self.estimate_error is None else f", estimate {100 * self.estimate_error:+.1f}"
        bad = f", {self.bad_rows} bad rows" if self.bad_rows else ""
        return (f"{self.batch_id} labelled {100 * self.accuracy:.1f}% [{100 * self.lower:.1f}, "
                f"{100 * self.upper:.1f}] n={self.n_labelled}{error}{bad}")


@dataclass(frozen=True)
class TrainRecord(Contract):
    run_id: str
    time: str  # ISO 8601
    train_data: str  # URI of the raw train images
    val_data: str
    stage: str | None  # the simulation stage the data belongs to, if any
    model: str  # URIs of the artifacts
    detector: str
    explainer: str
    val_accuracy: float
    val_loss: float
    champion_val_accuracy: float | None
    promoted: bool
    reason: str
    champion_run_id: str | None
    # Production retrains: the URI of the lineage (``driftloop.production.Lineage``) beside the data set:
    # the base data sets, batches and label files it was trained on (a pointer: the lists grow).
    lineage: str | None = None
    # Its package in the model registry (the ARN on AWS) and the package's status when this record was
    # written (None: written before the registry existed). A challenger that won while approval is manual
    # is "PendingManualApproval": not promoted until a person approves it (``driftloop.loop.approve``).
    package_id: str | None = None
    approval: ApprovalStatus | None = None

    @property
    def pending(self) -> bool:
        return self.approval == "PendingManualApproval"

    def summary(self) -> str:
        verdict = "promoted" if self.promoted else "pending approval" if self.pending else "not promoted"
        champion = "" if self.champion_val_accuracy is None else f", champion {self.champion_val_accuracy:.3f}"
        return (
            f"train run {self.run_id} on {self.stage or self.train_data}: val accuracy "
            f"{self.val_accuracy:.3f}{champion} -> {verdict} ({self.reason})"
        )


@dataclass(frozen=True)
class ServeRecord(Contract):
    run_id: str
    time: str
    input: str  # URI of the batch
    stage: str | None  # the simulation stage the batch belongs to, if any
    model_run_id: str  # the train run whose model, detector and explainer were used
    reference_trained_on: str  # the stage (or data URI) the detector was trained on
    drift_report: str  # URIs
    predictions: str
    explanations: str
    is_drift: bool
    statistic: float
    threshold: float
    n_images: int
    n_skipped: int
    retrain: bool  # a retrain was started by this run
    retrain_reason: str
    retrain_run_id: str | None
    # Serve runs between the last one that started a retrain and this one (None: none ever did).
    runs_since_retrain: int | None
    # The batch's label-free accuracy estimate, from the drift report (None: none was made; also in
    # records written before estimates existed).
    accuracy_estimate: EstimatedAccuracy | None = None
    # The decision policy's rule that held for the batch (``RetrainDecision.fired``; the reason says why).
    rule_fired: Fired | None = None
    # Production mode: the Ground Truth input manifest this run wrote to ask for labels, and its size.
    label_request: str | None = None
    label_request_images: int = 0
    # The labels this run joined (the newest few: a record stays small), each batch's labelled accuracy.
    labels_joined: list[LabelledSummary] = field(default_factory=list)

    def summary(self) -> str:
        drift = "DRIFT" if self.is_drift else "no drift"
        retrain = f"; retrain: {self.retrain_run_id or 'started'}" if self.retrain else ""
        estimate = "" if self.accuracy_estimate is None else f", {self.accuracy_estimate.summary()}"
        return (
            f"serve run {self.run_id} on {self.input}: {self.n_images} images ({self.n_skipped} skipped), "
            f"{drift} (statistic {self.statistic:.3g} vs threshold {self.threshold:.3g}){estimate}; "
            f"{self.retrain_reason}{retrain}"
        )


R = TypeVar("R", TrainRecord, ServeRecord)


class DamagedRecord(UserError):
    """A record parameter whose value is not a record of its kind; names the parameter and what to do."""


def is_no_record(value: str) -> bool:
    """Whether a record parameter's value is ``NO_RECORD`` (a value that is not JSON is not)."""
    try:
        return bool(json.loads(value) == json.loads(NO_RECORD))
    except json.JSONDecodeError:
        return False


def parse_record(params: ParameterStore, name: str, value: str, kind: type[R], version: int | None = None) -> R:
    """``value`` of parameter ``name`` as a ``kind``; DamagedRecord, saying what to do, if it is not one."""
    try:
        return kind.from_json(value)
    except ContractError as error:
        which = f"version {version} of " if version is not None else ""
        writer = "train" if "/train/" in name else "serve"
        raise DamagedRecord(
            f"{which}parameter {name} in {params.describe()} is not a {kind.__name__} ({error}): a run of the "
            f"{writer} pipeline writes a new version; or put back a good one (the parameter keeps every version)"
        ) from error


def read_record(params: ParameterStore, name: str, kind: type[R]) -> R | None:
    """The record in parameter ``name``; None when no run has written it yet."""
    value = params.get_optional(name)
    if value is None or is_no_record(value):
        return None
    return parse_record(params, name, value, kind)


def _started(record: TrainRecord) -> tuple[datetime, str]:
    """When a train run started, for ordering (ties broken by the run id, which sorts by time too)."""
    return datetime.fromisoformat(record.time), record.run_id


def last_train_attempt(params: ParameterStore, names: ParameterNames) -> TrainRecord | None:
    """The newest train run, promoted or not: ``train/last-attempt``, unless ``train/latest`` is newer
    (its run was killed after promoting and before writing ``train/last-attempt``)."""
    attempt = read_record(params, names.train_last_attempt, TrainRecord)
    latest = read_record(params, names.train_latest, TrainRecord)
    if attempt is None or (latest is not None and _started(latest) > _started(attempt)):
        return latest
    return attempt
