"""Production mode's control steps, on both backends: no job without a batch, the decision on labels,
and the retrain set built from the base data and the labelled production images, with its lineage."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop import intake, production
from driftloop.config import DecisionPolicy
from driftloop.decision import LabelEvidence, decide_production_retrain
from driftloop.layout import batch_marker, labels_prefix, run_record_key
from driftloop.local.runner import LocalSystem
from driftloop.pipelines import Pipeline, Step
from driftloop.records import ServeRecord, TrainRecord
from driftloop.stores.objects import ObjectStore
from tests.test_decision import report

from .test_labels import predictions_csv

POLICY = DecisionPolicy()


def evidence(*, harmed: float | None = None, new_labels: int = 100) -> LabelEvidence:
    return LabelEvidence(harmed_batch=None if harmed is None else "b1", measured_drop_points=harmed,
                         new_labels=new_labels, window=["b1", "b2"])


# ----------------------------------------------------------------------------- no job without a batch


def test_a_scheduled_run_with_no_complete_batch_starts_no_step(tmp_path: Path) -> None:
    steps: list[str] = []

    def count(pipeline: Pipeline, step: Step) -> None:
        steps.append(step.name)

    system = LocalSystem(tmp_path, on_step=count)
    assert system.serve_next() is None  # nothing uploaded at all
    system.objects.put_bytes("batches/half/cats/1.png", b"png")  # an upload without its marker
    assert system.serve_next() is None
    assert steps == []
    assert intake.served_batches(system.objects) == set()  # the half batch was not claimed either


# ----------------------------------------------------------------------------- the decision


def test_measured_harm_with_enough_new_labels_retrains_on_them() -> None:
    decision = decide_production_retrain(report(is_drift=False), policy=POLICY, evidence=evidence(harmed=12.0))
    assert decision.retrain and decision.on_labels and decision.fired == "measured_harm"
    assert "12.0 points below" in decision.reason and "100 new labelled images of 2 batch(es)" in decision.reason


def test_harm_without_enough_new_labels_says_what_it_waits_for() -> None:
    decision = decide_production_retrain(report(is_drift=True), policy=POLICY,
                                         evidence=evidence(harmed=20.0, new_labels=12))
    assert not decision.retrain and decision.fired == "measured_harm"
    assert decision.reason.endswith(f"waiting for labels: 12 of {POLICY.min_new_labels} new labelled images")


def test_drift_alone_asks_for_labels_but_retrains_only_under_the_drift_rule() -> None:
    drifting = report(is_drift=True)
    default = decide_production_retrain(drifting, policy=POLICY, evidence=evidence())
    assert not default.retrain and default.fired is None and default.reason.startswith("no measured harm: drift")
    either = DecisionPolicy(production_rule="drift_or_measured_harm")
    assert decide_production_retrain(drifting, policy=either, evidence=evidence()).retrain


def test_the_cool_down_holds_in_production_too() -> None:
    policy = DecisionPolicy(cooldown_runs=2)
    decision = decide_production_retrain(report(is_drift=False), policy=policy, evidence=evidence(harmed=30.0),
                                         runs_since_retrain=1)
    assert not decision.retrain and "cool-down" in decision.reason


def test_split_of_an_image_is_the_same_in_every_retrain_and_near_the_share() -> None:
    ids = [f"b{i // 50}/img-{i}.png" for i in range(2000)]
    first = [production.split_of(i, 0.3) for i in ids]
    assert first == [production.split_of(i, 0.3) for i in ids]
    assert 0.26 < first.count("val") / len(ids) < 0.34


# ----------------------------------------------------------------------------- joins and the retrain set

PREDICTED = {"a.png": ("cat", 0.9), "b.png": ("dog", 0.8), "c.png": ("cat", 0.7), "d.png": ("dog", 0.6)}


def _train_record(run_id: str, train_data: str, val_accuracy: float) -> TrainRecord:
    return TrainRecord(run_id=run_id, time="2023-02-05T10:05:00+00:00", train_data=train_data, val_data="data/o/val",
                       stage="o", model=f"runs/train/{run_id}/model", detector="d", explainer="e",
                       val_accuracy=val_accuracy, val_loss=0.1, champion_val_accuracy=None, promoted=True,
                       reason="first", champion_run_id=None)


def _served(objects: ObjectStore, batch_id: str, run_id: str, model: TrainRecord) -> None:
    """A batch as a serve run leaves it: images, marker, ledger claim, predictions and the run's record."""
    for image in PREDICTED:
        objects.put_bytes(f"batches/{batch_id}/{image}", f"{batch_id}/{image}".encode())
    objects.put_bytes(batch_marker(batch_id), b"")
    assert intake.claim_next_batch(objects, run_id) is not None
    objects.put_bytes(f"runs/serve/{run_id}/predictions/predictions.csv", predictions_csv(PREDICTED))
    record = ServeRecord(run_id=run_id, time="2023-02-05T11:05:00+00:00", input=f"batches/{batch_id}", stage=None,
                         model_run_id=model.run_id, reference_trained_on="o", drift_report="r",
                         predictions=objects.uri(f"runs/serve/{run_id}/predictions"), explanations="x", is_drift=False,
                         statistic=0.5, threshold=0.01, n_images=4, n_skipped=0, retrain=False, retrain_reason="",
                         retrain_run_id=None, runs_since_retrain=None)
    objects.put_bytes(run_record_key("serve", run_id), record.to_json().encode())


@pytest.fixture
def served(objects: ObjectStore) -> tuple[ObjectStore, TrainRecord]:
    model = _train_record("train-1", objects.uri("data/o/train"), val_accuracy=1.0)
    objects.put_bytes(run_record_key("train", model.run_id), model.to_json().encode())
    for image in ("cats/x.png", "dogs/y.png"):
        objects.put_bytes(f"data/o/train/{image}", image.encode())
    _served(objects, "b1", "serve-1", model)
    # Two of four right: 50 %, 50 points below the model's validation accuracy.
    objects.put_bytes(f"{labels_prefix('b1')}/labels.csv", b"image,label\na.png,cat\nb.png,cat\nc.png,dog\nd.png,dog\n")
    return objects, model


def test_labels_are_joined_once_until_their_files_change(served: tuple[ObjectStore, TrainRecord]) -> None:
    objects, model = served
    [joined] = production.join_new_labels(objects)
    assert (joined.serve_run_id, joined.model_run_id, joined.model_val_accuracy) == ("serve-1", "train-1", 1.0)
    assert joined.labelled.n_labelled == 4 and joined.labelled.accuracy == 0.5 and joined.drop_points() == 50.0
    assert production.join_new_labels(objects) == []  # nothing new came back
    objects.put_bytes(f"{labels_prefix('b1')}/more.csv", b"a.png,cat\n")
    assert [j.labelled.n_duplicates for j in production.join_new_labels(objects)] == [1]


def test_evidence_counts_harm_only_on_the_current_models_batches(served: tuple[ObjectStore, TrainRecord]) -> None:
    objects, model = served
    production.join_new_labels(objects)
    joined = production.joined_batches(objects)
    lineage = production.read_lineage(objects, model)
    policy = DecisionPolicy(min_labelled_to_judge=4)
    found = production.label_evidence(joined, model, lineage, policy)
    assert (found.harmed_batch, found.measured_drop_points, found.new_labels, found.window) == ("b1", 50.0, 4, ["b1"])
    newer = _train_record("train-2", objects.uri("data/o/train"), val_accuracy=1.0)
    assert production.label_evidence(joined, newer, lineage, policy).harmed_batch is None
    assert production.label_evidence(joined, model, lineage, DecisionPolicy()).harmed_batch is None  # 4 < 30 labels


def test_the_retrain_set_is_base_data_plus_labelled_images_with_its_lineage(
    served: tuple[ObjectStore, TrainRecord],
) -> None:
    objects, model = served
    production.join_new_labels(objects)
    window = production.joined_batches(objects)
    data = production.build_training_set(objects, "serve-2", production.read_lineage(objects, model), window,
                                         DecisionPolicy(val_share=0.5))
    train, val = objects.list(data.train), objects.list(data.val)
    assert f"{data.train}/cats/x.png" in train and f"{data.train}/dogs/y.png" in train  # the base data
    labelled = {key.rsplit("/", 2)[-2] + "/" + key.rsplit("/", 1)[-1] for key in train + val if "__" in key}
    assert labelled == {"cat/b1__a.png", "cat/b1__b.png", "dog/b1__c.png", "dog/b1__d.png"}
    for key in train + val:  # each labelled image in the split its id hashes to
        if "__" in key:
            image = key.rsplit("__", 1)[1]
            assert (data.val in key) == (production.split_of(f"b1/{image}", 0.5) == "val")
    [copied] = [key for key in train + val if key.endswith("/cat/b1__a.png")]
    assert objects.get_bytes(copied) == b"b1/a.png"  # the batch's image itself, under its label
    assert data.lineage.data_sets == ["data/o/train"] and data.lineage.batches == ["b1"]
    assert data.lineage.label_files == [f"{labels_prefix('b1')}/labels.csv"]
    assert production.lineage_uri(objects, data.train) == objects.uri(f"{data.train.rpartition('/')[0]}/lineage.json")
    retrained = _train_record("train-2", objects.uri(data.train), val_accuracy=0.9)
    assert production.read_lineage(objects, retrained) == data.lineage  # the next retrain starts from the same base


def test_status_shows_the_labels_a_serve_run_joined_and_the_labels_it_asked_for() -> None:
    from driftloop.local.status import serve_line
    from driftloop.records import LabelledSummary

    record = ServeRecord(run_id="serve-2", time="2023-02-05T12:05:00+00:00", input="batches/b2", stage=None,
                         model_run_id="train-1", reference_trained_on="o", drift_report="r", predictions="p",
                         explanations="x", is_drift=True, statistic=1e-5, threshold=0.01, n_images=60, n_skipped=0,
                         retrain=False, retrain_reason="no measured harm", retrain_run_id=None, runs_since_retrain=None,
                         label_request="label-requests/b2/manifest.jsonl", label_request_images=50,
                         labels_joined=[LabelledSummary("b1", 30, 0.9, 0.74, 0.965, 0.05, 2)])
    assert ServeRecord.from_json(record.to_json()) == record
    line = serve_line(record)
    assert "labels back: b1 labelled 90.0% [74.0, 96.5] n=30, estimate +5.0, 2 bad rows" in line
    assert "labels asked: 50 images in label-requests/b2/manifest.jsonl" in line
