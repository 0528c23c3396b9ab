"""The explainability component: what the classifier looks at, with SHAP (expected gradients).

Train mode keeps a seeded background sample of the training images (SHAP integrates from it) and
draws one mean |SHAP| map per class, explaining a few images of each class for their true class.
Serve mode explains a seeded sample of the batch for the class each image was predicted as
(read from the algorithm's ``predictions.csv``, every host's part), with one overlay picture per
image and a grid. The sample is drawn in the images' path order, so it is the same whichever hosts
processed and predicted the batch.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from driftloop.components.entrypoint import Invocation, read_settings, run_component
from driftloop.config import ExplainConfig
from driftloop.errors import UserError
from driftloop.files import NAME_ENCODING, NAME_ERRORS
from driftloop.hosts import part_files
from driftloop.ml.explain import (
    expected_gradients,
    heat,
    safe_name,
    sample_in_path_order,
    sample_indices,
    save_grid,
    save_overlay,
    take,
)
from driftloop.ml.model_io import LoadedModel, ModelNotFound, load_model
from driftloop.ml.shards import UNKNOWN_LABEL, ShardSummary, iter_shards, read_summary, remap_labels
from driftloop.pipelines import PREDICTIONS_FILE, Component

log = logging.getLogger(__name__)

BACKGROUND_FILE = "background.npz"
CLASS_MAPS_FILE = "class_maps.npz"
CLASS_MAPS_PICTURE = "class_maps.png"
EXPLAINER_FILE = "explainer.json"
SHAP_VALUES_FILE = "shap_values.npz"
GRID_PICTURE = "grid.png"
OVERLAY_FOLDER = "overlays"
EXPLANATIONS_FILE = "explanations.json"


def _summary(folder: Path, what: str) -> ShardSummary:
    try:
        summary = read_summary(folder)
    except FileNotFoundError as error:
        raise UserError(f"{what}: {error}") from error
    if summary.n_images == 0:
        raise UserError(f"{what}: {folder} holds no images")
    return summary


def _model(folder: Path) -> LoadedModel:
    try:
        return load_model(folder)
    except ModelNotFound as error:
        raise UserError(str(error)) from error


def _class_sample(folder: Path, summary: ShardSummary, classes: Sequence[str], per_class: int, seed: int) -> np.ndarray:
    """Positions of up to ``per_class`` seeded images of each model class (labels only are kept)."""
    labels = np.concatenate([remap_labels(s.labels, s.classes, classes) for s in iter_shards(folder)])
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(members, size=min(per_class, len(members)), replace=False)
        for c in range(len(classes))
        if len(members := np.flatnonzero(labels == c))
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def run_train(invocation: Invocation) -> dict[str, Any]:
    """Save the background sample and the per-class mean |SHAP| maps."""
    config = read_settings(invocation, ExplainConfig, "explainability")
    train_dir, out = invocation.inputs["train"], invocation.outputs["explainer"]
    summary = _summary(train_dir, "train")
    loaded = _model(invocation.inputs["model"])
    background = take(train_dir, sample_indices(summary.n_images, config.n_background, config.seed))
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / BACKGROUND_FILE, images=background.images, files=background.files)

    started = time.perf_counter()
    sample = take(train_dir, _class_sample(train_dir, summary, loaded.classes, config.per_class, config.seed))
    labels = remap_labels(sample.labels, summary.classes, loaded.classes)
    size = background.images.shape[1:3]
    maps = np.zeros((len(loaded.classes), *size), dtype=np.float32)
    counts = np.bincount(labels[labels != UNKNOWN_LABEL], minlength=len(loaded.classes))
    if len(sample):
        values = expected_gradients(
            loaded.model, background.images, sample.images, labels, nsamples=config.nsamples, seed=config.seed
        )
        np.add.at(maps, labels, heat(values))
        maps /= np.maximum(counts, 1)[:, None, None]
    seconds = time.perf_counter() - started
    np.savez(out / CLASS_MAPS_FILE, maps=maps, counts=counts, classes=np.asarray(loaded.classes, dtype=str))
    save_grid(out / CLASS_MAPS_PICTURE, maps, [f"{c} (n={k})" for c, k in zip(loaded.classes, counts, strict=True)])
    info = {
        "n_background": len(background),
        "n_class_images": int(counts.sum()),
        "images_per_class": dict(zip(loaded.classes, counts.tolist(), strict=True)),
        "classes": loaded.classes,
        "shap_seconds": round(seconds, 3),
        "settings": config.to_dict(),
    }
    (out / EXPLAINER_FILE).write_text(json.dumps(info, indent=2))
    log.info("explainer: %d background images, class maps from %d images in %.1f s", len(background),
             counts.sum(), seconds)
    return info


def _read_predictions(folder: Path) -> dict[str, tuple[str, float]]:
    """Every host's predictions (``driftloop.hosts``): file -> (predicted class, confidence)."""
    paths = part_files(folder, PREDICTIONS_FILE)
    if not paths:
        raise UserError(f"no {PREDICTIONS_FILE} in {folder}: run the algorithm component (serve) first")
    predictions: dict[str, tuple[str, float]] = {}
    for path in paths:
        with path.open(newline="", encoding=NAME_ENCODING, errors=NAME_ERRORS) as handle:
            predictions.update((row["file"], (row["predicted_class"], float(row["confidence"])))
                               for row in csv.DictReader(handle))
    return predictions


def _background(folder: Path) -> np.ndarray:
    path = folder / BACKGROUND_FILE
    if not path.exists():
        raise UserError(f"no {BACKGROUND_FILE} in {folder}: run the train pipeline first")
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data["images"])


def run_serve(invocation: Invocation) -> dict[str, Any]:
    """Explain a seeded sample of the batch for each image's predicted class."""
    config = read_settings(invocation, ExplainConfig, "explainability")
    batch_dir, out = invocation.inputs["batch"], invocation.outputs["explanations"]
    _summary(batch_dir, "batch")  # a processed folder with images
    loaded = _model(invocation.inputs["model"])
    background = _background(invocation.inputs["explainer"])
    predictions = _read_predictions(invocation.inputs["predictions"])
    sample = sample_in_path_order(batch_dir, config.n_explain, config.seed)
    files = [str(f) for f in sample.files]
    missing = [f for f in files if f not in predictions]
    if missing:
        raise UserError(f"predictions do not cover the batch (e.g. {missing[:3]}): run predict on this batch")
    unknown = sorted({predictions[f][0] for f in files} - set(loaded.classes))
    if unknown:
        raise UserError(f"predicted class(es) {unknown} are not the model's {loaded.classes}: another model?")
    predicted = np.array([loaded.classes.index(predictions[f][0]) for f in files], dtype=np.int64)

    started = time.perf_counter()
    values = expected_gradients(
        loaded.model, background, sample.images, predicted, nsamples=config.nsamples, seed=config.seed
    )
    seconds = time.perf_counter() - started

    out.mkdir(parents=True, exist_ok=True)
    np.savez(
        out / SHAP_VALUES_FILE, values=values, files=np.asarray(files, dtype=str), predicted=predicted,
        classes=np.asarray(loaded.classes, dtype=str),
    )
    heat_maps = heat(values)
    titles = [f"{predictions[f][0]} ({predictions[f][1]:.2f})" for f in files]
    (out / OVERLAY_FOLDER).mkdir(exist_ok=True)
    overlays = []
    for i, (file, image, heat_map, title) in enumerate(zip(files, sample.images, heat_maps, titles, strict=True)):
        name = f"{OVERLAY_FOLDER}/{i:03d}-{safe_name(file)}.png"
        save_overlay(out / name, image, heat_map, title)
        overlays.append(name)
    save_grid(out / GRID_PICTURE, heat_maps, titles, images=sample.images)
    result = {
        "n": len(files),
        "explained": [
            {"file": f, "predicted_class": predictions[f][0], "confidence": predictions[f][1], "overlay": o}
            for f, o in zip(files, overlays, strict=True)
        ],
        "grid": GRID_PICTURE,
        "shap_values": SHAP_VALUES_FILE,
        "shap_seconds": round(seconds, 3),
        "shap_seconds_per_image": round(seconds / len(files), 3),
        "settings": config.to_dict(),
    }
    (out / EXPLANATIONS_FILE).write_text(json.dumps(result, indent=2))
    log.info("explained %d image(s) in %.1f s", len(files), seconds)
    return result


RUNNERS = {"train": run_train, "serve": run_serve}


def main(argv: Sequence[str] | None = None) -> int:
    return run_component(Component.EXPLAINABILITY, RUNNERS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
