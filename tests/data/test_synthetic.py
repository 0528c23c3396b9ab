"""The synthetic set: seeded, byte-reproducible, laid out like the seed's data, all seven stages."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from driftloop.layout import SPLITS, STAGE_NAMES
from driftloop.local.data.seeding import rng_for
from driftloop.local.data.stages import write_stages
from driftloop.local.data.synthetic import (
    CLASSES,
    IMAGE_SIZE,
    SHAPES,
    SIZES,
    class_counts,
    make_dataset,
    plan,
    render,
    synthetic_images,
)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "set"
    make_dataset(out, seed=0, size="small")
    return out


def test_classes_are_shapes_and_textures_in_sorted_order() -> None:
    assert CLASSES == ("checks", "dots", "plus", "ring", "stripes", "triangle")


@pytest.mark.parametrize(("total", "expected"), [(408, [68] * 6), (34, [6, 6, 6, 6, 5, 5]), (42, [7] * 6)])
def test_class_counts_split_as_evenly_as_possible(total: int, expected: list[int]) -> None:
    assert class_counts(total, 6) == expected


def test_blog_size_has_the_seed_counts() -> None:
    per_split = Counter(split for split, _, _ in plan("blog"))
    assert per_split == {"train": 408, "val": 34, "test": 42}
    names = plan("blog")
    assert len(set(names)) == len(names)


def test_unknown_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="size"):
        plan("huge")


def test_small_set_layout_and_counts(small_set: Path) -> None:
    assert sorted(p.name for p in small_set.iterdir()) == sorted(STAGE_NAMES)
    sizes = SIZES["small"]
    for stage in STAGE_NAMES:
        assert sorted(p.name for p in (small_set / stage).iterdir()) == sorted(SPLITS)
        for split in SPLITS:
            counts = [len(list((small_set / stage / split / label).glob("*.png"))) for label in CLASSES]
            assert sorted(p.name for p in (small_set / stage / split).iterdir()) == list(CLASSES)
            assert counts == class_counts(sizes.of(split), len(CLASSES))
    with Image.open(small_set / "noisy" / "test" / "ring" / "ring-0000.png") as image:
        assert image.size == (IMAGE_SIZE, IMAGE_SIZE) and image.mode == "RGB" and not image.text


def test_same_seed_gives_identical_bytes(small_set: Path, tmp_path: Path) -> None:
    """Every 25th image again, through make_dataset's own code path: the same bytes in every stage."""
    again = tmp_path / "again"
    write_stages(itertools.islice(synthetic_images(seed=0, size="small"), 0, None, 25), again, seed=0)
    files = sorted(p.relative_to(again) for p in again.rglob("*.png"))
    assert len(files) == len(STAGE_NAMES) * len(plan("small")[::25])
    assert all((small_set / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_another_seed_gives_other_images(small_set: Path) -> None:
    for split, label, name in plan("small")[::40]:
        seed_0 = np.asarray(Image.open(small_set / "original" / split / label / name))
        seed_1 = render(label, rng_for(1, "synthetic", split, label, name))
        assert np.abs(seed_0.astype(int) - seed_1).mean() > 5


def test_images_of_a_class_vary(small_set: Path) -> None:
    folder = small_set / "original" / "train" / "triangle"
    first, second = (np.asarray(Image.open(p), dtype=np.int16) for p in sorted(folder.iterdir())[:2])
    assert np.abs(first - second).mean() > 10


def test_shapes_have_an_upright_orientation() -> None:
    """The orientation the stages undo: the triangle points up (y grows downwards), the dots lie in a row."""
    triangle, dots = SHAPES["triangle"], SHAPES["dots"]
    assert triangle(np.array([0.0]), np.array([-0.9])).all() and not triangle(np.array([0.0]), np.array([0.9])).any()
    assert dots(np.array([-0.7, 0.0, 0.7]), np.zeros(3)).all() and not dots(np.zeros(2), np.array([-0.7, 0.7])).any()
