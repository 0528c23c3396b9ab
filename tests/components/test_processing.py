"""The processing component: decoding rules, bad input, shards, manifest, modes and the CLI."""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from driftloop.components import processing
from driftloop.components.entrypoint import Invocation
from driftloop.config import ProcessingConfig
from driftloop.hosts import Hosts
from driftloop.ml.images import decode_file
from driftloop.ml.shards import UNKNOWN_LABEL, iter_shards, load_all, read_summary, shard_paths
from driftloop.pipelines import MANIFEST_FILE

SIZE = 8


def noise(seed: int, size: int = 16) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def write(path: Path, image: Image.Image, **save: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` and whose pixel data is garbage."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"garbage") + chunk(b"IEND", b""))
    return path


def decode(path: Path, max_pixels: int = 40_000_000) -> np.ndarray:
    result = decode_file(path, SIZE, max_pixels)
    assert result.image is not None, result.reason
    assert result.image.shape == (SIZE, SIZE, 3) and result.image.dtype == np.uint8
    return result.image


def reason(path: Path, max_pixels: int = 40_000_000) -> str:
    result = decode_file(path, SIZE, max_pixels)
    assert result.image is None
    return result.reason


def manifest(folder: Path) -> list[dict[str, str]]:
    with (folder / MANIFEST_FILE).open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        return list(csv.DictReader(handle))


def config(**values: int) -> ProcessingConfig:
    return ProcessingConfig(**{"image_size": SIZE, "shard_size": 4, **values})


# --- colour modes, orientation, geometry -------------------------------------------------------


def palette_image() -> Image.Image:
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    return image


@pytest.mark.parametrize(
    ("name", "image", "save", "expected"),
    [
        ("grey.png", Image.new("L", (16, 16), 77), {}, (77, 77, 77)),
        ("palette.png", palette_image(), {}, (10, 200, 30)),
        ("bilevel.bmp", Image.new("1", (16, 16), 1), {}, (255, 255, 255)),
        ("transparent.png", Image.new("RGBA", (16, 16), (0, 0, 0, 0)), {}, (255, 255, 255)),
        ("opaque.png", Image.new("RGBA", (16, 16), (200, 0, 0, 255)), {}, (200, 0, 0)),
        ("grey-alpha.png", Image.new("LA", (16, 16), (0, 0)), {}, (255, 255, 255)),
        ("palette-transparent.gif", Image.new("P", (16, 16), 0), {"transparency": 0}, (255, 255, 255)),
        # 128 * 257: scaled to 128; Pillow's own conversion would clip it to 255.
        ("sixteen-bit.png", Image.fromarray(np.full((16, 16), 32896, np.uint16)), {}, (128, 128, 128)),
        ("sixteen-bit.tif", Image.fromarray(np.full((16, 16), 65535, np.uint16)), {}, (255, 255, 255)),
    ],
)
def test_colour_modes_become_rgb(tmp_path: Path, name: str, image: Image.Image, save: dict, expected: tuple) -> None:
    pixels = decode(write(tmp_path / name, image, **save))
    assert np.array_equal(pixels, np.broadcast_to(np.array(expected, np.uint8), pixels.shape))


def test_cmyk_and_grey_jpegs_become_rgb(tmp_path: Path) -> None:
    cmyk = decode(write(tmp_path / "cmyk.jpg", Image.new("CMYK", (64, 48), (0, 255, 255, 0)), quality=95))
    assert np.abs(cmyk.astype(int) - [255, 0, 0]).max() <= 8
    grey = decode(write(tmp_path / "grey.jpg", Image.new("L", (300, 200), 90), quality=95))
    assert np.abs(grey.astype(int) - 90).max() <= 3


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (16, 16), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 8, 16))  # red left half, as the sensor saw it
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise: the red half ends up on top
    rotated = decode(write(tmp_path / "phone.png", stored, exif=exif))
    upright = decode(write(tmp_path / "upright.png", stored.transpose(Image.Transpose.ROTATE_270)))
    assert np.array_equal(rotated, upright)
    assert tuple(rotated[0, SIZE // 2]) == (255, 0, 0) and tuple(rotated[-1, SIZE // 2]) == (0, 0, 255)


def test_non_square_images_are_centre_cropped(tmp_path: Path) -> None:
    wide = Image.new("RGB", (48, 16), (0, 255, 0))
    wide.paste((255, 0, 0), (16, 0, 32, 16))  # only the middle third survives the crop
    assert np.array_equal(decode(write(tmp_path / "wide.png", wide)), np.full((SIZE, SIZE, 3), [255, 0, 0], np.uint8))


# --- bad input ----------------------------------------------------------------------------------


def test_bad_files_are_reasons_not_crashes(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not an image\n")
    png = write(tmp_path / "full.png", noise(1, 64)).read_bytes()
    jpeg = write(tmp_path / "full.jpg", noise(2, 64), quality=95).read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    assert reason(empty).startswith("empty:")
    assert reason(text).startswith("unreadable:")
    assert reason(tmp_path / "cut.png").startswith("unreadable:")
    assert reason(tmp_path / "cut.jpg").startswith("unreadable:")


def test_oversized_images_are_rejected_from_the_header(tmp_path: Path) -> None:
    # 64 Mpx is under Pillow's own bomb limit: our header check must stop it before decoding the
    # garbage pixel data (which would otherwise be "unreadable").
    assert reason(png_header_only(tmp_path / "big.png", 8000, 8000)).startswith("too_large: 8000x8000")
    # 400 Mpx trips Pillow's DecompressionBombError inside Image.open: still a skip, same code.
    assert reason(png_header_only(tmp_path / "bomb.png", 20000, 20000)).startswith("too_large:")
    small = write(tmp_path / "small.png", noise(3, 100))
    assert reason(small, max_pixels=9_999).startswith("too_large: 100x100")
    decode(small, max_pixels=10_000)


def make_messy_folder(root: Path) -> dict[str, str]:
    """Good and bad files in two classes; returns the expected status code per file."""
    expected = {}
    for i in range(5):
        for name in ("cat", "dog"):
            write(root / name / f"{i:02d}.png", noise(i + 10 * len(name)))
            expected[f"{name}/{i:02d}.png"] = "ok"
    write(root / "dog" / "été 1,2.png", noise(7))  # non-ASCII, space and comma survive the CSV
    expected["dog/été 1,2.png"] = "ok"
    (root / "cat" / "00-empty.jpg").write_bytes(b"")
    (root / "cat" / "03-text.jpg").write_text("hello")
    (root / "dog" / "notes.txt").write_text("hello")
    (root / "dog" / ".DS_Store").write_bytes(b"\0\1")
    (root / "dog" / "README").write_text("no extension")
    png_header_only(root / "dog" / "02-huge.png", 20000, 20000)
    write(root / ".cache" / "thumb.png", noise(99))
    write(root / "stray.png", noise(98))
    expected.update({
        "cat/00-empty.jpg": "empty", "cat/03-text.jpg": "unreadable", "dog/notes.txt": "not_image",
        "dog/.DS_Store": "hidden", "dog/README": "not_image", "dog/02-huge.png": "too_large",
        ".cache/thumb.png": "hidden", "stray.png": "no_class_folder",
    })
    return expected


def test_good_images_survive_bad_neighbours_and_manifest_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = make_messy_folder(tmp_path / "in")
    monkeypatch.setattr(processing, "MIN_WINDOW", 3)  # many windows, with skips inside each
    summary = processing.process_folder(tmp_path / "in", tmp_path / "out", config(), ["cat", "dog"], workers=1)

    rows = manifest(tmp_path / "out")
    assert [r["file"] for r in rows] == sorted(expected, key=lambda f: Path(f).parts)
    assert {r["file"]: (r["status"] == "ok" and "ok") or r["reason"].split(":")[0] for r in rows} == expected
    assert all(r["reason"] for r in rows if r["status"] == "skipped")
    shards = load_all(tmp_path / "out")
    good = [f for f, code in expected.items() if code == "ok"]
    assert sorted(shards.files.tolist()) == sorted(good)
    assert [("cat", "dog")[label] for label in shards.labels] == [f.split("/")[0] for f in shards.files]
    reference = decode(tmp_path / "in" / "dog" / "03.png")
    assert np.array_equal(shards.images[shards.files.tolist().index("dog/03.png")], reference)
    assert (summary.n_images, summary.n_skipped, summary.classes) == (11, 8, ["cat", "dog"])
    assert summary.extra["images_per_class"] == {"cat": 5, "dog": 6}
    assert summary.extra["skipped_by_code"] == {
        "empty": 1, "hidden": 2, "no_class_folder": 1, "not_image": 2, "too_large": 1, "unreadable": 1,
    }


def test_shards_respect_shard_size(tmp_path: Path) -> None:
    for i in range(10):
        write(tmp_path / "in" / "only" / f"{i}.png", noise(i))
    summary = processing.process_folder(tmp_path / "in", tmp_path / "out", config(), ["only"], workers=1)
    assert [len(s) for s in iter_shards(tmp_path / "out")] == [4, 4, 2]
    assert (summary.n_shards, summary.n_images) == (3, 10)
    assert read_summary(tmp_path / "out") == summary

    # A re-run into the same folder replaces the earlier shards rather than mixing with them.
    processing.process_folder(tmp_path / "in", tmp_path / "out", config(shard_size=10), ["only"], workers=1)
    assert [len(s) for s in iter_shards(tmp_path / "out")] == [10]


def test_pool_gives_the_same_shards_as_one_process(tmp_path: Path) -> None:
    make_messy_folder(tmp_path / "in")
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        processing.process_folder(tmp_path / "in", out, config(), ["cat", "dog"], workers=workers)
    one, two = load_all(tmp_path / "out1"), load_all(tmp_path / "out2")
    assert np.array_equal(one.images, two.images) and np.array_equal(one.labels, two.labels)
    assert one.files.tolist() == two.files.tolist()
    assert len(shard_paths(tmp_path / "out1")) == len(shard_paths(tmp_path / "out2")) == 3
    assert (tmp_path / "out1" / MANIFEST_FILE).read_bytes() == (tmp_path / "out2" / MANIFEST_FILE).read_bytes()


# --- nothing outside the batch is read ---------------------------------------------------------


def make_linked_folder(root: Path, outside: Path) -> dict[str, str]:
    """A labelled batch with two good images and every kind of entry that must not be read.

    ``outside`` is a valid image outside the batch (standing for /etc/passwd): if a link to it
    were followed, it would end up in the shards.
    """
    write(root / "cat" / "good.png", noise(1))
    write(root / "dog" / "good.png", noise(2))
    (root / "cat" / "passwd.png").symlink_to(outside)
    (root / "dog" / "up.png").symlink_to(Path("..") / ".." / outside.name)
    (root / "dog" / "dangling.png").symlink_to(root / "dog" / "gone.png")
    (root / "dog" / "x.png").mkdir()
    (root / "cat" / "again.png").symlink_to(root / "cat" / "good.png")  # inside the batch: read
    (root / "cat-link").symlink_to(root / "cat")
    os.mkfifo(root / "cat" / "pipe.png")
    return {
        "cat/again.png": "ok", "cat/good.png": "ok", "dog/good.png": "ok",
        "cat/passwd.png": "outside_root", "dog/up.png": "outside_root", "dog/dangling.png": "broken_link",
        "dog/x.png": "not_a_file", "cat-link": "linked_folder", "cat/pipe.png": "not_a_file",
    }


def codes(rows: list[dict[str, str]]) -> dict[str, str]:
    return {r["file"]: "ok" if r["status"] == "ok" else r["reason"].split(":")[0] for r in rows}


@pytest.fixture
def outside_image(tmp_path: Path) -> Path:
    return write(tmp_path / "passwd.png", Image.new("RGB", (16, 16), (250, 0, 0)))


def test_links_out_of_the_batch_are_skipped_and_every_skipped_entry_has_a_manifest_line(
    tmp_path: Path, outside_image: Path
) -> None:
    expected = make_linked_folder(tmp_path / "batch", outside_image)
    assert processing.class_folders(tmp_path / "batch") == ["cat", "dog"]  # not cat-link, not a folder x.png
    summary = processing.process_folder(tmp_path / "batch", tmp_path / "out", config(), ["cat", "dog"], workers=1)

    assert codes(manifest(tmp_path / "out")) == expected
    assert sorted(load_all(tmp_path / "out").files.tolist()) == ["cat/again.png", "cat/good.png", "dog/good.png"]
    assert (summary.n_images, summary.n_skipped) == (3, 6)
    assert summary.extra["skipped_by_code"] == {"broken_link": 1, "linked_folder": 1, "not_a_file": 2,
                                                "outside_root": 2}


def test_an_imported_batch_keeps_its_skipped_entries_in_the_manifest(tmp_path: Path, outside_image: Path) -> None:
    """Through the object store, as the local runner imports a batch: nothing outside is copied, all is listed."""
    from driftloop.stores.objects import LocalObjectStore

    expected = make_linked_folder(tmp_path / "batch", outside_image)
    store = LocalObjectStore(tmp_path / "store")
    assert store.upload_dir(tmp_path / "batch", "batches/b1") == 3
    stored = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert all(p.read_bytes() != outside_image.read_bytes() for p in stored)
    assert store.download_dir("batches/b1", tmp_path / "copy") == 4  # the three images and the record

    processing.process_folder(tmp_path / "copy", tmp_path / "out", config(), ["cat", "dog"], workers=1)
    assert codes(manifest(tmp_path / "out")) == expected


def test_a_file_whose_name_cannot_be_an_object_key_is_listed_not_imported(tmp_path: Path) -> None:
    from driftloop.stores.objects import LocalObjectStore

    write(tmp_path / "batch" / "good.png", noise(1))
    write(tmp_path / "batch" / "back\\slash.png", noise(2), format="PNG")
    store = LocalObjectStore(tmp_path / "store")
    assert store.upload_dir(tmp_path / "batch", "batches/b1") == 1
    store.download_dir("batches/b1", tmp_path / "copy")
    processing.process_folder(tmp_path / "copy", tmp_path / "out", config(), None, workers=1)
    assert codes(manifest(tmp_path / "out")) == {"back\\slash.png": "bad_name", "good.png": "ok"}


def test_an_import_copies_only_images_and_lists_the_rest(tmp_path: Path) -> None:
    """A user's folder as ``driftloop serve --input`` imports it: a name that is not UTF-8 is an image too."""
    from driftloop.files import image_name_reason
    from driftloop.stores.objects import LocalObjectStore

    batch = tmp_path / "batch"
    write(batch / "good.png", noise(1))
    write(Path(os.fsdecode(bytes(batch) + b"/caf\xe9.png")), noise(2))
    (batch / "notes.txt").write_text("not an image")
    write(batch / ".hidden.png", noise(3))
    store = LocalObjectStore(tmp_path / "store")
    assert store.upload_dir(batch, "batches/b1", screen=image_name_reason) == 2
    store.download_dir("batches/b1", tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == [".driftloop-not-imported.csv", "caf\udce9.png",
                                                                     "good.png"]
    processing.process_folder(tmp_path / "copy", tmp_path / "out", config(), None, workers=1)
    assert codes(manifest(tmp_path / "out")) == {".hidden.png": "hidden", "caf\udce9.png": "ok", "good.png": "ok",
                                                 "notes.txt": "not_image"}


def test_an_import_of_a_folder_without_images_copies_nothing(tmp_path: Path) -> None:
    """``driftloop serve --input /etc``: refused before a single file is copied into the store."""
    from driftloop.files import image_name_reason
    from driftloop.stores.objects import LocalObjectStore, NothingToImport

    etc = tmp_path / "etc"
    (etc / "ssh").mkdir(parents=True)
    for name in ("passwd", "shadow", "ssh/ssh_host_rsa_key", "hosts.conf"):
        (etc / name).write_text("secret")
    store = LocalObjectStore(tmp_path / "store")
    with pytest.raises(NothingToImport, match=f"^no images in {etc}, nothing was copied: of its 4 entries none is "
                                              "an image file"):
        store.upload_dir(etc, "batches/b1", screen=image_name_reason)
    assert not [p for p in (tmp_path / "store").rglob("*") if p.is_file()]


# --- modes and exit codes -----------------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = processing.main(argv)
    return code, capsys.readouterr().err


def serve_argv(batch: Path, out: Path, **settings: int) -> list[str]:
    return ["--mode", "serve", "--input-batch", str(batch), "--output-batch", str(out),
            "--settings", json.dumps({"image_size": SIZE, **settings})]


def train_argv(root: Path, out: Path) -> list[str]:
    return ["--mode", "train", "--input-train", str(root / "train"), "--input-val", str(root / "val"),
            "--output-train", str(out / "train"), "--output-val", str(out / "val"),
            "--settings", json.dumps({"image_size": SIZE})]


def test_serve_flat_batch_is_unlabelled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        write(tmp_path / "batch" / f"img{i}.jpg", noise(i), quality=90)
    assert run(serve_argv(tmp_path / "batch", tmp_path / "out"), capsys)[0] == 0
    summary, shards = read_summary(tmp_path / "out"), load_all(tmp_path / "out")
    assert (summary.classes, summary.labelled, summary.n_images) == ([], False, 3)
    assert shards.labels.tolist() == [UNKNOWN_LABEL] * 3
    assert shards.files.tolist() == ["img0.jpg", "img1.jpg", "img2.jpg"]


def test_serve_batch_with_class_folders_is_labelled_and_its_loose_files_are_served_unlabelled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("zebra", "ant"):
        write(tmp_path / "batch" / name / "a.png", noise(len(name)))
    write(tmp_path / "batch" / "loose.png", noise(0))
    assert run(serve_argv(tmp_path / "batch", tmp_path / "out"), capsys)[0] == 0
    summary, shards = read_summary(tmp_path / "out"), load_all(tmp_path / "out")
    assert (summary.classes, summary.labelled, summary.n_images) == (["ant", "zebra"], True, 3)
    assert dict(zip(shards.files.tolist(), shards.labels.tolist(), strict=True)) == {
        "ant/a.png": 0, "loose.png": UNKNOWN_LABEL, "zebra/a.png": 1}
    assert [r for r in manifest(tmp_path / "out") if r["file"] == "loose.png"] == [
        {"file": "loose.png", "class": "", "status": "ok", "reason": ""}]


def test_train_mode_gives_val_the_train_classes_and_skips_loose_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("a", "b", "c"):
        write(tmp_path / "data" / "train" / name / "1.png", noise(ord(name)))
    write(tmp_path / "data" / "val" / "c" / "1.png", noise(1))
    write(tmp_path / "data" / "val" / "loose.png", noise(2))  # training needs labels
    assert run(train_argv(tmp_path / "data", tmp_path / "out"), capsys)[0] == 0
    val = load_all(tmp_path / "out" / "val")
    assert read_summary(tmp_path / "out" / "val").classes == ["a", "b", "c"]
    assert val.labels.tolist() == [2]
    assert read_summary(tmp_path / "out" / "train").n_images == 3
    assert [(r["status"], r["reason"].split(":")[0]) for r in manifest(tmp_path / "out" / "val")
            if r["file"] == "loose.png"] == [("skipped", "no_class_folder")]


def test_val_class_unknown_to_train_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "data" / "train" / "a" / "1.png", noise(1))
    write(tmp_path / "data" / "val" / "zz" / "1.png", noise(2))
    code, err = run(train_argv(tmp_path / "data", tmp_path / "out"), capsys)
    assert code == 2 and "['zz']" in err and "Traceback" not in err


def test_empty_and_all_bad_and_missing_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, err = run(serve_argv(tmp_path / "empty", tmp_path / "out1"), capsys)
    assert code == 2 and "no usable images" in err and "no files" in err

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"")
    (tmp_path / "bad" / "b.png").write_text("text")
    (tmp_path / "bad" / "c.txt").write_text("text")
    code, err = run(serve_argv(tmp_path / "bad", tmp_path / "out2"), capsys)
    assert code == 2 and "all 3 file(s) were skipped (empty: 1, not_image: 1, unreadable: 1)" in err
    assert len(manifest(tmp_path / "out2")) == 3 and not (tmp_path / "out2" / "summary.json").exists()

    code, err = run(serve_argv(tmp_path / "nowhere", tmp_path / "out3"), capsys)
    assert code == 2 and "does not exist" in err and "nowhere" in err

    code, err = run(serve_argv(tmp_path / "bad", tmp_path / "out4", shard_size=0), capsys)
    assert code == 2 and "shard_size" in err


def test_cli_end_to_end_in_a_subprocess(tmp_path: Path) -> None:
    for name in ("a", "b"):
        for split in ("train", "val"):
            write(tmp_path / "data" / split / name / "1.png", noise(ord(name)))
    done = subprocess.run(
        [sys.executable, "-m", "driftloop.components.processing", *train_argv(tmp_path / "data", tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    for split in ("train", "val"):
        assert read_summary(tmp_path / "out" / split).n_images == 2
        assert len(manifest(tmp_path / "out" / split)) == 2


def test_a_pool_is_used_only_for_large_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [write(tmp_path / f"{i}.png", noise(i)) for i in range(3)]
    total = sum(p.stat().st_size for p in paths)
    monkeypatch.setattr(processing, "PARALLEL_MIN_BYTES", total + 1)
    assert processing._worker_count(paths) == 1
    monkeypatch.setattr(processing, "PARALLEL_MIN_BYTES", total)
    assert processing._worker_count(paths) == len(os.sched_getaffinity(0))


def _serve_as(host: Hosts, batch: Path, out: Path) -> None:
    processing.run_serve(Invocation(mode="serve", inputs={"batch": batch}, outputs={"batch": out},
                                    settings={"image_size": SIZE}, hosts=host))


def test_each_host_writes_its_own_part_and_the_parts_add_up(tmp_path: Path) -> None:
    """Two hosts, each with some of a labelled batch's files, into one folder (one S3 prefix)."""
    first, second = Hosts.of_job(2)
    write(tmp_path / "one" / "ant" / "a.png", noise(1))
    write(tmp_path / "two" / "zebra" / "b.png", noise(2))
    (tmp_path / "two" / "zebra" / "c.png").write_text("not an image")
    _serve_as(first, tmp_path / "one", tmp_path / "out")
    _serve_as(second, tmp_path / "two", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "manifest-algo-1.csv", "manifest-algo-2.csv", "shard-00000-algo-1.npz", "shard-00000-algo-2.npz",
        "summary-algo-1.json", "summary-algo-2.json"]
    summary = read_summary(tmp_path / "out")
    assert (summary.classes, summary.n_images, summary.n_skipped, summary.labelled) == (["ant", "zebra"], 2, 1, True)
    shards = load_all(tmp_path / "out")  # each host's labels index its own classes; read together, the union's
    assert dict(zip(shards.files.tolist(), shards.labels.tolist(), strict=True)) == {"ant/a.png": 0, "zebra/b.png": 1}


def test_a_file_is_labelled_by_its_own_path_on_any_number_of_hosts(tmp_path: Path) -> None:
    """A host that gets only the loose files of a labelled batch serves them as one host does."""
    seeds = {"ant/a.png": 1, "loose.png": 0, "zebra/a.png": 2}
    for folder, files in (("batch", seeds), ("labelled-part", ["ant/a.png", "zebra/a.png"]),
                          ("loose-part", ["loose.png"])):
        for file in files:
            write(tmp_path / folder / file, noise(seeds[file]))
    _serve_as(Hosts(), tmp_path / "batch", tmp_path / "one")
    first, second = Hosts.of_job(2)
    _serve_as(first, tmp_path / "labelled-part", tmp_path / "two")
    _serve_as(second, tmp_path / "loose-part", tmp_path / "two")

    def labels(out: Path) -> dict[str, str]:
        shards = load_all(out)
        return {file: shards.classes[label] if label != UNKNOWN_LABEL else "" for file, label
                in zip(shards.files.tolist(), shards.labels.tolist(), strict=True)}

    assert labels(tmp_path / "two") == labels(tmp_path / "one") == {"ant/a.png": "ant", "loose.png": "",
                                                                    "zebra/a.png": "zebra"}
    for out in (tmp_path / "one", tmp_path / "two"):
        summary = read_summary(out)
        assert (summary.n_images, summary.n_skipped, summary.labelled) == (3, 0, True)


def test_a_host_without_a_usable_image_writes_an_empty_part(tmp_path: Path) -> None:
    """Whether the batch has any image is known only when the parts meet (the drift merge says so)."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"")
    _, second = Hosts.of_job(2)
    _serve_as(second, tmp_path / "bad", tmp_path / "out")
    _serve_as(second, tmp_path / "nothing", tmp_path / "out-of-nothing")  # SageMaker gave this host no object
    for out, n_files in ((tmp_path / "out", 1), (tmp_path / "out-of-nothing", 0)):
        summary = read_summary(out)
        assert (summary.n_images, summary.extra["n_files"]) == (0, n_files)
        assert not list(out.glob("shard-*"))
