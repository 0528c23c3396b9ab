"""Production mode's control steps, written once for both backends: labels in, a decision, data out.

In production a batch is served once (``driftloop.intake``) and its labels come back later, for a
part of it, under ``labels/<batch id>/`` (``driftloop.labels``). Every serve run first joins what
came back since the last run (``join_new_labels``): each labelled batch gets its measured accuracy,
kept at ``ledger/labelled/<batch id>.json`` beside the serve run and model that predicted it.

A retrain then needs a reason and data. The reason is drift on the batch, or measured harm: a
batch the current model served that scores at least ``measured_harm_points`` below the model's
own validation accuracy on its labels. The data is the current model's base data plus the
labelled production images of the last ``label_window_batches`` batches, split into train and
validation by a hash of the image id (``split_of``): an image is in the same split in every
retrain, so the validation images of one retrain were never trained on by any earlier model, and
champion and challenger are compared on recent labelled images neither saw. Until
``min_new_labels`` labelled images exist that the current model did not train on, the decision
says it is waiting for them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from driftloop.config import DecisionPolicy
from driftloop.contracts import Contract
from driftloop.decision import LabelEvidence, RetrainDecision, decide_production_retrain
from driftloop.drift_report import DriftReport, EstimatedAccuracy
from driftloop.files import NAME_ENCODING, NAME_ERRORS
from driftloop.hosts import is_part
from driftloop.intake import serves_of
from driftloop.label_requests import write_label_request
from driftloop.labels import (
    LabelledAccuracy,
    Predictions,
    has_labels,
    join_labels,
    label_files,
    labelled_batches,
    read_predictions,
    usable_labels,
)
from driftloop.layout import (
    batch_prefix,
    labelled_entry,
    lineage_key,
    retrain_set_prefix,
    run_record_key,
    stage_of_data_prefix,
)
from driftloop.pipelines import PREDICTIONS_FILE
from driftloop.records import LabelledSummary, ServeRecord, TrainRecord
from driftloop.stores.objects import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

Split = Literal["train", "val"]
MAX_JOINS_RECORDED: Final = 3  # joins a serve record names (the ledger keeps every one)


@dataclass(frozen=True)
class JoinedBatch(Contract):
    """A labelled batch: who served it, with which model, and what its labels measured."""

    batch_id: str
    serve_run_id: str | None  # None: the batch was never served (its labels are all unserved_batch rows)
    model_run_id: str | None
    model_val_accuracy: float | None
    served_at: str | None
    labelled: LabelledAccuracy

    def drop_points(self) -> float | None:
        """How far the labelled accuracy lies below the serving model's validation accuracy (points)."""
        if self.labelled.accuracy is None or self.model_val_accuracy is None:
            return None
        return 100 * (self.model_val_accuracy - self.labelled.accuracy)


@dataclass(frozen=True)
class Lineage(Contract):
    """What a model was trained on: its base data sets, and the labelled production batches and label files."""

    data_sets: list[str]  # store prefixes of the data sets it started from (e.g. data/original/train)
    batches: list[str] = field(default_factory=list)
    label_files: list[str] = field(default_factory=list)
    n_labelled_train: int = 0
    n_labelled_val: int = 0


def split_of(image_id: str, val_share: float) -> Split:
    """The image's split, the same in every retrain: a hash of its id against ``val_share``."""
    digest = hashlib.sha256(image_id.encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_share else "train"


# ----------------------------------------------------------------------------- joining labels


def _serve_record(objects: ObjectStore, run_id: str) -> ServeRecord | None:
    try:
        return ServeRecord.from_json(objects.get_bytes(run_record_key("serve", run_id)))
    except ObjectNotFound:
        return None


def _model_accuracy(objects: ObjectStore, run_id: str) -> float | None:
    try:
        return TrainRecord.from_json(objects.get_bytes(run_record_key("train", run_id))).val_accuracy
    except ObjectNotFound:
        return None


def read_batch_predictions(objects: ObjectStore, predictions_uri: str) -> Predictions:
    """Every host's ``predictions.csv`` part of a serve run, as one table."""
    prefix = objects.key_from_uri(predictions_uri)
    parts = sorted(key for key in objects.list(prefix)
                   if key.rpartition("/")[0] == prefix and is_part(key.rpartition("/")[2], PREDICTIONS_FILE))
    if not parts:
        raise ObjectNotFound(f"no {PREDICTIONS_FILE} under {predictions_uri}")
    tables = [read_predictions(objects.get_bytes(key).decode(NAME_ENCODING, NAME_ERRORS)) for key in parts]
    return Predictions(classes=tables[0].classes,
                       predicted={k: v for t in tables for k, v in t.predicted.items()},
                       confidence={k: v for t in tables for k, v in t.confidence.items()})


def _join(objects: ObjectStore, batch_id: str) -> JoinedBatch:
    serves = serves_of(objects, batch_id)
    record = _serve_record(objects, serves[0].run_id) if serves else None
    files = [(key, objects.get_bytes(key)) for key in label_files(objects, batch_id)]
    predictions = (read_batch_predictions(objects, record.predictions) if record is not None
                   else Predictions(classes=(), predicted={}, confidence={}))
    estimate: EstimatedAccuracy | None = None if record is None else record.accuracy_estimate
    labelled = join_labels(batch_id, predictions, files, served=record is not None,
                           key_from_uri=objects.key_from_uri, estimate=estimate)
    return JoinedBatch(
        batch_id=batch_id, serve_run_id=None if record is None else record.run_id,
        model_run_id=None if record is None else record.model_run_id,
        model_val_accuracy=None if record is None else _model_accuracy(objects, record.model_run_id),
        served_at=None if record is None else record.time, labelled=labelled,
    )


def summarize(joined: JoinedBatch) -> LabelledSummary:
    labelled = joined.labelled
    return LabelledSummary(batch_id=joined.batch_id, n_labelled=labelled.n_labelled, accuracy=labelled.accuracy,
                           lower=labelled.lower, upper=labelled.upper, estimate_error=labelled.estimate_error,
                           bad_rows=sum(labelled.bad_counts.values()))


def joined_batches(objects: ObjectStore) -> list[JoinedBatch]:
    """Every joined batch, in the order they were served (never-served ones last)."""
    joined = []
    for batch_id in labelled_batches(objects):
        try:
            joined.append(JoinedBatch.from_json(objects.get_bytes(labelled_entry(batch_id))))
        except ObjectNotFound:
            continue
    return sorted(joined, key=lambda j: (j.served_at is None, j.served_at or "", j.batch_id))


def join_new_labels(objects: ObjectStore) -> list[JoinedBatch]:
    """Join the labels of every batch whose label files changed since its last join; returns those joins.

    The measured drop is taken against the serving model's validation accuracy (its train record,
    found by the run id in the batch's serve record). A batch served but not yet recorded (its run
    still going) waits for the next run.
    """
    done = {j.batch_id: j for j in joined_batches(objects)}
    joined = []
    for batch_id in labelled_batches(objects):
        previous = done.get(batch_id)
        if previous is not None and previous.labelled.label_files == label_files(objects, batch_id):
            continue
        serves = serves_of(objects, batch_id)
        if serves and _serve_record(objects, serves[0].run_id) is None:
            continue
        result = _join(objects, batch_id)
        objects.put_bytes(labelled_entry(batch_id), result.to_json().encode())
        log.info("labels joined: %s", result.labelled.summary())
        joined.append(result)
    return joined


# ----------------------------------------------------------------------------- deciding


def window_of(joined: Sequence[JoinedBatch], policy: DecisionPolicy) -> list[JoinedBatch]:
    usable = [j for j in joined if j.serve_run_id is not None and j.labelled.n_labelled > 0]
    size = policy.label_window_batches
    return usable[-size:] if size > 0 else usable


def label_evidence(joined: Sequence[JoinedBatch], current: TrainRecord, lineage: Lineage,
                   policy: DecisionPolicy) -> LabelEvidence:
    """Measured harm on the current model's batches, and the labels a retrain would add."""
    harmed = [(j.batch_id, drop) for j in joined if j.model_run_id == current.run_id
              and j.labelled.n_labelled >= policy.min_labelled_to_judge
              and (drop := j.drop_points()) is not None and drop >= policy.measured_harm_points]
    window = window_of(joined, policy)
    seen = set(lineage.batches)
    new = sum(j.labelled.n_labelled for j in window if j.batch_id not in seen)
    worst = max(harmed, key=lambda item: item[1]) if harmed else (None, None)
    return LabelEvidence(harmed_batch=worst[0], measured_drop_points=worst[1], new_labels=new,
                         window=[j.batch_id for j in window])


# ----------------------------------------------------------------------------- the training set


def read_lineage(objects: ObjectStore, record: TrainRecord) -> Lineage:
    """A model's lineage: written beside a retrain set; a model trained on a plain data set has only that."""
    train_prefix = objects.key_from_uri(record.train_data)
    try:
        return Lineage.from_json(objects.get_bytes(lineage_key(train_prefix)))
    except ObjectNotFound:
        return Lineage(data_sets=[train_prefix])


def _labelled_images(objects: ObjectStore, joined: JoinedBatch) -> dict[str, str]:
    """Image id -> label of a served batch: the rows its join counted."""
    record = None if joined.serve_run_id is None else _serve_record(objects, joined.serve_run_id)
    if record is None:
        return {}
    files = [(key, objects.get_bytes(key)) for key in joined.labelled.label_files]
    return usable_labels(joined.batch_id, read_batch_predictions(objects, record.predictions), files,
                         objects.key_from_uri)


@dataclass(frozen=True)
class TrainingSet(Contract):
    train: str  # store prefixes of the new data set's splits
    val: str
    lineage: Lineage


def _copy_base(objects: ObjectStore, lineage: Lineage, target: str) -> int:
    count = 0
    for data_set in lineage.data_sets:
        for key in objects.list(data_set):
            objects.copy(key, f"{target}/{key[len(data_set) + 1:]}")
            count += 1
    return count


def build_training_set(objects: ObjectStore, name: str, current: Lineage, window: Sequence[JoinedBatch],
                       policy: DecisionPolicy) -> TrainingSet:
    """The retrain's data: the base data sets plus the window's labelled images, split by image id."""
    prefix = retrain_set_prefix(name)
    train, val = f"{prefix}/train", f"{prefix}/val"
    _copy_base(objects, current, train)
    counts = {"train": 0, "val": 0}
    for joined in window:
        for image, label in sorted(_labelled_images(objects, joined).items()):
            split = split_of(f"{joined.batch_id}/{image}", policy.val_share)
            flat = image.replace("/", "__")
            target = f"{prefix}/{split}/{label}/{joined.batch_id}__{flat}"
            objects.copy(f"{batch_prefix(joined.batch_id)}/{image}", target)
            counts[split] += 1
    lineage = Lineage(data_sets=list(current.data_sets), batches=[j.batch_id for j in window],
                      label_files=sorted(f for j in window for f in j.labelled.label_files),
                      n_labelled_train=counts["train"], n_labelled_val=counts["val"])
    objects.put_bytes(lineage_key(train), lineage.to_json().encode())
    return TrainingSet(train=train, val=val, lineage=lineage)


# ----------------------------------------------------------------------------- the control step


def _request_labels(objects: ObjectStore, decision: RetrainDecision, report: DriftReport, batch_id: str,
                    predictions_uri: str, policy: DecisionPolicy) -> RetrainDecision:
    """A drifting batch that has no labels yet asks for some: the images worth a person's time."""
    if not report.is_drift or has_labels(objects, batch_id) or policy.label_request_size == 0:
        return decision
    request = write_label_request(objects, batch_id, read_batch_predictions(objects, predictions_uri),
                                  size=policy.label_request_size)
    if request is None:
        return decision
    return replace(decision, label_request=request.manifest_uri, label_request_images=request.n_images)


@dataclass(frozen=True)
class LabelledDecision:
    """A production serve run's decision, and the batches whose labels it joined (for metrics and logs)."""

    decision: RetrainDecision
    joined: list[JoinedBatch]


def decide_on_labels(objects: ObjectStore, *, current: TrainRecord, batch_id: str, run_id: str,
                     predictions_uri: str, report: DriftReport, policy: DecisionPolicy,
                     runs_since_retrain: int | None) -> RetrainDecision:
    """A production serve run's decision: join what came back, weigh it, ask for labels, assemble the data.

    Returns the decision; when it is to retrain, with the new data set's train and validation prefixes
    (named after this serve run, ``data/retrain-<run id>``) and its lineage written beside them.
    """
    return join_and_decide(objects, current=current, batch_id=batch_id, run_id=run_id,
                           predictions_uri=predictions_uri, report=report, policy=policy,
                           runs_since_retrain=runs_since_retrain).decision


def join_and_decide(objects: ObjectStore, *, current: TrainRecord, batch_id: str, run_id: str,
                    predictions_uri: str, report: DriftReport, policy: DecisionPolicy,
                    runs_since_retrain: int | None) -> LabelledDecision:
    """``decide_on_labels``, also returning the batches this run joined."""
    new_joins = join_new_labels(objects)
    summaries = [summarize(j) for j in new_joins][-MAX_JOINS_RECORDED:]
    joined = joined_batches(objects)
    lineage = read_lineage(objects, current)
    evidence = label_evidence(joined, current, lineage, policy)
    decision = decide_production_retrain(report, policy=policy, evidence=evidence,
                                         runs_since_retrain=runs_since_retrain)
    decision = _request_labels(objects, replace(decision, labels_joined=summaries), report, batch_id,
                               predictions_uri, policy)
    if decision.retrain:
        data = build_training_set(objects, run_id, lineage, window_of(joined, policy), policy)
        decision = replace(decision, train_data=data.train, val_data=data.val,
                           stage=stage_of_data_prefix(data.train))
    return LabelledDecision(decision=decision, joined=new_joins)


def lineage_uri(objects: ObjectStore, train_prefix: str) -> str | None:
    """The lineage written beside a retrain set's ``train`` split, if the data is one."""
    key = lineage_key(train_prefix)
    return objects.uri(key) if objects.exists(key) else None
