"""Batch intake on both backends: a half-uploaded batch is never served, no batch is served twice by
the scheduler, a named run serves again and the ledger says so, bad ids are skipped with a reason."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from driftloop import intake
from driftloop.intake import ServedEntry
from driftloop.layout import batch_marker, served_again_entry, served_entry
from driftloop.stores.objects import ObjectStore

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def upload(objects: ObjectStore, batch_id: str, *, ready: bool = True, images: int = 2) -> None:
    for i in range(images):
        objects.put_bytes(f"batches/{batch_id}/cats/{i:03d}.jpg", b"jpeg")
    if ready:
        objects.put_bytes(f"batches/{batch_id}/_READY", b"")  # spelled out: bad ids get a marker too


def test_nothing_to_serve_when_batches_is_empty(objects: ObjectStore) -> None:
    assert intake.next_batch(objects) is None
    assert intake.claim_next_batch(objects, "run-1") is None
    assert objects.list() == []  # a run with nothing to serve writes nothing


def test_a_half_uploaded_batch_is_not_served_until_its_marker_is_there(objects: ObjectStore) -> None:
    upload(objects, "b1", ready=False)
    objects.put_bytes("batches/b1/cats/_READY", b"")  # a marker deeper down does not count
    scan = intake.scan_batches(objects)
    assert scan.ready == [] and scan.waiting == ["b1"] and scan.next is None
    assert intake.claim_next_batch(objects, "run-1") is None

    objects.put_bytes(batch_marker("b1"), b"")
    batch = intake.next_batch(objects)
    assert batch is not None and (batch.batch_id, batch.prefix) == ("b1", "batches/b1")


def test_batches_are_served_oldest_marker_first_then_by_id(objects: ObjectStore) -> None:
    upload(objects, "c")
    time.sleep(1.1)  # S3 times have a resolution of one second
    upload(objects, "b")
    upload(objects, "a")
    upload(objects, "d", ready=False)
    scan = intake.scan_batches(objects)
    ready = {batch.batch_id: batch.ready_at for batch in scan.ready}
    assert all(datetime.fromisoformat(at).microsecond == 0 for at in ready.values())  # whole seconds on both
    # a's marker is later than b's or, written within the same second, comes first by id.
    expected = ["c", "a", "b"] if ready["a"] == ready["b"] else ["c", "b", "a"]
    assert [batch.batch_id for batch in scan.ready] == expected
    assert ready["c"] < ready["b"] <= ready["a"]
    assert scan.waiting == ["d"]


def test_scheduled_claims_serve_each_batch_once_and_then_nothing(objects: ObjectStore) -> None:
    upload(objects, "b1")
    upload(objects, "b2")
    first = intake.claim_next_batch(objects, "run-1", now=NOW)
    second = intake.claim_next_batch(objects, "run-2", now=NOW)
    assert first is not None and second is not None
    assert {first.batch.batch_id, second.batch.batch_id} == {"b1", "b2"}
    assert intake.claim_next_batch(objects, "run-3", now=NOW) is None
    assert first.entry == ServedEntry(first.batch.batch_id, "run-1", NOW.isoformat(), serve=1, named=False)
    assert ServedEntry.from_json(objects.get_bytes(served_entry(first.batch.batch_id))) == first.entry
    assert intake.served_batches(objects) == {"b1", "b2"}
    assert intake.scan_batches(objects).n_served == 2


def test_racing_runs_never_claim_one_batch_twice(objects: ObjectStore) -> None:
    for name in ("b1", "b2", "b3"):
        upload(objects, name, images=1)
    with ThreadPoolExecutor(max_workers=8) as pool:
        claims = list(pool.map(lambda i: intake.claim_next_batch(objects, f"run-{i}"), range(8)))
    won = [claim for claim in claims if claim is not None]
    assert sorted(claim.batch.batch_id for claim in won) == ["b1", "b2", "b3"]
    for claim in won:
        assert ServedEntry.from_json(objects.get_bytes(served_entry(claim.batch.batch_id))).run_id == claim.entry.run_id


def test_a_named_run_serves_again_and_the_ledger_keeps_every_serve(objects: ObjectStore) -> None:
    upload(objects, "b1")
    claim = intake.claim_next_batch(objects, "run-1", now=NOW)
    assert claim is not None
    again = intake.claim_named_batch(objects, "b1", "run-2", now=NOW)
    third = intake.claim_named_batch(objects, "b1", "run-3", now=NOW)
    assert (again.serve, again.named, third.serve) == (2, True, 3)
    assert objects.exists(served_again_entry("b1", 2)) and objects.exists(served_again_entry("b1", 3))
    assert [(e.run_id, e.serve) for e in intake.serves_of(objects, "b1")] == [("run-1", 1), ("run-2", 2), ("run-3", 3)]
    assert intake.next_batch(objects) is None  # named serves never put a batch back in the queue


def test_a_named_first_serve_takes_the_batch_out_of_the_schedule(objects: ObjectStore) -> None:
    upload(objects, "b1")
    upload(objects, "b2", ready=False)  # a named run does not wait for the marker
    assert intake.claim_named_batch(objects, "b2", "run-1", now=NOW).serve == 1
    claim = intake.claim_next_batch(objects, "run-2")
    assert claim is not None and claim.batch.batch_id == "b1"
    assert intake.claim_next_batch(objects, "run-3") is None
    assert intake.serves_of(objects, "never") == []


def test_folders_that_are_not_batch_ids_are_skipped_with_a_reason(objects: ObjectStore) -> None:
    upload(objects, "my batch")
    upload(objects, "_hidden")
    upload(objects, "good")
    scan = intake.scan_batches(objects)
    assert [batch.batch_id for batch in scan.ready] == ["good"]
    assert sorted(item.name for item in scan.skipped) == ["_hidden", "my batch"]
    assert all("bad batch id" in item.reason for item in scan.skipped)
    with pytest.raises(ValueError, match="bad batch id"):
        intake.claim_named_batch(objects, "../escape", "run-1")
