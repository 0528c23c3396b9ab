"""The pure glue between the state machines and driftloop's decisions and records."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile

import pytest

from driftloop import aws_glue
from driftloop.decision import RetrainDecision
from driftloop.drift_report import DetectorIdentity, DriftReport
from driftloop.pipelines import SERVE_PIPELINE, TRAIN_PIPELINE
from driftloop.records import ServeRecord, TrainRecord

from .conftest import REPO_ROOT


def tar_bytes(files: dict[str, bytes]) -> bytes:
    """A gzipped tar of ``files``: what a SageMaker training job uploads as model.tar.gz."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def train_record(**changes: object) -> TrainRecord:
    values: dict[str, object] = dict(
        run_id="t1", time="2026-01-01T00:00:00Z", train_data="s3://b/data/original/train",
        val_data="s3://b/data/original/val", stage="original", model="s3://b/runs/train/t1/model/j/output",
        detector="s3://b/runs/train/t1/detector", explainer="s3://b/runs/train/t1/explainer",
        val_accuracy=0.9, val_loss=0.3,
    )
    values.update(changes)
    return TrainRecord(**values)  # type: ignore[arg-type]


def serve_record(**changes: object) -> ServeRecord:
    values: dict[str, object] = dict(
        run_id="s1", time="t", input="s3://b/data/original/test", model_run_id="t1", reference_trained_on="original",
        drift_report="r", predictions="p", explanations="e", is_drift=False, statistic=0.5, threshold=0.01,
        n_images=42, n_skipped=0, retrain=False, retrain_reason="no drift",
    )
    values.update(changes)
    return ServeRecord(**values)  # type: ignore[arg-type]


def test_the_sentinel_reads_as_no_record() -> None:
    assert aws_glue.parse_record(aws_glue.NO_RECORD, TrainRecord) is None
    assert aws_glue.parse_record(json.loads(aws_glue.NO_RECORD), TrainRecord) is None
    record = train_record()
    assert aws_glue.parse_record(record.to_json(), TrainRecord) == record
    assert aws_glue.parse_record(json.loads(record.to_json()), TrainRecord) == record


def test_s3_uris_split_and_join() -> None:
    assert aws_glue.split_s3_uri("s3://bucket/runs/serve/r/drift_report") == ("bucket", "runs/serve/r/drift_report")
    assert aws_glue.artifact_file("s3://b/runs/x", "f.json") == "s3://b/runs/x/f.json"
    for bad in ("bucket/key", "s3:///key"):
        with pytest.raises(ValueError):
            aws_glue.split_s3_uri(bad)


def test_one_file_is_read_from_a_model_archive() -> None:
    archive = tar_bytes({"model.keras": b"weights", "metrics.json": b'{"val_accuracy": 0.5}'})
    assert json.loads(aws_glue.read_tar_member(io.BytesIO(archive), "metrics.json")) == {"val_accuracy": 0.5}
    with pytest.raises(FileNotFoundError, match="evaluation.json"):
        aws_glue.read_tar_member(io.BytesIO(archive), "evaluation.json")


def test_cooldown_counts_serve_runs_since_the_last_retrain() -> None:
    assert aws_glue.runs_since_retrain(None) is None
    assert aws_glue.runs_since_retrain(serve_record(retrain=True)) == 0
    assert aws_glue.runs_since_retrain(serve_record(extra={aws_glue.RUNS_SINCE_RETRAIN: 0})) == 1
    assert aws_glue.runs_since_retrain(serve_record(extra={aws_glue.RUNS_SINCE_RETRAIN: None})) is None


def test_serve_record_names_the_runs_artifacts() -> None:
    report = DriftReport(
        is_drift=True, too_small=False, correction="bonferroni", p_val=0.05, threshold=0.001, statistic=1e-6,
        p_values=[1e-6], distances=[0.9], batch_size=42, min_batch_size=20,
        detector=DetectorIdentity(features="uae", trained_on="original", reference_size=100),
    )
    decision = RetrainDecision(True, "drift on stage-1", "stage-1", "data/stage-1/train", "data/stage-1/val")
    artifacts = {a: f"s3://b/{a}" for a in (*SERVE_PIPELINE.external, *SERVE_PIPELINE.produced())}
    record = aws_glue.serve_record(
        run_id="s2", time="t", model=train_record(), artifacts=artifacts, report=report, decision=decision,
        since_retrain=4,
    )
    assert (record.input, record.drift_report, record.model_run_id) == ("s3://b/raw_batch", "s3://b/drift_report", "t1")
    assert record.retrain and record.retrain_run_id is None and record.extra[aws_glue.RUNS_SINCE_RETRAIN] == 4


def test_train_record_keeps_the_champion_when_the_challenger_is_worse() -> None:
    artifacts = {a: f"s3://b/{a}" for a in (*TRAIN_PIPELINE.external, *TRAIN_PIPELINE.produced())}
    common = dict(run_id="t2", time="t", train_prefix="data/stage-2/train", artifacts=artifacts,
                  metrics={"val_accuracy": 0.5, "val_loss": 1.0})
    worse = aws_glue.train_record(**common, champion=train_record(), champion_evaluation={"accuracy": 0.8})
    assert not worse.promoted and worse.champion_run_id == "t1" and worse.stage == "stage-2"
    first = aws_glue.train_record(**common, champion=None, champion_evaluation=None)
    assert first.promoted and first.train_data == "s3://b/raw_train"
    with pytest.raises(ValueError, match="must be labelled"):
        aws_glue.train_record(**common, champion=train_record(), champion_evaluation=None)


def test_the_lambda_code_imports_no_numpy_or_tensorflow() -> None:
    # A fresh interpreter: this test process may have imported numpy already.
    probe = (
        "import sys; import lambdas.drift_decision.handlers; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'tensorflow', 'PIL', 'alibi_detect'}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
