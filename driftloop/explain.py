"""SHAP (expected gradients) for the classifier, and the pictures that show it.

``shap.GradientExplainer`` rather than ``DeepExplainer``: shap's tracker reports DeepExplainer
additivity failures on CNNs (see DESIGN.md). Its cost is one gradient per sample, so
``nsamples`` per image sets the price: on 2 CPU cores a 64x64 small CNN takes well under a second
per image at the default. Pictures use matplotlib's object API (``Figure``), which renders with
Agg and touches no global backend state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from driftloop.shards import Shard, iter_shards, path_order, shard_files


def sample_indices(n_total: int, k: int, seed: int) -> np.ndarray:
    """``min(k, n_total)`` distinct positions in ``range(n_total)``, seeded, in ascending order."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=min(k, n_total), replace=False))


def take(folder: Path, indices: np.ndarray) -> Shard:
    """The images at the given positions (in folder order), streaming one shard at a time."""
    wanted = np.asarray(indices, dtype=np.int64)
    images, labels, files = [], [], []
    start = 0
    for shard in iter_shards(folder):
        local = wanted[(wanted >= start) & (wanted < start + len(shard))] - start
        images.append(shard.images[local])
        labels.append(shard.labels[local])
        files.append(shard.files[local])
        start += len(shard)
    if sum(len(f) for f in files) != len(wanted):
        raise ValueError(f"{folder} holds {start} images; asked for positions up to {int(wanted.max())}")
    return Shard(np.concatenate(images), np.concatenate(labels), np.concatenate(files))


def sample_in_path_order(folder: Path, k: int, seed: int) -> Shard:
    """``take(folder, sample_indices(n, k, seed))`` with positions counted in the images' path order.

    One host writes a batch's shards in that order, so on a one-host folder this is exactly
    ``take``; on the parts of several hosts it picks the same images, in the same order.
    """
    names = sorted((str(f) for shard in shard_files(folder) for f in shard), key=path_order)
    chosen = {names[i] for i in sample_indices(len(names), k, seed)} if names else set()
    picked = [(shard, np.flatnonzero(np.isin(shard.files, list(chosen)))) for shard in iter_shards(folder)]
    files = np.concatenate([shard.files[i] for shard, i in picked]) if picked else np.zeros(0, str)
    order = sorted(range(len(files)), key=lambda j: path_order(str(files[j])))
    return Shard(np.concatenate([shard.images[i] for shard, i in picked])[order],
                 np.concatenate([shard.labels[i] for shard, i in picked])[order], files[order])


def expected_gradients(
    model: Any, background: np.ndarray, images: np.ndarray, class_indices: np.ndarray, *, nsamples: int, seed: int
) -> np.ndarray:
    """SHAP values (N, H, W, 3) of each image for the class output named in ``class_indices``."""
    import shap

    # One gradient batch per image: each batch shape is another trace of the gradient function.
    explainer = shap.GradientExplainer(model, background.astype(np.float32), batch_size=nsamples)
    # shap seeds numpy's global generator with rseed: keep the caller's global state as it was.
    state = np.random.get_state()
    try:
        values, _ = explainer.shap_values(
            images.astype(np.float32),
            nsamples=nsamples,
            ranked_outputs=np.asarray(class_indices, dtype=np.int64).reshape(-1, 1),
            output_rank_order="custom",
            rseed=seed,
        )
    finally:
        np.random.set_state(state)
    return np.asarray(values, dtype=np.float32)[..., 0]


def heat(values: np.ndarray) -> np.ndarray:
    """|SHAP| summed over colour channels: (..., H, W, 3) -> (..., H, W)."""
    return np.abs(values).sum(axis=-1)


def safe_name(file: str) -> str:
    """A flat, portable picture name for a source file (``collie/a b.png`` -> ``collie_a_b``)."""
    stem = file.rsplit(".", 1)[0] if "." in file.rsplit("/", 1)[-1] else file
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_") or "image"


def _draw_overlay(axes: Any, image: np.ndarray | None, heat_map: np.ndarray, title: str) -> None:
    if image is not None:
        axes.imshow(image)
    scale = float(np.percentile(heat_map, 99)) or 1.0
    axes.imshow(np.clip(heat_map / scale, 0.0, 1.0), cmap="inferno", alpha=0.55 if image is not None else 1.0)
    axes.set_title(title, fontsize=8)
    axes.axis("off")


def save_overlay(path: Path, image: np.ndarray, heat_map: np.ndarray, title: str) -> None:
    """The image side by side with itself under its |SHAP| heat map."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 2.2))
    left, right = figure.subplots(1, 2)
    left.imshow(image)
    left.set_title("image", fontsize=8)
    left.axis("off")
    _draw_overlay(right, image, heat_map, title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def save_grid(
    path: Path, heat_maps: np.ndarray, titles: Sequence[str], images: np.ndarray | None = None, columns: int = 4
) -> None:
    """Heat maps in a grid (over their images when given), each titled."""
    from matplotlib.figure import Figure

    n = len(heat_maps)
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    figure = Figure(figsize=(2.2 * columns, 2.4 * rows))
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    for i, axes in enumerate(grid):
        if i < n:
            _draw_overlay(axes, None if images is None else images[i], heat_maps[i], titles[i])
        else:
            axes.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
