"""Warm start: does a retrain from the champion's weights beat one from random weights?

For each data seed the default simulation runs once in this process from random weights (the
default before this benchmark; ``warm_start`` is the default since); then each of its retrains is
trained again, in this process, once per variant: from random weights (what the simulation did:
the same weights, a check of determinism), and from the
champion's weights (the model serving when drift was found) at the default and lower learning
rates, with the same early stopping. Each trained model is scored on its validation set (what
champion/challenger compares) and on every stage's test set. Variants of one retrain run one after
another, so they share the machine's load; the load average is recorded around each.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import fixtures
from bench.common import BenchOptions, Result, load_average, table
from driftloop.config import Settings, TrainingConfig
from driftloop.layout import STAGE_NAMES
from driftloop.local.outcome import SimulationResult
from driftloop.local.simulation import SimulationOptions, simulate
from driftloop.local.timings import cpu_seconds
from driftloop.pipelines import Component
from driftloop.scores import Evaluation

# name -> the training settings that differ from the defaults.
# (``bench/results/warm_start.json`` calls the first "random weights (default)": the default then.)
VARIANTS: dict[str, dict[str, Any]] = {
    "random weights": {"warm_start": False},
    "champion, lr 3e-3": {"warm_start": True},
    "champion, lr 1e-3": {"warm_start": True, "learning_rate": 1e-3},
    "champion, lr 3e-4": {"warm_start": True, "learning_rate": 3e-4},
}


def _retrains(result: SimulationResult) -> list[dict[str, str]]:
    """Each retrain of the run: its stage, its train run and its champion's train run."""
    return [
        {"time": row.time, "stage": row.retrained_on or "", "train_run": result.models[_label_of(result, i)],
         "champion_run": result.models[row.model_trained_on]}
        for i, row in enumerate(result.runs) if row.retrained
    ]


def _label_of(result: SimulationResult, index: int) -> str:
    """The matrix label of the model the ``index``-th run's retrain trained (labels are in training order)."""
    n_before = sum(r.retrained for r in result.runs[:index])
    return list(result.models)[1 + n_before]


def _train(store: Path, retrain: dict[str, str], settings: dict[str, Any], out: Path) -> dict[str, Any]:
    run = store / "runs" / "train" / retrain["train_run"]
    inputs = {"train": run / "train_shards", "val": run / "val_shards",
              "champion": store / "runs" / "train" / retrain["champion_run"] / "model"}
    config = replace(TrainingConfig(), trained_on=retrain["stage"]).to_dict() | settings
    wall, cpu = time.perf_counter(), cpu_seconds()
    metrics = fixtures.run_component(Component.ALGORITHM, "train", inputs, {"model": out}, config)
    return {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(cpu_seconds() - cpu, 2),
            "fit_s": metrics["wall_time_s"], "epochs": metrics["epochs"], "best_epoch": metrics["best_epoch"],
            "val_accuracy": round(metrics["val_accuracy"], 4), "val_loss": round(metrics["val_loss"], 4),
            "initial_weights": metrics["initial_weights"]}


def _test_accuracy(model: Path, processed: Path, out: Path) -> dict[str, float]:
    accuracy = {}
    for stage in STAGE_NAMES:
        result = fixtures.run_component(Component.ALGORITHM, "serve", {"data": processed / stage, "model": model},
                                        {"predictions": out / stage})
        accuracy[stage] = round(result["evaluation"]["accuracy"], 4)
    return accuracy


def _seed_study(options: BenchOptions, seed: int) -> list[dict[str, Any]]:
    data = fixtures.dataset(options.workdir, seed, "small" if options.quick else "blog")
    workdir = options.workdir / "warm_start" / f"seed-{seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    quick = {"epochs": 2, "patience": 1} if options.quick else {}
    settings = Settings(training=TrainingConfig.from_mapping({"warm_start": False, **quick}))
    result = simulate(SimulationOptions(workdir=workdir, data=data, seed=seed, settings=settings, progress=False))
    store, processed = workdir / "state" / "store", workdir / "evaluation" / "processed"
    rows = []
    for retrain in _retrains(result):
        champion_eval = store / "runs" / "train" / retrain["train_run"] / "champion_eval" / "evaluation.json"
        champion = Evaluation.from_json(champion_eval.read_text()).accuracy
        for name, variant in VARIANTS.items():
            out = workdir / "variants" / retrain["train_run"] / name.replace(" ", "_").replace(",", "")
            load_start = load_average()
            trained = _train(store, retrain, {**variant, **quick}, out / "model")
            rows.append({"seed": seed, **retrain, "variant": name, **trained, "champion_val_accuracy": champion,
                         "promoted": trained["val_accuracy"] >= (champion or 0.0),
                         "test_accuracy": _test_accuracy(out / "model", processed, out / "test"),
                         "load_average": {"start": load_start, "end": load_average()}})
    return rows


def _summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant: totals and means over every retrain of every seed."""
    summary = []
    for name in VARIANTS:
        mine = [r for r in rows if r["variant"] == name]
        summary.append({
            "variant": name,
            "retrains": len(mine),
            "wall_s": round(sum(r["wall_s"] for r in mine), 1),
            "fit_s": round(sum(r["fit_s"] for r in mine), 1),
            "epochs": sum(r["epochs"] for r in mine),
            "mean_val_accuracy": round(statistics.mean(r["val_accuracy"] for r in mine), 4),
            "promoted": sum(r["promoted"] for r in mine),
            "mean_own_stage_test_accuracy": round(statistics.mean(r["test_accuracy"][r["stage"]] for r in mine), 4),
            "mean_all_stages_test_accuracy": round(statistics.mean(
                statistics.mean(r["test_accuracy"].values()) for r in mine), 4),
        })
    return summary


def run(options: BenchOptions) -> Result:
    seeds = [options.seed] if options.quick else [options.seed, options.seed + 1]
    rows = [row for seed in seeds for row in _seed_study(options, seed)]
    summary = _summary(rows)
    scratch_fit = next(s["fit_s"] for s in summary if not VARIANTS[s["variant"]]["warm_start"])
    tables = [
        table(("variant", "retrains", "training s (fit)", "of random weights'", "epochs", "mean val accuracy",
               "promoted", "mean test accuracy, own stage", "mean test accuracy, all stages"),
              [(s["variant"], s["retrains"], s["fit_s"], f"{s['fit_s'] / scratch_fit:.2f}" if scratch_fit else "-",
                s["epochs"], s["mean_val_accuracy"], s["promoted"], s["mean_own_stage_test_accuracy"],
                s["mean_all_stages_test_accuracy"]) for s in summary],
              f"Warm start over the default simulation's retrains (seeds {', '.join(map(str, seeds))})"),
        table(("seed", "retrain", "variant", "fit s", "epochs (best)", "val accuracy (champion)", "test, own stage",
               "test, all stages", "load (1 min)"),
              [(r["seed"], f"{r['time']} {r['stage']}", r["variant"], r["fit_s"], f"{r['epochs']} ({r['best_epoch']})",
                f"{r['val_accuracy']:.3f} ({r['champion_val_accuracy']:.3f})", f"{r['test_accuracy'][r['stage']]:.3f}",
                f"{statistics.mean(r['test_accuracy'].values()):.3f}", r["load_average"]["start"][0]) for r in rows],
              "Every retrain, every variant"),
    ]
    return Result({"variants": VARIANTS, "seeds": seeds, "summary": summary, "rows": rows}, tables)
