"""Records fit Parameter Store's free Standard tier (4,096 characters) even at AWS's longest names."""

from __future__ import annotations

from driftloop import loop
from driftloop.config import DecisionPolicy
from driftloop.decision import decide_retrain
from driftloop.drift_report import DetectorIdentity, DriftReport, EstimatedAccuracy
from driftloop.records import ServeRecord, TrainRecord
from driftloop.stores.params import STANDARD_TIER_MAX_BYTES

BUCKET = "b" * 63  # S3's longest bucket name
RUN_ID = "r" * 80  # Step Functions' longest execution name
LONG_PREFIX = "batches/" + "k" * (1024 - len("batches/") - 40)  # S3's longest key, less an image's name


def uri(key: str) -> str:
    return f"s3://{BUCKET}/{key}"


def artifact(pipeline: str, name: str) -> str:
    return uri(f"runs/{pipeline}/{RUN_ID}/{name}")


def test_the_longest_serve_record_fits_the_standard_tier() -> None:
    report = DriftReport(
        is_drift=True, too_small=False, correction="bonferroni", p_val=0.05, threshold=0.05 / 7, statistic=1e-9,
        p_values=[1e-9] * 7, distances=[0.9] * 7, significant=True, effect_size=0.9, min_distance=0.1,
        batch_size=100_000, min_batch_size=20,
        detector=DetectorIdentity(features="predictions", trained_on=uri(LONG_PREFIX), reference_size=2000,
                                  run_id=RUN_ID),
    )
    decision = decide_retrain(report, batch_source=LONG_PREFIX, policy=DecisionPolicy(), runs_since_retrain=99_999)
    outcome = loop.RetrainOutcome(
        started=False, reason=f"skipped: a retrain is already running ({RUN_ID}); {decision.reason}"
    )
    record = ServeRecord(
        run_id=RUN_ID, time="2026-12-01T10:05:00.123456+00:00", input=uri(LONG_PREFIX), stage=None, model_run_id=RUN_ID,
        reference_trained_on=report.detector.trained_on, drift_report=artifact("serve", "drift_report"),
        predictions=artifact("serve", "predictions"), explanations=artifact("serve", "explanations"),
        is_drift=True, statistic=1.2345678901234567e-300, threshold=0.007142857142857143, n_images=100_000,
        n_skipped=100_000, retrain=False, retrain_reason=outcome.reason, retrain_run_id=None,
        runs_since_retrain=decision.runs_since_retrain,
        accuracy_estimate=EstimatedAccuracy(
            method="average_confidence", estimate=0.12345678901234567, lower=0.12345678901234567,
            upper=0.12345678901234567, confidence=0.95, n=100_000, validation_accuracy=0.9876543210987654,
            drop_points=-12.345678901234567,
        ),
    )
    assert len(record.to_json().encode()) <= STANDARD_TIER_MAX_BYTES


def test_the_longest_train_record_fits_the_standard_tier() -> None:
    record = TrainRecord(
        run_id=RUN_ID, time="2026-12-01T10:05:00.123456+00:00", train_data=uri(LONG_PREFIX), val_data=uri(LONG_PREFIX),
        stage=None, model=artifact("train", "model"), detector=artifact("train", "detector"),
        explainer=artifact("train", "explainer"), val_accuracy=0.123456789, val_loss=12.3456789,
        champion_val_accuracy=0.987654321, promoted=False,
        reason="challenger 0.123 < champion 0.988 on the new validation set: kept champion", champion_run_id=RUN_ID,
    )
    assert len(record.to_json().encode()) <= STANDARD_TIER_MAX_BYTES
