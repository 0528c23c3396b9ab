"""Drift quality: how often the detector fires on clean and on drifted batches, next to the harm done.

The model is the algorithm component's, trained on Original (default settings); every detector is
the monitoring component's (train mode, reference = the training images), one per feature kind.
Batches are drawn with replacement from held-out pools (fresh seeds, so neither the model nor the
reference saw them) of every stage, paired: the same draws for every feature kind.

Cost: features are computed once per pool image, then each batch costs only its KS tests. Three
links make that the component's verdict: the monitoring component on a real batch folder equals
``driftloop.ml.drift.score`` on the precomputed features (once per run); ``MemoKS`` equals
``drift.score`` bit for bit (the first batch of every cell); and the per-feature p-values do not
depend on the correction or the threshold, so one KS run per batch serves every (correction, α)
pair, with Bonferroni and alibi-detect's own ``fdr`` applied to the same p-values (checked
against detectors fitted with each correction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import fixtures
from bench.common import BenchOptions, Result, table
from driftloop.config import DriftConfig, TrainingConfig
from driftloop.layout import STAGE_NAMES
from driftloop.pipelines import DRIFT_REPORT_FILE, Component

KINDS = ("uae", "embeddings", "softmax", "uncertainty", "predictions")
# Suffix of the detectors whose reference is held-out Original images instead of the training images.
HELD_OUT = ", held-out ref"
CORRECTIONS = ("bonferroni", "fdr")
ALPHAS = (0.01, 0.05, 0.1)
# The seed blog's result with its detector, for comparison (batches of 42 test images).
SEED_HEADLINE = {
    "fired": ["stage-3", "stage-5"],
    "missed": ["noisy"],
    "stage-3 accuracy": "97% -> 92.8%",
}


@dataclass(frozen=True)
class Pool:
    """One stage's held-out images as features (per kind) and labels."""

    features: dict[str, np.ndarray]
    labels: np.ndarray
    shards: Path


def _labels(shards: Path, classes: list[str]) -> np.ndarray:
    from driftloop.components.algorithm import remap_labels
    from driftloop.ml.shards import iter_shards, read_summary

    source = read_summary(shards).classes
    return np.concatenate([remap_labels(s.labels, source, classes) for s in iter_shards(shards)])


def _features(classifier: Any, encoder: Any, shards: Path, keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every feature kind for a processed folder, batch by batch as ``drift.extract_features`` does.

    ``classifier`` outputs the ``embedding`` layer, the class probabilities and the
    ``predictions`` features (entropy first) in one pass.
    """
    from driftloop.ml import drift

    parts: dict[str, list[np.ndarray]] = {kind: [] for kind in KINDS}
    for batch in drift.iter_images(shards, keep):
        embedding, probability, predictions = classifier.predict(batch, batch_size=drift.PREDICT_BATCH, verbose=0)
        parts["uae"].append(encoder.predict(batch, batch_size=drift.PREDICT_BATCH, verbose=0))
        parts["embeddings"].append(embedding)
        parts["softmax"].append(probability)
        parts["uncertainty"].append(predictions[:, :1])
        parts["predictions"].append(predictions)
    return {kind: np.concatenate(values).astype(np.float32) for kind, values in parts.items()}


def decisions(p_values: np.ndarray, alpha: float, shares: np.ndarray) -> dict[str, bool]:
    """Both corrections' verdicts on one batch's p-values, by the rules of ``driftloop.ml.drift.score``."""
    from alibi_detect.utils.statstest import fdr

    return {
        "bonferroni": bool((p_values < alpha * shares).any()),
        "fdr": bool(fdr(p_values, q_val=alpha)[0]),
    }


class MemoKS:
    """alibi-detect's ``KSDrift`` p-values (two-sided, ``mode="asymp"``), with scipy's p-value memoised.

    Each feature's p-value is ``kstwo.sf(D, round(n m / (n + m)))``; D takes few distinct values,
    and that function costs ~10 ms a call, so a batch of 32 features drops from ~0.3 s to ~1 ms.
    D is computed exactly as ``scipy.stats.ks_2samp`` does and the result is cast to float32 as
    alibi-detect stores it: the p-values are bit-identical (checked against the detector).
    """

    def __init__(self, x_ref: np.ndarray) -> None:
        self.reference = np.sort(x_ref.reshape(len(x_ref), -1), axis=0)
        self.cache: dict[tuple[float, float], float] = {}

    def p_values(self, x: np.ndarray) -> np.ndarray:
        return self.test(x)[0]

    def test(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per feature: the p-value (float32, as alibi-detect compares it) and the KS distance."""
        from scipy.stats import kstwo

        n1, n2 = len(self.reference), len(x)
        big, small = sorted([float(n1), float(n2)], reverse=True)
        en = float(np.round(big * small / (big + small)))
        batch = np.sort(x.reshape(n2, -1), axis=0)
        out = np.empty(batch.shape[1], dtype=np.float32)
        distances = np.empty(batch.shape[1], dtype=np.float64)
        for f in range(batch.shape[1]):
            ref, new = self.reference[:, f], batch[:, f]
            both = np.concatenate([ref, new])
            diffs = np.searchsorted(ref, both, side="right") / n1 - np.searchsorted(new, both, side="right") / n2
            min_s, max_s = np.clip(-diffs.min(), 0, 1), diffs.max()
            d = float(min_s if min_s > max_s else max_s)
            if (d, en) not in self.cache:
                self.cache[(d, en)] = float(np.clip(kstwo.sf(d, en), 0, 1))
            out[f], distances[f] = self.cache[(d, en)], d
        return out, distances


def _shares(name: str, features: np.ndarray) -> np.ndarray:
    """The Bonferroni split of α the component uses for a detector (``name`` may carry ``HELD_OUT``)."""
    from driftloop.ml import drift

    return drift.alpha_shares(name.removesuffix(HELD_OUT), features.shape[1])


def _check_against_detectors(p_values: np.ndarray, shares: np.ndarray, bonferroni: Any, fdr: Any) -> None:
    """Our p-values and verdicts must be the detectors' own, bit for bit."""
    if not np.array_equal(p_values, bonferroni.p_values):
        raise RuntimeError("memoised KS p-values differ from the detector's")
    verdicts = decisions(p_values, 0.05, shares)
    if verdicts["bonferroni"] != bonferroni.is_drift or verdicts["fdr"] != fdr.is_drift:
        raise RuntimeError("Bonferroni/FDR rules disagree with detectors fitted with that correction")


def _component_check(options: BenchOptions, pool: Pool, detectors: dict[str, Path], model: Path,
                     ks: dict[str, Any], indices: np.ndarray) -> dict[str, Any]:
    """The monitoring component on one batch folder vs ``drift.score`` on the precomputed features."""
    from driftloop.drift_report import DriftReport
    from driftloop.ml import drift
    from driftloop.ml.shards import load_all, write_shards

    images = load_all(pool.shards)
    batch = options.workdir / "drift-check-batch"
    write_shards(batch, ((images.images[i], int(images.labels[i]), f"{k:05d}.png") for k, i in enumerate(indices)),
                 shard_size=DriftConfig().max_reference, image_size=images.images.shape[1], classes=[])
    checks: dict[str, Any] = {}
    for kind, folder in detectors.items():
        out = options.workdir / "drift-check-report" / kind
        fixtures.run_component(Component.DRIFT, "serve", {"batch": batch, "detector": folder, "model": model},
                               {"features": out / "features"}, {})
        fixtures.run_component(Component.DRIFT, "merge", {"features": out / "features", "detector": folder},
                               {"report": out}, {})
        report = DriftReport.read(out / DRIFT_REPORT_FILE)
        ours = drift.score(ks[kind], pool.features[kind][indices], _shares(kind, pool.features[kind]))
        diff = float(np.max(np.abs(np.asarray(report.p_values) - ours.p_values)))
        checks[kind] = {"batch_size": len(indices), "max_abs_p_value_difference": diff,
                        "same_verdict": report.is_drift == ours.is_drift, "component_is_drift": report.is_drift}
        if diff > 1e-6 or report.is_drift != ours.is_drift:
            raise RuntimeError(f"{kind}: precomputed features do not reproduce the component's score: {checks[kind]}")
    return checks


def run(options: BenchOptions) -> Result:
    import tensorflow as tf

    from driftloop.local.outcome import HARM_POINTS
    from driftloop.ml import drift
    from driftloop.ml.model_io import EMBEDDING_LAYER, load_model

    quick = options.quick
    size, pool_seeds, n_reference = ("small", 1, 180) if quick else ("blog", 4, 484)
    n_batches = 20 if quick else 100
    batch_sizes = (42, 200) if quick else (42, 200, 1000)
    training = TrainingConfig(epochs=4, patience=2) if quick else TrainingConfig()

    data = fixtures.dataset(options.workdir, options.seed, size)
    model_dir = fixtures.trained_model(options.workdir, data, training)
    train_shards = fixtures.original_shards(options.workdir, data) / "train"
    detectors = {kind: fixtures.detector(options.workdir, train_shards, model_dir,
                                         DriftConfig(features=kind, correction="bonferroni", p_val=0.05,  # type: ignore[arg-type]
                                                     seed=options.seed))
                 for kind in KINDS}
    loaded = {kind: drift.load(folder) for kind, folder in detectors.items()}
    held_out = fixtures.held_out_pool(options.workdir, options.seed, size, pool_seeds)
    other_originals = fixtures.processed(fixtures.originals(options.workdir, options.seed, n_reference),
                                         options.workdir / f"reference-{n_reference}-s{options.seed}-shards")

    tf.keras.utils.set_random_seed(options.seed)
    model = load_model(model_dir)
    classifier = tf.keras.Model(model.model.inputs, [model.model.get_layer(EMBEDDING_LAYER).output,
                                                     model.model.output,
                                                     drift.classifier_features(model.model, "predictions").output])
    encoder = loaded["uae"].encoder
    # References: the training images the component samples, and held-out Original images.
    keep = drift.reference_indices(len(_labels(train_shards, model.classes)), DriftConfig().max_reference,
                                   options.seed)
    on_train = _features(classifier, encoder, train_shards, keep)
    on_held_out = _features(classifier, encoder, other_originals)
    references = {**on_train, **{f"{kind}{HELD_OUT}": on_held_out[kind] for kind in KINDS}}
    checks: dict[str, Any] = {}
    for kind, detector in loaded.items():  # our training-image features are the component's reference
        difference = float(np.max(np.abs(on_train[kind] - detector.ks.x_ref)))
        checks[f"reference_{kind}_max_abs_difference_vs_component"] = difference
        if difference > 1e-5:
            raise RuntimeError(f"{kind}: reference features differ from the component's by {difference}")

    pools: dict[str, Pool] = {}
    for stage in STAGE_NAMES:
        shards = fixtures.processed(held_out / stage / "test", options.workdir / f"{held_out.name}-{stage}-shards")
        features = _features(classifier, encoder, shards)
        features |= {f"{kind}{HELD_OUT}": features[kind] for kind in KINDS}
        pools[stage] = Pool(features, _labels(shards, model.classes), shards)

    ks = {name: drift.fit(reference, 0.05, "bonferroni") for name, reference in references.items()}
    check_rng = np.random.default_rng([options.seed, 7])
    checks["component"] = _component_check(options, pools["stage-3"], detectors, model_dir, ks,
                                           check_rng.integers(0, len(pools["stage-3"].labels), batch_sizes[1]))

    accuracy = {stage: float(np.mean(pool.features["softmax"].argmax(axis=1) == pool.labels))
                for stage, pool in pools.items()}
    drop = {stage: accuracy["original"] - accuracy[stage] for stage in STAGE_NAMES}
    harmful = [s for s in STAGE_NAMES if drop[s] >= HARM_POINTS]

    # counts[detector][correction][alpha][batch size][stage] -> batches flagged
    counts: dict[str, Any] = {d: {c: {str(a): {str(b): dict.fromkeys(STAGE_NAMES, 0) for b in batch_sizes}
                                      for a in ALPHAS} for c in CORRECTIONS} for d in references}
    fast = {name: MemoKS(reference) for name, reference in references.items()}
    fdr_ks = {name: drift.fit(reference, 0.05, "fdr") for name, reference in references.items()}
    checked = 0
    for b in batch_sizes:
        for s, stage in enumerate(STAGE_NAMES):
            pool = pools[stage]
            draws = np.random.default_rng([options.seed, b, s]).integers(0, len(pool.labels), size=(n_batches, b))
            for name in references:
                for i, indices in enumerate(draws):
                    batch = pool.features[name][indices]
                    p_values = fast[name].p_values(batch)
                    if i == 0:  # the detectors themselves, on the first batch of every cell
                        shares = _shares(name, batch)
                        _check_against_detectors(p_values, shares, drift.score(ks[name], batch, shares),
                                                 drift.score(fdr_ks[name], batch, shares))
                        checked += 1
                    for alpha in ALPHAS:
                        for correction, flagged in decisions(p_values, alpha, _shares(name, batch)).items():
                            counts[name][correction][str(alpha)][str(b)][stage] += flagged
    checks["batches_checked_against_detectors"] = checked

    rates = {d: {c: {a: {b: {st: n / n_batches for st, n in per_stage.items()} for b, per_stage in per_b.items()}
                     for a, per_b in per_a.items()} for c, per_a in per_c.items()} for d, per_c in counts.items()}
    summary = _summary(rates, batch_sizes, harmful)
    data_out = {
        "n_batches": n_batches,
        "batch_sizes": list(batch_sizes),
        "alphas": list(ALPHAS),
        "pool_images_per_stage": len(pools["original"].labels),
        "reference_size": {name: len(reference) for name, reference in references.items()},
        "n_features": {name: int(reference.shape[1]) for name, reference in references.items()},
        "training": training.to_dict(),
        "model_val_accuracy": _val_accuracy(model_dir),
        "accuracy": accuracy,
        "accuracy_drop": drop,
        "harm_points": HARM_POINTS,
        "harmful_stages": harmful,
        "rates": rates,
        "summary": summary,
        "ranking": _ranking(summary, batch_sizes),
        "checks": checks,
        "seed_headline": SEED_HEADLINE,
    }
    n_pool = len(pools["original"].labels)
    return Result(data_out, _tables(rates, summary, accuracy, drop, batch_sizes, n_batches, n_pool))


def _ranking(summary: list[dict[str, Any]], batch_sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """Settings whose false-positive rate stays within α at every batch size, best detection at the smallest."""
    cells: dict[tuple[str, str, float], dict[int, dict[str, Any]]] = {}
    for row in summary:
        cells.setdefault((row["features"], row["correction"], row["alpha"]), {})[row["batch_size"]] = row
    within = [(key, per_b) for key, per_b in cells.items() if all(r["fpr_within_alpha"] for r in per_b.values())]
    smallest = batch_sizes[0]
    within.sort(key=lambda item: (-(item[1][smallest]["detection_harmful"] or 0.0),
                                  item[1][smallest]["false_positive_rate"]))
    return [{"features": key[0], "correction": key[1], "alpha": key[2],
             "false_positive_rate": {b: per_b[b]["false_positive_rate"] for b in batch_sizes},
             "detection_harmful": {b: per_b[b]["detection_harmful"] for b in batch_sizes}}
            for key, per_b in within[:10]]


def _val_accuracy(model_dir: Path) -> float:
    import json

    from driftloop.pipelines import TRAIN_METRICS_FILE

    return float(json.loads((model_dir / TRAIN_METRICS_FILE).read_text())["val_accuracy"])


def _summary(rates: dict[str, Any], batch_sizes: tuple[int, ...], harmful: list[str]) -> list[dict[str, Any]]:
    """Per (kind, correction, α, batch size): false-positive rate and mean detection on harmful/harmless stages."""
    harmless = [s for s in STAGE_NAMES[1:] if s not in harmful]
    rows = []
    for kind, per_c in rates.items():
        for correction, per_a in per_c.items():
            for alpha, per_b in per_a.items():
                for b in batch_sizes:
                    r = per_b[str(b)]
                    rows.append({
                        "features": kind, "correction": correction, "alpha": float(alpha), "batch_size": b,
                        "false_positive_rate": r["original"],
                        "fpr_within_alpha": r["original"] <= float(alpha),
                        "detection_harmful": float(np.mean([r[s] for s in harmful])) if harmful else None,
                        "detection_harmless": float(np.mean([r[s] for s in harmless])) if harmless else None,
                    })
    return rows


def _tables(rates: dict[str, Any], summary: list[dict[str, Any]], accuracy: dict[str, float],
            drop: dict[str, float], batch_sizes: tuple[int, ...], n_batches: int, pool: int) -> list[str]:
    header = ("detector features", "batch", "FPR (original)", *STAGE_NAMES[1:])
    rows: list[tuple[object, ...]] = [
        ("accuracy of the Original model", "", f"{100 * accuracy['original']:.1f}%",
         *(f"{100 * accuracy[s]:.1f}%" for s in STAGE_NAMES[1:])),
        ("accuracy drop (points)", "", "", *(f"{100 * drop[s]:.1f}" for s in STAGE_NAMES[1:])),
    ]
    for name, per_c in rates.items():
        for b in batch_sizes:
            r = per_c["bonferroni"]["0.05"][str(b)]
            rows.append((name, b, r["original"], *(r[s] for s in STAGE_NAMES[1:])))
    tables = [table(header, rows, f"Detection rate, Bonferroni, α = 0.05, {n_batches} batches per cell drawn with "
                                  f"replacement from {pool} held-out images per stage")]
    cells: dict[tuple[str, str, float], dict[int, dict[str, Any]]] = {}
    for row in summary:
        cells.setdefault((row["features"], row["correction"], row["alpha"]), {})[row["batch_size"]] = row

    def cell(row: dict[str, Any]) -> str:
        mark = "" if row["fpr_within_alpha"] else " ✗"
        return f"{row['false_positive_rate']:.2f}{mark} / {row['detection_harmful'] or 0.0:.2f}"

    sweep = [(name, correction, alpha, *(cell(per_b[b]) for b in batch_sizes))
             for (name, correction, alpha), per_b in cells.items()]
    tables.append(table(("detector features", "correction", "α", *(f"batch {b}: FPR / detection" for b in batch_sizes)),
                        sweep, "Threshold sweep: false-positive rate (✗: above α) / mean detection rate on the "
                               "stages where accuracy fell by ≥ 5 points"))
    return tables
