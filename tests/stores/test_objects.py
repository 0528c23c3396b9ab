"""Object store behaviour, identical for a local folder and S3 (moto server over HTTP)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.moto_server import MotoServer

from driftloop.layout import artifact_prefix, data_prefix
from driftloop.stores.objects import LocalObjectStore, ObjectNotFound, ObjectStore, S3ObjectStore

from .conftest import BUCKET

BAD_KEYS = ["", "/abs/key", "../outside", "a/../../outside", "a//b", "./a", "a/", "a\\b", "a/.partial-x"]


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_bytes_round_trip_and_overwrite(objects: ObjectStore) -> None:
    key = artifact_prefix("train", "run-1", "model") + "/model.keras"
    objects.put_bytes(key, b"\x00first")
    assert objects.get_bytes(key) == b"\x00first"
    objects.put_bytes(key, b"second")
    assert objects.get_bytes(key) == b"second"
    objects.put_bytes("empty", b"")
    assert objects.get_bytes("empty") == b""


def test_put_if_absent_creates_once_and_never_overwrites(objects: ObjectStore) -> None:
    assert objects.put_if_absent("ledger/served/b1.json", b"first")
    assert not objects.put_if_absent("ledger/served/b1.json", b"second")
    assert objects.get_bytes("ledger/served/b1.json") == b"first"
    assert objects.list("ledger") == ["ledger/served/b1.json"]  # nothing left behind by the refused write


def test_put_if_absent_lets_one_of_many_racing_writers_win(objects: ObjectStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: objects.put_if_absent("leases/train", str(i).encode()), range(16)))
    assert won.count(True) == 1
    assert objects.get_bytes("leases/train") == str(won.index(True)).encode()


def test_copy_puts_the_object_at_a_second_key_and_keeps_the_first(objects: ObjectStore) -> None:
    objects.put_bytes("batches/b1/cats/1.png", b"pixels")
    objects.copy("batches/b1/cats/1.png", "data/retrain-r1/train/cats/b1__1.png")
    assert objects.get_bytes("data/retrain-r1/train/cats/b1__1.png") == b"pixels"
    objects.put_bytes("batches/b1/cats/1.png", b"changed")
    assert objects.get_bytes("data/retrain-r1/train/cats/b1__1.png") == b"pixels"
    with pytest.raises(ObjectNotFound, match="batches/b1/missing.png"):
        objects.copy("batches/b1/missing.png", "data/x")


def test_missing_key_names_the_key(objects: ObjectStore, tmp_path: Path) -> None:
    objects.put_bytes("runs/train/r1/model/other", b"x")
    with pytest.raises(ObjectNotFound, match="runs/train/r1/model/model.keras"):
        objects.get_bytes("runs/train/r1/model/model.keras")
    target = tmp_path / "download" / "model.keras"
    with pytest.raises(LookupError, match="runs/train/r1/model/model.keras"):
        objects.get_file("runs/train/r1/model/model.keras", target)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


def test_file_round_trip_creates_parents(objects: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(bytes(range(256)) * 40)
    objects.put_file("batches/b1/image.png", source)
    target = tmp_path / "a" / "b" / "image.png"
    objects.get_file("batches/b1/image.png", target)
    assert target.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["image.png"]


def test_a_file_got_from_the_store_keeps_its_bytes_when_the_object_is_put_again(
    objects: ObjectStore, tmp_path: Path,
) -> None:
    objects.put_bytes("batches/b1/image.png", b"first")
    got = tmp_path / "in" / "image.png"
    objects.get_file("batches/b1/image.png", got)
    objects.put_bytes("batches/b1/image.png", b"second")
    assert got.read_bytes() == b"first"
    objects.get_file("batches/b1/image.png", got)  # over an earlier download
    got.unlink()
    assert objects.get_bytes("batches/b1/image.png") == b"second"
    assert list(got.parent.iterdir()) == []


def test_the_local_store_hands_out_links_and_copies_where_links_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = LocalObjectStore(tmp_path / "store")
    store.put_bytes("batches/b1/image.png", b"pixels")
    store.get_file("batches/b1/image.png", tmp_path / "linked.png")
    stored = tmp_path / "store" / "batches" / "b1" / "image.png"
    assert (tmp_path / "linked.png").stat().st_ino == stored.stat().st_ino

    def no_links(source: object, target: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("os.link", no_links)
    store.get_file("batches/b1/image.png", tmp_path / "copied.png")
    assert (tmp_path / "copied.png").read_bytes() == b"pixels"
    assert (tmp_path / "copied.png").stat().st_ino != (tmp_path / "linked.png").stat().st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copied.png", "linked.png", "store"]


def test_list_is_recursive_sorted_and_folder_scoped(objects: ObjectStore) -> None:
    keys = [
        "data/stage-10/test/chow/1.png",
        "data/stage-1/train/chow/2.png",
        "data/stage-1/train/chow/1.png",
        "data/stage-1/test/collie/1.png",
        "runs/serve/r1/predictions/predictions.csv",
    ]
    for key in keys:
        objects.put_bytes(key, key.encode())
    assert objects.list() == sorted(keys)
    stage_1 = ["data/stage-1/test/collie/1.png", "data/stage-1/train/chow/1.png", "data/stage-1/train/chow/2.png"]
    assert objects.list("data/stage-1") == stage_1  # not data/stage-10
    assert objects.list("data/stage-1/") == stage_1
    assert objects.list(data_prefix("stage-1", "train")) == stage_1[1:]
    assert objects.list("data/stage-2") == []
    assert objects.list("data/stage-1/train/chow/1.png") == []  # a key is not a folder


def test_exists(objects: ObjectStore) -> None:
    objects.put_bytes("runs/train/r1/detector/config.json", b"{}")
    assert objects.exists("runs/train/r1/detector/config.json")
    assert not objects.exists("runs/train/r1/detector/other.json")
    assert not objects.exists("runs/train/r1/detector")  # a folder is not an object


def test_upload_and_download_dir_round_trip(objects: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "source"
    for relative, data in {
        "classes.json": b"[]",
        "model/model.keras": b"weights" * 1000,
        "model/assets/deep/er/vocab.txt": b"a\nb\n",
        "empty.bin": b"",
    }.items():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_bytes(data)
    (source / "empty-folder").mkdir()

    assert objects.upload_dir(source, "runs/train/r1/model") == 4
    assert objects.list("runs/train/r1") == [
        "runs/train/r1/model/classes.json",
        "runs/train/r1/model/empty.bin",
        "runs/train/r1/model/model/assets/deep/er/vocab.txt",
        "runs/train/r1/model/model/model.keras",
    ]
    target = tmp_path / "target"
    assert objects.download_dir("runs/train/r1/model/", target) == 4
    assert files_under(target) == files_under(source)
    assert objects.download_dir("runs/train/nothing", tmp_path / "none") == 0
    with pytest.raises(NotADirectoryError):
        objects.upload_dir(source / "classes.json", "x")


def test_uri_round_trip(objects: ObjectStore) -> None:
    key = "runs/serve/r2/drift_report/report.json"
    uri = objects.uri(key)
    assert objects.key_from_uri(uri) == key
    foreign = ["s3://another-bucket/" + key, "file:///elsewhere/" + key]
    if isinstance(objects, S3ObjectStore):
        foreign.append(key)
    for uri in foreign:
        with pytest.raises(ValueError, match="not in"):
            objects.key_from_uri(uri)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_rejects_keys_that_are_not_plain_relative_paths(objects: ObjectStore, tmp_path: Path, key: str) -> None:
    before = files_under(tmp_path)
    with pytest.raises(ValueError, match="object key"):
        objects.put_bytes(key, b"x")
    with pytest.raises(ValueError, match="object key"):
        objects.get_bytes(key)
    with pytest.raises(ValueError, match="object key"):
        objects.exists(key)
    assert files_under(tmp_path) == before
    assert objects.list() == []


def test_local_uris_are_relative_to_the_store_so_a_moved_store_still_resolves_them(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    store.put_bytes("a/b.txt", b"hi")
    uri = store.uri("a/b.txt")
    assert uri == "a/b.txt"
    (tmp_path / "store").rename(tmp_path / "moved")
    moved = LocalObjectStore(tmp_path / "moved")
    assert moved.get_bytes(moved.key_from_uri(uri)) == b"hi"


def test_local_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    source = tmp_path / "source.bin"
    source.write_bytes(b"data")
    store.put_bytes("a/b/c.bin", b"1")
    store.put_file("a/b/d.bin", source)
    store.get_file("a/b/d.bin", tmp_path / "out" / "d.bin")
    assert sorted(p.name for p in (tmp_path / "store").rglob("*")) == ["a", "b", "c.bin", "d.bin"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["d.bin"]


def test_local_write_killed_midway_keeps_the_old_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalObjectStore(tmp_path / "store")
    store.put_bytes("runs/train/r1/model/model.keras", b"complete old model")
    source = tmp_path / "new.keras"
    source.write_bytes(b"new model " * 1000)

    def copy_half_then_die(src: object, dst: object) -> None:
        dst.write(b"new model ")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfileobj", copy_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        store.put_file("runs/train/r1/model/model.keras", source)
    with pytest.raises(KeyboardInterrupt):
        store.put_file("runs/train/r1/model/new.keras", source)
    monkeypatch.undo()

    assert store.get_bytes("runs/train/r1/model/model.keras") == b"complete old model"
    assert store.list() == ["runs/train/r1/model/model.keras"]
    assert [p.name for p in (tmp_path / "store/runs/train/r1/model").iterdir()] == ["model.keras"]


def test_local_list_skips_writes_in_progress(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    store.put_bytes("a/b.bin", b"x")
    (tmp_path / "store/a/.partial-abc123").write_bytes(b"half")  # another process mid-write
    assert store.list() == ["a/b.bin"]


@pytest.mark.emulator
def test_s3_list_ignores_console_folder_markers(moto_reset: MotoServer) -> None:
    client = moto_reset.client("s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="data/stage-1/", Body=b"")
    store = S3ObjectStore(BUCKET, client)
    store.put_bytes("data/stage-1/test/a.png", b"png")
    assert store.list("data") == ["data/stage-1/test/a.png"]
    assert store.uri("data/stage-1/test/a.png") == f"s3://{BUCKET}/data/stage-1/test/a.png"


@pytest.mark.emulator
def test_s3_download_dir_refuses_keys_that_escape(moto_reset: MotoServer, tmp_path: Path) -> None:
    client = moto_reset.client("s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="runs/x/../../../escaped.txt", Body=b"evil")
    assert S3ObjectStore(BUCKET, client).list("runs/x") == ["runs/x/../../../escaped.txt"]
    with pytest.raises(ValueError, match="object key"):
        S3ObjectStore(BUCKET, client).download_dir("runs/x", tmp_path / "a" / "b")
    assert files_under(tmp_path) == {}


@pytest.mark.emulator
def test_s3_default_client_uses_the_environment(moto_env: MotoServer) -> None:
    moto_env.reset()
    moto_env.client("s3").create_bucket(Bucket=BUCKET)
    S3ObjectStore(BUCKET).put_bytes("k", b"v")
    assert moto_env.client("s3").get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"v"
