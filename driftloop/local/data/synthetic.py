"""The seeded synthetic image set that stands in for the seed's six dog breeds.

Six classes: four shapes (``dots`` in a row, ``plus``, ``ring``, ``triangle``) and two textures
(``checks``, ``stripes``, on a square or disc), each a bright object at a random position, scale
and colour on a darker, cluttered background. Two things are deliberately fixed, so the drift
stages really hurt a model trained on the original set: every object stands upright (the
triangle points up, dots and stripes run horizontally; small tilt only) and is lit from the top
left (shading and a drop shadow to the bottom right); and the two textures are fine, so blur
weakens them. No class is a mirror image or rotation of another, so a flipped or rotated image
keeps a recognisable class and a model retrained on a stage can learn it.
"""

from __future__ import annotations

import colorsys
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image

from driftloop.layout import SPLITS
from driftloop.local.data.seeding import rng_for
from driftloop.local.data.stages import LabelledImage, StagesReport, map_in_order, write_image_stages

log = logging.getLogger(__name__)

IMAGE_SIZE: Final = 96
_INK: Final = 0.65  # how much darker the texture bands are
_SUPERSAMPLE: Final = 2  # anti-aliasing: draw at 2x, average 2x2 blocks


@dataclass(frozen=True)
class SplitSizes:
    """Images per split, in all classes together."""

    train: int
    val: int
    test: int

    def of(self, split: str) -> int:
        return int(getattr(self, split))


# "blog" has the seed's counts (6 Kaggle dog breeds sub-sampled); "small" is for fast tests.
SIZES: Final[dict[str, SplitSizes]] = {
    "blog": SplitSizes(train=408, val=34, test=42),
    "small": SplitSizes(train=180, val=36, test=48),
}


def class_counts(total: int, n_classes: int) -> list[int]:
    """Split ``total`` as evenly as possible; the first classes (alphabetically) get the remainder."""
    base, extra = divmod(total, n_classes)
    return [base + (index < extra) for index in range(n_classes)]


Mask = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (v <= 0.8) & (np.abs(u) <= 0.95 * (v + 1.0) / 1.8)


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r = np.hypot(u, v)
    return (r <= 1.0) & (r >= 0.5)


def _plus(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return ((np.abs(u) <= 0.24) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.24) & (np.abs(u) <= 1.0))


def _dots(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Three round dots in a horizontal row, like an ellipsis."""
    nearest = 0.7 * np.clip(np.rint(u / 0.7), -1.0, 1.0)  # centre of the closest dot
    return np.hypot(u - nearest, v) <= 0.3


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)


def _disc(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hypot(u, v) <= 1.0


def _stripes(x: np.ndarray, y: np.ndarray, period: float) -> np.ndarray:
    """Horizontal bands (in the object's frame), ``period`` output pixels apart."""
    return np.floor(y / (period / 2)) % 2 == 1


def _checks(x: np.ndarray, y: np.ndarray, period: float) -> np.ndarray:
    return (np.floor(x / (period / 2)) + np.floor(y / (period / 2))) % 2 == 1


SHAPES: Final[dict[str, Mask]] = {"dots": _dots, "plus": _plus, "ring": _ring, "triangle": _triangle}
TEXTURES: Final[dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]]] = {
    "checks": _checks,
    "stripes": _stripes,
}
CLASSES: Final = tuple(sorted([*SHAPES, *TEXTURES]))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float64) * 255.0


def render(label: str, rng: np.random.Generator) -> np.ndarray:
    """One ``IMAGE_SIZE`` x ``IMAGE_SIZE`` RGB image (uint8) of class ``label``."""
    background = _background(rng, *_grid(1))

    radius = rng.uniform(0.32, 0.40) * IMAGE_SIZE
    cx, cy = IMAGE_SIZE / 2 + rng.uniform(-0.08, 0.08, size=2) * IMAGE_SIZE
    tilt = np.deg2rad(rng.uniform(-5.0, 5.0))
    cos, sin = np.cos(tilt), np.sin(tilt)
    outline = SHAPES.get(label) or (_square if rng.random() < 0.5 else _disc)
    colour = _object_colour(rng, background)

    # Object coordinates (x right, y down, in output pixels) on the anti-aliasing grid.
    x, y = _grid(_SUPERSAMPLE)
    ox, oy = cos * (x - cx) + sin * (y - cy), -sin * (x - cx) + cos * (y - cy)
    body_mask = outline(ox / radius, oy / radius)
    shift = 0.09 * radius  # the drop shadow falls to the bottom right
    sx, sy = ox - (cos + sin) * shift, oy - (cos - sin) * shift
    shadow_mask = outline(sx / radius, sy / radius) & ~body_mask

    # Light from the top left: brighter there, darker towards the bottom right.
    shade = 1.0 - 0.22 * np.minimum(np.maximum((ox + oy) / (np.sqrt(2.0) * radius), -1.0), 1.0)
    if label in TEXTURES:  # dark bands across the object
        period = rng.uniform(7.5, 9.0)
        phase = rng.uniform(0.0, period, size=2)
        shade = shade * (1.0 - _INK * TEXTURES[label](ox + phase[0], oy + phase[1], period))
    body = _downsample(shade * body_mask)[..., None] * colour
    covered = _downsample(body_mask.astype(np.float32)) + 0.5 * _downsample(shadow_mask.astype(np.float32))
    image = background * (1.0 - covered[..., None]) + body
    image += rng.normal(0.0, 3.0, size=image.shape)  # sensor noise
    return np.minimum(np.maximum(np.rint(image), 0), 255).astype(np.uint8)


@functools.cache
def _grid(supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y) in output pixels, ``supersample`` points per pixel and axis."""
    axis = ((np.arange(IMAGE_SIZE * supersample) + 0.5) / supersample).astype(np.float32)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    x.flags.writeable = y.flags.writeable = False  # shared between calls
    return x, y


def _downsample(values: np.ndarray) -> np.ndarray:
    """Average each supersample block: the fraction of a pixel a shape covers."""
    step = _SUPERSAMPLE
    total = sum(values[i::step, j::step] for i in range(step) for j in range(step))
    return np.asarray(total, dtype=np.float32) / step**2


def _background(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A tinted gradient with soft blobs: clutter with no edges that could pass for a shape."""
    base = _hsv(rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.08, 0.38))
    angle = rng.uniform(0.0, 2 * np.pi)
    ramp = ((x - IMAGE_SIZE / 2) * np.cos(angle) + (y - IMAGE_SIZE / 2) * np.sin(angle)) / IMAGE_SIZE
    light = 1.0 + 0.35 * ramp
    for _ in range(int(rng.integers(2, 5))):
        bx, by = rng.uniform(0, IMAGE_SIZE, size=2)
        sigma = rng.uniform(5.0, 14.0)
        light = light + rng.uniform(-0.08, 0.08) * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * sigma**2))
    return np.minimum(base * light[..., None], 255.0)


def _object_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random saturated colour whose brightness differs clearly from the background's."""
    level = background.mean()
    while True:
        colour = _hsv(rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.8, 1.0))
        if colour.mean() - level >= 100.0:
            return colour


def plan(size: str) -> list[tuple[str, str, str]]:
    """(split, class, file name) of every image of a set size, in writing order."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    return [
        (split, label, f"{label}-{index:04d}.png")
        for split in SPLITS
        for label, count in zip(CLASSES, class_counts(SIZES[size].of(split), len(CLASSES)), strict=True)
        for index in range(count)
    ]


def synthetic_images(*, seed: int, size: str) -> Iterator[LabelledImage]:
    """Every image of the set; each drawn from a generator keyed by its split, class and name."""
    for split, label, name in plan(size):
        yield synthetic_image(split, label, name, seed=seed)


def synthetic_image(split: str, label: str, name: str, *, seed: int) -> LabelledImage:
    pixels = render(label, rng_for(seed, "synthetic", split, label, name))
    return LabelledImage(split=split, label=label, name=name, image=Image.fromarray(pixels, "RGB"))


def _write_one(planned: tuple[str, str, str], *, out: Path, seed: int) -> None:
    write_image_stages(synthetic_image(*planned, seed=seed), out, seed=seed)


def make_dataset(out: Path, *, seed: int, size: str, workers: int | None = None) -> StagesReport:
    """Write the synthetic set as ``out/<stage>/{train,val,test}/<class>/*.png`` for all seven stages.

    Images are independent (one generator each), so a pool of one process per core draws them
    (``workers`` None: ``map_in_order``'s choice); the bytes are the same as in one process.
    """
    planned = plan(size)
    map_in_order(partial(_write_one, out=out, seed=seed), planned, workers=workers)
    report = StagesReport()
    for split, label, _ in planned:
        report.add(split, label)
    log.info("synthetic %s set (seed %d) written to %s: %s", size, seed, out, report.summary())
    return report
