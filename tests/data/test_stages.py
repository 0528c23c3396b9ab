"""The seven stages: each augmentation really happens, and any image folder becomes seven stages."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from driftloop.errors import UserError
from driftloop.layout import SPLITS, STAGE_NAMES
from driftloop.local.data.seeding import rng_for
from driftloop.local.data.stages import (
    PARALLEL_MIN_IMAGES,
    STAGES,
    StageSpec,
    add_noise,
    apply_stage,
    blur,
    make_stages,
    rotate_reflect,
    stages_markdown,
)


def _asymmetric(size: int = 64) -> Image.Image:
    """A bright block in the top-left corner on a horizontal gradient: no mirror symmetry."""
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[..., 1] = np.linspace(0, 200, size, dtype=np.uint8)[None, :]
    pixels[4:20, 6:18] = (250, 40, 40)
    return Image.fromarray(pixels, "RGB")


def _texture(size: int = 64) -> Image.Image:
    """Fine checks: lots of high-frequency energy for blur to remove."""
    rows, cols = np.mgrid[0:size, 0:size]
    pixels = np.where(((rows // 2 + cols // 2) % 2 == 0)[..., None], 220, 30).astype(np.uint8)
    return Image.fromarray(np.repeat(pixels, 3, axis=2), "RGB")


def _laplacian_energy(image: Image.Image) -> float:
    """Mean |discrete Laplacian| of the grey image: high-frequency content."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    lap = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]
    return float(np.abs(lap).mean())


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_stage_table_names_match_the_layout_and_order() -> None:
    assert tuple(spec.name for spec in STAGES) == STAGE_NAMES


def test_stage_table_describes_the_seed_stages() -> None:
    by_name = {spec.name: spec for spec in STAGES}
    assert by_name["original"] == StageSpec("original", by_name["original"].description)
    assert by_name["stage-1"].hflip > 0 and by_name["stage-1"].rotation == 0 and by_name["stage-1"].blur[1] == 0
    assert by_name["stage-2"].rotation > 0 and by_name["stage-2"].hflip == by_name["stage-2"].vflip == 0
    assert by_name["stage-3"].rotation > 0 and by_name["stage-3"].hflip > 0
    assert 0 < by_name["stage-4"].rotation < by_name["stage-5"].rotation and by_name["stage-4"].blur[0] > 0
    noisy = by_name["noisy"]
    assert noisy.blur[0] > by_name["stage-5"].blur[1] and noisy.rotation >= by_name["stage-5"].rotation
    assert noisy.hflip > 0 and noisy.noise > 0


@pytest.mark.parametrize(
    "kwargs", [{"hflip": 1.5}, {"vflip": -0.1}, {"rotation": -1.0}, {"blur": (2.0, 1.0)}, {"noise": -3.0}]
)
def test_stage_spec_rejects_impossible_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        StageSpec("bad", "bad", **kwargs)  # type: ignore[arg-type]


def test_markdown_table_has_one_row_per_stage() -> None:
    table = stages_markdown().splitlines()
    assert len(table) == 2 + len(STAGES)
    assert all(line.startswith("| ") and line.endswith(" |") for line in table)
    for line, spec in zip(table[2:], STAGES, strict=True):
        assert line.startswith(f"| {spec.name} | {spec.description} |")
    assert "±" in table[STAGE_NAMES.index("stage-2") + 2]


def test_original_stage_leaves_pixels_unchanged() -> None:
    image = _asymmetric()
    out = apply_stage(image, STAGES[0], rng_for(0, "x"))
    assert np.array_equal(_pixels(out), _pixels(image))


def test_horizontal_flip_maps_an_image_to_its_mirror() -> None:
    image = _asymmetric()
    out = apply_stage(image, StageSpec("h", "h", hflip=1.0), rng_for(0, "x"))
    assert np.array_equal(_pixels(out), _pixels(image)[:, ::-1])


def test_vertical_flip_turns_an_image_upside_down() -> None:
    image = _asymmetric()
    out = apply_stage(image, StageSpec("v", "v", vflip=1.0), rng_for(0, "x"))
    assert np.array_equal(_pixels(out), _pixels(image)[::-1])


def test_stage_1_flips_about_half_the_images_each_way() -> None:
    image = _asymmetric()
    spec = STAGES[STAGE_NAMES.index("stage-1")]
    mirrored = upside_down = 0
    for index in range(200):
        out = _pixels(apply_stage(image, spec, rng_for(0, str(index))))
        red = out[..., 0] > 200  # the block: top left unless flipped
        mirrored += bool(red[:, -12].any())
        upside_down += bool(red[-10, :].any())
    assert 70 <= mirrored <= 130 and 70 <= upside_down <= 130


def test_rotation_keeps_size_and_turns_the_picture() -> None:
    image = _asymmetric()
    quarter = rotate_reflect(image, 90.0)
    assert quarter.size == image.size
    assert np.abs(_pixels(quarter) - np.rot90(_pixels(image))).max() <= 1  # counter-clockwise, like PIL
    tilted = _pixels(rotate_reflect(image, 20.0))
    assert np.abs(tilted - _pixels(image)).mean() > 5


def test_rotation_fills_corners_with_image_content_not_black() -> None:
    image = Image.new("RGB", (80, 60), (180, 170, 160))
    rotated = _pixels(rotate_reflect(image, 45.0))
    assert (rotated == (180, 170, 160)).all() and rotated.shape == (60, 80, 3)


def test_blur_lowers_and_noise_raises_high_frequency_energy() -> None:
    texture = _texture()
    assert _laplacian_energy(blur(texture, 1.0)) < 0.3 * _laplacian_energy(texture)
    flat = Image.new("RGB", (64, 64), (120, 120, 120))
    assert _laplacian_energy(add_noise(flat, 12.0, rng_for(0, "n"))) > 10 * (_laplacian_energy(flat) + 1)


def test_noise_survives_downscaling_a_large_photo_to_the_model_input() -> None:
    """Per-pixel noise would shrink about eightfold here; grains keep most of it (as for 96-pixel images)."""
    flat = Image.new("RGB", (512, 512), (120, 120, 120))
    noisy = add_noise(flat, 12.0, rng_for(0, "n")).resize((64, 64), Image.Resampling.BICUBIC)
    assert np.asarray(noisy, dtype=np.float64).std() > 6.0


def test_blur_radius_is_relative_to_the_model_input() -> None:
    big = _texture(128)
    assert np.array_equal(_pixels(blur(big, 1.0)), _pixels(big.filter(ImageFilter.GaussianBlur(radius=2.0))))


@pytest.mark.parametrize("name", ["stage-4", "stage-5", "noisy"])
def test_blurred_stages_remove_fine_detail(name: str) -> None:
    texture = _texture()
    out = apply_stage(texture, STAGES[STAGE_NAMES.index(name)], rng_for(0, "x"))
    assert out.size == texture.size and out.mode == "RGB"
    assert _laplacian_energy(out) < 0.5 * _laplacian_energy(texture)


def test_stage_draws_are_reproducible_per_seed() -> None:
    image = _asymmetric()
    noisy = STAGES[-1]
    first = _pixels(apply_stage(image, noisy, rng_for(3, "a")))
    assert np.array_equal(first, _pixels(apply_stage(image, noisy, rng_for(3, "a"))))
    assert not np.array_equal(first, _pixels(apply_stage(image, noisy, rng_for(4, "a"))))


def _tiny_folder(root: Path) -> Path:
    """Every split with two classes, in the formats real folders have, plus files to skip."""
    rng = np.random.default_rng(0)
    for split in SPLITS:
        for label in ("cats", "dogs"):
            folder = root / split / label
            folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), "RGB").save(folder / "rgb.jpg")
            Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8), "L").save(folder / "grey.png")
    rgba = np.zeros((20, 24, 4), np.uint8)
    rgba[:, :12] = (10, 200, 30, 255)  # left half opaque green, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(root / "train" / "cats" / "cutout.png")
    wide_grey = np.full((16, 16), 65535, np.uint16)
    wide_grey[:, :8] = 32896  # 128 * 257
    Image.fromarray(wide_grey, "I;16").save(root / "train" / "cats" / "scan.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: "rotate 90 degrees clockwise to display"
    Image.new("RGB", (40, 20), (90, 90, 90)).save(root / "train" / "dogs" / "phone.jpg", exif=exif)
    (root / "train" / "dogs" / "notes.txt").write_text("not an image")
    (root / "val" / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return root


def test_make_stages_writes_seven_rgb_png_stages_and_skips_unreadable_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = _tiny_folder(tmp_path / "src")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        report = make_stages(src, out, seed=0)

    assert sorted(p.name for p in report.skipped) == ["broken.png", "notes.txt"]
    assert all(reason.startswith("unreadable: ") for reason in report.skipped.values())
    assert "skipped 2 entries" in caplog.text and str(out / "manifest.csv") in caplog.text
    assert dict(report.counts) == {"train": 7, "val": 4, "test": 4}
    assert sorted(p.name for p in out.iterdir()) == sorted([*STAGE_NAMES, "manifest.csv"])
    expected = {
        ("train", "cats"): {"rgb.png", "grey.png", "cutout.png", "scan.png"},
        ("train", "dogs"): {"rgb.png", "grey.png", "phone.png"},
        ("val", "cats"): {"rgb.png", "grey.png"},
    }
    for stage in STAGE_NAMES:
        for split in SPLITS:
            for label in ("cats", "dogs"):
                names = {p.name for p in (out / stage / split / label).iterdir()}
                assert names == expected.get((split, label), {"rgb.png", "grey.png"})
    for path in out.rglob("*.png"):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == "RGB"

    original = out / "original" / "train"
    with Image.open(src / "train" / "cats" / "rgb.jpg") as source:
        assert np.array_equal(_pixels(Image.open(original / "cats" / "rgb.png")), _pixels(source.convert("RGB")))
    cutout = _pixels(Image.open(original / "cats" / "cutout.png"))
    assert cutout.shape == (20, 24, 3)
    assert (cutout[:, :12] == (10, 200, 30)).all() and (cutout[:, 12:] == 255).all()  # transparency on white
    scan = _pixels(Image.open(original / "cats" / "scan.png"))
    assert (scan[:, :8] == 128).all() and (scan[:, 8:] == 255).all()  # 16-bit grey scaled, not clipped
    assert Image.open(original / "dogs" / "phone.png").size == (20, 40)  # EXIF orientation applied
    assert Image.open(out / "stage-2" / "train" / "cats" / "rgb.png").size == (50, 40)  # stages keep the size


def test_make_stages_is_byte_reproducible_and_seed_dependent(tmp_path: Path) -> None:
    src = _tiny_folder(tmp_path / "src")
    runs = {name: tmp_path / name for name in ("a", "b", "other")}
    for name, out in runs.items():
        make_stages(src, out, seed=1 if name == "other" else 0)
    files = sorted(p.relative_to(runs["a"]) for p in runs["a"].rglob("*.png"))
    assert files == sorted(p.relative_to(runs["b"]) for p in runs["b"].rglob("*.png"))
    assert all((runs["a"] / f).read_bytes() == (runs["b"] / f).read_bytes() for f in files)
    changed = {f.parts[0] for f in files if (runs["a"] / f).read_bytes() != (runs["other"] / f).read_bytes()}
    assert changed == set(STAGE_NAMES) - {"original"}


def test_clashing_stems_keep_their_suffix(tmp_path: Path) -> None:
    for split in SPLITS:
        (tmp_path / "src" / split / "x").mkdir(parents=True)
    folder = tmp_path / "src" / "train" / "x"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(folder / "a.jpg")
    Image.new("RGB", (8, 8), (4, 5, 6)).save(folder / "a.png")
    make_stages(tmp_path / "src", tmp_path / "out", seed=0)
    written = sorted(p.name for p in (tmp_path / "out" / "original" / "train" / "x").iterdir())
    assert written == ["a_jpg.png", "a_png.png"]


def test_make_stages_explains_a_wrong_layout(tmp_path: Path) -> None:
    (tmp_path / "src" / "train" / "x").mkdir(parents=True)
    with pytest.raises(UserError, match="missing"):
        make_stages(tmp_path / "src", tmp_path / "out", seed=0)
    for split in ("val", "test"):
        (tmp_path / "src" / split).mkdir()
    (tmp_path / "src" / "train" / "x" / "readme.md").write_text("no images here")
    with pytest.raises(UserError, match="no readable images"):
        make_stages(tmp_path / "src", tmp_path / "out", seed=0)


def test_make_stages_reads_nothing_outside_the_source_and_lists_every_entry_it_skips(tmp_path: Path) -> None:
    """A link to an image outside SRC (standing for /etc/passwd) is never read; everything skipped has a line."""
    src = _tiny_folder(tmp_path / "src")
    outside = tmp_path / "elsewhere" / "secret.png"
    outside.parent.mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(outside)  # a valid image: followed, it would be written
    cats = src / "train" / "cats"
    (cats / "secret.png").symlink_to(outside)
    (cats / "dangling.png").symlink_to(cats / "gone.png")
    (cats / "folder.png").mkdir()
    (src / "val" / "elsewhere").symlink_to(outside.parent)
    (src / "val" / "dogs-again").symlink_to(src / "val" / "dogs")
    (src / "README.txt").write_text("about this data set")

    out = tmp_path / "out"
    report = make_stages(src, out, seed=0)

    written = {p.name for p in (out / "original" / "train" / "cats").iterdir()}
    assert written == {"rgb.png", "grey.png", "cutout.png", "scan.png"}
    assert sorted(p.name for p in (out / "original" / "val").iterdir()) == ["cats", "dogs"]
    with (out / "manifest.csv").open(newline="") as handle:
        lines = {row["file"]: row for row in csv.DictReader(handle)}
    codes = {file: row["reason"].split(":")[0] for file, row in lines.items() if row["status"] == "skipped"}
    assert codes == {
        "README.txt": "not_in_split",
        "train/cats/dangling.png": "broken_link",
        "train/cats/folder.png": "not_a_file",
        "train/cats/secret.png": "outside_root",
        "train/dogs/notes.txt": "unreadable",
        "val/cats/broken.png": "unreadable",
        "val/dogs-again": "linked_folder",
        "val/elsewhere": "outside_root",
    }
    assert lines["train/cats/rgb.jpg"] == {"file": "train/cats/rgb.jpg", "class": "cats", "status": "ok", "reason": ""}
    assert sum(row["status"] == "ok" for row in lines.values()) == sum(report.counts.values()) == 15
    assert {path.relative_to(src).as_posix() for path in report.skipped} == set(codes)


def test_a_split_folder_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    src = _tiny_folder(tmp_path / "src")
    (src / "test").rename(tmp_path / "test-elsewhere")
    (src / "test").symlink_to(tmp_path / "test-elsewhere")
    with pytest.raises(UserError, match=r"missing \['test'\]"):
        make_stages(src, tmp_path / "out", seed=0)


def test_many_images_are_written_by_a_pool_with_the_same_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    rng = np.random.default_rng(1)
    for split in SPLITS:
        for index in range(PARALLEL_MIN_IMAGES // 3 + 1):
            path = src / split / f"c{index % 2}" / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), "RGB").save(path)
    make_stages(src, tmp_path / "pool", seed=0)  # enough images for the pool
    make_stages(src, tmp_path / "one", seed=0, workers=1)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(files) == 1 + len(STAGE_NAMES) * 3 * (PARALLEL_MIN_IMAGES // 3 + 1)
    assert all((tmp_path / "pool" / f).read_bytes() == (tmp_path / "one" / f).read_bytes() for f in files)
