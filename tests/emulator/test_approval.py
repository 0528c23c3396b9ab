"""The approval gate in manual mode, on the emulated AWS deployment and on the local runner alike:
SageMaker Model Registry (a SQLite table locally) holds every model, serving moves only when a person
approves one (on AWS: in the registry, then EventBridge -> the promote Lambda; locally: ``loop.approve``,
what ``driftloop approve`` calls), and a rejected one leaves the champion serving (on AWS: rejected in the
registry, recorded by the same Lambda; locally: ``loop.reject``, what ``driftloop reject`` calls).

1. train on Original: the first model waits too; approved, it serves;
2. a retrain on Noisy that beats it: pending, serving still on the champion; approved: it serves;
3. a retrain on Original that beats the Noisy model on Original's validation set: pending; rejected:
   the champion stays, and ``train/last-attempt`` says it was rejected, and why.

After every step ``train/latest``, ``train/last-attempt`` and ``serve/latest`` are equal on both backends,
and at the end the two registries' histories are, package by package and field by field
(``support.parity`` says what it maps: package ARNs as local ids, the store root, times, the image).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.deployed_system import DeployedSystem, wait_until
from support.parity import Backends, train_both

from driftloop import loop
from driftloop.config import Settings
from driftloop.local.runner import LocalSystem

from .conftest import TEST_CONTEXT

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

# Models good enough for champion/challenger to mean something (as in test_parity), approval by hand.
DEPLOYMENT_CONTEXT: dict[str, Any] = {
    "driftloop": {
        "settings": {**TEST_CONTEXT["driftloop"]["settings"], "algorithm": {"epochs": 15, "patience": 4}},
        "decision": {"approval": "manual"},
    }
}

START = datetime(2023, 2, 5, 10, 5, tzinfo=UTC)
ORIGINAL = {"train_data": "data/original/train", "val_data": "data/original/val"}
NOISY = {"train_data": "data/noisy/train", "val_data": "data/noisy/val"}


@pytest.fixture(scope="module")
def backends(deployed: DeployedSystem, small_data: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Backends]:
    context = DEPLOYMENT_CONTEXT["driftloop"]
    local = LocalSystem(tmp_path_factory.mktemp("local"),
                        settings=Settings.from_overrides(context["settings"], context["decision"]))
    for stage in ("original", "noisy"):
        local.import_dataset(small_data / stage, stage)
        deployed.upload_folder(small_data / stage, f"data/{stage}")
    yield Backends(local=local, aws=deployed)


def serving(system: DeployedSystem) -> str | None:
    return system.parameter("train/latest").get("run_id")


def set_status(system: DeployedSystem, run_id: str, status: str, reason: str) -> None:
    """What a person does in the console or with ``aws sagemaker update-model-package``."""
    arn = system.parameter("train/last-attempt")["package_id"]
    assert system.parameter("train/last-attempt")["run_id"] == run_id
    system.client("sagemaker").update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status,
                                                    ApprovalDescription=reason)


def approve_both(backends: Backends, reason: str) -> None:
    """The last train run's model approved on both backends, and the AWS promotion done."""
    run_id = backends.train_ids[-1]
    loop.approve(backends.local.stores, run_id, reason)
    set_status(backends.aws, run_id, "Approved", reason)
    wait_until(lambda: serving(backends.aws) == run_id, timeout=120, what=f"{run_id} promoted")


def reject_both(backends: Backends, reason: str) -> None:
    """The last train run's model rejected on both backends, and the AWS rejection recorded."""
    run_id = backends.train_ids[-1]
    loop.reject(backends.local.stores, run_id, reason)
    set_status(backends.aws, run_id, "Rejected", reason)
    wait_until(lambda: backends.aws.parameter("train/last-attempt")["approval"] == "Rejected", timeout=120,
               what=f"the rejection of {run_id} recorded")


@pytest.fixture(scope="module")
def records(backends: Backends) -> dict[str, dict[str, Any]]:
    """The records after each step of the scenario, equal on both backends at the end of each step."""
    steps: dict[str, Callable[[], None]] = {
        "first pending": lambda: train_both(backends, ORIGINAL, START),
        "first approved": lambda: approve_both(backends, "first model checked"),
        "second pending": lambda: train_both(backends, NOISY, START + timedelta(hours=1)),
        "second approved": lambda: approve_both(backends, "noisy model checked"),
        "third pending": lambda: train_both(backends, ORIGINAL, START + timedelta(hours=2)),
        "third rejected": lambda: reject_both(backends, "not this one"),
    }
    after: dict[str, dict[str, Any]] = {}
    for name, step in steps.items():
        step()
        after[name] = backends.assert_same_records()
    return after


def test_the_first_model_waits_for_approval_then_serves(records: dict[str, dict[str, Any]]) -> None:
    attempt = records["first pending"]["train/last-attempt"]
    assert (attempt["approval"], attempt["promoted"], records["first pending"]["train/latest"]) == (
        "PendingManualApproval", False, None)
    latest = records["first approved"]["train/latest"]
    assert (latest["run_id"], latest["approval"], latest["package_id"]) == (attempt["run_id"], "Approved",
                                                                            "driftloop/1")
    assert latest["reason"].endswith("approved: first model checked")


def test_a_retrain_waits_with_serving_on_the_champion_until_approved(records: dict[str, dict[str, Any]]) -> None:
    attempt = records["second pending"]["train/last-attempt"]
    assert attempt["approval"] == "PendingManualApproval", attempt["reason"]
    assert records["second pending"]["train/latest"] == records["first approved"]["train/latest"]
    latest = records["second approved"]["train/latest"]
    assert (latest["run_id"], latest["package_id"]) == (attempt["run_id"], "driftloop/2")
    assert latest["reason"].endswith("approved: noisy model checked")


def test_a_rejected_retrain_leaves_the_champion_and_says_why(records: dict[str, dict[str, Any]]) -> None:
    pending = records["third pending"]["train/last-attempt"]
    assert pending["approval"] == "PendingManualApproval", pending["reason"]
    rejected = records["third rejected"]
    assert rejected["train/latest"] == records["second approved"]["train/latest"]
    assert rejected["train/last-attempt"] == {**pending, "approval": "Rejected",
                                              "reason": f"{pending['reason']}; rejected: not this one"}


def test_the_registries_histories_are_the_records_and_match_field_by_field(
        backends: Backends, records: dict[str, dict[str, Any]]) -> None:
    packages = backends.assert_same_registry()
    runs = backends.train_ids
    assert [(p["trained"]["run_id"], p["version"], p["status"], p["reason"]) for p in packages] == [
        (runs[0], 1, "Approved", "first model checked"), (runs[1], 2, "Approved", "noisy model checked"),
        (runs[2], 3, "Rejected", "not this one")]
    # Each package names its run's model, and the records name the packages (ARNs mapped to versions).
    assert [p["trained"]["model"] for p in packages] == [f"runs/train/{run}/model" for run in runs]
    rejected = records["third rejected"]
    assert rejected["train/latest"]["package_id"] == packages[1]["package_id"] == "driftloop/2"
    assert rejected["train/last-attempt"]["package_id"] == packages[2]["package_id"] == "driftloop/3"
