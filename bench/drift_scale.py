"""Drift decisions at large n: false positives and detection at 1,000 / 10,000 / 100,000 images,
with and without the effect-size floor (``DriftConfig.min_distance``), on harmless and harmful shifts.

The model is the algorithm component's, trained on Original (default settings); the detector is
the monitoring component's default (``predictions`` features, weighted Bonferroni, α = 0.05). Two
references: the component's own (its 408 training images) and 2,000 fresh Original images, the
``max_reference`` cap a deployment trained on 2,000 or more images reaches. A KS test's power grows
with ``n m / (n + m)``, so the cap, not the batch, bounds what the test can resolve.

Shifts, applied to a pool of fresh Original images after processing (48 px, as the model sees them):
brightness factors (pixels × b, clipped), whose accuracy cost is measured here, and Stage-1's random
flips (the mildest harmful stage). "Harmless" = costs the model < 1 point, "harmful" = at least the
simulation's ``HARM_POINTS``. Batches are drawn with replacement from the pool; at 100,000 a batch
holds each of the pool's images ~5 times, so that row measures the pool's own distance to the
reference more than independent batches (the pool's sampling error in a KS distance is ~0.006).

Scoring reuses ``bench.drift_quality.MemoKS`` (alibi-detect's p-values bit for bit) and
``driftloop.ml.drift.effect_size``'s rule; one batch is run through the monitoring component and must
give the same p-values, effect size and verdict.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np

from bench import fixtures
from bench.common import BenchOptions, Result, table
from bench.drift_quality import MemoKS
from driftloop.config import DriftConfig, ProcessingConfig, TrainingConfig
from driftloop.local.data import synthetic
from driftloop.ml import images as image_rules
from driftloop.pipelines import DRIFT_REPORT_FILE, Component

FLOORS = (0.0, 0.05, 0.1, 0.15, 0.2)
BRIGHTNESS = (0.8, 0.9, 0.95, 1.05, 1.1, 1.25, 0.5)
HARMLESS_POINTS = 1.0
POOL_SEED = 3000  # far from every other fixture's seeds
CAP_REFERENCE = 2000


def _render(args: tuple[int, int, int]) -> tuple[np.ndarray, list[str]]:
    """Fresh originals ``start..stop`` of the seeded sequence, processed as ``decode_file`` does a PNG."""
    from PIL import Image

    seed, start, stop = args
    size = ProcessingConfig().image_size
    pixels, labels = [], []
    for item in fixtures.interleaved_originals(seed, stop, start):
        square = image_rules.centre_square(image_rules.to_rgb(item.image))
        square = square.resize((size, size), Image.Resampling.BICUBIC)
        pixels.append(np.asarray(square, dtype=np.uint8))
        labels.append(item.label)
    return np.stack(pixels), labels


def fresh_originals(workdir: Path, seed: int, count: int) -> Path:
    """``count`` fresh Original images at the model's size, in one ``.npz`` (rendered on every core)."""

    def make(folder: Path) -> None:
        chunks = [(seed, start, min(start + 1000, count)) for start in range(0, count, 1000)]
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            parts = pool.map(_render, chunks)
        np.savez(folder / "pool.npz", images=np.concatenate([p[0] for p in parts]),
                 labels=np.array([label for p in parts for label in p[1]]))

    # Keyed by the renderer's source, not all of driftloop: a change elsewhere leaves the pixels alone.
    code = hashlib.sha256(Path(synthetic.__file__).read_bytes() + Path(image_rules.__file__).read_bytes())
    return fixtures.cached(workdir / f"fresh-originals-{count}-s{seed}", {"seed": seed, "count": count}, make,
                           code=code.hexdigest())


def shifted(images: np.ndarray, shift: str, rng: np.random.Generator) -> np.ndarray:
    """``original``, ``brightness x<b>`` (pixels × b, clipped to 255) or ``stage-1 flips`` (50 % each axis)."""
    if shift == "original":
        return images
    if shift.startswith("brightness"):
        factor = float(shift.split("x")[-1])
        return np.clip(images.astype(np.float32) * factor, 0, 255).round().astype(np.uint8)
    if shift == "stage-1 flips":
        out = images.copy()
        lr, ud = rng.random(len(images)) < 0.5, rng.random(len(images)) < 0.5
        out[lr] = out[lr, :, ::-1]
        out[ud] = out[ud, ::-1]
        return out
    raise ValueError(shift)


def _features(model: Any, images: np.ndarray) -> np.ndarray:
    from driftloop.ml import drift

    return drift.extract_features(model, (images[i:i + 2000].astype(np.float32) for i in range(0, len(images), 2000)))


def verdict(p_values: np.ndarray, distances: np.ndarray, shares: np.ndarray, floor: float,
            p_val: float = 0.05) -> tuple[bool, float]:
    """(drift, effect size) by the rules of ``drift.score`` (weighted Bonferroni) and ``drift.effect_size``."""
    significant = p_values < p_val * shares
    effect = float(distances[significant].max()) if significant.any() else 0.0
    return bool(significant.any() and effect >= floor), effect


def _component_check(options: BenchOptions, images: np.ndarray, detector: Path, model: Path,
                     ours: tuple[np.ndarray, np.ndarray], floor: float) -> dict[str, Any]:
    """The monitoring component on a batch folder must reproduce our p-values, effect size and verdict."""
    from driftloop.drift_report import DriftReport
    from driftloop.ml import drift
    from driftloop.ml.shards import write_shards

    batch, out = options.workdir / "drift-scale-check-batch", options.workdir / "drift-scale-check-report"
    write_shards(batch, ((image, -1, f"{k:05d}.png") for k, image in enumerate(images)), shard_size=256,
                 image_size=images.shape[1], classes=[])
    fixtures.run_component(Component.DRIFT, "serve", {"batch": batch, "detector": detector, "model": model},
                           {"report": out}, {"min_distance": floor})
    report = DriftReport.read(out / DRIFT_REPORT_FILE)
    p_values, distances = ours
    drifted, effect = verdict(p_values, distances, drift.alpha_shares("predictions", len(p_values)), floor)
    p_difference = float(np.max(np.abs(np.asarray(report.p_values) - p_values)))
    check: dict[str, Any] = {
        "batch_size": len(images), "floor": floor, "max_abs_p_value_difference": p_difference,
        "max_abs_distance_difference": float(np.max(np.abs(np.asarray(report.distances) - distances))),
        "component": {"significant": report.significant, "effect_size": report.effect_size,
                      "is_drift": report.is_drift},
        "ours": {"effect_size": effect, "is_drift": drifted},
    }
    if p_difference > 1e-6 or abs(report.effect_size - effect) > 1e-6 or \
            report.is_drift != drifted:
        raise RuntimeError(f"precomputed features do not reproduce the component's verdict: {check}")
    return check


def run(options: BenchOptions) -> Result:
    import tensorflow as tf

    from driftloop.local.outcome import HARM_POINTS
    from driftloop.ml import drift
    from driftloop.ml.model_io import load_model

    quick = options.quick
    pool_size = 3000 if quick else 20_000
    batch_sizes = (1000, 3000) if quick else (1000, 10_000, 100_000)
    n_batches = {1000: 20, 3000: 10} if quick else {1000: 100, 10_000: 100, 100_000: 30}
    training = TrainingConfig(epochs=4, patience=2) if quick else TrainingConfig()
    size = "small" if quick else "blog"

    data = fixtures.dataset(options.workdir, options.seed, size)
    model_dir = fixtures.trained_model(options.workdir, data, training)
    train_shards = fixtures.original_shards(options.workdir, data) / "train"
    detector_dir = fixtures.detector(options.workdir, train_shards, model_dir, DriftConfig(seed=options.seed))
    component_reference = drift.load(detector_dir).ks.x_ref
    fresh = np.load(fresh_originals(options.workdir, POOL_SEED + options.seed, pool_size + CAP_REFERENCE) / "pool.npz")

    tf.keras.utils.set_random_seed(options.seed)
    loaded = load_model(model_dir)
    features_model = drift.classifier_features(loaded.model, "predictions")
    labels = np.array([loaded.classes.index(label) for label in fresh["labels"]])
    pool_images, pool_labels = fresh["images"][CAP_REFERENCE:], labels[CAP_REFERENCE:]
    references = {f"training images ({len(component_reference)})": np.asarray(component_reference),
                  f"{CAP_REFERENCE} fresh originals (the max_reference cap)":
                      _features(features_model, fresh["images"][:CAP_REFERENCE])}

    shifts = ["original", *(f"brightness x{b}" for b in BRIGHTNESS), "stage-1 flips"]
    rng = np.random.default_rng([options.seed, 11])
    features, accuracy = {}, {}
    for shift in shifts:
        features[shift] = _features(features_model, shifted(pool_images, shift, rng))
        accuracy[shift] = float(np.mean(features[shift][:, 1:].argmax(axis=1) == pool_labels))
    drop = {s: 100 * (accuracy["original"] - accuracy[s]) for s in shifts}
    kind = {s: "clean" if s == "original" else "harmless" if drop[s] < HARMLESS_POINTS
            else "harmful" if drop[s] >= 100 * HARM_POINTS else "in between" for s in shifts}

    shares = drift.alpha_shares("predictions", features["original"].shape[1])
    # flagged[reference][shift][n][floor] -> share of batches; effect[reference][shift][n] -> percentiles
    flagged: dict[str, Any] = {}
    effects: dict[str, Any] = {}
    largest: dict[str, Any] = {}
    for name, reference in references.items():
        memo = MemoKS(reference)
        flagged[name], effects[name], largest[name] = {}, {}, {}
        for s, shift in enumerate(shifts):
            flagged[name][shift], effects[name][shift], largest[name][shift] = {}, {}, {}
            for n in batch_sizes:
                draws = np.random.default_rng([options.seed, n, s]).integers(0, len(pool_labels), (n_batches[n], n))
                results = [memo.test(features[shift][indices]) for indices in draws]
                counts = dict.fromkeys(FLOORS, 0)
                sizes = []
                for p_values, distances in results:
                    for floor in FLOORS:
                        counts[floor] += verdict(p_values, distances, shares, floor)[0]
                    sizes.append(verdict(p_values, distances, shares, 0.0)[1])
                flagged[name][shift][str(n)] = {str(f): c / n_batches[n] for f, c in counts.items()}
                effects[name][shift][str(n)] = {q: float(np.percentile(sizes, q)) for q in (5, 50, 95)}
                largest[name][shift][str(n)] = float(np.median([d.max() for _, d in results]))

    # One batch through the component (its own 408-image reference): the rules above are its rules.
    check_shift = next(s for s in shifts if kind[s] == "harmless")
    indices = np.random.default_rng([options.seed, 5]).integers(0, len(pool_labels), batch_sizes[0])
    memo = MemoKS(np.asarray(component_reference))
    check = _component_check(options, shifted(pool_images, check_shift, np.random.default_rng(0))[indices],
                             detector_dir, model_dir, memo.test(features[check_shift][indices]),
                             DriftConfig().min_distance)

    data_out = {
        "pool_images": len(pool_labels), "batch_sizes": list(batch_sizes), "n_batches": n_batches,
        "floors": list(FLOORS), "default_floor": DriftConfig().min_distance, "harmless_points": HARMLESS_POINTS,
        "harm_points": 100 * HARM_POINTS, "training": training.to_dict(), "accuracy": accuracy,
        "accuracy_drop_points": drop,
        "kind": kind, "reference_sizes": {name: len(ref) for name, ref in references.items()},
        "flagged": flagged, "effect_size_percentiles": effects, "median_largest_distance": largest,
        "component_check": {"shift": check_shift, **check},
    }
    return Result(data_out, _tables(data_out, shifts, batch_sizes))


def _tables(data: dict[str, Any], shifts: list[str], batch_sizes: tuple[int, ...]) -> list[str]:
    tables = [table(("shift", "accuracy", "drop (points)", "kind"),
                    [(s, f"{100 * data['accuracy'][s]:.1f}%", round(data["accuracy_drop_points"][s], 2),
                      data["kind"][s]) for s in shifts],
                    f"Accuracy of the Original model on {data['pool_images']} fresh images per shift")]
    default = str(data["default_floor"])
    for name, per_shift in data["flagged"].items():
        rows = []
        for shift in shifts:
            for n in batch_sizes:
                cell = per_shift[shift][str(n)]
                effect = data["effect_size_percentiles"][name][shift][str(n)]
                rows.append((shift, data["kind"][shift], n, *(cell[str(f)] for f in data["floors"]),
                             f"{effect[5]:.3f} / {effect[50]:.3f} / {effect[95]:.3f}"))
        tables.append(table(
            ("shift", "kind", "batch", *(f"floor {f}" + (" (default)" if str(f) == default else "")
                                         for f in data["floors"]), "effect size p5 / p50 / p95"),
            rows, f"Share of batches flagged, reference: {name} (predictions, weighted Bonferroni, α = 0.05; "
            "floor 0 = the KS test alone)"))
    return tables
