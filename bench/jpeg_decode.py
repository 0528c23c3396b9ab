"""JPEG draft mode: decode time and the difference from decoding every pixel, on photo-like JPEGs.

``driftloop.ml.images.decode_file`` on ``bench.photos`` JPEGs (300–800 px, quality 75–95) with
``draft_gap`` None (every pixel decoded), 1 (the smallest DCT scale that still covers 48 px) and 2
(the default ``DRAFT_GAP``: at least twice the target before the bicubic resize). Per variant: the
time per image (best of 3, interleaved), the pixel difference from full decoding (mean absolute
difference per image, 0–255 scale) and the predictions of the default model trained on Original:
share of images with the same predicted class, and the largest change of a class probability.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from bench import fixtures, photos
from bench.common import BenchOptions, Result, best_of, table
from driftloop.config import ProcessingConfig, TrainingConfig
from driftloop.local.data import synthetic
from driftloop.ml.images import DRAFT_GAP, decode_file

VARIANTS: dict[str, int | None] = {"full": None, "draft gap 1": 1, "draft gap 2": 2}
PHOTO_SEED = 4000


def photo_folder(workdir: Path, seed: int, count: int, distinct: int) -> Path:
    """``count`` photo-like JPEGs in class folders: ``distinct`` made once, the rest hard links (cached).

    Keyed by the generator's source (and the renderer it calls), not all of driftloop.
    """
    code = hashlib.sha256(b"".join(Path(module.__file__ or "").read_bytes() for module in (photos, synthetic)))
    made = fixtures.cached(workdir / f"photos-d{distinct}-s{seed}", {"seed": seed, "count": distinct},
                           lambda folder: photos.write_photos(folder, seed, distinct), code=code.hexdigest())
    if count == distinct:
        return made
    params = {"count": count, "of": fixtures.fingerprint(made)}
    return fixtures.cached(workdir / f"photos-{count}-d{distinct}-s{seed}", params,
                           lambda folder: photos.link_copies(made, folder, count), code=code.hexdigest())


def decode_all(files: list[Path], draft_gap: int | None) -> np.ndarray:
    config = ProcessingConfig()
    decoded = [decode_file(path, config.image_size, config.max_pixels, draft_gap=draft_gap) for path in files]
    if any(d.image is None for d in decoded):
        raise RuntimeError(f"a generated JPEG did not decode: {[d.reason for d in decoded if d.image is None][:3]}")
    return np.stack([d.image for d in decoded if d.image is not None])


def run(options: BenchOptions) -> Result:
    import tensorflow as tf

    from driftloop.ml import drift
    from driftloop.ml.model_io import forward_pass, load_model

    n = 120 if options.quick else 600
    folder = photo_folder(options.workdir, PHOTO_SEED + options.seed, n, n)
    files = sorted(folder.rglob("*.jpg"))
    sizes = []
    from PIL import Image

    for path in files:
        with Image.open(path) as image:
            sizes.append(image.size)
    training = TrainingConfig(epochs=4, patience=2) if options.quick else TrainingConfig()
    data = fixtures.dataset(options.workdir, options.seed, "small" if options.quick else "blog")
    tf.keras.utils.set_random_seed(options.seed)
    model = load_model(fixtures.trained_model(options.workdir, data, training))
    predict = forward_pass(model.model, drift.PREDICT_BATCH)

    decoded = {name: decode_all(files, gap) for name, gap in VARIANTS.items()}
    times = dict(zip(VARIANTS, best_of(1 if options.quick else 3,
                                       *(lambda gap=gap: decode_all(files, gap) for gap in VARIANTS.values())),
                     strict=True))
    probabilities = {name: predict(images.astype(np.float32)) for name, images in decoded.items()}
    labels = np.array([model.classes.index(path.parent.name) for path in files])
    full = decoded["full"].astype(np.int16)
    variants: dict[str, Any] = {}
    for name, images in decoded.items():
        mae = np.abs(images.astype(np.int16) - full).mean(axis=(1, 2, 3))
        change = np.abs(probabilities[name] - probabilities["full"]).max(axis=1)
        variants[name] = {
            "draft_gap": VARIANTS[name],
            "ms_per_image": 1000 * times[name] / len(files),
            "speed_vs_full": times["full"] / times[name],
            "pixel_mae_mean": float(mae.mean()), "pixel_mae_p95": float(np.percentile(mae, 95)),
            "pixel_mae_max": float(mae.max()),
            "same_class_as_full": float(np.mean(probabilities[name].argmax(1) == probabilities["full"].argmax(1))),
            "probability_change_p95": float(np.percentile(change, 95)), "probability_change_max": float(change.max()),
            "accuracy": float(np.mean(probabilities[name].argmax(1) == labels)),
        }
    mean_bytes = float(np.mean([p.stat().st_size for p in files]))
    data_out = {"n_images": len(files), "mean_bytes": mean_bytes,
                "width_range": [min(w for w, _ in sizes), max(w for w, _ in sizes)],
                "height_range": [min(h for _, h in sizes), max(h for _, h in sizes)],
                "default_draft_gap": DRAFT_GAP, "variants": variants}
    rows = [(name, v["ms_per_image"], v["speed_vs_full"], v["pixel_mae_mean"], v["pixel_mae_p95"], v["pixel_mae_max"],
             v["same_class_as_full"], v["probability_change_p95"], v["probability_change_max"], v["accuracy"])
            for name, v in variants.items()]
    tables = [table(("decoding", "ms / image", "speed vs full", "pixel MAE mean", "p95", "max", "same class",
                     "prob. change p95", "max", "accuracy"), rows,
                    f"JPEG decoding to 48 px, {len(files)} photo-like JPEGs ({mean_bytes / 1024:.0f} KB "
                    f"mean), one process, best of {1 if options.quick else 3}")]
    return Result(data_out, tables)
