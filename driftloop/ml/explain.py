"""SHAP (expected gradients) for the classifier, and the pictures that show it.

Expected gradients, the method of ``shap.GradientExplainer``, rather than ``DeepExplainer``: shap's
tracker reports DeepExplainer additivity failures on CNNs (e.g. shap/shap#3348: SHAP values that
do not sum to the model's output). ``expected_gradients`` reproduces GradientExplainer's values
(same draws; tested against shap) with one compiled gradient function per loaded model. Its cost
is one gradient per sample, so ``nsamples`` per image sets the price: on 2 CPU cores a 48x48 small
CNN takes well under a second for 8 images at the default. Pictures are drawn with Pillow
(matplotlib's ``inferno`` colours); no plotting backend is involved.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from driftloop.ml.shards import Shard, iter_shards, path_order, read_summary, shard_files


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
    wanted = list(chosen)
    # Only the chosen rows of each shard are kept (copies), so memory holds one shard at a time.
    picked = [(shard.images[rows], shard.labels[rows], shard.files[rows]) for shard in iter_shards(folder)
              if len(rows := np.flatnonzero(np.isin(shard.files, wanted)))]
    if not picked:
        return Shard.empty(read_summary(folder).image_size)
    images, labels, files = (np.concatenate(column) for column in zip(*picked, strict=True))
    order = sorted(range(len(files)), key=lambda j: path_order(str(files[j])))
    return Shard(images[order], labels[order], files[order])


# Rows of one gradient call: 4 images' samples at the default ``nsamples`` (a few tens of MB).
GRADIENT_BATCH = 256


def expected_gradients(
    model: Any, background: np.ndarray, images: np.ndarray, class_indices: np.ndarray, *, nsamples: int, seed: int
) -> np.ndarray:
    """SHAP values (N, H, W, 3) of each image for the class output named in ``class_indices``.

    Expected gradients as ``shap.GradientExplainer.shap_values`` computes them (no local smoothing),
    with its very draws: for each image in turn and each of its ``nsamples``, a background row and
    a point ``t`` on the line from it to the image, from one ``RandomState(seed)`` (shap seeds
    numpy's global one; this leaves it alone). The value is the mean of gradient x (image -
    background) over the samples. Unlike shap, which builds a ``tf.function`` per class per
    explainer (one more trace at each call: TensorFlow's "triggered tf.function retracing"
    warnings), the gradients of every image's class come from one compiled function per model
    (``_gradient_function``), in batches of ``GRADIENT_BATCH`` rows.
    """
    images = np.asarray(images, dtype=np.float32)
    background = np.asarray(background, dtype=np.float32)
    classes = np.asarray(class_indices, dtype=np.int32).reshape(-1)
    if len(classes) != len(images):
        raise ValueError(f"{len(images)} images but {len(classes)} class indices")
    if len(images) == 0:
        return np.zeros_like(images)
    state = np.random.RandomState(seed)
    draws = [(state.choice(len(background)), state.uniform()) for _ in range(len(images) * nsamples)]
    rows = np.array([r for r, _ in draws], dtype=np.int64)
    t = np.array([u for _, u in draws], dtype=np.float64)
    owner = np.repeat(np.arange(len(images)), nsamples)
    shape = (-1,) + (1,) * (images.ndim - 1)
    # float32 arithmetic with t and 1 - t rounded to float32, as shap's numpy expressions do.
    toward, away = t.astype(np.float32).reshape(shape), (1.0 - t).astype(np.float32).reshape(shape)
    points = toward * images[owner] + away * background[rows]
    deltas = images[owner] - background[rows]
    gradient = _gradient_function(model)
    grads = np.concatenate([
        np.asarray(gradient(points[i : i + GRADIENT_BATCH], classes[owner[i : i + GRADIENT_BATCH]]))
        for i in range(0, len(points), GRADIENT_BATCH)
    ])
    return (grads * deltas).reshape(len(images), nsamples, *images.shape[1:]).mean(axis=1)


_GRADIENTS: weakref.WeakKeyDictionary[Any, Callable[[np.ndarray, np.ndarray], Any]] = weakref.WeakKeyDictionary()


def _gradient_function(model: Any) -> Callable[[np.ndarray, np.ndarray], Any]:
    """``(points, classes) -> d output[class] / d point`` per row: one ``tf.function`` per model, traced once.

    Its input signature leaves the batch open, so a short last batch reuses the trace; it wraps a
    ``partial`` (no shared code object), so TensorFlow counts each model's traces on their own. The
    partial holds the model weakly: a strong reference from the cached value would keep every model
    a process ever explained (and its traced graph) alive.
    """
    if model not in _GRADIENTS:
        import tensorflow as tf

        signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32), tf.TensorSpec([None], tf.int32)]
        call = functools.partial(_class_gradients, weakref.proxy(model))
        _GRADIENTS[model] = tf.function(call, input_signature=signature)
    return _GRADIENTS[model]


def _class_gradients(model: Any, points: Any, classes: Any) -> Any:
    import tensorflow as tf

    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(points)
        outputs = model(points, training=False)
        # Each row's output depends on that row only: the gradient of the sum is each row's own.
        chosen = tf.gather(outputs, classes, axis=1, batch_dims=1)
    return tape.gradient(chosen, points)


def heat(values: np.ndarray) -> np.ndarray:
    """|SHAP| summed over colour channels: (..., H, W, 3) -> (..., H, W)."""
    return np.abs(values).sum(axis=-1)


def safe_name(file: str) -> str:
    """A flat, portable picture name for a source file (``collie/a b.png`` -> ``collie_a_b``)."""
    stem = file.rsplit(".", 1)[0] if "." in file.rsplit("/", 1)[-1] else file
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_") or "image"


# Pictures are composed with numpy and Pillow: one cell a picture of CELL px, its title above it.
# matplotlib figures (an Axes each, tight layout) cost about 1 s of CPU per serve run's nine pictures.
CELL = 192
TITLE_HEIGHT = 18
PAD = 6


def _overlay_pixels(image: np.ndarray | None, heat_map: np.ndarray) -> np.ndarray:
    """The heat map in matplotlib's ``inferno`` (clipped at its 99th percentile), over the image when given."""
    from matplotlib import colormaps

    scale = float(np.percentile(heat_map, 99)) or 1.0
    colours = colormaps["inferno"](np.clip(heat_map / scale, 0.0, 1.0))[..., :3]
    if image is not None:
        colours = 0.45 * (np.asarray(image, dtype=np.float64) / 255.0) + 0.55 * colours
    return np.asarray(np.rint(colours * 255.0), dtype=np.uint8)


def _save_cells(path: Path, cells: Sequence[tuple[np.ndarray, str]], columns: int) -> None:
    """Pictures (H, W, 3 uint8) in a grid of ``columns``, each scaled to ``CELL`` px and titled."""
    from PIL import Image, ImageDraw, ImageFont

    columns = max(1, min(columns, len(cells)))
    rows = -(-len(cells) // columns)
    width, height = CELL + 2 * PAD, CELL + TITLE_HEIGHT + 2 * PAD
    canvas = Image.new("RGB", (columns * width, rows * height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=11)
    for i, (pixels, title) in enumerate(cells):
        left, top = (i % columns) * width, (i // columns) * height
        picture = Image.fromarray(np.ascontiguousarray(pixels), "RGB").resize((CELL, CELL), Image.Resampling.NEAREST)
        canvas.paste(picture, (left + PAD, top + PAD + TITLE_HEIGHT))
        draw.text((left + width / 2, top + PAD + TITLE_HEIGHT / 2), title, fill="black", font=font, anchor="mm")
    canvas.save(path, format="PNG")


def save_overlay(path: Path, image: np.ndarray, heat_map: np.ndarray, title: str) -> None:
    """The image side by side with itself under its |SHAP| heat map."""
    _save_cells(path, [(np.asarray(image, dtype=np.uint8), "image"), (_overlay_pixels(image, heat_map), title)], 2)


def save_grid(
    path: Path, heat_maps: np.ndarray, titles: Sequence[str], images: np.ndarray | None = None, columns: int = 4
) -> None:
    """Heat maps in a grid (over their images when given), each titled."""
    cells = [(_overlay_pixels(None if images is None else images[i], heat_maps[i]), titles[i])
             for i in range(len(heat_maps))]
    _save_cells(path, cells, columns)
