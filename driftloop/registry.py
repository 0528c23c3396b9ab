"""The model registry: every trained model as a numbered package of one group, with an approval status.

Why: people look for model versions in a registry, see each one's metrics and lineage there, and
say "not this one" there. ``train/latest`` stays the pointer serving reads, and it only ever points at
an ``Approved`` package's model (``driftloop.loop`` registers before it moves the pointer).

Two implementations, one behaviour: a table in the local parameter store's SQLite file, and
SageMaker Model Registry (one model package group per stack). Only the standard library and boto3:
this module ships in the Lambda bundle.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from driftloop.contracts import Contract
from driftloop.errors import UserError
from driftloop.stores.params import SqliteParameterStore

# SageMaker's ModelApprovalStatus values, spelled as SageMaker spells them.
ApprovalStatus = Literal["PendingManualApproval", "Approved", "Rejected"]
APPROVAL_STATUSES: Final[tuple[ApprovalStatus, ...]] = get_args(ApprovalStatus)
# The local group's name (a work folder has one registry); on AWS the stack names its group.
LOCAL_GROUP: Final = "driftloop"


@dataclass(frozen=True)
class TrainedModel(Contract):
    """What a package carries about its model: artifact, image, metrics and lineage (all from its train record)."""

    run_id: str  # the train run that made it
    time: str  # ISO 8601, when that run started
    model: str  # URI of the model artifact
    image: str | None  # the algorithm image (None where no image runs it: the local runner)
    val_accuracy: float
    champion_val_accuracy: float | None  # the champion's score on the same validation set (None: no champion)
    train_data: str
    val_data: str
    lineage: str | None  # production retrains: the base data sets, batches and label files (a URI)


@dataclass(frozen=True)
class ModelPackage(Contract):
    package_id: str  # the package's ARN on AWS; locally ``<group>/<version>``
    version: int  # 1, 2, … in its group, in the order the models were registered
    status: ApprovalStatus
    reason: str  # why it has its status: champion/challenger's verdict, or the person's who approved or rejected it
    trained: TrainedModel

    @property
    def run_id(self) -> str:
        return self.trained.run_id

    def summary(self) -> str:
        champion = ("" if self.trained.champion_val_accuracy is None
                    else f", champion {self.trained.champion_val_accuracy:.3f}")
        return (f"v{self.version} {self.run_id}: {self.status}, val accuracy {self.trained.val_accuracy:.3f}"
                f"{champion} ({self.reason})")


class PackageNotFound(UserError, LookupError):
    """No package of that train run in the registry; the message says where to look."""


class ModelRegistry(ABC):
    """One group of model packages; implementations differ only in where it lives."""

    @abstractmethod
    def describe(self) -> str:
        """Which group, where (for messages)."""

    @abstractmethod
    def packages(self) -> list[ModelPackage]:
        """Every package of the group, oldest (version 1) first."""

    @abstractmethod
    def _register(self, trained: TrainedModel, status: ApprovalStatus, reason: str) -> ModelPackage: ...

    @abstractmethod
    def _set_status(self, package: ModelPackage, status: ApprovalStatus, reason: str) -> ModelPackage: ...

    def find(self, run_id: str) -> ModelPackage | None:
        return next((package for package in self.packages() if package.run_id == run_id), None)

    def get(self, run_id: str) -> ModelPackage:
        package = self.find(run_id)
        if package is None:
            raise PackageNotFound(f"no model package of train run {run_id} in {self.describe()}: "
                                  "`driftloop models` lists them")
        return package

    def register(self, trained: TrainedModel, status: ApprovalStatus, reason: str) -> ModelPackage:
        """A new package for the model; the one already registered for its run if there is one (a retried
        step registers once)."""
        return self.find(trained.run_id) or self._register(trained, status, reason)

    def set_status(self, run_id: str, status: ApprovalStatus, reason: str) -> ModelPackage:
        return self._set_status(self.get(run_id), status, reason)


# ----------------------------------------------------------------------------------------- SQLite
_TABLE: Final = "model_packages"


class SqliteModelRegistry(ModelRegistry):
    """A table in the parameter store's SQLite file: the same file, error messages and locking as the
    parameters (``SqliteParameterStore.transaction``), so a work folder stays one file of state."""

    def __init__(self, store: SqliteParameterStore, group: str = LOCAL_GROUP) -> None:
        self.store, self.group = store, group

    def describe(self) -> str:
        return f"model package group {self.group} in {self.store.describe()}"

    def packages(self) -> list[ModelPackage]:
        rows = self.store.rows(_TABLE, f"SELECT package FROM {_TABLE} WHERE grp = ? ORDER BY version", (self.group,))
        return [ModelPackage.from_json(package) for (package,) in rows]

    def _register(self, trained: TrainedModel, status: ApprovalStatus, reason: str) -> ModelPackage:
        with self.store.transaction(f"a model package of run {trained.run_id}") as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (grp TEXT NOT NULL, version INTEGER NOT NULL, "
                       "run_id TEXT NOT NULL, package TEXT NOT NULL, PRIMARY KEY (grp, version), "
                       "UNIQUE (grp, run_id))")
            # Under the write lock: of two registrations of one run (a retried step), one writes.
            same = db.execute(f"SELECT package FROM {_TABLE} WHERE grp = ? AND run_id = ?",
                              (self.group, trained.run_id)).fetchone()
            if same is not None:
                return ModelPackage.from_json(same[0])
            (last,) = db.execute(f"SELECT COALESCE(MAX(version), 0) FROM {_TABLE} WHERE grp = ?",
                                 (self.group,)).fetchone()
            package = ModelPackage(package_id=f"{self.group}/{last + 1}", version=last + 1, status=status,
                                   reason=reason, trained=trained)
            db.execute(f"INSERT INTO {_TABLE} (grp, version, run_id, package) VALUES (?, ?, ?, ?)",
                       (self.group, package.version, trained.run_id, package.to_json()))
        return package

    def _set_status(self, package: ModelPackage, status: ApprovalStatus, reason: str) -> ModelPackage:
        updated = dataclasses.replace(package, status=status, reason=reason)
        with self.store.transaction(f"model package {package.package_id}") as db:
            db.execute(f"UPDATE {_TABLE} SET package = ? WHERE grp = ? AND version = ?",
                       (updated.to_json(), self.group, package.version))
        return updated


# -------------------------------------------------------------------------------------- SageMaker
# CustomerMetadataProperties: each value 1 to 256 characters of letters, digits, spaces and these.
METADATA_MAX: Final = 256
_METADATA_PUNCTUATION: Final = frozenset("_.:/=+-@")


def metadata_problem(value: str) -> str | None:
    """Why SageMaker would refuse ``value`` as a customer metadata value (None: it would not)."""
    if not 1 <= len(value) <= METADATA_MAX:
        return f"{len(value)} characters, not 1 to {METADATA_MAX}"
    odd = sorted({char for char in value if not (char.isalpha() or char.isnumeric() or char in _METADATA_PUNCTUATION
                                                 or unicodedata.category(char).startswith("Z"))})
    return f"holds {''.join(odd)!r} (letters, digits, spaces and {''.join(sorted(_METADATA_PUNCTUATION))} only)" \
        if odd else None


def package_metadata(trained: TrainedModel) -> dict[str, str]:
    """The model's facts as the package's CustomerMetadataProperties (what the console shows), by field name."""
    metadata = {name: str(value) for name, value in trained.to_dict().items() if value is not None}
    for name, value in metadata.items():
        if (problem := metadata_problem(value)) is not None:
            raise UserError(f"model package of run {trained.run_id}: its {name} {value!r} is {problem}, which "
                            "SageMaker Model Registry refuses: give the data sets shorter plain names")
    return metadata


class SageMakerModelRegistry(ModelRegistry):
    """SageMaker Model Registry: the stack's model package group, one versioned package per trained model.

    The model's facts are the package's CustomerMetadataProperties (``package_metadata``); the reason
    is its description at registration, then the ApprovalDescription of each status change.
    """

    def __init__(self, group: str, client: Any = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("sagemaker", config=Config(retries={"mode": "standard"}))
        self.group, self.client = group, client

    def describe(self) -> str:
        return f"model package group {self.group} (SageMaker Model Registry, {self.client.meta.region_name})"

    def packages(self) -> list[ModelPackage]:
        # A summary has no metadata: each package is described.
        packages = [_package(self.client.describe_model_package(ModelPackageName=arn)) for arn in self._arns()]
        return sorted(packages, key=lambda package: package.version)

    def _arns(self) -> list[str]:
        return [summary["ModelPackageArn"]
                for page in self.client.get_paginator("list_model_packages").paginate(ModelPackageGroupName=self.group)
                for summary in page["ModelPackageSummaryList"]]

    def _register(self, trained: TrainedModel, status: ApprovalStatus, reason: str) -> ModelPackage:
        arn = self.client.create_model_package(**package_request(self.group, trained, status, reason))[
            "ModelPackageArn"]
        return _package(self.client.describe_model_package(ModelPackageName=arn))

    def _set_status(self, package: ModelPackage, status: ApprovalStatus, reason: str) -> ModelPackage:
        self.client.update_model_package(ModelPackageArn=package.package_id, ModelApprovalStatus=status,
                                         ApprovalDescription=reason)
        return _package(self.client.describe_model_package(ModelPackageName=package.package_id))

    def delete_every_package(self) -> list[str]:
        """Deletes each package of the group (the ARNs, oldest first): CloudFormation refuses to delete a group
        that still holds packages, so the stack's teardown empties it first (``empty_package_group``)."""
        arns = self._arns()
        for arn in arns:
            self.client.delete_model_package(ModelPackageName=arn)
        return arns


def package_request(group: str, trained: TrainedModel, status: ApprovalStatus, reason: str) -> dict[str, Any]:
    """CreateModelPackage's arguments: a versioned package of ``group`` (the stack's)."""
    return {"ModelPackageGroupName": group, "ModelApprovalStatus": status, "ModelPackageDescription": reason,
            "CustomerMetadataProperties": package_metadata(trained)}


def _package(described: dict[str, Any]) -> ModelPackage:
    """A DescribeModelPackage response as a ModelPackage (numbers back from their metadata text), checked
    as any contract is: a package of this group that driftloop did not register fails naming the field."""
    trained: dict[str, Any] = {f.name: None for f in dataclasses.fields(TrainedModel)}
    trained.update(described.get("CustomerMetadataProperties") or {})
    for name in (f.name for f in dataclasses.fields(TrainedModel) if "float" in str(f.type)):
        if trained[name] is not None:
            trained[name] = float(trained[name])
    return ModelPackage.from_dict({
        "package_id": described["ModelPackageArn"], "version": described["ModelPackageVersion"],
        "status": described["ModelApprovalStatus"],
        "reason": described.get("ApprovalDescription") or described.get("ModelPackageDescription", ""),
        "trained": trained,
    })
