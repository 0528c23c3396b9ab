"""One loop, two backends: run a step on the local runner and on the emulated AWS deployment, and compare
what each wrote, field by field.

Only what differs by nature is mapped: the store root (``s3://<bucket>/`` on AWS; local URIs are
relative to the store), times, the id of a retrain the serve state machine started (a Step
Functions execution name; the local runner names it from the clock and a random suffix), and a
model package's id (its ARN in the stack's group on AWS, ``driftloop/<version>`` locally): compared
as the group's version number, so the same model must be the same version on both; and in the
registries' histories, a package's algorithm image (AWS runs one, the local runner none). Every other
run id is the same on both sides: the AWS executions are started with the local run ids as their names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from driftloop.local.runner import LocalSystem, ServeOutcome
from driftloop.registry import LOCAL_GROUP, SageMakerModelRegistry
from support.deployed_system import DeployedSystem

RECORDS = ("train/latest", "train/last-attempt", "serve/latest")
# Fields that hold a time: the execution's start on AWS, the run's given time locally.
TIMES = frozenset({"time", "served_at"})


@dataclass
class Backends:
    local: LocalSystem
    aws: DeployedSystem
    retrain_ids: dict[str, str] = field(default_factory=dict)  # AWS execution name -> local run id
    train_ids: list[str] = field(default_factory=list)  # the train runs started by hand, in order

    def local_records(self) -> dict[str, dict[str, Any] | None]:
        values = {name: self.local.params.get_optional(f"{self.local.names.prefix}/{name}") for name in RECORDS}
        return {name: None if v is None else json.loads(v) for name, v in values.items()}

    def aws_records(self) -> dict[str, dict[str, Any] | None]:
        records: dict[str, dict[str, Any] | None] = {}
        for name in RECORDS:
            value = self.aws.parameter(name)
            records[name] = None if value == {"status": "none"} else value
        return records

    def comparable(self, records: dict[str, Any], root: str = "", package_group: str = "") -> dict[str, Any]:
        """Records (or any JSON objects) without their times, store root and retrain execution names; a
        package ARN of ``package_group`` as the local package id of its version."""
        packages = re.compile(rf"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{{12}}:model-package/{re.escape(package_group)}"
                              r"/(\d+)", re.IGNORECASE) if package_group else None
        return {name: self._map(r, root, packages) for name, r in records.items()}

    def _map(self, value: Any, root: str, packages: re.Pattern[str] | None = None) -> Any:
        if isinstance(value, dict):
            return {k: self._map(v, root, packages) for k, v in value.items() if k not in TIMES}
        if isinstance(value, list):
            return [self._map(v, root, packages) for v in value]
        if not isinstance(value, str):
            return value
        if packages is not None and (package := packages.fullmatch(value)):
            return f"{LOCAL_GROUP}/{package[1]}"
        value = value.removeprefix(root) if root else value
        for execution_name, run_id in self.retrain_ids.items():  # also inside URIs: runs/train/<id>/model
            value = value.replace(execution_name, run_id)
        return value

    def assert_same_records(self) -> dict[str, Any]:
        local = self.comparable(self.local_records())
        aws = self.comparable(self.aws_records(), root=self.aws.uri(""), package_group=self.aws.package_group)
        for name in RECORDS:
            assert aws[name] == local[name], f"{name} differs between the backends"
        return local

    def assert_same_registry(self) -> list[dict[str, Any]]:
        """The two model package groups' histories, package by package and field by field (as ``comparable``
        maps them: a package's ARN as its version's local id, the store root, times). The algorithm image
        is what only AWS has (the local runner runs none): present there, None locally, then left out."""
        assert self.local.stores.registry is not None, "the local system has no model registry"
        local = [package.to_dict() for package in self.local.stores.registry.packages()]
        registry = SageMakerModelRegistry(self.aws.package_group, self.aws.client("sagemaker"))
        aws = [package.to_dict() for package in registry.packages()]
        aws_images, local_images = ([p["trained"].pop("image") for p in side] for side in (aws, local))
        assert all(aws_images) and not any(local_images), (aws_images, local_images)
        mapped = self.comparable({"packages": aws}, root=self.aws.uri(""), package_group=self.aws.package_group)
        assert mapped == self.comparable({"packages": local}), "the model registries' histories differ"
        return local

    def aws_key(self, local_key: str) -> str:
        """Where AWS wrote what the local runner wrote at ``local_key``: a retrain's id is its execution name."""
        for execution_name, run_id in self.retrain_ids.items():
            local_key = local_key.replace(run_id, execution_name)
        return local_key

    def assert_same_objects(self, *keys: str) -> dict[str, Any]:
        """JSON objects both backends wrote at these keys (ledger entries, lineage, run records), compared alike."""
        local = self.comparable({key: json.loads(self.local.objects.get_bytes(key)) for key in keys})
        s3 = self.aws.client("s3")
        written = {key: json.loads(s3.get_object(Bucket=self.aws.bucket, Key=self.aws_key(key))["Body"].read())
                   for key in keys}
        aws = self.comparable(written, root=self.aws.uri(""), package_group=self.aws.package_group)
        for key in keys:
            assert aws[key] == local[key], f"{key} differs between the backends"
        return local


def train_both(backends: Backends, start: dict[str, str], when: datetime) -> None:
    name = backends.local.train(start["train_data"], start["val_data"], when=when).run_id
    backends.train_ids.append(name)
    description = backends.aws.wait(backends.aws.start(backends.aws.train_machine, name, start))
    assert description["status"] == "SUCCEEDED", description


def serve_both(backends: Backends, start: dict[str, str], when: datetime) -> None:
    """A serve run on the named batch, on both backends."""
    finish_serve(backends, backends.local.serve(start["batch"], when=when), start)


def serve_next_on_both(backends: Backends, when: datetime) -> ServeOutcome:
    """A scheduled production run (started with ``{}``) on both backends: each claims its oldest unserved batch."""
    outcome = backends.local.serve_next(when=when)
    assert outcome is not None, "the local runner found nothing to serve"
    finish_serve(backends, outcome, {})
    return outcome


def finish_serve(backends: Backends, outcome: ServeOutcome, start: dict[str, str]) -> None:
    """The AWS execution of the serve run the local runner just made (same name, the same start), and its retrain."""
    name = outcome.record.run_id
    description = backends.aws.wait(backends.aws.start(backends.aws.serve_machine, name, start))
    assert description["status"] == "SUCCEEDED", description
    record = json.loads(description["output"])["record"]
    if record["retrain_run_id"] is not None:
        assert outcome.retrain is not None, "AWS retrained, the local runner did not"
        backends.retrain_ids[record["retrain_run_id"]] = outcome.retrain.run_id
        retrain = next(e for e in backends.aws.executions(backends.aws.train_machine)
                       if e["name"] == record["retrain_run_id"])
        assert backends.aws.wait(retrain["executionArn"])["status"] == "SUCCEEDED"
