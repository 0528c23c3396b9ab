"""Each store behaviour test runs against the local implementation and the moto-backed AWS one."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.aws_emulation import model_packages_as_aws_has_them
from support.moto_server import MotoServer

from driftloop.registry import ModelRegistry, SageMakerModelRegistry, SqliteModelRegistry
from driftloop.stores import LocalObjectStore, S3ObjectStore, SqliteParameterStore, SsmParameterStore
from driftloop.stores.objects import ObjectStore
from driftloop.stores.params import ParameterStore

BUCKET = "driftloop-test-bucket"


@pytest.fixture(params=["sqlite", pytest.param("ssm", marks=pytest.mark.emulator)])
def params(request: pytest.FixtureRequest, tmp_path: Path) -> ParameterStore:
    if request.param == "sqlite":
        return SqliteParameterStore(tmp_path / "state" / "parameters.sqlite")
    server: MotoServer = request.getfixturevalue("moto_reset")
    return SsmParameterStore(server.client("ssm"))


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.emulator)])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "store")
    server: MotoServer = request.getfixturevalue("moto_reset")
    client = server.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return S3ObjectStore(BUCKET, client)


GROUP = "driftloop-test-models"


@pytest.fixture(params=["sqlite", pytest.param("sagemaker", marks=pytest.mark.emulator)])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    """The local registry (a table of the parameters' SQLite file) or SageMaker Model Registry in moto."""
    if request.param == "sqlite":
        return SqliteModelRegistry(SqliteParameterStore(tmp_path / "state" / "parameters.sqlite"))
    server: MotoServer = request.getfixturevalue("moto_reset")
    request.getfixturevalue("sagemaker_model_registry")
    client = server.client("sagemaker")
    client.create_model_package_group(ModelPackageGroupName=GROUP)
    return SageMakerModelRegistry(GROUP, client)


@pytest.fixture
def sagemaker_model_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's model package APIs as AWS has them (``support.aws_emulation``)."""
    model_packages_as_aws_has_them(monkeypatch)
