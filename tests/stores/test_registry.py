"""Model registry behaviour, identical for the SQLite table and SageMaker Model Registry (moto server over HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop.errors import UserError
from driftloop.registry import (
    ModelRegistry,
    PackageNotFound,
    SqliteModelRegistry,
    TrainedModel,
    package_metadata,
    package_request,
)
from driftloop.stores.params import ParameterStoreError, SqliteParameterStore


def trained(run_id: str, accuracy: float = 0.9, champion: float | None = 0.8, lineage: str | None = None
            ) -> TrainedModel:
    return TrainedModel(run_id=run_id, time="2026-12-01T10:05:00+00:00", model=f"s3://b/runs/train/{run_id}/model",
                        image=None, val_accuracy=accuracy, champion_val_accuracy=champion,
                        train_data="s3://b/data/stage-2/train", val_data="s3://b/data/stage-2/val", lineage=lineage)


def test_every_model_gets_the_next_version_with_its_facts_and_status(registry: ModelRegistry) -> None:
    first = registry.register(trained("train-1", champion=None), "Approved", "no current model: the first is promoted")
    second = registry.register(trained("train-2", 0.7, lineage="s3://b/data/retrain-x/lineage.json"), "Rejected",
                               "challenger 0.700 < champion 0.800 on the new validation set: kept champion")

    assert [(p.version, p.run_id, p.status) for p in registry.packages()] == [
        (1, "train-1", "Approved"), (2, "train-2", "Rejected")]
    assert registry.packages() == [first, second]
    assert second.trained == trained("train-2", 0.7, lineage="s3://b/data/retrain-x/lineage.json")
    assert second.reason == "challenger 0.700 < champion 0.800 on the new validation set: kept champion"
    assert first.package_id != second.package_id


def test_a_run_is_registered_once_however_often_its_step_runs(registry: ModelRegistry) -> None:
    """A retried record step finds its package: no second version of the same model."""
    registered = registry.register(trained("train-1"), "PendingManualApproval", "won")
    again = registry.register(trained("train-1"), "Approved", "won")
    assert again == registered
    assert [p.run_id for p in registry.packages()] == ["train-1"]


def test_a_status_change_keeps_the_model_s_facts_and_says_why(registry: ModelRegistry) -> None:
    registry.register(trained("train-1"), "PendingManualApproval", "challenger 0.900 >= champion 0.800")
    approved = registry.set_status("train-1", "Approved", "looked at the confusion matrix")

    assert approved.status == "Approved"
    assert approved.reason == "looked at the confusion matrix"
    assert approved.trained == trained("train-1")
    assert registry.packages() == [approved]


def test_a_run_without_a_package_is_named(registry: ModelRegistry) -> None:
    assert registry.find("train-9") is None
    with pytest.raises(PackageNotFound, match="no model package of train run train-9 in model package group"):
        registry.set_status("train-9", "Approved", "ok")


def test_the_sagemaker_request_names_the_stack_s_group_and_carries_the_facts() -> None:
    request = package_request("Driftloop-models", trained("train-1", champion=None), "PendingManualApproval", "won")
    assert request == {
        "ModelPackageGroupName": "Driftloop-models", "ModelApprovalStatus": "PendingManualApproval",
        "ModelPackageDescription": "won",
        "CustomerMetadataProperties": {
            "run_id": "train-1", "time": "2026-12-01T10:05:00+00:00", "model": "s3://b/runs/train/train-1/model",
            "val_accuracy": "0.9", "train_data": "s3://b/data/stage-2/train", "val_data": "s3://b/data/stage-2/val"},
    }


@pytest.mark.parametrize(("data", "problem"), [("s3://b/data/a,b/train", "holds ','"),
                                               ("s3://b/data/" + "x" * 250, "262 characters, not 1 to 256")])
def test_a_fact_sagemaker_would_refuse_is_refused_before_the_call(data: str, problem: str) -> None:
    model = TrainedModel(**{**trained("train-1").to_dict(), "train_data": data})
    with pytest.raises(UserError, match=f"its train_data .* is {problem}"):
        package_metadata(model)


def test_the_local_registry_shares_the_parameter_file_and_its_rules(tmp_path: Path) -> None:
    path = tmp_path / "parameters.sqlite"
    SqliteModelRegistry(SqliteParameterStore(path)).register(trained("train-1"), "Approved", "first")
    reader = SqliteModelRegistry(SqliteParameterStore(path, read_only=True))
    assert [p.run_id for p in reader.packages()] == ["train-1"]
    with pytest.raises(ParameterStoreError, match="open read-only: model package driftloop/1 cannot be written"):
        reader.set_status("train-1", "Rejected", "no")
    assert SqliteModelRegistry(SqliteParameterStore(path), group="other").packages() == []
