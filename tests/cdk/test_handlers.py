"""The Lambda handlers against an emulated S3 and Parameter Store (moto server on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from driftloop import aws_glue
from driftloop.drift_report import DetectorIdentity, DriftReport
from driftloop.layout import ParameterNames
from driftloop.pipelines import SERVE_PIPELINE, TRAIN_PIPELINE

from .conftest import LambdaContext
from .test_aws_glue import serve_record, tar_bytes, train_record

BUCKET = "driftloop-test"
NAMES = ParameterNames()

pytestmark = pytest.mark.emulator


class Emulated:
    def __init__(self, server: Any) -> None:
        self.s3 = server.client("s3")
        self.ssm = server.client("ssm")

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)

    def parameter(self, name: str) -> str:
        return str(self.ssm.get_parameter(Name=name)["Parameter"]["Value"])

    def set_parameter(self, name: str, value: str) -> None:
        self.ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)


@pytest.fixture
def aws(moto_env: Any, moto_reset: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulated]:
    from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS

    # Powertools keeps one SSM client per process; each test builds its own against the emulator.
    DEFAULT_PROVIDERS.clear()
    monkeypatch.setenv("PARAMETER_PREFIX", NAMES.prefix)
    monkeypatch.setenv("DECISION_POLICY", json.dumps({"min_batch_size": 20, "cooldown_runs": 0}))
    emulated = Emulated(moto_env)
    emulated.s3.create_bucket(Bucket=BUCKET)
    for name in NAMES.all():
        emulated.set_parameter(name, "0" if name == NAMES.simulation_position else aws_glue.NO_RECORD)
    yield emulated
    DEFAULT_PROVIDERS.clear()


def handlers() -> Any:
    from lambdas.drift_decision import handlers

    return handlers


def report(*, drift: bool, size: int = 42) -> DriftReport:
    return DriftReport(
        is_drift=drift, too_small=size < 20, correction="bonferroni", p_val=0.05, threshold=0.05 / 32,
        statistic=1e-8 if drift else 0.4, p_values=[1e-8 if drift else 0.4], distances=[0.5], batch_size=size,
        min_batch_size=20, detector=DetectorIdentity(features="uae", trained_on="original", reference_size=408),
        message="test",
    )


def serve_event(run_id: str, batch: str) -> dict[str, Any]:
    artifacts = {a: f"s3://{BUCKET}/runs/serve/{run_id}/{a}" for a in SERVE_PIPELINE.produced()}
    artifacts["raw_batch"] = f"s3://{BUCKET}/{batch}"
    return {
        "run_id": run_id, "time": "2026-11-25T08:00:00Z", "batch": batch, "artifacts": artifacts,
        "model": json.loads(train_record().to_json()),
    }


def test_decide_retrains_on_drift_in_a_stage_test_set(aws: Emulated, lambda_context: LambdaContext) -> None:
    aws.put("runs/serve/s1/drift_report/drift_report.json", report(drift=True).to_json().encode())
    result = handlers().decide(serve_event("s1", "data/stage-3/test"), lambda_context)
    assert (result["retrain"], result["train_data"], result["val_data"]) == (
        True, "data/stage-3/train", "data/stage-3/val"
    )
    record = result["record"]
    assert record["run_id"] == "s1" and record["is_drift"] and record["model_run_id"] == "t1"
    assert record["drift_report"] == f"s3://{BUCKET}/runs/serve/s1/drift_report"
    assert record["input"] == f"s3://{BUCKET}/data/stage-3/test"
    # The state machine writes serve/latest after the retrain outcome; decide writes nothing.
    assert aws.parameter(NAMES.serve_latest) == aws_glue.NO_RECORD


def test_decide_keeps_the_model_without_drift(aws: Emulated, lambda_context: LambdaContext) -> None:
    aws.put("runs/serve/s2/drift_report/drift_report.json", report(drift=False).to_json().encode())
    result = handlers().decide(serve_event("s2", "data/original/test"), lambda_context)
    assert result["retrain"] is False and result["reason"].startswith("no drift")


def test_decide_waits_out_the_cooldown(
    aws: Emulated, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DECISION_POLICY", json.dumps({"min_batch_size": 20, "cooldown_runs": 2}))
    aws.set_parameter(NAMES.serve_latest, serve_record(run_id="s0", retrain=True).to_json())
    aws.put("runs/serve/s3/drift_report/drift_report.json", report(drift=True).to_json().encode())
    result = handlers().decide(serve_event("s3", "data/stage-2/test"), lambda_context)
    assert result["retrain"] is False and "cool-down" in result["reason"]
    assert result["record"]["extra"][aws_glue.RUNS_SINCE_RETRAIN] == 0


def train_event(run_id: str, champion: dict[str, Any]) -> dict[str, Any]:
    artifacts = {a: f"s3://{BUCKET}/runs/train/{run_id}/{a}" for a in TRAIN_PIPELINE.produced()}
    artifacts["model"] = f"s3://{BUCKET}/runs/train/{run_id}/model/train-train-model-x/output"
    artifacts.update(raw_train=f"s3://{BUCKET}/data/stage-1/train", raw_val=f"s3://{BUCKET}/data/stage-1/val")
    return {"run_id": run_id, "time": "t", "train_data": "data/stage-1/train", "artifacts": artifacts,
            "champion": champion}


def put_model(aws: Emulated, run_id: str, val_accuracy: float) -> None:
    metrics = json.dumps({"val_accuracy": val_accuracy, "val_loss": 0.7}).encode()
    archive = tar_bytes({"model.keras": b"weights", "classes.json": b"[]", "metrics.json": metrics})
    aws.put(f"runs/train/{run_id}/model/train-train-model-x/output/model.tar.gz", archive)


def test_the_first_model_is_promoted(aws: Emulated, lambda_context: LambdaContext) -> None:
    put_model(aws, "t9", 0.8)
    result = handlers().record_train(train_event("t9", json.loads(aws_glue.NO_RECORD)), lambda_context)
    assert result["promoted"] is True
    latest = json.loads(aws.parameter(NAMES.train_latest))
    assert latest == json.loads(aws.parameter(NAMES.train_last_attempt)) == result["record"]
    assert latest["model"].endswith("/model/train-train-model-x/output") and latest["stage"] == "stage-1"


def test_a_worse_challenger_leaves_the_current_model(aws: Emulated, lambda_context: LambdaContext) -> None:
    champion = train_record()
    aws.set_parameter(NAMES.train_latest, champion.to_json())
    put_model(aws, "t10", 0.5)
    aws.put("runs/train/t10/champion_eval/evaluation.json", json.dumps({"accuracy": 0.9}).encode())
    result = handlers().record_train(train_event("t10", json.loads(champion.to_json())), lambda_context)
    assert result["promoted"] is False and "kept champion" in result["summary"]
    assert aws.parameter(NAMES.train_latest) == champion.to_json()
    attempt = json.loads(aws.parameter(NAMES.train_last_attempt))
    assert (attempt["run_id"], attempt["champion_val_accuracy"], attempt["promoted"]) == ("t10", 0.9, False)


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_champion_without_evaluation_writes_nothing(aws: Emulated, lambda_context: LambdaContext) -> None:
    champion = train_record()
    aws.set_parameter(NAMES.train_latest, champion.to_json())
    put_model(aws, "t11", 0.95)
    with pytest.raises(ValueError, match="must be labelled"):
        handlers().record_train(train_event("t11", json.loads(champion.to_json())), lambda_context)
    assert aws.parameter(NAMES.train_last_attempt) == aws_glue.NO_RECORD


def test_next_batch_cycles_through_the_stages(aws: Emulated, lambda_context: LambdaContext) -> None:
    served = [handlers().next_batch({}, lambda_context)["batch"] for _ in range(8)]
    assert served[:2] == ["data/original/test", "data/stage-1/test"]
    assert served[6:] == ["data/noisy/test", "data/original/test"]
    assert aws.parameter(NAMES.simulation_position) == "1"
