"""The approval gate on the emulated AWS deployment, in manual mode: SageMaker Model Registry holds every
model, serving moves only when a person approves one (EventBridge -> the promote Lambda), and a
rejected one leaves the champion serving.

1. train on Original: the first model waits too; approved, it serves;
2. a retrain on Noisy that beats it: pending, serving still on the champion; approved: it serves;
3. a retrain on Original that beats the Noisy model on Original's validation set: pending; rejected:
   the champion stays.

The package group's history is the records': each run's version, status and model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.deployed_system import DeployedSystem, wait_until

from driftloop.registry import SageMakerModelRegistry

from .conftest import TEST_CONTEXT

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

# Models good enough for champion/challenger to mean something (as in test_parity), approval by hand.
DEPLOYMENT_CONTEXT: dict[str, Any] = {
    "driftloop": {
        "settings": {**TEST_CONTEXT["driftloop"]["settings"], "algorithm": {"epochs": 15, "patience": 4}},
        "decision": {"approval": "manual"},
    }
}


@pytest.fixture(scope="module")
def system(deployed: DeployedSystem, small_data: Path) -> Iterator[DeployedSystem]:
    for stage in ("original", "noisy"):
        deployed.upload_folder(small_data / stage, f"data/{stage}")
    yield deployed


def train(system: DeployedSystem, name: str, train: str, val: str) -> dict[str, Any]:
    start = {"train_data": f"data/{train}/train", "val_data": f"data/{val}/val"}
    description = system.wait(system.start(system.train_machine, name, start))
    assert description["status"] == "SUCCEEDED", description
    return system.parameter("train/last-attempt")


def serving(system: DeployedSystem) -> str | None:
    return system.parameter("train/latest").get("run_id")


def set_status(system: DeployedSystem, record: dict[str, Any], status: str, reason: str) -> None:
    """What a person does in the console or with ``aws sagemaker update-model-package``."""
    system.client("sagemaker").update_model_package(ModelPackageArn=record["package_id"], ModelApprovalStatus=status,
                                                    ApprovalDescription=reason)


def test_models_serve_only_once_approved_and_a_rejected_one_leaves_the_champion(system: DeployedSystem) -> None:
    first = train(system, "approval-1", "original", "original")
    assert (first["approval"], first["promoted"], serving(system)) == ("PendingManualApproval", False, None)
    set_status(system, first, "Approved", "first model checked")
    wait_until(lambda: serving(system) == "approval-1", timeout=120, what="the first model promoted")

    second = train(system, "approval-2", "noisy", "noisy")
    assert second["approval"] == "PendingManualApproval", second["reason"]
    assert serving(system) == "approval-1"
    set_status(system, second, "Approved", "noisy model checked")
    wait_until(lambda: serving(system) == "approval-2", timeout=120, what="the retrained model promoted")
    latest = system.parameter("train/latest")
    assert latest["package_id"] == second["package_id"] and latest["reason"].endswith("approved: noisy model checked")

    third = train(system, "approval-3", "original", "original")
    assert third["approval"] == "PendingManualApproval", third["reason"]
    set_status(system, third, "Rejected", "not this one")
    assert serving(system) == "approval-2"

    packages = SageMakerModelRegistry(system.package_group, system.client("sagemaker")).packages()
    assert [(p.run_id, p.version, p.status) for p in packages] == [
        ("approval-1", 1, "Approved"), ("approval-2", 2, "Approved"), ("approval-3", 3, "Rejected")]
    assert [p.trained.model for p in packages] == [r["model"] for r in (first, second, third)]
    assert [p.package_id for p in packages] == [r["package_id"] for r in (first, second, third)]
