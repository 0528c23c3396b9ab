"""Small seeded image sets written straight as processed shards (no PNG round trip: fast tests).

Four classes a small CNN separates within a few epochs: horizontal stripes, vertical stripes, a
filled square and a ring, each in a random colour on a noisy background.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from driftloop.ml.shards import UNKNOWN_LABEL, ShardSummary, write_shards

CLASSES = ("hstripes", "vstripes", "square", "ring")


def shape_image(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    image = rng.integers(0, 60, size=(size, size, 3)).astype(np.float64)
    colour = rng.integers(120, 256, size=3)
    rows, cols = np.mgrid[0:size, 0:size]
    period, phase = int(rng.integers(4, 7)), int(rng.integers(0, 4))
    centre, radius = rng.uniform(size * 0.35, size * 0.65, size=2), rng.uniform(size * 0.2, size * 0.3)
    distance = np.hypot(rows - centre[0], cols - centre[1])
    masks = {
        "hstripes": (rows + phase) % period < period // 2,
        "vstripes": (cols + phase) % period < period // 2,
        "square": (np.abs(rows - centre[0]) < radius) & (np.abs(cols - centre[1]) < radius),
        "ring": np.abs(distance - radius) < 2.0,
    }
    image[masks[kind]] = colour
    return image.astype(np.uint8)


def write_shape_shards(
    out: Path, *, n_per_class: int, seed: int, size: int = 32, kinds: Sequence[str] = CLASSES,
    classes: Sequence[str] | None = None, shard_size: int = 16, labelled: bool = True,
) -> ShardSummary:
    """Write ``n_per_class`` images of each of ``kinds``; labels index ``classes`` (default: ``kinds``)."""
    rng = np.random.default_rng(seed)
    names = list(classes if classes is not None else kinds)
    items = []
    for i in range(n_per_class):
        for kind in kinds:
            label = names.index(kind) if labelled and kind in names else UNKNOWN_LABEL
            items.append((shape_image(kind, rng, size), label, f"{kind}/{kind}-{i:03d}.png"))
    order = rng.permutation(len(items))
    return write_shards(
        out, (items[i] for i in order), shard_size=shard_size, image_size=size,
        classes=names if labelled else [],
    )
