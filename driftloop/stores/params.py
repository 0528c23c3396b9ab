"""Parameter store: small named values with every version kept (SQLite locally, SSM on AWS).

Parameters hold pointers (run records as JSON), never artifacts. Both implementations enforce
SSM's rules (hierarchical names) and the free Standard tier's size (1 byte to 4 KB values), so that a
local run fails where AWS would, and a deployment never pays for an Advanced parameter by surprise.
"""

from __future__ import annotations

import json
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import ClientError

from driftloop.errors import UserError

STANDARD_TIER_MAX_BYTES: Final = 4096
_NAME = re.compile(r"(/[A-Za-z0-9_.\-]+)+")


class ParameterTooLarge(UserError, ValueError):
    """A value over the Standard tier's 4 KB: the Advanced tier is paid and permanent for its parameter."""


class ParameterNotFound(LookupError):
    """A parameter that was never written; the message says which run writes it."""


@dataclass(frozen=True)
class ParameterVersion:
    version: int
    value: str
    modified: datetime  # timezone-aware, UTC


def _hint(name: str) -> str:
    for pipeline in ("train", "serve"):
        if f"/{pipeline}/" in name:
            return f"run the {pipeline} pipeline first, it writes this parameter when it completes"
    return "put it first"


def check_name(name: str) -> None:
    """SSM's rule for hierarchical names: '/'-separated parts of letters, digits and '._-'."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"parameter name must look like '/a/b-c/d_e.f', got {name!r}")


class ParameterStore(ABC):
    """Named string values; every put is a new version. Implementations differ only in where."""

    @abstractmethod
    def _latest(self, name: str) -> str | None: ...

    @abstractmethod
    def _put(self, name: str, value: str) -> None: ...

    @abstractmethod
    def _history(self, name: str) -> list[ParameterVersion]: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the parameters live, for error messages (a wrong workdir or region is a common slip)."""

    def get_optional(self, name: str) -> str | None:
        check_name(name)
        return self._latest(name)

    def get(self, name: str) -> str:
        value = self.get_optional(name)
        if value is None:
            raise self._not_found(name)
        return value

    def put(self, name: str, value: str) -> None:
        check_name(name)
        size = len(value.encode())
        if size == 0:
            raise ValueError(f"parameter {name}: an empty value cannot be stored (SSM needs 1 byte or more)")
        if size > STANDARD_TIER_MAX_BYTES:
            raise ParameterTooLarge(
                f"parameter {name} would be {size} bytes; driftloop keeps its parameters in Parameter Store's free "
                f"Standard tier, {STANDARD_TIER_MAX_BYTES} bytes at most (the Advanced tier is paid, and permanent "
                "for the parameter): nothing was written. A record this long names long data sets or batches: "
                "give them shorter names"
            )
        self._put(name, value)

    def history(self, name: str) -> list[ParameterVersion]:
        """Every kept version, oldest first (SSM keeps the newest 100, SQLite keeps all)."""
        check_name(name)
        versions = self._history(name)
        if not versions:
            raise self._not_found(name)
        return sorted(versions, key=lambda v: v.version)

    def get_json(self, name: str) -> Any:
        text = self.get(name)
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"parameter {name} in {self.describe()} is not JSON: {error}") from error

    def put_json(self, name: str, value: Any) -> None:
        self.put(name, json.dumps(value, sort_keys=True, separators=(",", ":")))

    def _not_found(self, name: str) -> ParameterNotFound:
        return ParameterNotFound(f"no parameter {name} in {self.describe()}: {_hint(name)}")


# What to do about an SQLite error, by a phrase of its message (the first that matches).
_SQLITE_ADVICE: Final = (
    ("disk is full", "free space on the disk that holds it (or use a work folder on another disk), then run again"),
    ("not a database", "it is not a parameter store (damaged, or another file): move it away, or use another "
                       "work folder"),
    ("readonly", "make the file and its folder writable, or use another work folder"),
    ("unable to open", "check that its folder exists and is readable and writable, or use another work folder"),
    ("locked", "another driftloop process holds it: wait for that run to end, then run again"),
)


class ParameterStoreError(UserError):
    """The parameter store's file cannot be read or written; names the file, the cause and what to do."""


class SqliteParameterStore(ParameterStore):
    """One SQLite file; each call is its own transaction, so several processes can share the file.

    ``read_only``: open the file read-only and never create it (``driftloop status``); a file with no
    parameters yet reads as empty.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only

    def describe(self) -> str:
        return f"SQLite file {self.path}"

    @contextmanager
    def database(self) -> Iterator[sqlite3.Connection]:
        """A connection, closed after use; SQLite's errors become a ParameterStoreError that names the file.

        Public for the other tables of the same file (``driftloop.registry``): one file, one set of rules."""
        try:
            with closing(self._connect()) as db:
                yield db
        except sqlite3.Error as error:
            advice = next((what for phrase, what in _SQLITE_ADVICE if phrase in str(error)), "see the error")
            raise ParameterStoreError(f"parameter store {self.path}: {error}: {advice}") from error

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are the explicit BEGIN IMMEDIATE below, nothing implicit.
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS parameter_versions ("
            " name TEXT NOT NULL, version INTEGER NOT NULL, value TEXT NOT NULL, modified TEXT NOT NULL,"
            " PRIMARY KEY (name, version))"
        )
        return connection

    def rows(self, table: str, query: str, arguments: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The rows of a query on ``table``; none when the table is not there (read-only, nothing written yet)."""
        with self.database() as db:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchall():
                return []
            return list(db.execute(query, arguments).fetchall())

    @contextmanager
    def transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed when the block ends, rolled back if it raises; ``what`` names the
        write when the store is open read-only.

        IMMEDIATE takes the write lock before the block reads anything: no two writers read the same
        last version (or package) and both write the next one."""
        if self.read_only:
            raise ParameterStoreError(f"parameter store {self.path} is open read-only: {what} cannot be written")
        with self.database() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                # SQLite ends the transaction itself on some errors (a full disk): its error is the one to see.
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _latest(self, name: str) -> str | None:
        rows = self.rows("parameter_versions",
                         "SELECT value FROM parameter_versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
        return str(rows[0][0]) if rows else None

    def _put(self, name: str, value: str) -> None:
        with self.transaction(name) as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM parameter_versions WHERE name = ?", (name,)
            ).fetchone()
            db.execute(
                "INSERT INTO parameter_versions (name, version, value, modified) VALUES (?, ?, ?, ?)",
                (name, last + 1, value, datetime.now(UTC).isoformat()),
            )

    def _history(self, name: str) -> list[ParameterVersion]:
        rows = self.rows("parameter_versions",
                         "SELECT version, value, modified FROM parameter_versions WHERE name = ? ORDER BY version",
                         (name,))
        return [ParameterVersion(int(v), str(value), datetime.fromisoformat(m)) for v, value, m in rows]


class SsmParameterStore(ParameterStore):
    """AWS Systems Manager Parameter Store, String parameters in the free Standard tier."""

    def __init__(self, client: Any = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("ssm", config=Config(retries={"mode": "standard"}))
        self.client = client

    def describe(self) -> str:
        return f"SSM Parameter Store ({self.client.meta.region_name})"

    def _latest(self, name: str) -> str | None:
        try:
            response = self.client.get_parameter(Name=name)
        except ClientError as error:
            if _code(error) == "ParameterNotFound":
                return None
            raise
        return str(response["Parameter"]["Value"])

    def _put(self, name: str, value: str) -> None:
        try:
            self.client.put_parameter(Name=name, Value=value, Type="String", Overwrite=True, Tier="Standard")
        except ClientError as error:
            # SSM never moves an advanced parameter (made by an older driftloop) back to standard: it stays
            # advanced, at no new cost, holding a value the Standard tier would hold too.
            if _code(error) != "ValidationException" or "downgrade" not in str(error):
                raise
            self.client.put_parameter(Name=name, Value=value, Type="String", Overwrite=True, Tier="Advanced")

    def _history(self, name: str) -> list[ParameterVersion]:
        versions = []
        try:
            for page in self.client.get_paginator("get_parameter_history").paginate(Name=name):
                versions += [
                    ParameterVersion(int(p["Version"]), str(p["Value"]), p["LastModifiedDate"].astimezone(UTC))
                    for p in page["Parameters"]
                ]
        except ClientError as error:
            if _code(error) == "ParameterNotFound":
                return []
            raise
        return versions


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
