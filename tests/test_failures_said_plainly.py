"""A failure names what failed (the file, the parameter) and what to do, instead of an error from deep
inside a library that hides its cause.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftloop.errors import UserError
from driftloop.layout import ParameterNames
from driftloop.local.cli import main
from driftloop.local.runner import LocalSystem
from driftloop.records import TrainRecord, read_record
from driftloop.stores.params import SqliteParameterStore

pytestmark = pytest.mark.faults  # the fault campaign: docs/reliability.md

NAMES = ParameterNames()


# --------------------------------------------------------------------------------- the parameters
def full_disk(store: SqliteParameterStore) -> None:
    """Make the store's disk full: the database may not grow by one page."""
    connect = store._connect

    def connect_to_a_full_disk() -> sqlite3.Connection:
        db = connect()
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        db.execute(f"PRAGMA max_page_count = {pages}")
        return db

    store._connect = connect_to_a_full_disk  # type: ignore[method-assign]


def test_a_full_disk_under_the_parameter_store_says_so_and_what_to_do(tmp_path: Path) -> None:
    store = SqliteParameterStore(tmp_path / "parameters.sqlite")
    store.put("/driftloop/serve/latest", "{}")
    full_disk(store)
    with pytest.raises(UserError) as failed:
        for n in range(100):
            store.put(f"/driftloop/filler/{n}", "x" * 4000)
    assert str(failed.value) == (f"parameter store {tmp_path / 'parameters.sqlite'}: database or disk is full: "
                                 "free space on the disk that holds it (or use a work folder on another disk), "
                                 "then run again")


def test_a_parameter_that_is_not_a_record_is_named_with_what_to_do(tmp_path: Path) -> None:
    store = SqliteParameterStore(tmp_path / "parameters.sqlite")
    store.put(NAMES.train_latest, "{garbage")
    with pytest.raises(UserError) as failed:
        read_record(store, NAMES.train_latest, TrainRecord)
    message = str(failed.value)
    assert message.startswith(f"parameter /driftloop/train/latest in SQLite file {tmp_path / 'parameters.sqlite'} "
                              "is not a TrainRecord (TrainRecord: not JSON: Expecting property name")
    assert message.endswith("a run of the train pipeline writes a new version; or put back a good one "
                            "(the parameter keeps every version)")


# ---------------------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained classifier of three classes, saved as training saves it, with its metrics.json."""
    from driftloop.ml.model_io import save_model
    from driftloop.ml.models import build_model
    from driftloop.pipelines import TRAIN_METRICS_FILE

    folder = tmp_path_factory.mktemp("model")
    classes = ["cat", "dog", "fox"]
    save_model(build_model("small_cnn", image_size=16, n_classes=3), classes, folder)
    metrics = {"val_accuracy": 0.9, "val_loss": 0.3, "epochs": 1, "best_epoch": 1, "wall_time_s": 1.0, "n_train": 9,
               "n_val": 3, "n_params": 1, "classes": classes, "trained_on": "data/original", "config": {}}
    (folder / TRAIN_METRICS_FILE).write_text(json.dumps(metrics))
    return folder


def copy_of(folder: Path, into: Path) -> Path:
    for path in folder.iterdir():
        (into / path.name).write_bytes(path.read_bytes())
    return into


def test_a_truncated_model_file_is_named(model_dir: Path, tmp_path: Path) -> None:
    from driftloop.ml.model_io import load_model

    damaged = copy_of(model_dir, tmp_path)
    (damaged / "model.keras").write_bytes((damaged / "model.keras").read_bytes()[:1000])
    with pytest.raises(UserError, match=rf"^cannot load the model {damaged / 'model.keras'} \(.*\): the file is "
                                        r"damaged or incomplete; train a model again"):
        load_model(damaged)


def test_classes_in_another_order_than_training_are_refused(model_dir: Path, tmp_path: Path) -> None:
    from driftloop.ml.model_io import load_model

    assert load_model(model_dir).classes == ["cat", "dog", "fox"]
    reversed_classes = copy_of(model_dir, tmp_path)
    (reversed_classes / "classes.json").write_text(json.dumps(["fox", "dog", "cat"]))
    with pytest.raises(UserError, match=r"names the classes \['fox', 'dog', 'cat'\] but the model was trained on "
                                        r"\['cat', 'dog', 'fox'\]"):
        load_model(reversed_classes)


# ---------------------------------------------------------------------------------- the work folder
def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write: by its mode, or (as root, whom modes do not stop) a read-only mount."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        return folder
    if os.path.isdir("/proc/sys") and not os.access("/proc/sys", os.W_OK):
        return Path("/proc/sys")
    pytest.skip("no read-only folder for root here")


def test_a_work_folder_that_is_a_file_or_read_only_is_a_users_error(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    (tmp_path / "batch").mkdir()
    assert main(["serve", "--input", str(tmp_path / "batch"), "--workdir", str(a_file)]) == 2
    assert capsys.readouterr().err == (f"driftloop: the work folder {a_file} is a file, not a folder: give --workdir "
                                       "a folder (it is made if missing)\n")
    with pytest.raises(UserError, match="cannot make the work folder .*: give --workdir a folder you can write to"):
        LocalSystem(a_file / "W")
    with pytest.raises(UserError, match="is read-only: give --workdir a folder you can write to"):
        LocalSystem(read_only_folder(tmp_path))


def test_serving_a_folder_without_images_copies_nothing_and_says_so(tmp_path: Path) -> None:
    """``driftloop serve --input /etc``: nothing of it reaches the store."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "shadow").write_text("root:$6$secret")
    (etc / "hosts").write_text("127.0.0.1 localhost")
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_")}
    done = subprocess.run([sys.executable, "-m", "driftloop.local.cli", "serve", "--input", "etc", "--workdir", "W"],
                          cwd=tmp_path, env={**env, "PYTHONPATH": str(Path(__file__).parents[1])},
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("driftloop: no images in etc, nothing was copied: of its 2 entries none is an image")
    assert not (tmp_path / "W" / "store" / "batches").exists()
    assert not [p for p in (tmp_path / "W").rglob("*") if p.is_file() and p.read_bytes().startswith(b"root:$6$")]


# --------------------------------------------------------------------------------- the object store
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB file system (a tmpfs; mounting one needs root, which CI has)."""
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_under_the_object_store_says_so_and_keeps_no_half_object(small_disk: Path) -> None:
    from driftloop.stores.objects import LocalObjectStore, StoreFull

    store = LocalObjectStore(small_disk / "store")
    store.put_bytes("runs/serve/s1/small", b"kept")
    with pytest.raises(StoreFull, match=r"no space left on the disk writing .*runs/serve/s1/big: free space"):
        store.put_bytes("runs/serve/s1/big", os.urandom(1024 * 1024))
    with pytest.raises(StoreFull, match="nothing half-written was kept"):
        store.put_if_absent("runs/serve/s2/claim.json", os.urandom(1024 * 1024))
    assert store.list("runs") == ["runs/serve/s1/small"]
    assert sorted(p.name for p in (small_disk / "store" / "runs" / "serve" / "s1").iterdir()) == ["small"]
