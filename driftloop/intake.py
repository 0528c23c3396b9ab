"""Batch intake: which uploaded batch a scheduled serve run takes, and the ledger that makes it take each once.

A batch is the folder ``batches/<id>/`` (images at any depth, class folders optional). An upload
can take minutes and a schedule does not wait for it, so a batch counts only once its marker
``batches/<id>/_READY`` exists: the uploader writes it last. A scheduled run takes the oldest
complete batch that was never served, oldest by the marker's write time (when the upload ended,
not when it began), then by id for markers written within the same second.

The ledger of served batches lives in the object store, one object a serve, because it grows
without bound and Parameter Store holds 4 KB a value. The first serve of a batch is its claim,
``ledger/served/<id>.json``, written create-only (``ObjectStore.put_if_absent``): of two runs
that race for one batch exactly one gets it, and the other moves on to the next batch. A run that
names a batch (``{"batch": "batches/<id>"}``) serves it even when it was served before; each such
later serve gets its own create-only entry ``ledger/served-again/<id>/<n>.json`` (n = 2, 3, ...),
so concurrent named runs never overwrite each other's entry and the history is never rewritten.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from driftloop.contracts import Contract
from driftloop.layout import (
    BATCHES,
    LEDGER_SERVED,
    READY_MARKER,
    batch_id_problem,
    batch_prefix,
    check_batch_id,
    served_again_entry,
    served_again_prefix,
    served_entry,
)
from driftloop.stores.objects import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadyBatch(Contract):
    """A complete batch: its id, its folder (the serve run's ``batch`` field) and when its upload ended."""

    batch_id: str
    prefix: str  # batches/<id>
    ready_at: str  # ISO 8601, UTC: the marker's write time


@dataclass(frozen=True)
class SkippedBatch(Contract):
    """A folder under ``batches/`` that is never served, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class BatchScan(Contract):
    """What ``batches/`` holds for the scheduler: complete batches never served, oldest first, and the rest."""

    ready: list[ReadyBatch]
    waiting: list[str]  # ids of batches without a marker: still uploading
    skipped: list[SkippedBatch]
    n_served: int  # batches the ledger says were served

    @property
    def next(self) -> ReadyBatch | None:
        return self.ready[0] if self.ready else None


@dataclass(frozen=True)
class ServedEntry(Contract):
    """One serve of a batch, as the ledger keeps it."""

    batch_id: str
    run_id: str
    time: str  # ISO 8601, UTC
    serve: int  # 1 for the first serve; 2, 3, ... for each later serve by a run that named the batch
    named: bool  # the run named the batch instead of taking the next one


@dataclass(frozen=True)
class Claim(Contract):
    """A scheduled run's batch: the batch and the ledger entry that reserves it for the run."""

    batch: ReadyBatch
    entry: ServedEntry


def _iso(moment: datetime | None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).isoformat()


def served_batches(objects: ObjectStore) -> set[str]:
    """Ids of every batch served at least once (the first-serve entries of the ledger)."""
    start = len(LEDGER_SERVED) + 1
    names = (key[start:] for key in objects.list(LEDGER_SERVED))
    return {name[: -len(".json")] for name in names if name.endswith(".json") and "/" not in name}


def is_served(objects: ObjectStore, batch_id: str) -> bool:
    return objects.exists(served_entry(batch_id))


def _ready_at(objects: ObjectStore, batch_id: str) -> str | None:
    """The marker's write time, or None while the batch has no marker."""
    marker = f"{batch_prefix(batch_id)}/{READY_MARKER}"
    for item in objects.list_modified(batch_prefix(batch_id)):
        if item.key == marker:
            # Whole seconds, S3's resolution, so both backends order markers of one second by id.
            return item.modified.astimezone(UTC).replace(microsecond=0).isoformat()
    return None


def scan_batches(objects: ObjectStore) -> BatchScan:
    """Sort every folder under ``batches/`` into ready (oldest first), waiting, skipped or served.

    Served batches are known from the ledger alone, so a run lists only the folders of batches not
    served yet, never the images of old ones. A folder whose name is not a valid batch id is skipped
    with the reason, never an error: one bad upload must not stop the batches behind it.
    """
    served = served_batches(objects)
    ready: list[ReadyBatch] = []
    waiting: list[str] = []
    skipped: list[SkippedBatch] = []
    for name in objects.list_folders(BATCHES):
        if (problem := batch_id_problem(name)) is not None:
            skipped.append(SkippedBatch(name, problem))
        elif name in served:
            continue
        elif (ready_at := _ready_at(objects, name)) is None:
            waiting.append(name)
        else:
            ready.append(ReadyBatch(name, batch_prefix(name), ready_at))
    ready.sort(key=lambda batch: (batch.ready_at, batch.batch_id))
    for item in skipped:
        log.warning("batches/%s is never served: %s", item.name, item.reason)
    return BatchScan(ready=ready, waiting=waiting, skipped=skipped, n_served=len(served))


def next_batch(objects: ObjectStore) -> ReadyBatch | None:
    """The oldest complete batch never served, or None: nothing to serve (the run can end at once)."""
    return scan_batches(objects).next


def claim_next_batch(objects: ObjectStore, run_id: str, *, now: datetime | None = None) -> Claim | None:
    """Reserve the oldest complete unserved batch for ``run_id``; None when there is none left.

    A batch another run claimed between the scan and the claim is passed over for the next one, so
    two scheduled runs at once serve two batches, or one and nothing, never one batch twice.
    """
    for batch in scan_batches(objects).ready:
        entry = ServedEntry(batch.batch_id, run_id, _iso(now), serve=1, named=False)
        if objects.put_if_absent(served_entry(batch.batch_id), entry.to_json().encode()):
            return Claim(batch=batch, entry=entry)
        log.info("batch %s was claimed by another run; trying the next", batch.batch_id)
    return None


def claim_named_batch(objects: ObjectStore, batch_id: str, run_id: str, *, now: datetime | None = None) -> ServedEntry:
    """Record that ``run_id`` serves the batch it named, whether or not it was served before.

    The marker is not required: a person who names a batch takes responsibility for it being
    complete. A first serve takes the claim, so the scheduler never serves the batch again; a later
    serve takes the next free number under ``ledger/served-again/<id>/`` (create-only, so two named
    runs at once get two numbers).
    """
    check_batch_id(batch_id)
    first = ServedEntry(batch_id, run_id, _iso(now), serve=1, named=True)
    if objects.put_if_absent(served_entry(batch_id), first.to_json().encode()):
        return first
    serve = 2 + len(objects.list(served_again_prefix(batch_id)))
    while True:
        entry = ServedEntry(batch_id, run_id, first.time, serve=serve, named=True)
        if objects.put_if_absent(served_again_entry(batch_id, serve), entry.to_json().encode()):
            return entry
        serve += 1


def serves_of(objects: ObjectStore, batch_id: str) -> list[ServedEntry]:
    """Every serve of the batch the ledger holds, first serve first ([] if it was never served)."""
    if not is_served(objects, batch_id):
        return []
    again = [ServedEntry.from_json(objects.get_bytes(key)) for key in objects.list(served_again_prefix(batch_id))]
    first = ServedEntry.from_json(objects.get_bytes(served_entry(batch_id)))
    return [first, *sorted(again, key=lambda entry: entry.serve)]
