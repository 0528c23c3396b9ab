"""The Lambda handlers with typed events, against an emulated S3 and Parameter Store (moto server on loopback)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support.aws_emulation import model_packages_as_aws_has_them

from driftloop.contracts import ContractError
from driftloop.drift_report import DetectorIdentity, DriftReport, EstimatedAccuracy
from driftloop.layout import ParameterNames
from driftloop.records import NO_RECORD

from .conftest import LambdaContext

BUCKET = "driftloop-test"
NAMES = ParameterNames("/dl-test")

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
    monkeypatch.setenv("BUCKET_NAME", BUCKET)
    monkeypatch.setenv("PARAMETER_PREFIX", NAMES.prefix)
    monkeypatch.setenv("DECISION_POLICY", json.dumps({"cooldown_runs": 0}))
    emulated = Emulated(moto_env)
    emulated.s3.create_bucket(Bucket=BUCKET)
    for name in NAMES.all():  # as the stack creates them
        emulated.set_parameter(name, "0" if name == NAMES.simulation_position else NO_RECORD)
    yield emulated


def handlers() -> Any:
    from lambdas.control_steps import handlers

    return handlers


def tar_bytes(files: dict[str, bytes]) -> bytes:
    """A gzipped tar of ``files``: what a SageMaker training job uploads as model.tar.gz."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def metrics(val_accuracy: float) -> bytes:
    return json.dumps({
        "val_accuracy": val_accuracy, "val_loss": 0.7, "epochs": 3, "best_epoch": 3, "wall_time_s": 1.0,
        "n_train": 10, "n_val": 5, "n_params": 100, "classes": ["a", "b"], "trained_on": "stage-1", "config": {},
    }).encode()


ESTIMATE = EstimatedAccuracy(method="atc_ne", estimate=38 / 42, lower=0.74, upper=0.97, confidence=0.95, n=42,
                             validation_accuracy=1.0, drop_points=100 * (1 - 38 / 42))


def report(*, drift: bool, size: int = 42, estimate: EstimatedAccuracy | None = None) -> bytes:
    return DriftReport(
        is_drift=drift, too_small=size < 20, correction="bonferroni", p_val=0.05, threshold=0.05 / 32,
        statistic=1e-8 if drift else 0.4, p_values=[1e-8 if drift else 0.4], distances=[0.5], significant=drift,
        effect_size=0.5 if drift else 0.0, min_distance=0.1, batch_size=size,
        min_batch_size=20, detector=DetectorIdentity(features="uae", trained_on="original", reference_size=408,
                                                     run_id="t1"),
        n_skipped=1, message="test", accuracy_estimate=estimate,
    ).to_json().encode()


def plan(pipeline: str, run_id: str, start: dict[str, str], context: LambdaContext) -> dict[str, Any]:
    event = {"pipeline": pipeline, "run_id": run_id, "time": "2026-11-25T08:00:00Z", "start": start}
    return handlers().plan(event, context)  # type: ignore[no-any-return]


def train(aws: Emulated, run_id: str, stage: str, val_accuracy: float, context: LambdaContext,
          champion_accuracy: float | None = None) -> dict[str, Any]:
    """A train run as the state machine drives it: plan, (jobs), record_train."""
    run = plan("train", run_id, {"train_data": f"data/{stage}/train", "val_data": f"data/{stage}/val"}, context)
    aws.put(f"runs/train/{run_id}/model/train-train-model-x/output/model.tar.gz",
            tar_bytes({"model.keras": b"weights", "metrics.json": metrics(val_accuracy)}))
    if champion_accuracy is not None:
        aws.put(f"runs/train/{run_id}/champion_eval/evaluation.json",
                json.dumps({"n": 5, "classes": ["a", "b"], "accuracy": champion_accuracy}).encode())
    return handlers().record_train({"plan": run}, context)  # type: ignore[no-any-return]


def test_the_first_model_is_promoted_and_names_its_artifacts(aws: Emulated, lambda_context: LambdaContext) -> None:
    result = train(aws, "t1", "stage-1", 0.8, lambda_context)
    assert result["promoted"] is True
    latest = json.loads(aws.parameter(NAMES.train_latest))
    assert latest == json.loads(aws.parameter(NAMES.train_last_attempt)) == result["record"]
    assert latest["model"] == f"s3://{BUCKET}/runs/train/t1/model" and latest["stage"] == "stage-1"
    assert latest["train_data"] == f"s3://{BUCKET}/data/stage-1/train"


def test_a_worse_challenger_leaves_the_current_model(aws: Emulated, lambda_context: LambdaContext) -> None:
    train(aws, "t1", "original", 0.9, lambda_context)
    champion = aws.parameter(NAMES.train_latest)
    result = train(aws, "t2", "stage-1", 0.5, lambda_context, champion_accuracy=0.9)
    assert result["promoted"] is False and "kept champion" in result["summary"]
    assert aws.parameter(NAMES.train_latest) == champion
    attempt = json.loads(aws.parameter(NAMES.train_last_attempt))
    assert (attempt["run_id"], attempt["champion_val_accuracy"], attempt["champion_run_id"]) == ("t2", 0.9, "t1")


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_champion_without_evaluation_writes_nothing(aws: Emulated, lambda_context: LambdaContext) -> None:
    train(aws, "t1", "original", 0.9, lambda_context)
    before = aws.parameter(NAMES.train_last_attempt)
    with pytest.raises(ContractError, match="must be labelled"):
        train(aws, "t2", "stage-1", 0.95, lambda_context)
    assert aws.parameter(NAMES.train_last_attempt) == before


def test_serve_plan_resolves_the_current_model_and_sets_the_detectors_identity(
    aws: Emulated, lambda_context: LambdaContext
) -> None:
    train(aws, "t1", "original", 0.9, lambda_context)
    serve_plan = plan("serve", "s1", {"batch": "data/stage-3/test"}, lambda_context)
    assert serve_plan["current"]["run_id"] == "t1"
    assert serve_plan["uri"]["model"] == f"s3://{BUCKET}/runs/train/t1/model"
    assert serve_plan["uri"]["drift_report"] == f"s3://{BUCKET}/runs/serve/s1/drift_report"
    train_plan = plan("train", "t2", {"train_data": "data/stage-3/train", "val_data": "data/stage-3/val"},
                      lambda_context)
    assert train_plan["settings"]["learn_reference"] == {"trained_on": "stage-3", "run_id": "t2"}
    assert train_plan["uri"]["champion_model"] == f"s3://{BUCKET}/runs/train/t1/model"


def test_serve_before_any_training_is_refused_with_what_to_do(aws: Emulated, lambda_context: LambdaContext) -> None:
    from driftloop.loop import NoModel

    with pytest.raises(NoModel, match="run the train pipeline first"):
        plan("serve", "s1", {"batch": "batches/today"}, lambda_context)


@pytest.mark.parametrize(
    ("start", "message"),
    [({}, "expected \\['batch'\\]"), ({"batch": "s3://b/x"}, "not an object-key prefix"),
     ({"batch": "batches/x/"}, "not an object-key prefix"), ({"batch": "x", "extra": "y"}, "got fields")],
)
def test_a_bad_start_input_is_refused_with_the_expected_form(
    aws: Emulated, lambda_context: LambdaContext, start: dict[str, str], message: str
) -> None:
    from driftloop.loop import InvalidInput

    with pytest.raises(InvalidInput, match=message):
        plan("serve", "s1", start, lambda_context)


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_retrain_started_by_the_serve_machine_plans_without_the_parents_id(
    aws: Emulated, lambda_context: LambdaContext
) -> None:
    start = {"train_data": "data/noisy/train", "val_data": "data/noisy/val",
             "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID": "arn:aws:states:us-east-1:1:execution:serve:s1"}
    assert plan("train", "t1", start, lambda_context)["start"] == {"train_data": "data/noisy/train",
                                                                    "val_data": "data/noisy/val"}


def crafted(run: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """The plan with one field changed, as a hand-made event to a control step would carry it."""
    changed = json.loads(json.dumps(run))
    target = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return changed


@pytest.mark.parametrize(("path", "value"), [
    (("uri", "detector"), f"s3://{BUCKET}/runs/train/t2/../../../etc/passwd"),
    (("uri", "explainer"), "s3://another-bucket/runs/train/t2/explainer"),
    (("uri", "model"), f"s3://{BUCKET}/runs/train/t1/model"),  # another run's artifact, in this bucket
    (("settings", "learn_reference", "trained_on"), "noisy"),
    (("run_id",), "t2/../t1"),
])
@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.faults
def test_a_record_train_event_with_a_plan_that_was_not_planned_records_nothing(
    aws: Emulated, lambda_context: LambdaContext, path: tuple[str, ...], value: Any
) -> None:
    from driftloop.loop import InvalidInput

    train(aws, "t1", "original", 0.9, lambda_context)
    before = (aws.parameter(NAMES.train_latest), aws.parameter(NAMES.train_last_attempt))
    run = plan("train", "t2", {"train_data": "data/stage-1/train", "val_data": "data/stage-1/val"}, lambda_context)
    with pytest.raises(InvalidInput, match="not (the one planned|1 to 80)|must be 1 to 80"):
        handlers().record_train({"plan": crafted(run, path, value)}, lambda_context)
    assert (aws.parameter(NAMES.train_latest), aws.parameter(NAMES.train_last_attempt)) == before


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.faults
def test_a_serve_event_whose_current_model_is_not_its_train_runs_records_nothing(
    aws: Emulated, lambda_context: LambdaContext
) -> None:
    from driftloop.loop import InvalidInput

    train(aws, "t1", "original", 0.9, lambda_context)
    run = plan("serve", "s1", {"batch": "data/stage-3/test"}, lambda_context)
    aws.put("runs/serve/s1/drift_report/drift_report.json", report(drift=False))
    elsewhere = crafted(run, ("current", "explainer"), "s3://another-bucket/explainer")
    elsewhere["uri"]["explainer"] = elsewhere["current"]["explainer"]
    with pytest.raises(InvalidInput, match="artifacts are not those of its train run t1"):
        handlers().decide({"plan": elsewhere}, lambda_context)
    outcome = {"started": False, "reason": "no drift"}
    decision = handlers().decide({"plan": run}, lambda_context)
    with pytest.raises(InvalidInput, match="not the one planned"):
        handlers().record_serve({"plan": crafted(run, ("uri", "predictions"), f"s3://{BUCKET}/ledger/x"),
                                 "decision": decision, "outcome": outcome}, lambda_context)
    assert aws.parameter(NAMES.serve_latest) == NO_RECORD


def test_an_event_with_a_missing_or_unknown_field_is_refused(aws: Emulated, lambda_context: LambdaContext) -> None:
    with pytest.raises(ContractError, match="missing field 'start'"):
        handlers().plan({"pipeline": "serve", "run_id": "s1", "time": "t"}, lambda_context)
    with pytest.raises(ContractError, match="unknown field"):
        handlers().decide({"plan": {}, "artifacts": {}}, lambda_context)


def serve(aws: Emulated, run_id: str, batch: str, drift: bool, context: LambdaContext,
          estimate: EstimatedAccuracy | None = None) -> dict[str, Any]:
    """A serve run as the state machine drives it, retraining whenever decided."""
    run = plan("serve", run_id, {"batch": batch}, context)
    aws.put(f"runs/serve/{run_id}/drift_report/drift_report.json", report(drift=drift, estimate=estimate))
    decision = handlers().decide({"plan": run}, context)
    outcome = {"started": decision["retrain"], "reason": decision["reason"]}
    if decision["retrain"]:
        outcome["run_id"] = f"retrain-{run_id}"
    return handlers().record_serve({"plan": run, "decision": decision, "outcome": outcome},  # type: ignore[no-any-return]
                                   context)


def test_drift_on_a_stage_retrains_on_that_stage_and_the_record_says_so(
    aws: Emulated, lambda_context: LambdaContext
) -> None:
    train(aws, "t1", "original", 0.9, lambda_context)
    record = serve(aws, "s1", "data/stage-3/test", True, lambda_context)
    assert json.loads(aws.parameter(NAMES.serve_latest)) == record
    assert (record["is_drift"], record["retrain"], record["retrain_run_id"]) == (True, True, "retrain-s1")
    assert (record["stage"], record["model_run_id"], record["n_skipped"]) == ("stage-3", "t1", 1)
    assert record["reference_trained_on"] == "original"


def emitted_metrics(output: str) -> dict[str, list[float]]:
    """The metric values in Powertools' embedded-metric-format lines on stdout (a list per metric)."""
    found: dict[str, list[float]] = {}
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            record = json.loads(line)
            for directive in record["_aws"]["CloudWatchMetrics"]:
                found |= {metric["Name"]: record[metric["Name"]] for metric in directive["Metrics"]}
    return found


def test_the_batchs_accuracy_estimate_is_a_metric_and_in_the_serve_record(
    aws: Emulated, lambda_context: LambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    from driftloop import telemetry

    train(aws, "t1", "original", 0.9, lambda_context)
    capsys.readouterr()
    record = serve(aws, "s1", "data/stage-1/test", False, lambda_context, estimate=ESTIMATE)
    emitted = emitted_metrics(capsys.readouterr().out)
    assert (emitted[telemetry.ESTIMATED_ACCURACY], emitted[telemetry.ESTIMATED_ACCURACY_LOWER],
            emitted[telemetry.ESTIMATED_ACCURACY_UPPER]) == ([ESTIMATE.estimate], [ESTIMATE.lower], [ESTIMATE.upper])
    assert EstimatedAccuracy.from_dict(record["accuracy_estimate"]) == ESTIMATE
    without = serve(aws, "s2", "data/stage-1/test", False, lambda_context)
    assert without["accuracy_estimate"] is None
    assert telemetry.ESTIMATED_ACCURACY not in emitted_metrics(capsys.readouterr().out)


def test_an_estimate_outside_its_calibrations_domain_is_published_apart_as_unreliable(
    aws: Emulated, lambda_context: LambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dashboard draws EstimatedAccuracy as a number to believe: an unreliable one must not be in it."""
    from driftloop import telemetry

    train(aws, "t1", "original", 0.9, lambda_context)
    capsys.readouterr()
    outside = replace(ESTIMATE, domain_distance=0.52, domain_limit=0.32)
    record = serve(aws, "s1", "data/noisy/test", False, lambda_context, estimate=outside)
    emitted = emitted_metrics(capsys.readouterr().out)
    assert emitted[telemetry.ESTIMATED_ACCURACY_UNRELIABLE] == [outside.estimate]
    assert not {telemetry.ESTIMATED_ACCURACY, telemetry.ESTIMATED_ACCURACY_LOWER,
                telemetry.ESTIMATED_ACCURACY_UPPER} & set(emitted)
    assert EstimatedAccuracy.from_dict(record["accuracy_estimate"]).outside_domain


def test_the_cooldown_counts_serve_runs_since_the_last_retrain(
    aws: Emulated, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DECISION_POLICY", json.dumps({"cooldown_runs": 2}))
    train(aws, "t1", "original", 0.9, lambda_context)
    seen = [serve(aws, f"s{i}", "data/stage-2/test", True, lambda_context) for i in range(5)]
    assert [r["retrain"] for r in seen] == [True, False, False, True, False]
    assert [r["runs_since_retrain"] for r in seen] == [None, 0, 1, 2, 0]
    assert "cool-down" in seen[1]["retrain_reason"]


def test_next_batch_cycles_through_the_stages(aws: Emulated, lambda_context: LambdaContext) -> None:
    served = [handlers().next_batch({}, lambda_context)["batch"] for _ in range(8)]
    assert served[:2] == ["data/original/test", "data/stage-1/test"]
    assert served[6:] == ["data/noisy/test", "data/original/test"]
    assert aws.parameter(NAMES.simulation_position) == "1"


def retrain_decision() -> dict[str, Any]:
    return {"retrain": True, "reason": "drift on stage-2", "train_data": "data/stage-2/train",
            "val_data": "data/stage-2/val"}


def test_two_serve_runs_that_want_a_retrain_start_one_and_the_other_records_why_not(
    aws: Emulated, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRAIN_LEASE_SECONDS", "3600")
    first = handlers().take_retrain_lease({"decision": retrain_decision()}, lambda_context)
    second = handlers().take_retrain_lease({"decision": retrain_decision()}, lambda_context)
    assert first["taken"] and first["outcome"] == {"started": True, "reason": "drift on stage-2",
                                                   "run_id": first["run_id"]}
    assert first["run_id"].startswith("train-")
    assert not second["taken"] and second["run_id"] == first["run_id"] and not second["outcome"]["started"]
    assert second["outcome"]["reason"].startswith(f"skipped: a retrain is already running ({first['run_id']}, lease 1")
    assert handlers().release_retrain_lease({"run_id": "train-by-hand"}, lambda_context) == {"released": False}
    assert handlers().release_retrain_lease({"run_id": first["run_id"]}, lambda_context) == {"released": True}
    assert handlers().take_retrain_lease({"decision": retrain_decision()}, lambda_context)["taken"]


def test_a_lease_without_its_lifetime_set_names_the_variable(
    aws: Emulated, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RETRAIN_LEASE_SECONDS", raising=False)
    with pytest.raises(ValueError, match="RETRAIN_LEASE_SECONDS='': set it to the train state machine's timeout"):
        handlers().take_retrain_lease({"decision": retrain_decision()}, lambda_context)


# ----------------------------------------------------------------------------- production mode


def claim(run_id: str, context: LambdaContext, batch: str | None = None) -> dict[str, Any]:
    event = {"run_id": run_id, "time": "2026-11-25T08:00:00.000Z", **({} if batch is None else {"batch": batch})}
    return handlers().claim_batch(event, context)  # type: ignore[no-any-return]


def upload_batch(aws: Emulated, batch_id: str, images: tuple[str, ...], *, ready: bool = True) -> None:
    for image in images:
        aws.put(f"batches/{batch_id}/{image}", b"png")
    if ready:
        aws.put(f"batches/{batch_id}/_READY", b"")


def test_a_scheduled_claim_takes_each_complete_batch_once_and_then_says_nothing_to_serve(
    aws: Emulated, lambda_context: LambdaContext
) -> None:
    assert claim("s0", lambda_context)["batch"] is None
    upload_batch(aws, "b1", ("cats/1.png",))
    upload_batch(aws, "b2", ("2.png",), ready=False)  # still uploading
    first = claim("s1", lambda_context)
    assert first["batch"] == "batches/b1" and first["summary"].startswith("serving batch b1")
    nothing = claim("s2", lambda_context)
    assert nothing == {"batch": None,
                       "summary": "nothing to serve: every complete batch was served; 1 without their _READY "
                                  "marker yet"}
    # Named, it is served again (its own ledger entry); a prefix that is no batch is served as named.
    assert claim("s3", lambda_context, "batches/b1")["summary"] == "serving batch b1 as named (serve 2)"
    assert claim("s4", lambda_context, "data/original/test")["batch"] == "data/original/test"


PREDICTED = {"cats/1.png": "a", "cats/2.png": "a", "dogs/3.png": "b", "dogs/4.png": "a"}


def serve_batch(aws: Emulated, run_id: str, batch_id: str, context: LambdaContext) -> dict[str, Any]:
    """A production serve run as the state machine drives it: claim, plan, (jobs), decide, record."""
    upload_batch(aws, batch_id, tuple(PREDICTED))
    assert claim(run_id, context)["batch"] == f"batches/{batch_id}"
    run = plan("serve", run_id, {"batch": f"batches/{batch_id}"}, context)
    rows = "".join(f"{image},{label},0.9,{0.9 if label == 'a' else 0.1},{0.1 if label == 'a' else 0.9}\n"
                   for image, label in PREDICTED.items())
    aws.put(f"runs/serve/{run_id}/predictions/predictions.csv", f"file,predicted_class,confidence,p_a,p_b\n{rows}"
            .encode())
    aws.put(f"runs/serve/{run_id}/drift_report/drift_report.json", report(drift=False))
    decision = handlers().decide({"plan": run}, context)
    outcome = {"started": False, "reason": decision["reason"]}
    return handlers().record_serve({"plan": run, "decision": decision, "outcome": outcome},  # type: ignore[no-any-return]
                                   context)


def test_the_decision_publishes_the_labelled_accuracy_of_each_batch_it_joined(
    aws: Emulated, lambda_context: LambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    from driftloop import telemetry

    train(aws, "t1", "original", 0.9, lambda_context)
    serve_batch(aws, "s1", "b1", lambda_context)
    assert telemetry.LABELLED_ACCURACY not in emitted_metrics(capsys.readouterr().out)  # no labels yet
    aws.put("labels/b1/labels.csv", b"image,label\ncats/1.png,a\ncats/2.png,a\ndogs/3.png,b\ndogs/4.png,b\n")
    serve_batch(aws, "s2", "b2", lambda_context)
    emitted = emitted_metrics(capsys.readouterr().out)
    assert (emitted[telemetry.LABELLED_ACCURACY], emitted[telemetry.LABELLED_IMAGES]) == ([0.75], [4])
    joined = json.loads(aws.s3.get_object(Bucket=BUCKET, Key="ledger/labelled/b1.json")["Body"].read())
    assert (joined["serve_run_id"], joined["labelled"]["n_correct"]) == ("s1", 3)
    serve_batch(aws, "s3", "b3", lambda_context)  # nothing new came back: nothing joined, no metric
    assert telemetry.LABELLED_ACCURACY not in emitted_metrics(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------- promote
# A package approved in SageMaker Model Registry is promoted; one approved out of order or of another group is
# refused, said in the log and on the topic. The train runs are driven as above, in manual mode.

GROUP = "DriftloopTest"


@pytest.fixture
def manual(aws: Emulated, moto_env: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Manual approval, the stack's group in the registry; what the handler tells the topic, in a list."""
    model_packages_as_aws_has_them(monkeypatch)
    moto_env.client("sagemaker").create_model_package_group(ModelPackageGroupName=GROUP)
    monkeypatch.setenv("MODEL_PACKAGE_GROUP", GROUP)
    monkeypatch.setenv("DECISION_POLICY", json.dumps({"cooldown_runs": 0, "approval": "manual"}))
    monkeypatch.setenv("ALGORITHM_IMAGE", "123456789012.dkr.ecr.us-east-1.amazonaws.com/algorithm:1")
    told: list[str] = []
    monkeypatch.setattr(handlers(), "_notify", lambda subject, message: told.append(message))
    return told


def approve_in_registry(moto_env: Any, arn: str) -> dict[str, Any]:
    """What a person does (console or CLI), and the event EventBridge then delivers to the Lambda."""
    moto_env.client("sagemaker").update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved",
                                                      ApprovalDescription="looks right")
    return {"source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change",
            "detail": {"ModelPackageArn": arn, "ModelPackageGroupName": GROUP, "ModelApprovalStatus": "Approved"}}


def test_a_pending_model_says_how_to_approve_and_is_promoted_once_approved(
        aws: Emulated, moto_env: Any, manual: list[str], lambda_context: LambdaContext) -> None:
    result = train(aws, "t1", "stage-1", 0.8, lambda_context)
    record = result["record"]
    assert result["promoted"] is False and record["approval"] == "PendingManualApproval"
    assert f"aws sagemaker update-model-package --model-package-arn {record['package_id']}" in result["summary"]
    assert aws.parameter(NAMES.train_latest) == NO_RECORD  # serving waits for a person
    described = moto_env.client("sagemaker").describe_model_package(ModelPackageName=record["package_id"])
    assert described["CustomerMetadataProperties"]["image"].endswith("/algorithm:1")

    answer = handlers().promote(approve_in_registry(moto_env, record["package_id"]), lambda_context)
    assert answer["promoted"] is True and manual == []
    latest = json.loads(aws.parameter(NAMES.train_latest))
    assert (latest["run_id"], latest["promoted"], latest["approval"]) == ("t1", True, "Approved")
    assert latest["reason"].endswith("approved: looks right")
    # The same event delivered again changes nothing.
    again = handlers().promote(approve_in_registry(moto_env, record["package_id"]), lambda_context)
    assert again["promoted"] is True and json.loads(aws.parameter(NAMES.train_latest)) == latest


def test_an_approval_out_of_order_or_of_another_group_is_refused_and_told(
        aws: Emulated, moto_env: Any, manual: list[str], lambda_context: LambdaContext) -> None:
    first = train(aws, "t1", "stage-1", 0.8, lambda_context)["record"]
    handlers().promote(approve_in_registry(moto_env, first["package_id"]), lambda_context)
    older = train(aws, "t2", "stage-2", 0.9, lambda_context, champion_accuracy=0.5)["record"]
    train(aws, "t3", "stage-3", 0.95, lambda_context, champion_accuracy=0.5)
    champion = aws.parameter(NAMES.train_latest)

    answer = handlers().promote(approve_in_registry(moto_env, older["package_id"]), lambda_context)
    assert answer["promoted"] is False and "is older than v3 of train run t3" in answer["summary"]
    assert manual == [answer["summary"]] and "set it back to PendingManualApproval" in manual[0]
    assert aws.parameter(NAMES.train_latest) == champion

    event = approve_in_registry(moto_env, older["package_id"])
    event["detail"]["ModelPackageGroupName"] = "SomeOtherStack"
    refused = handlers().promote(event, lambda_context)
    assert refused["promoted"] is False and "not this stack's DriftloopTest" in refused["summary"]
    assert aws.parameter(NAMES.train_latest) == champion


def reject_in_registry(moto_env: Any, arn: str, reason: str = "not this one") -> dict[str, Any]:
    """A person rejects a package (console or CLI); the event EventBridge then delivers."""
    moto_env.client("sagemaker").update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Rejected",
                                                      ApprovalDescription=reason)
    return state_change(arn, "Rejected")


def state_change(arn: str, status: str) -> dict[str, Any]:
    return {"source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change",
            "detail": {"ModelPackageArn": arn, "ModelPackageGroupName": GROUP, "ModelApprovalStatus": status}}


def versions(aws: Emulated, name: str) -> int:
    return len(aws.ssm.get_parameter_history(Name=name)["Parameters"])


def test_a_rejection_in_the_registry_is_recorded_as_driftloop_reject_records_it_once(
        aws: Emulated, moto_env: Any, manual: list[str], lambda_context: LambdaContext) -> None:
    first = train(aws, "t1", "stage-1", 0.8, lambda_context)["record"]
    handlers().promote(approve_in_registry(moto_env, first["package_id"]), lambda_context)
    champion = aws.parameter(NAMES.train_latest)
    pending = train(aws, "t2", "stage-2", 0.9, lambda_context, champion_accuracy=0.5)["record"]

    event = reject_in_registry(moto_env, pending["package_id"], "trained on mislabelled batches")
    answer = handlers().promote(event, lambda_context)
    attempt = json.loads(aws.parameter(NAMES.train_last_attempt))
    # What loop.reject (driftloop reject RUN --reason ...) writes locally.
    assert attempt == {**pending, "approval": "Rejected",
                       "reason": f"{pending['reason']}; rejected: trained on mislabelled batches"}
    assert answer["promoted"] is False and manual == []
    assert aws.parameter(NAMES.train_latest) == champion
    # SageMaker may tell of one change more than once: the second event writes nothing.
    written = versions(aws, NAMES.train_last_attempt)
    again = handlers().promote(event, lambda_context)
    assert "nothing to record" in again["summary"] and versions(aws, NAMES.train_last_attempt) == written


def test_a_package_registered_rejected_by_champion_challenger_writes_nothing_when_its_creation_is_told(
        aws: Emulated, moto_env: Any, manual: list[str], lambda_context: LambdaContext) -> None:
    """SageMaker sends the state change event when a package is created, and the rule takes Rejected."""
    first = train(aws, "t1", "stage-1", 0.8, lambda_context)["record"]
    handlers().promote(approve_in_registry(moto_env, first["package_id"]), lambda_context)
    loser = train(aws, "t2", "stage-2", 0.4, lambda_context, champion_accuracy=0.8)["record"]
    assert loser["approval"] == "Rejected"
    written = {name: versions(aws, name) for name in (NAMES.train_latest, NAMES.train_last_attempt)}

    answer = handlers().promote(state_change(loser["package_id"], "Rejected"), lambda_context)
    assert answer == {"promoted": False, "summary": f"model package {loser['package_id']}: nothing to record"}
    assert {name: versions(aws, name) for name in written} == written and manual == []
    assert json.loads(aws.parameter(NAMES.train_last_attempt)) == loser


def test_a_rejection_told_before_its_run_is_recorded_writes_nothing(
        aws: Emulated, moto_env: Any, manual: list[str], lambda_context: LambdaContext) -> None:
    """record_train registers the package first: the creation event can come before the run record exists."""
    from driftloop.registry import SageMakerModelRegistry, TrainedModel

    registry = SageMakerModelRegistry(GROUP, moto_env.client("sagemaker"))
    package = registry.register(TrainedModel(
        run_id="t9", time="2026-12-01T10:00:00+00:00", model=f"s3://{BUCKET}/runs/train/t9/model", image=None,
        val_accuracy=0.4, champion_val_accuracy=0.8, train_data=f"s3://{BUCKET}/data/x/train",
        val_data=f"s3://{BUCKET}/data/x/val", lineage=None), "Rejected", "kept champion")
    answer = handlers().promote(state_change(package.package_id, "Rejected"), lambda_context)
    assert "nothing to record" in answer["summary"] and manual == []
    assert aws.parameter(NAMES.train_last_attempt) == NO_RECORD


def test_rejecting_the_serving_models_package_in_the_registry_is_refused_and_told(
        aws: Emulated, moto_env: Any, manual: list[str], lambda_context: LambdaContext) -> None:
    """Locally ``driftloop reject`` refuses an Approved package; in the console it is already done: serving
    stays on the model, and the topic says the rejection was not acted on."""
    first = train(aws, "t1", "stage-1", 0.8, lambda_context)["record"]
    handlers().promote(approve_in_registry(moto_env, first["package_id"]), lambda_context)
    serving = aws.parameter(NAMES.train_latest)

    answer = handlers().promote(reject_in_registry(moto_env, first["package_id"]), lambda_context)
    assert answer["promoted"] is False and manual == [answer["summary"]]
    assert "rejection of" in manual[0] and "is the current model's: its rejection in the registry was not acted " \
                                          "on" in manual[0]
    assert aws.parameter(NAMES.train_latest) == serving


# ---------------------------------------------------------------------------------- empty_package_group
def custom_resource_event(request_type: str) -> dict[str, Any]:
    """What CDK's Provider framework hands the onEvent function for the stack's custom resource."""
    event = {"RequestType": request_type, "ResourceType": "Custom::DriftloopPackageGroupEmptied",
             "LogicalResourceId": "PackageGroupEmptied", "ResourceProperties": {
                 "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:framework",
                 "ModelPackageGroupName": GROUP}}
    return event if request_type == "Create" else {**event, "PhysicalResourceId": GROUP}


def test_the_stacks_delete_empties_the_package_group_so_it_can_be_deleted(
        aws: Emulated, moto_env: Any, manual: list[str], lambda_context: LambdaContext) -> None:
    sagemaker = moto_env.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName="SomeOtherStack")
    sagemaker.create_model_package(ModelPackageGroupName="SomeOtherStack", ModelApprovalStatus="Approved")
    assert handlers().empty_package_group(custom_resource_event("Create"), lambda_context) == {
        "PhysicalResourceId": GROUP}
    first = train(aws, "t1", "stage-1", 0.8, lambda_context)["record"]
    handlers().promote(approve_in_registry(moto_env, first["package_id"]), lambda_context)
    train(aws, "t2", "stage-2", 0.9, lambda_context, champion_accuracy=0.5)
    train(aws, "t3", "stage-3", 0.4, lambda_context, champion_accuracy=0.8)  # registered Rejected

    def packages(group: str) -> list[str]:
        return [p["ModelPackageArn"] for p in sagemaker.list_model_packages(
            ModelPackageGroupName=group)["ModelPackageSummaryList"]]

    assert len(packages(GROUP)) == 3
    with pytest.raises(ClientError, match="ConflictException"):  # what CloudFormation's delete would meet
        sagemaker.delete_model_package_group(ModelPackageGroupName=GROUP)
    answer = handlers().empty_package_group(custom_resource_event("Delete"), lambda_context)
    assert answer == {"PhysicalResourceId": GROUP}
    assert packages(GROUP) == [] and len(packages("SomeOtherStack")) == 1
    sagemaker.delete_model_package_group(ModelPackageGroupName=GROUP)  # now possible, as on AWS
    # A delete retried by CloudFormation finds nothing left and still succeeds.
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    assert handlers().empty_package_group(custom_resource_event("Delete"), lambda_context) == answer
