"""The deployed system, end to end, on emulated AWS (issue 6's scenario, small data).

One deployment (``conftest.deployed``) runs the whole scenario; each step is a module-scoped
fixture that builds on the previous one, so any test can be run alone and still sees the
steps it depends on. Every assertion reads what the system left in the emulated account: S3
objects, Parameter Store values, executions and their histories, SNS messages (through an SQS
queue subscribed to the topic, as an operator's e-mail would be).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support.aws_emulation import JobRecord
from support.deployed_system import DeployedSystem, wait_until

from driftloop.pipelines import TRAIN_METRICS_FILE

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

DRIFTING = "noisy"  # strong blur + rotation + flip + noise: drifts against a model of the original set
SKIPPED_RETRAIN = "skipped: a retrain is already running"


@dataclass(frozen=True)
class Run:
    """A finished execution: its name, its description and (for serve runs) its record."""

    name: str
    description: dict[str, Any]
    record: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.description["status"])


class Inbox:
    """An SQS queue subscribed to the system's topic: every message the system published."""

    def __init__(self, system: DeployedSystem) -> None:
        sqs = system.client("sqs")
        self.sqs = sqs
        self.url = sqs.create_queue(QueueName="operator-inbox")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        system.client("sns").subscribe(TopicArn=system.topic, Protocol="sqs", Endpoint=arn)
        self.received: list[dict[str, str]] = []

    def messages(self) -> list[dict[str, str]]:
        """Everything delivered so far (SNS delivers to SQS before Publish returns)."""
        while batch := self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                envelope = json.loads(message["Body"])
                self.received.append({"subject": envelope.get("Subject", ""), "message": envelope["Message"]})
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return list(self.received)


def finished(system: DeployedSystem, name: str, execution: str) -> Run:
    """The serve run ``execution``, once ended; the record is the one the execution wrote."""
    description = system.wait(execution)
    output = json.loads(description.get("output") or "{}")
    return Run(name, description, output.get("record", {}))


def serve(system: DeployedSystem, name: str, batch: str) -> Run:
    """Run the serve pipeline on ``batch``."""
    return finished(system, name, system.start(system.serve_machine, name, {"batch": batch}))


def is_a_train_job(job: JobRecord) -> bool:
    """A job of the train pipeline (the stack tags each job with its pipeline and step: the step is
    ``run`` for the whole-pipeline job, the train pipeline's only form)."""
    tags = {tag["Key"]: tag["Value"] for tag in job.request.get("Tags", [])}
    return tags.get("driftloop:pipeline") == "train"


def entered(system: DeployedSystem, run: Run) -> list[str]:
    """The states the run's execution entered, in order."""
    history = system.history(run.description["executionArn"])
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


def train_runs(system: DeployedSystem) -> list[dict[str, Any]]:
    """Every execution of the train state machine, oldest first."""
    return sorted(system.executions(system.train_machine), key=lambda e: e["startDate"])


# ----------------------------------------------------------------------------------- scenario


@pytest.fixture(scope="module")
def inbox(deployed: DeployedSystem) -> Inbox:
    return Inbox(deployed)


@pytest.fixture(scope="module")
def uploaded(deployed: DeployedSystem, small_data: Path) -> dict[str, str]:
    """The Original set and one drifting stage, as users upload them (``data/<stage>/<split>``)."""
    for stage in ("original", DRIFTING):
        deployed.upload_folder(small_data / stage, f"data/{stage}")
    return {"original": "data/original", "drifting": f"data/{DRIFTING}"}


@pytest.fixture(scope="module")
def first_train(deployed: DeployedSystem, uploaded: dict[str, str], inbox: Inbox) -> Run:
    payload = {"train_data": f"{uploaded['original']}/train", "val_data": f"{uploaded['original']}/val"}
    execution = deployed.start(deployed.train_machine, "train-original", payload)
    return Run("train-original", deployed.wait(execution), deployed.parameter("train/latest"))


@pytest.fixture(scope="module")
def serve_original(deployed: DeployedSystem, first_train: Run, uploaded: dict[str, str]) -> Run:
    return serve(deployed, "serve-original", f"{uploaded['original']}/test")


@dataclass(frozen=True)
class DriftingServes:
    runs: list[Run]  # both serve runs on the drifting stage, started together
    first: Run  # the one that took the retrain lease and started the retrain
    second: Run  # the other one: it found the lease held
    retrain: Run  # the retrain, finished
    train_runs_meanwhile: list[dict[str, Any]]  # train executions while the retrain was running


@pytest.fixture(scope="module")
def drifting(deployed: DeployedSystem, serve_original: Run, uploaded: dict[str, str]) -> DriftingServes:
    """Two serve runs on the drifting stage started together: both see drift and decide to retrain,
    and the retrain lease lets one of them start a train run (which one is up to the race).

    The retrain's job is held (kept InProgress) until both serve runs have finished: a slow job, on
    demand, so the retrain is still running when the second serve run reaches its lease step.
    """
    batch = f"{uploaded['drifting']}/test"
    with deployed.emulation.holding(is_a_train_job):
        names = ("serve-drift-1", "serve-drift-2")
        executions = {name: deployed.start(deployed.serve_machine, name, {"batch": batch}) for name in names}
        runs = [finished(deployed, name, execution) for name, execution in executions.items()]
        meanwhile = train_runs(deployed)
    started = {e["name"]: e["executionArn"] for e in meanwhile}
    retrains = [r for r in runs if r.record.get("retrain_run_id")]
    assert len(retrains) == 1, f"{len(retrains)} of the two serve runs started a retrain: {runs}"
    (first,) = retrains
    (second,) = [r for r in runs if r is not first]
    retrain_name = str(first.record["retrain_run_id"])
    assert retrain_name in started, f"{first.name} started no train execution: {first.description}"
    retrain = Run(retrain_name, deployed.wait(started[retrain_name]), deployed.parameter("train/last-attempt"))
    return DriftingServes(runs, first, second, retrain, meanwhile)


@pytest.fixture(scope="module")
def failed_serve(deployed: DeployedSystem, drifting: DriftingServes, inbox: Inbox) -> tuple[Run, dict[str, Any]]:
    """A batch the processing component must reject as a whole: no file in it is an image."""
    inbox.messages()  # everything before this run
    before = {name: deployed.parameter(name) for name in ("train/latest", "train/last-attempt", "serve/latest")}
    s3 = deployed.client("s3")
    s3.put_object(Bucket=deployed.bucket, Key="batches/broken/notes.txt", Body=b"not an image")
    s3.put_object(Bucket=deployed.bucket, Key="batches/broken/empty.png", Body=b"")
    return serve(deployed, "serve-broken", "batches/broken"), before


# -------------------------------------------------------------------------------------- tests


def test_the_schedule_starts_the_serve_state_machine(deployed: DeployedSystem) -> None:
    """Deployed with its target; moto never fires a schedule, so its firing is not tested here."""
    (schedule,) = deployed.client("scheduler").list_schedules()["Schedules"]
    target = deployed.client("scheduler").get_schedule(Name=schedule["Name"])["Target"]
    assert target["Arn"] == deployed.serve_machine and json.loads(target["Input"]) == {}


def test_train_pipeline_points_the_parameter_store_at_complete_artifacts(
    deployed: DeployedSystem, first_train: Run, inbox: Inbox
) -> None:
    assert first_train.status == "SUCCEEDED", first_train.description
    record = first_train.record
    assert record["run_id"] == "train-original" and record["promoted"] is True
    assert record["train_data"] == deployed.uri("data/original/train")
    assert deployed.parameter("train/last-attempt") == record
    # The train run is one processing job: the model is files under its prefix, not a training job's archive.
    model_keys = deployed.keys(record["model"])
    assert f"{record['model'].removeprefix(deployed.uri(''))}/{TRAIN_METRICS_FILE}" in model_keys
    assert not any(key.endswith("/model.tar.gz") for key in model_keys)
    for artifact in ("detector", "explainer"):
        assert deployed.keys(record[artifact]), f"{artifact} {record[artifact]} is empty"
    assert [m["subject"] for m in inbox.messages()].count("driftloop: train run finished") == 1
    assert {job.kind for job in deployed.emulation.jobs} == {"processing"}


def test_serve_on_the_original_test_set_predicts_and_explains_without_drift(
    deployed: DeployedSystem, serve_original: Run
) -> None:
    assert serve_original.status == "SUCCEEDED", serve_original.description
    record = serve_original.record
    assert deployed.parameter("serve/latest") == record
    assert record["run_id"] == "serve-original" and record["model_run_id"] == "train-original"
    assert (record["is_drift"], record["retrain"]) == (False, False)
    assert record["n_images"] == 48
    assert any(key.endswith("/predictions.csv") for key in deployed.keys(record["predictions"]))
    assert any(key.endswith(".png") for key in deployed.keys(record["explanations"]))
    assert [e["name"] for e in train_runs(deployed)] == ["train-original"]


def test_drift_makes_the_decision_lambda_start_a_retrain_on_that_stages_data(
    deployed: DeployedSystem, drifting: DriftingServes
) -> None:
    first = drifting.first
    assert first.status == "SUCCEEDED", first.description
    assert first.record["is_drift"] is True and first.record["retrain"] is True
    retrain = next(e for e in drifting.train_runs_meanwhile if e["name"] == first.record["retrain_run_id"])
    assert retrain["status"] == "RUNNING"
    started_with = json.loads(deployed.describe(retrain["executionArn"])["input"])
    assert (started_with["train_data"], started_with["val_data"]) == (f"data/{DRIFTING}/train", f"data/{DRIFTING}/val")


def test_two_serve_runs_that_both_want_a_retrain_start_exactly_one(
    deployed: DeployedSystem, drifting: DriftingServes
) -> None:
    """The retrain lease, not a look at the running executions: the loser records that it was skipped."""
    assert [run.status for run in drifting.runs] == ["SUCCEEDED", "SUCCEEDED"], drifting.runs
    second = drifting.second
    assert second.record["is_drift"] is True and second.record["retrain"] is False
    assert second.record["retrain_run_id"] is None
    assert second.record["retrain_reason"].startswith(f"{SKIPPED_RETRAIN} ({drifting.retrain.name}, lease ")
    assert [e["name"] for e in drifting.train_runs_meanwhile] == ["train-original", drifting.retrain.name]
    first, other = (entered(deployed, run) for run in (drifting.first, second))
    assert "TakeRetrainLease" in first and "TakeRetrainLease" in other
    assert "StartRetrain" in first and "StartRetrain" not in other


def test_the_retrain_lets_its_lease_go_when_it_ends(deployed: DeployedSystem, drifting: DriftingServes) -> None:
    """Generation 1 was the retrain's (the first train run was started by hand: it took no lease)."""
    keys = deployed.keys(deployed.uri("leases/retrain/"))
    assert keys == ["leases/retrain/000000000001.json", "leases/retrain/000000000001.released"]
    s3 = deployed.client("s3")
    lease = json.loads(s3.get_object(Bucket=deployed.bucket, Key=keys[0])["Body"].read())
    assert lease["holder"] == drifting.retrain.name
    output = json.loads(drifting.retrain.description["output"])
    assert output["lease"] == {"released": True}


def test_the_retrain_records_champion_against_challenger(deployed: DeployedSystem, drifting: DriftingServes) -> None:
    assert drifting.retrain.status == "SUCCEEDED", drifting.retrain.description
    attempt = drifting.retrain.record
    assert attempt["run_id"] == drifting.retrain.name and attempt["stage"] == DRIFTING
    assert attempt["champion_run_id"] == "train-original"
    assert 0.0 <= attempt["champion_val_accuracy"] <= 1.0 and 0.0 <= attempt["val_accuracy"] <= 1.0
    assert attempt["promoted"] == (attempt["val_accuracy"] >= attempt["champion_val_accuracy"])
    latest = deployed.parameter("train/latest")
    assert latest["run_id"] == (drifting.retrain.name if attempt["promoted"] else "train-original")
    assert len(train_runs(deployed)) == 2


def test_a_batch_without_images_fails_the_run_notifies_and_changes_no_pointer(
    deployed: DeployedSystem, failed_serve: tuple[Run, dict[str, Any]], inbox: Inbox
) -> None:
    run, before = failed_serve
    assert run.status == "FAILED"
    assert run.description["error"] == "States.TaskFailed"
    assert "no usable images" in run.description["cause"]
    states = entered(deployed, run)
    assert states[-2:] == ["NotifyFailure", "Failed"] and "DetectDrift" not in states
    (failure,) = [m for m in inbox.messages() if m["subject"] == "driftloop: serve run failed"]
    assert "serve-broken" in failure["message"] and "No parameter was changed" in failure["message"]
    for name, value in before.items():
        assert deployed.parameter(name) == value, name
    (job,) = [
        j
        for j in deployed.emulation.jobs
        if j.kind == "processing" and j.request["ProcessingInputs"][0]["S3Input"]["S3Uri"].endswith("/batches/broken")
    ]
    outcome = job.future.result()
    assert outcome.status == "Failed"
    # The serve run is one job (every step on one instance): its batch channel is the raw_batch artifact's.
    assert "no usable images in /opt/ml/processing/input/raw_batch" in outcome.failure_reason


def test_a_second_stack_with_another_name_deploys_beside_the_first(
    deployed: DeployedSystem, failed_serve: Any, tmp_path: Path
) -> None:
    """No physical name is shared: the parameters take the stack's name, the rest is generated."""
    from support.cdk_deploy import deploy, destroy, load_context, publish_file_assets, synthesize

    from .conftest import REPO, TEST_CONTEXT

    context = load_context(REPO, {"driftloop": {**TEST_CONTEXT["driftloop"], "stack_name": "DriftloopTwo"}})
    assembly = synthesize(REPO, tmp_path / "cdk.out", context, deployed.server.region)
    publish_file_assets(deployed.server, assembly)
    cloudformation = deployed.client("cloudformation")
    try:
        outputs = deploy(deployed.server, assembly)["DriftloopTwo"]
        stack_id = cloudformation.describe_stacks(StackName="DriftloopTwo")["Stacks"][0]["StackId"]
        assert outputs["ParameterPrefix"] == "/driftlooptwo" != deployed.parameter_prefix
        assert outputs["BucketName"] != deployed.bucket
        ssm = deployed.client("ssm")
        for prefix in (deployed.parameter_prefix, outputs["ParameterPrefix"]):
            assert ssm.get_parameter(Name=f"{prefix}/train/latest")["Parameter"]["Value"]
    finally:
        destroy(deployed.server, assembly)
    wait_until(  # gone before the first stack's teardown test counts what is left
        lambda: cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE",
        timeout=60,
        what="the second stack is deleted",
    )


# Each resource type of the template, and how to see that a deleted one is gone (None: nothing of
# its own to look at; a policy goes with what it is attached to).
Probe = Callable[[DeployedSystem, str], Any]


def _any_layer(system: DeployedSystem) -> None:
    """moto gives a template's layer no physical id: the stack's only layer is gone when none is left."""
    if not system.client("lambda").list_layers()["Layers"]:
        raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no layer"}}, "ListLayers")


def _key_is_usable(system: DeployedSystem, key_id: str) -> None:
    """A deleted KMS key is scheduled for deletion (AWS keeps it 7-30 days, unusable and unbilled)."""
    state = system.client("kms").describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]
    if state == "PendingDeletion":
        raise ClientError({"Error": {"Code": "KMSInvalidStateException", "Message": state}}, "DescribeKey")


GONE_PROBES: dict[str, Probe | None] = {
    "AWS::S3::Bucket": lambda s, name: s.client("s3").head_bucket(Bucket=name),
    "AWS::StepFunctions::StateMachine": lambda s, arn: s.client("stepfunctions").describe_state_machine(
        stateMachineArn=arn
    ),
    "AWS::Lambda::Function": lambda s, name: s.client("lambda").get_function(FunctionName=name),
    "AWS::Lambda::LayerVersion": lambda s, _: _any_layer(s),
    "AWS::KMS::Key": _key_is_usable,
    "AWS::Events::Rule": lambda s, name: s.client("events").describe_rule(Name=name.split("|")[-1].split("/")[-1]),
    "AWS::SSM::Parameter": lambda s, name: s.client("ssm").get_parameter(Name=name),
    "AWS::SNS::Topic": lambda s, arn: s.client("sns").get_topic_attributes(TopicArn=arn),
    "AWS::IAM::Role": lambda s, name: s.client("iam").get_role(RoleName=name),
    "AWS::Scheduler::Schedule": lambda s, name: s.client("scheduler").get_schedule(Name=name),
    "AWS::CloudWatch::Dashboard": lambda s, name: s.client("cloudwatch").get_dashboard(DashboardName=name),
    "AWS::SageMaker::ModelPackageGroup": lambda s, name: s.client("sagemaker").describe_model_package_group(
        ModelPackageGroupName=name
    ),
    "AWS::Logs::LogGroup": None,  # checked below: no log group at all is left
    "AWS::IAM::Policy": None,
    "AWS::S3::BucketPolicy": None,
    "AWS::SNS::TopicPolicy": None,
    "Custom::S3AutoDeleteObjects": None,
    "Custom::DriftloopPackageGroupEmptied": None,  # the group it empties is probed above
}


def _gone(system: DeployedSystem, probe: Probe, physical_id: str) -> bool:
    try:
        probe(system, physical_id)
    except ClientError:
        return True
    return False


def test_delete_stack_leaves_nothing_behind(deployed: DeployedSystem, failed_serve: Any) -> None:
    from support.cdk_deploy import destroy, stack_resources

    resources = stack_resources(deployed.server, deployed.stack_name)
    cloudformation = deployed.client("cloudformation")
    stack_id = cloudformation.describe_stacks(StackName=deployed.stack_name)["Stacks"][0]["StackId"]
    assert {r["ResourceType"] for r in resources} <= set(GONE_PROBES), "a new resource type needs a probe here"
    assert deployed.keys(f"s3://{deployed.bucket}/runs/"), "the scenario left artifacts for the teardown to delete"
    # ... and model packages: CloudFormation deletes the group only once the custom resource has emptied it.
    packages = deployed.client("sagemaker").list_model_packages(ModelPackageGroupName=deployed.package_group)
    assert packages["ModelPackageSummaryList"], "no package for the teardown to delete"
    destroy(deployed.server, deployed.assembly)
    deployed.destroyed = True
    wait_until(  # a deleted stack is described by its id only
        lambda: cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE",
        timeout=60,
        what="the stack is deleted",
    )
    left = [
        (r["ResourceType"], r["PhysicalResourceId"])
        for r in resources
        if (probe := GONE_PROBES[r["ResourceType"]]) is not None and not _gone(deployed, probe, r["PhysicalResourceId"])
    ]
    assert left == []
    assert deployed.client("logs").describe_log_groups()["logGroups"] == []
    # Runtime-created SageMaker jobs are outside the stack; none may still be running (billing).
    sagemaker = deployed.client("sagemaker")
    assert sagemaker.list_processing_jobs(StatusEquals="InProgress")["ProcessingJobSummaries"] == []
    assert sagemaker.list_training_jobs(StatusEquals="InProgress")["TrainingJobSummaries"] == []
