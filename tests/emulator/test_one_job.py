"""One job a run and a job a step give the same run: the same scenario on two deployments.

The default deployment (every step on one instance) runs each train and serve run as one
SageMaker Processing job (``python -m driftloop.components.pipeline``); a deployment with serve
steps on two instances runs a job a step, the scaled-out ones on two hosts each. The scenario runs
on both, with the same execution names: train on Original, serve Original (no drift), serve Noisy
(drift, a retrain). After each step the records, and each serve run's predictions, drift report and
evaluation, must be equal; only what differs by nature is mapped: the bucket, the parameter prefix,
timestamps and the id of the retrain a serve run started (an execution name made by Step Functions).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.cdk_deploy import deploy, destroy, load_context, publish_file_assets, synthesize
from support.deployed_system import DeployedSystem

from driftloop import loop
from driftloop.drift_report import DriftReport
from driftloop.layout import ParameterNames
from driftloop.pipelines import DRIFT_REPORT_FILE
from driftloop.stores.objects import S3ObjectStore
from driftloop.stores.params import SqliteParameterStore

from .conftest import REPO, TEST_CONTEXT

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

PER_STEP_STACK = "DriftloopPerStep"
PER_STEP_INSTANCES = {"process": 2, "predict": 2}
RECORDS = ("train/latest", "train/last-attempt", "serve/latest")
TRAIN_ORIGINAL = ("train-original", {"train_data": "data/original/train", "val_data": "data/original/val"})
SERVE_ORIGINAL = ("serve-original", {"batch": "data/original/test"})
SERVE_NOISY = ("serve-noisy", {"batch": "data/noisy/test"})


@dataclass
class Form:
    """One deployment, what its runs left, and how long they took."""

    system: DeployedSystem
    retrain_ids: dict[str, str]  # execution name Step Functions made -> a name shared by both forms
    seconds: dict[str, float]  # execution name -> wall time

    def run(self, machine: str, name: str, start: dict[str, str]) -> dict[str, Any]:
        began = time.monotonic()
        description = self.system.wait(self.system.start(machine, name, start))
        self.seconds[name] = round(time.monotonic() - began, 1)
        assert description["status"] == "SUCCEEDED", description
        return description

    def serve(self, name: str, start: dict[str, str]) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(self.run(self.system.serve_machine, name, start)["output"])["record"]
        if record["retrain_run_id"] is not None:
            self.retrain_ids[record["retrain_run_id"]] = f"retrain-after-{name}"
            retrain = next(e for e in self.system.executions(self.system.train_machine)
                           if e["name"] == record["retrain_run_id"])
            assert self.system.wait(retrain["executionArn"])["status"] == "SUCCEEDED"
        return record

    def comparable(self, value: Any) -> Any:
        """A record or report with its bucket, parameter prefix, times and retrain ids mapped away."""
        if isinstance(value, dict):
            return {k: self.comparable(v) for k, v in value.items() if k != "time"}
        if isinstance(value, list):
            return [self.comparable(v) for v in value]
        if not isinstance(value, str):
            return value
        value = value.replace(self.system.uri(""), "").replace(self.system.parameter_prefix, "<prefix>")
        for made, shared in self.retrain_ids.items():
            value = value.replace(made, shared)
        return value

    def records(self) -> dict[str, Any]:
        return {name: self.comparable(self.system.parameter(name)) for name in RECORDS}

    def served(self, record: dict[str, Any], params: Path) -> dict[str, Any]:
        """A serve run's predictions (rows of every host's part, sorted), drift report and evaluation."""
        objects = S3ObjectStore(self.system.bucket, client=self.system.client("s3"))
        rows: list[list[str]] = []
        for key in objects.list(objects.key_from_uri(record["predictions"])):
            if key.endswith(".csv"):
                rows += list(csv.reader(io.StringIO(objects.get_bytes(key).decode())))[1:]
        report_key = f"{objects.key_from_uri(record['drift_report'])}/{DRIFT_REPORT_FILE}"
        report = DriftReport.from_json(objects.get_bytes(report_key))
        # Reading an evaluation reads no parameter: an empty store stands in for the deployment's.
        stores = loop.Stores(objects=objects, params=SqliteParameterStore(params), names=ParameterNames())
        evaluation = loop.read_evaluation(stores, record["predictions"])
        return {"predictions": sorted(rows), "report": self.comparable(report.to_dict()),
                "evaluation": None if evaluation is None else evaluation.to_dict()}


@pytest.fixture(scope="module")
def per_step(deployed: DeployedSystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployedSystem]:
    """The same app with serve steps on two instances, deployed beside the default one."""
    settings = {**TEST_CONTEXT["driftloop"], "stack_name": PER_STEP_STACK, "instances": PER_STEP_INSTANCES}
    context = load_context(REPO, {"driftloop": settings})
    assembly = synthesize(REPO, tmp_path_factory.mktemp("per-step") / "cdk.out", context, deployed.server.region)
    publish_file_assets(deployed.server, assembly)
    outputs = deploy(deployed.server, assembly)[PER_STEP_STACK]
    yield DeployedSystem(
        server=deployed.server, emulation=deployed.emulation, assembly=assembly, stack_name=PER_STEP_STACK,
        bucket=outputs["BucketName"], train_machine=outputs["TrainStateMachineArn"],
        serve_machine=outputs["ServeStateMachineArn"], topic=outputs["TopicArn"],
        parameter_prefix=outputs["ParameterPrefix"], package_group=outputs["ModelPackageGroup"],
    )
    destroy(deployed.server, assembly)


@pytest.fixture(scope="module")
def forms(deployed: DeployedSystem, per_step: DeployedSystem, small_data: Path) -> dict[str, Form]:
    both = {"one job": Form(deployed, {}, {}), "a job a step": Form(per_step, {}, {})}
    for form in both.values():
        for stage in ("original", "noisy"):
            form.system.upload_folder(small_data / stage, f"data/{stage}")
    return both


# The scenario a step at a time (each test waits only for its own step): each form's records after
# the step, and for a serve step what the run wrote.
@pytest.fixture(scope="module")
def after_train(forms: dict[str, Form]) -> dict[str, dict[str, Any]]:
    for form in forms.values():
        form.run(form.system.train_machine, *TRAIN_ORIGINAL)
    return {name: {"records": form.records()} for name, form in forms.items()}


def serve_both(forms: dict[str, Form], run: tuple[str, dict[str, str]], params: Path) -> dict[str, dict[str, Any]]:
    seen = {}
    for name, form in forms.items():
        record = form.serve(*run)
        seen[name] = {"records": form.records(), "artifacts": form.served(record, params / f"{name}.sqlite")}
    print(f"\nwall time of each execution (s): { {name: form.seconds for name, form in forms.items()} }")
    return seen


@pytest.fixture(scope="module")
def after_serve_original(forms: dict[str, Form], after_train: Any, tmp_path_factory: pytest.TempPathFactory
                         ) -> dict[str, dict[str, Any]]:
    return serve_both(forms, SERVE_ORIGINAL, tmp_path_factory.mktemp("params"))


@pytest.fixture(scope="module")
def after_serve_noisy(forms: dict[str, Form], after_serve_original: Any, tmp_path_factory: pytest.TempPathFactory
                      ) -> dict[str, dict[str, Any]]:
    return serve_both(forms, SERVE_NOISY, tmp_path_factory.mktemp("params"))


@pytest.fixture(scope="module")
def scenario(after_train: Any, after_serve_original: Any, after_serve_noisy: Any) -> dict[str, Any]:
    return {"after train": after_train, "after serve-original": after_serve_original,
            "after serve-noisy": after_serve_noisy}


def test_the_first_training_is_recorded_alike_in_both_forms(after_train: dict[str, Any]) -> None:
    assert after_train["one job"]["records"] == after_train["a job a step"]["records"]
    assert after_train["one job"]["records"]["train/latest"]["promoted"] is True


def test_serving_the_original_set_writes_the_same_in_both_forms(after_serve_original: dict[str, Any]) -> None:
    one, per_step = after_serve_original["one job"], after_serve_original["a job a step"]
    assert one["records"] == per_step["records"]
    assert one["artifacts"]["predictions"] and one["artifacts"] == per_step["artifacts"]
    assert one["artifacts"]["evaluation"] is not None
    assert one["records"]["serve/latest"]["is_drift"] is False


def test_serving_the_noisy_set_drifts_retrains_and_writes_the_same_in_both_forms(
    after_serve_noisy: dict[str, Any],
) -> None:
    one, per_step = after_serve_noisy["one job"], after_serve_noisy["a job a step"]
    assert one["records"] == per_step["records"]
    assert one["artifacts"]["predictions"] and one["artifacts"] == per_step["artifacts"]
    record = one["records"]["serve/latest"]
    assert (record["is_drift"], record["retrain"]) == (True, True)
    assert one["records"]["train/last-attempt"]["run_id"] == "retrain-after-serve-noisy"


def test_each_form_starts_the_jobs_its_template_says(forms: dict[str, Form], scenario: dict[str, Any]) -> None:
    """Runs last (it needs the whole scenario): one job a run in the default form, a job a step in the other."""
    counts = {name: {kind: job.request["ProcessingResources"]["ClusterConfig"]["InstanceCount"]
                     for kind, job in form.system.jobs()} for name, form in forms.items()}
    assert counts == {
        "one job": {"train-run": 1, "serve-run": 1},
        "a job a step": {"train-run": 1, "serve-process": 2, "serve-drift-features": 1, "serve-detect-drift": 1,
                         "serve-predict": 2, "serve-explain": 1},
    }
    assert {job.kind for job in forms["one job"].system.emulation.jobs} == {"processing"}
