"""Per-item random generators, so an image's randomness never depends on what else is in the set."""

from __future__ import annotations

import hashlib

import numpy as np


def rng_for(seed: int, *parts: str) -> np.random.Generator:
    """A generator keyed by the run's seed and the item's identity (e.g. stage, split, class, file).

    Keying by identity instead of drawing from one shared stream keeps each output stable when
    files are added, removed or listed in another order.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence([seed & (2**64 - 1), *words]))
