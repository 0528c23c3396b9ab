"""Records fit Parameter Store's free Standard tier (4,096 characters) even at AWS's longest names,
and a train run killed between its record writes leaves nothing that misleads status or the cool-down."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.train_runs import recorded_train_run

from driftloop import loop
from driftloop.config import DecisionPolicy
from driftloop.decision import decide_retrain
from driftloop.drift_report import DetectorIdentity, DriftReport, EstimatedAccuracy
from driftloop.layout import MAX_START_PREFIX, ParameterNames, stage_of_data_prefix
from driftloop.local.status import Hints, status_lines
from driftloop.records import ServeRecord, TrainRecord, read_record
from driftloop.stores.objects import LocalObjectStore
from driftloop.stores.params import ParameterStore, ParameterTooLarge, ParameterVersion, SqliteParameterStore

pytestmark = pytest.mark.faults  # the fault campaign: docs/reliability.md

BUCKET = "b" * 63  # S3's longest bucket name
RUN_ID = "r" * 80  # Step Functions' longest execution name
# The longest model package ARN: the longest region name, a 63-character group (SageMaker's longest name), and
# a six-digit version.
LONG_PACKAGE = f"arn:aws-us-gov:sagemaker:us-isob-east-1:123456789012:model-package/{'g' * 63}/999999"
# The longest start prefixes a plan accepts: a batch, and a stage's data set (its name is in a record four times).
LONG_BATCH = "batches/" + "k" * (MAX_START_PREFIX - len("batches/"))
LONG_STAGE = "s" * (MAX_START_PREFIX - len("data//train"))


def uri(key: str) -> str:
    return f"s3://{BUCKET}/{key}"


def artifact(pipeline: str, name: str) -> str:
    return uri(f"runs/{pipeline}/{RUN_ID}/{name}")


@pytest.mark.parametrize(("batch", "trained_on"), [
    (LONG_BATCH, uri(f"data/{LONG_STAGE}/train")),
    (f"data/{LONG_STAGE}/test", LONG_STAGE),
])
def test_the_longest_serve_record_fits_the_standard_tier(tmp_path: Path, batch: str, trained_on: str) -> None:
    report = DriftReport(
        is_drift=True, too_small=False, correction="bonferroni", p_val=0.05, threshold=0.05 / 7, statistic=1e-9,
        p_values=[1e-9] * 7, distances=[0.9] * 7, significant=True, effect_size=0.9, min_distance=0.1,
        batch_size=100_000, min_batch_size=20,
        detector=DetectorIdentity(features="predictions", trained_on=trained_on, reference_size=2000, run_id=RUN_ID),
    )
    decision = decide_retrain(report, batch_source=batch, policy=DecisionPolicy(), runs_since_retrain=99_999)
    outcome = loop.RetrainOutcome(
        started=False, reason=f"skipped: a retrain is already running ({RUN_ID}); {decision.reason}"
    )
    record = ServeRecord(
        run_id=RUN_ID, time="2026-12-01T10:05:00.123456+00:00", input=uri(batch), stage=stage_of_data_prefix(batch),
        model_run_id=RUN_ID, reference_trained_on=report.detector.trained_on,
        drift_report=artifact("serve", "drift_report"), predictions=artifact("serve", "predictions"),
        explanations=artifact("serve", "explanations"), is_drift=True, statistic=1.2345678901234567e-300,
        threshold=0.007142857142857143, n_images=100_000, n_skipped=100_000, retrain=False,
        retrain_reason=outcome.reason, retrain_run_id=None, runs_since_retrain=decision.runs_since_retrain,
        accuracy_estimate=EstimatedAccuracy(
            method="average_confidence", estimate=0.12345678901234567, lower=0.12345678901234567,
            upper=0.12345678901234567, confidence=0.95, n=100_000, validation_accuracy=0.9876543210987654,
            drop_points=-12.345678901234567,
        ),
        rule_fired="drift_and_harm", label_request=uri(f"label-requests/{'k' * 128}/manifest.jsonl"),
        label_request_images=100_000,
    )
    SqliteParameterStore(tmp_path / "parameters.sqlite").put(ParameterNames().serve_latest, record.to_json())


@pytest.mark.parametrize("data", [uri(f"data/{LONG_STAGE}/train"), uri(LONG_BATCH)])
def test_the_longest_train_record_fits_the_standard_tier(tmp_path: Path, data: str) -> None:
    record = TrainRecord(
        run_id=RUN_ID, time="2026-12-01T10:05:00.123456+00:00", train_data=data, val_data=data,
        stage=stage_of_data_prefix(data.removeprefix(uri(""))), model=artifact("train", "model"),
        detector=artifact("train", "detector"), explainer=artifact("train", "explainer"), val_accuracy=0.123456789,
        val_loss=12.3456789, champion_val_accuracy=0.987654321, promoted=False,
        # A person's reason after champion/challenger's, at its longest (loop.REASON_MAX); "rejected: " is as long.
        reason="challenger 0.988 > champion 0.123 on the new validation set: promoted; approved: "
               + "a" * loop.REASON_MAX, champion_run_id=RUN_ID,
        lineage=uri(f"data/{LONG_STAGE}/lineage.json"), package_id=LONG_PACKAGE, approval="PendingManualApproval",
    )
    SqliteParameterStore(tmp_path / "parameters.sqlite").put(ParameterNames().train_latest, record.to_json())


def test_a_record_over_the_standard_tier_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """Past the plan's bounds (a 900-character stage name, which only a run planned by hand could have), nothing
    is written."""
    stage = "s" * 900
    record = TrainRecord(
        run_id=RUN_ID, time="2026-12-01T10:05:00+00:00", train_data=uri(f"data/{stage}/train"),
        val_data=uri(f"data/{stage}/val"), stage=stage, model=artifact("train", "model"),
        detector=artifact("train", "detector"), explainer=artifact("train", "explainer"), val_accuracy=0.5,
        val_loss=1.0, champion_val_accuracy=None, promoted=True, reason="first model", champion_run_id=None,
        lineage=uri(f"data/{stage}/lineage.json"),
    )
    params = SqliteParameterStore(tmp_path / "parameters.sqlite")
    with pytest.raises(ParameterTooLarge, match="give them shorter names"):
        params.put(ParameterNames().train_latest, record.to_json())
    assert params.get_optional(ParameterNames().train_latest) is None


# ------------------------------------------------------------------------------ killed between writes
HINTS = Hints(train="train first", serve="serve first", approve="approve {run_id}")


class Killed(BaseException):
    """Stands for the process dying at a write: not an Exception, so nothing may catch it and carry on."""


class DiesAfterWrites(ParameterStore):
    """A test double of the parameter store: its process dies at the write after ``writes`` more."""

    def __init__(self, inner: ParameterStore, writes: int) -> None:
        self.inner, self.writes = inner, writes

    def describe(self) -> str:
        return self.inner.describe()

    def _latest(self, name: str) -> str | None:
        return self.inner.get_optional(name)

    def _history(self, name: str) -> list[ParameterVersion]:
        return self.inner.history(name)

    def _put(self, name: str, value: str) -> None:
        if self.writes == 0:
            raise Killed(f"killed before writing {name}")
        self.writes -= 1
        self.inner.put(name, value)


def local_stores(tmp_path: Path, params: ParameterStore | None = None) -> loop.Stores:
    return loop.Stores(objects=LocalObjectStore(tmp_path / "store"),
                       params=params or SqliteParameterStore(tmp_path / "parameters.sqlite"), names=ParameterNames())


@pytest.mark.parametrize("writes", [0, 1], ids=["before-the-first-write", "between-the-writes"])
def test_a_train_run_killed_at_its_record_writes_never_says_promoted_while_the_old_model_serves(
        tmp_path: Path, writes: int) -> None:
    stores = local_stores(tmp_path)
    recorded_train_run(stores, "train-old", 10, 0.6)
    with pytest.raises(Killed):
        recorded_train_run(local_stores(tmp_path, DiesAfterWrites(stores.params, writes)), "train-new", 11, 0.9)

    serving = read_record(stores.params, stores.names.train_latest, TrainRecord)
    assert serving is not None
    lines = status_lines(stores.params, stores.names, HINTS)
    assert lines[0].startswith(f"current model: {serving.run_id} ")
    assert lines[1].startswith(f"last train attempt: {serving.run_id} (the current model) ")
    assert ": promoted (" in lines[1]


def serve_record(run_id: str, hour: int, *, retrain_run_id: str | None, runs_since_retrain: int | None) -> ServeRecord:
    return ServeRecord(
        run_id=run_id, time=f"2026-12-01T{hour:02d}:00:00+00:00", input="data/stage-2/test", stage="stage-2",
        model_run_id="train-old", reference_trained_on="stage-1", drift_report=f"runs/serve/{run_id}/drift_report",
        predictions=f"runs/serve/{run_id}/predictions", explanations=f"runs/serve/{run_id}/explanations",
        is_drift=retrain_run_id is not None, statistic=1e-9, threshold=0.007, n_images=42, n_skipped=0,
        retrain=retrain_run_id is not None, retrain_reason="drift", retrain_run_id=retrain_run_id,
        runs_since_retrain=runs_since_retrain)


def drifting() -> DriftReport:
    return DriftReport(
        is_drift=True, too_small=False, correction="bonferroni", p_val=0.05, threshold=0.05 / 7, statistic=1e-9,
        p_values=[1e-9] * 7, distances=[0.9] * 7, significant=True, effect_size=0.9, min_distance=0.1,
        batch_size=42, min_batch_size=20,
        detector=DetectorIdentity(features="predictions", trained_on="stage-1", reference_size=200, run_id="train-old"))


def test_a_serve_killed_after_its_retrain_was_recorded_still_holds_the_next_serve_in_cool_down(
        tmp_path: Path) -> None:
    stores = local_stores(tmp_path)
    policy = DecisionPolicy(cooldown_runs=2)
    recorded_train_run(stores, "train-old", 9, 0.6)
    stores.params.put(stores.names.serve_latest,
                      serve_record("serve-a", 10, retrain_run_id=None, runs_since_retrain=5).to_json())
    # serve-b (11:00) drifted and retrained: its retrain recorded both records, promoted; then it died.
    dying = local_stores(tmp_path, DiesAfterWrites(stores.params, 2))
    retrain = recorded_train_run(dying, "train-new", 11, 0.9)
    assert retrain.promoted
    with pytest.raises(Killed):
        dying.params.put(dying.names.serve_latest,
                         serve_record("serve-b", 11, retrain_run_id=retrain.run_id, runs_since_retrain=6).to_json())

    plan = loop.plan_run(stores, "serve", run_id="serve-c", time="2026-12-01T12:00:00+00:00",
                         start={"batch": "data/stage-2/test"})
    decision = loop.decide(stores, plan, drifting(), policy)
    assert (decision.retrain, decision.runs_since_retrain) == (False, 0)
    assert "cool-down: 0 run(s) since the last retrain" in decision.reason
