"""Which instance of a scaled-out job this process is, and which part of the data it gets.

SageMaker runs a processing job on ``InstanceCount`` hosts and tells each one who it is in
``/opt/ml/config/resourceconfig.json`` (``{"current_host": "algo-2", "hosts": ["algo-1", "algo-2"],
...}``; processing jobs have no ``SM_CURRENT_HOST`` variable). An input with ``ShardedByS3Key``
gives each host about 1/N of the objects under the prefix, each object to exactly one host.

Each host writes its own part of an output, named after the host (``part_name``), so no two hosts
write the same key; a job on one host writes the plain names, as before scaling existed. Readers
take every part (``part_files``). The local runner gives its worker processes the same host
identities, splits the objects with ``shard_by_key`` and gives each worker its own cores
(``core_shares``), as each instance has its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

RESOURCE_CONFIG: Final = Path("/opt/ml/config/resourceconfig.json")
SINGLE_HOST: Final = "algo-1"  # SageMaker's name for the first (or only) host


class ResourceConfigError(ValueError):
    """A resource configuration that does not say which host this is."""


@dataclass(frozen=True)
class Hosts:
    """This process's host among the job's hosts."""

    current: str = SINGLE_HOST
    hosts: tuple[str, ...] = (SINGLE_HOST,)

    def __post_init__(self) -> None:
        if self.current not in self.hosts:
            raise ResourceConfigError(f"current host {self.current!r} is not one of the job's hosts {list(self.hosts)}")

    @property
    def many(self) -> bool:
        return len(self.hosts) > 1

    def part_name(self, file_name: str) -> str:
        """This host's name for an output file: ``predictions.csv`` on one host,
        ``predictions-algo-2.csv`` on host algo-2 of several."""
        if not self.many:
            return file_name
        stem, dot, suffix = file_name.partition(".")
        return f"{stem}-{self.current}{dot}{suffix}"

    @classmethod
    def of_job(cls, count: int) -> tuple[Hosts, ...]:
        """The hosts of a job on ``count`` instances, as SageMaker names them: algo-1 ... algo-N."""
        names = tuple(f"algo-{i}" for i in range(1, count + 1))
        return tuple(cls(name, names) for name in names)

    @classmethod
    def read(cls, path: Path = RESOURCE_CONFIG) -> Hosts:
        """This container's host; one host when the file is absent (a run outside SageMaker)."""
        if not path.exists():
            return cls()
        try:
            config = json.loads(path.read_text())
            return cls(str(config["current_host"]), tuple(str(h) for h in config["hosts"]))
        except (ValueError, KeyError, TypeError) as error:
            raise ResourceConfigError(f"{path} does not name current_host and hosts: {error}") from error


def is_part(name: str, file_name: str) -> bool:
    """Whether ``name`` is some host's part of the output file ``file_name`` (``Hosts.part_name``)."""
    stem, dot, suffix = file_name.partition(".")
    host = name.removeprefix(f"{stem}-").removesuffix(f"{dot}{suffix}")
    return name == file_name or (bool(host) and "." not in host and name == f"{stem}-{host}{dot}{suffix}")


def part_files(folder: Path, file_name: str) -> list[Path]:
    """Every host's part of one output file in ``folder``, sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and is_part(p.name, file_name))


def shard_by_key(keys: Sequence[str], count: int) -> list[list[str]]:
    """``ShardedByS3Key`` for ``count`` hosts: each key to exactly one host, about 1/N each.

    SageMaker does not document its assignment; this one deals the sorted keys round-robin. Nothing
    downstream depends on which host got which key (the emulator deals them out in blocks).
    """
    ordered = sorted(keys)
    return [ordered[i::count] for i in range(count)]


def own_cores() -> list[int]:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def core_shares(count: int, cores: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """The CPU cores of each of ``count`` local hosts: this process's cores (``cores``) dealt out in
    blocks, at least one per host; with more hosts than cores, hosts share them round-robin."""
    available = sorted(own_cores() if cores is None else cores)
    if count > len(available):
        return [(available[i % len(available)],) for i in range(count)]
    size, extra = divmod(len(available), count)
    starts = [i * size + min(i, extra) for i in range(count + 1)]
    return [tuple(available[starts[i]:starts[i + 1]]) for i in range(count)]
