"""Listing with write times and listing folders one level deep, identical on a folder and on S3 (moto)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from driftloop.stores.objects import ObjectStore


def test_list_modified_gives_every_key_of_list_with_its_write_time(objects: ObjectStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)  # S3 times are whole seconds
    keys = ["batches/b1/cats/1.jpg", "batches/b1/_READY", "batches/b10/x.jpg", "runs/serve/r1/p.csv"]
    for key in keys:
        objects.put_bytes(key, b"x")
    listed = objects.list_modified("batches/b1")
    assert [item.key for item in listed] == objects.list("batches/b1") == ["batches/b1/_READY", "batches/b1/cats/1.jpg"]
    after = datetime.now(UTC) + timedelta(seconds=2)
    assert all(item.modified.tzinfo is not None and before <= item.modified <= after for item in listed)
    assert objects.list_modified("nothing/here") == []


def test_list_modified_moves_on_when_an_object_is_rewritten(objects: ObjectStore) -> None:
    objects.put_bytes("batches/b1/_READY", b"")
    (first,) = objects.list_modified("batches/b1")
    time.sleep(1.1)  # S3's LastModified has a resolution of one second
    objects.put_bytes("batches/b1/_READY", b"")
    (second,) = objects.list_modified("batches/b1")
    assert second.modified > first.modified


def test_list_folders_is_one_level_sorted_and_scoped(objects: ObjectStore) -> None:
    for key in ["batches/b2/cats/deep/1.jpg", "batches/b1/1.jpg", "batches/b1/_READY", "batches/loose.txt",
                "batches-old/x/1.jpg", "labels/b1/a.csv"]:
        objects.put_bytes(key, b"x")
    assert objects.list_folders("batches") == ["b1", "b2"]  # not loose.txt, not batches-old
    assert objects.list_folders("batches/") == ["b1", "b2"]
    assert objects.list_folders("batches/b2") == ["cats"]
    assert objects.list_folders() == ["batches", "batches-old", "labels"]
    assert objects.list_folders("missing") == []
