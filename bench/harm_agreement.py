"""Agreement with harm inside a simulation: every model it trained × every stage's test set × every feature kind.

The drift-quality benchmark asks how often each detector fires for the Original model over many
drawn batches; this asks the simulation's own question for every model the run trained (not only
the Original one): on the 42-image test set of each stage, does the detector fire where the model's
accuracy fell by at least ``HARM_POINTS`` against its own stage's test set, and stay quiet where it
did not? It is what decides whether the default features catch a model that has become confidently
wrong (a retrained model served the sharp Original images), which an Original-only study cannot.

Each cell runs the monitoring component's code path without its file I/O: the reference is a
detector fitted on the features of the model's own training shards (the sample the component takes),
the batch is the stage's processed test set, and the verdict is ``driftloop.ml.drift.score`` with the
component's Bonferroni split of α (p_val 0.05). One draw per cell: a summary, not a rate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import table
from driftloop.config import DriftConfig
from driftloop.layout import STAGE_NAMES
from driftloop.local.outcome import HARM_POINTS

KINDS = ("uae", "embeddings", "softmax", "uncertainty", "predictions")


def _feature_model(kind: str, classifier: Any, image_size: int, config: DriftConfig) -> Any:
    from driftloop.ml import drift

    if kind == "uae":
        return drift.build_uae_encoder(image_size, config.encoding_dim, config.seed)
    return drift.classifier_features(classifier, kind)


def study(workdir: Path) -> dict[str, Any]:
    """Per (model, test set, kind): the verdict and statistic; per kind: harmful and harmless cells flagged."""
    from driftloop.ml import drift
    from driftloop.ml.model_io import load_model
    from driftloop.ml.shards import read_summary

    simulation = json.loads((workdir / "simulation.json").read_text())
    matrix, models = simulation["matrix"], simulation["models"]
    config = DriftConfig()
    cells: list[dict[str, Any]] = []
    for label, run_id in models.items():
        run = workdir / "state" / "store" / "runs" / "train" / run_id
        own_stage = label.split("#")[0]
        classifier = load_model(run / "model").model
        reference = run / "train_shards"
        summary = read_summary(reference)
        keep = drift.reference_indices(summary.n_images, config.max_reference, config.seed)
        for kind in KINDS:
            model = _feature_model(kind, classifier, summary.image_size, config)
            features = drift.extract_features(model, drift.iter_images(reference, keep))
            ks = drift.fit(features, config.p_val, config.correction)
            shares = drift.alpha_shares(kind, features.shape[1])
            for stage in STAGE_NAMES:
                batch = drift.extract_features(model, drift.iter_images(workdir / "evaluation" / "processed" / stage))
                result = drift.score(ks, batch, shares)
                drop = matrix[label][own_stage]["accuracy"] - matrix[label][stage]["accuracy"]
                cells.append({"model": label, "test_set": stage, "kind": kind, "accuracy_drop": round(drop, 4),
                              "harmful": drop >= HARM_POINTS - 1e-9, "drift": result.is_drift,
                              "statistic": result.statistic, "threshold": result.threshold})
    summary_rows = []
    for kind in KINDS:
        mine = [c for c in cells if c["kind"] == kind]
        harmful = [c for c in mine if c["harmful"]]
        harmless = [c for c in mine if not c["harmful"]]
        summary_rows.append({
            "kind": kind,
            "harmful_flagged": sum(c["drift"] for c in harmful), "harmful": len(harmful),
            "harmless_flagged": sum(c["drift"] for c in harmless), "harmless": len(harmless),
            "missed": [f"{c['model']} on {c['test_set']} (-{100 * c['accuracy_drop']:.1f})"
                       for c in harmful if not c["drift"]],
        })
    return {"cells": cells, "summary": summary_rows, "harm_points": HARM_POINTS}


def tables(result: dict[str, Any]) -> list[str]:
    rows = [(r["kind"], f"{r['harmful_flagged']} / {r['harmful']}", f"{r['harmless_flagged']} / {r['harmless']}",
             "; ".join(r["missed"]) or "-") for r in result["summary"]]
    return [table(("features", "harmful cells flagged", "harmless cells flagged", "harmful cells missed (points)"),
                  rows, "Agreement with harm in the simulation: every model it trained on every stage's test set; "
                        f"harmful = accuracy ≥ {100 * result['harm_points']:.0f} points below the model's own "
                        "stage's test set; Bonferroni, α = 0.05")]
