"""Small pure functions the AWS Lambdas need around the decision and the records.

Only the standard library and driftloop's pure modules: the Lambda bundle carries no numpy or
TensorFlow. The decisions themselves live in ``driftloop.decision``; the record shapes in
``driftloop.records``; this module only turns what the state machines pass into those.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping
from typing import IO, Any, Final, TypeVar

from driftloop.decision import RetrainDecision, decide_promotion
from driftloop.drift_report import DriftReport
from driftloop.layout import stage_of_data_prefix
from driftloop.records import ServeRecord, TrainRecord

# The initial value of every record parameter: "no run yet". A reader treats it as missing.
NO_RECORD: Final = json.dumps({"status": "none"}, sort_keys=True)

# CloudWatch metrics the Lambdas publish (Powertools embedded metric format) and the dashboard shows.
METRICS_NAMESPACE: Final = "driftloop"
METRICS_SERVICE: Final = "driftloop"
METRIC_DRIFT_STATISTIC: Final = "DriftStatistic"
METRIC_DRIFT_DETECTED: Final = "DriftDetected"
METRIC_BATCH_SIZE: Final = "BatchSize"
METRIC_CHALLENGER_ACCURACY: Final = "ChallengerAccuracy"
METRIC_CHAMPION_ACCURACY: Final = "ChampionAccuracy"
METRIC_PROMOTED: Final = "Promoted"

RUNS_SINCE_RETRAIN: Final = "runs_since_retrain"  # key in ServeRecord.extra

R = TypeVar("R", TrainRecord, ServeRecord)


def parse_record(value: str | Mapping[str, Any] | None, kind: type[R]) -> R | None:
    """A record from a parameter's value (JSON text or already parsed); None for the sentinel."""
    if value is None:
        return None
    data = json.loads(value) if isinstance(value, str) else dict(value)
    if data.get("status") == "none" or "run_id" not in data:
        return None
    return kind.from_json(json.dumps(data))


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"S3 URI without a bucket: {uri!r}")
    return bucket, key


def artifact_file(artifact_uri: str, file_name: str) -> str:
    """The URI of a file inside an artifact (artifact URIs carry no trailing slash)."""
    return f"{artifact_uri.rstrip('/')}/{file_name}"


def read_tar_member(archive: IO[bytes], name: str) -> bytes:
    """One file from a (gzipped) tar stream, e.g. ``metrics.json`` from SageMaker's ``model.tar.gz``.

    The stream is read forward once, so the archive is never held in memory or on disk whole.
    """
    with tarfile.open(fileobj=archive, mode="r|*") as tar:
        for member in tar:
            if member.isfile() and member.name.lstrip("./") == name:
                extracted = tar.extractfile(member)
                if extracted is not None:
                    return extracted.read()
    raise FileNotFoundError(f"{name} is not in the archive")


def runs_since_retrain(previous: ServeRecord | None) -> int | None:
    """Serve runs after the last one that started a retrain, from the previous serve record (None: never).

    Each record keeps the count its own run saw in ``extra``; a run that started a retrain resets it.
    """
    if previous is None:
        return None
    if previous.retrain:
        return 0
    seen = previous.extra.get(RUNS_SINCE_RETRAIN)
    return None if seen is None else int(seen) + 1


def serve_record(
    *,
    run_id: str,
    time: str,
    model: TrainRecord,
    artifacts: Mapping[str, str],
    report: DriftReport,
    decision: RetrainDecision,
    since_retrain: int | None,
) -> ServeRecord:
    """The serve run's record as the decision left it (the state machine adds the retrain outcome).

    ``artifacts`` maps the serve pipeline's artifact names (``driftloop.pipelines``) to URIs.
    """
    extra: dict[str, Any] = {
        "stage": decision.stage,
        "report_message": report.message,
        RUNS_SINCE_RETRAIN: since_retrain,
    }
    return ServeRecord(
        run_id=run_id,
        time=time,
        input=artifacts["raw_batch"],
        model_run_id=model.run_id,
        reference_trained_on=report.detector.trained_on,
        drift_report=artifacts["drift_report"],
        predictions=artifacts["predictions"],
        explanations=artifacts["explanations"],
        is_drift=report.is_drift,
        statistic=report.statistic,
        threshold=report.threshold,
        n_images=report.batch_size,
        n_skipped=int(report.extra.get("n_skipped", 0)),
        retrain=decision.retrain,
        retrain_reason=decision.reason,
        retrain_run_id=None,
        extra=extra,
    )


def train_record(
    *,
    run_id: str,
    time: str,
    train_prefix: str,
    artifacts: Mapping[str, str],
    metrics: Mapping[str, Any],
    champion: TrainRecord | None,
    champion_evaluation: Mapping[str, Any] | None,
) -> TrainRecord:
    """The train run's record, with the champion/challenger verdict of ``decide_promotion``.

    ``artifacts`` maps the train pipeline's artifact names (``driftloop.pipelines``) to URIs.
    """
    if champion is not None and champion_evaluation is None:
        raise ValueError(
            f"there is a current model (run {champion.run_id}) but no evaluation of it on the new validation "
            "set: the validation images must be labelled (val/<class>/<image>)"
        )
    promotion = decide_promotion(dict(metrics), None if champion_evaluation is None else dict(champion_evaluation))
    return TrainRecord(
        run_id=run_id,
        time=time,
        train_data=artifacts["raw_train"],
        val_data=artifacts["raw_val"],
        stage=stage_of_data_prefix(train_prefix),
        model=artifacts["model"],
        detector=artifacts["detector"],
        explainer=artifacts["explainer"],
        val_accuracy=promotion.challenger_accuracy,
        val_loss=float(metrics["val_loss"]),
        champion_val_accuracy=promotion.champion_accuracy,
        promoted=promotion.promote,
        reason=promotion.reason,
        champion_run_id=None if champion is None else champion.run_id,
    )
