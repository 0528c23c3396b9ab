"""Photo-like JPEGs: the synthetic classes rendered at photo sizes, with texture and noise.

Real batches are photos of a few hundred pixels a side, where decoding costs far more than the
48-px model. Each image here is a synthetic original (``driftloop.local.data.synthetic.render``) scaled
up to 300–800 px a side (aspect 3:4 to 4:3, so the centre crop matters), with film-grain noise and a
smooth, low-frequency texture on top so the encoder has photo-like detail to code (an upscaled
render alone compresses like a cartoon), saved at JPEG quality 75–95. Everything is drawn from one
generator per image, keyed by seed and index: the same seed gives the same bytes.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from driftloop.local.data.seeding import rng_for
from driftloop.local.data.synthetic import CLASSES, render

MIN_SIDE, MAX_SIDE = 300, 800
QUALITY = (75, 95)


@dataclass(frozen=True)
class Photo:
    label: str
    name: str
    data: bytes  # the JPEG file


def photo(label: str, rng: np.random.Generator) -> Image.Image:
    """One photo-like RGB image of ``label`` (before JPEG encoding)."""
    long_side = int(rng.integers(MIN_SIDE * 4 // 3, MAX_SIDE + 1))
    aspect = rng.uniform(3 / 4, 4 / 3)
    width, height = (long_side, int(long_side / aspect)) if aspect >= 1 else (int(long_side * aspect), long_side)
    width, height = max(width, MIN_SIDE), max(height, MIN_SIDE)
    side = max(width, height)
    base = Image.fromarray(render(label, rng), "RGB").resize((side, side), Image.Resampling.BICUBIC)
    left, top = (side - width) // 2, (side - height) // 2
    pixels = np.asarray(base.crop((left, top, left + width, top + height)), dtype=np.float32)
    # Low-frequency texture (a coarse random field, smoothly upscaled) and per-pixel grain.
    coarse = Image.fromarray(rng.normal(0, 1, size=(height // 40 + 2, width // 40 + 2)).astype(np.float32), "F")
    texture = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    pixels += 10.0 * texture[..., None] + rng.normal(0, 6.0, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), "RGB")


def photos(seed: int, stop: int, start: int = 0) -> Iterator[Photo]:
    """JPEGs ``start..stop`` of the seed's sequence, classes in turn (any prefix is class-balanced)."""
    for index in range(start, stop):
        label = CLASSES[index % len(CLASSES)]
        name = f"p{seed}-{label}-{index // len(CLASSES):06d}.jpg"
        rng = rng_for(seed, "photo", label, name)
        buffer = io.BytesIO()
        photo(label, rng).save(buffer, format="JPEG", quality=int(rng.integers(QUALITY[0], QUALITY[1] + 1)))
        yield Photo(label, name, buffer.getvalue())


def _write(args: tuple[Path, int, int, int]) -> None:
    out, seed, start, stop = args
    for item in photos(seed, stop, start):
        path = out / item.label / item.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.data)


def write_photos(out: Path, seed: int, count: int) -> None:
    """JPEGs ``0..count`` of the seed's sequence in class folders, made on every core."""
    import multiprocessing

    from driftloop.components.processing import available_cores

    step = max(1, -(-count // (4 * available_cores())))
    tasks = [(out, seed, start, min(start + step, count)) for start in range(0, count, step)]
    with multiprocessing.get_context("spawn").Pool(available_cores()) as pool:
        pool.map(_write, tasks)


def link_copies(source: Path, out: Path, count: int) -> None:
    """``count`` files in ``source``'s class folders: its files, then hard links to them in turn.

    A linked file decodes at the cost of its original, so a 100,000-image run needs only the
    distinct photos on disk.
    """
    files = sorted(source.rglob("*.jpg"))
    for index in range(count):
        original = files[index % len(files)]
        name = original.name if index < len(files) else f"copy{index:06d}-{original.name}"
        target = out / original.parent.name / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(original, target)
        except OSError:  # a file system without hard links
            shutil.copyfile(original, target)
