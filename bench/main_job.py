"""The main job: ``driftloop simulate``'s wall time and peak memory, and how they grow with the data.

Full mode runs the command a user runs, with default settings, at blog size (``driftloop data
make`` then ``driftloop simulate``: together, what ``driftloop simulate`` without ``--data``
does). Training with early stopping dominates and its epoch count depends on the data, so the
growth series (blog, 2×, 4×: tilings of the synthetic set with more seeds) caps training at a
fixed number of epochs: each row then costs the same work per image, and the default run's cost
at 2× and 4× is about its training share scaled by the per-epoch growth plus the rest.
Quick mode runs the simulation once on the small set with one epoch per training. Both end with
``bench.harm_agreement`` on the simulation they ran.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from bench import fixtures, harm_agreement
from bench.common import BenchOptions, Result, load_average, run_measured, table
from driftloop.local.simulation import TIMINGS_FILE

GROWTH_EPOCHS = 3
SEED_HEADLINE = "drift at stage-3 (accuracy 97% -> 92.8%) and stage-5; Noisy missed"


def _driftloop() -> list[str]:
    script = Path(sys.executable).parent / "driftloop"
    return [str(script)] if script.exists() else [sys.executable, "-m", "driftloop.local.cli"]


def _trainings(workdir: Path) -> dict[str, Any]:
    """Training cost inside a simulation, from every train run's ``metrics.json``."""
    metrics = [json.loads(p.read_text()) for p in sorted((workdir / "state").rglob("runs/train/*/model/metrics.json"))]
    return {
        "trainings": len(metrics),
        "training_wall_s": round(sum(m["wall_time_s"] for m in metrics), 1),
        "epochs": [m["epochs"] for m in metrics],
        "val_accuracy": [round(m["val_accuracy"], 3) for m in metrics],
        "n_train": metrics[0]["n_train"] if metrics else 0,
    }


def _phases(workdir: Path) -> list[dict[str, Any]]:
    """The simulation's own time split (``timings.json``): each phase, and for a serve run its retrain's share."""
    timings = json.loads((workdir / TIMINGS_FILE).read_text())
    steps = [t for t in timings["phases"] if t["within"]]

    def inside(run: str | None, name: str | None = None) -> tuple[float, float]:
        chosen = [t for t in steps if run is not None and t["within"] == run and name in (None, t["name"])]
        return round(sum(t["wall_s"] for t in chosen), 2), round(sum(t["cpu_s"] for t in chosen), 2)

    rows = []
    for phase in (t for t in timings["phases"] if not t["within"]):
        train_run = phase["notes"].get("train_run")
        retrain = inside(train_run) if "serve_run" in phase["notes"] else (0.0, 0.0)
        fit = inside(train_run, "train/train_model")
        rows.append({"phase": phase["name"], "wall_s": phase["wall_s"], "cpu_s": phase["cpu_s"],
                     "retrain_wall_s": retrain[0], "fit_wall_s": fit[0], "fit_cpu_s": fit[1]})
    rows.append({"phase": "total (the process, imports included)", **timings["total"], "retrain_wall_s": None,
                 "fit_wall_s": round(sum(r["fit_wall_s"] for r in rows), 2),
                 "fit_cpu_s": round(sum(r["fit_cpu_s"] for r in rows), 2)})
    return rows


def _phase_table(rows: list[dict[str, Any]], what: str) -> str:
    return table(
        ("phase", "wall s", "CPU s", "CPU / wall", "of which retrain, wall s", "of which fit, wall s (CPU s)"),
        [(r["phase"], r["wall_s"], r["cpu_s"], f"{r['cpu_s'] / r['wall_s']:.2f}" if r["wall_s"] else "-",
          r["retrain_wall_s"] or "-", f"{r['fit_wall_s']} ({r['fit_cpu_s']})" if r["fit_wall_s"] else "-")
         for r in rows],
        f"Where the time of the {what} run goes (from its timings.json)")


def _timeline(workdir: Path) -> list[dict[str, Any]]:
    runs = json.loads((workdir / "simulation.json").read_text())["runs"]
    keys = ("time", "test_set", "reference_trained_on", "drift", "statistic", "threshold", "retrained_on",
            "promoted", "accuracy", "accuracy_drop")
    return [{k: run[k] for k in keys} for run in runs]


def _measure(label: str, command: list[str], log: Path, workdir: Path | None) -> dict[str, Any]:
    """One run as a row: time, memory, the load around it and (for simulations) its trainings."""
    load_start = load_average()
    measured = run_measured(command, log)
    row = {"run": label, "wall_s": measured.wall_s, "peak_rss_mb": measured.process_peak_rss_mb,
           "tree_peak_rss_mb": measured.tree_peak_rss_mb, "load_average": {"start": load_start, "end": load_average()}}
    if workdir is not None:
        trainings = _trainings(workdir)
        image_epochs = sum(trainings["epochs"]) * trainings["n_train"]
        per_image_epoch = 1000 * trainings["training_wall_s"] / image_epochs if image_epochs else 0.0
        row |= trainings | {"training_ms_per_image_epoch": round(per_image_epoch, 2)}
    return row


def _simulate_capped(options: BenchOptions, data: Path, label: str, epochs: int) -> tuple[dict[str, Any], Path]:
    workdir = options.workdir / "simulate" / label
    shutil.rmtree(workdir, ignore_errors=True)
    command = [sys.executable, "-m", "bench.worker", "simulate", "--data", str(data), "--workdir", str(workdir),
               "--epochs", str(epochs), "--patience", str(epochs)]
    if options.quick:
        command.append("--cheap-explanations")
    return _measure(label, command, options.workdir / "simulate" / f"{label}.log", workdir), workdir


def run(options: BenchOptions) -> Result:
    rows: list[dict[str, Any]] = []
    if options.quick:
        data = fixtures.dataset(options.workdir, options.seed, "small")
        row, workdir = _simulate_capped(options, data, "small, 1 epoch", 1)
        rows.append(row)
    else:
        base = options.workdir / "simulate"
        data = base / "data-blog"
        shutil.rmtree(data, ignore_errors=True)
        rows.append(_measure("data make (blog)", [*_driftloop(), "data", "make", "--out", str(data), "--seed",
                                                  str(options.seed)], base / "data-make.log", None))
        workdir = base / "default"
        shutil.rmtree(workdir, ignore_errors=True)
        rows.append(_measure("simulate, defaults (blog)", [*_driftloop(), "simulate", "--data", str(data), "--workdir",
                                                           str(workdir), "--seed", str(options.seed)],
                             base / "default.log", workdir))
        for scale in (1, 2, 4):
            scaled = data if scale == 1 else fixtures.dataset(options.workdir, options.seed, "blog", scale)
            rows.append(_simulate_capped(options, scaled, f"{scale}x blog, {GROWTH_EPOCHS} epochs", GROWTH_EPOCHS)[0])
    timeline = _timeline(workdir)
    phases = _phases(workdir)
    agreement = harm_agreement.study(workdir)
    tables = [
        table(("run", "wall s", "peak MB (largest process)", "peak MB (tree)", "train images", "trainings",
               "epochs", "training s", "training ms / image-epoch", "load avg (1 min) start → end"),
              [(r["run"], r["wall_s"], r["peak_rss_mb"], r["tree_peak_rss_mb"], r.get("n_train", "-"),
                r.get("trainings", "-"), sum(r.get("epochs", [])) or "-", r.get("training_wall_s", "-"),
                r.get("training_ms_per_image_epoch", "-"),
                f"{r['load_average']['start'][0]} → {r['load_average']['end'][0]}") for r in rows],
              "The main job: wall time and peak memory"),
        table(("time", "test set", "detector trained on", "drift", "statistic (min p)", "threshold", "retrained on",
               "accuracy"),
              [(t["time"], t["test_set"], t["reference_trained_on"], t["drift"], t["statistic"], t["threshold"],
                t["retrained_on"] or "-", "-" if t["accuracy"] is None else f"{100 * t['accuracy']:.1f}%")
               for t in timeline],
              f"Timeline of the {'quick' if options.quick else 'default'} run (seed blog: {SEED_HEADLINE})"),
        _phase_table(phases, "quick" if options.quick else "default"),
        *harm_agreement.tables(agreement),
    ]
    return Result({"runs": rows, "timeline": timeline, "phases": phases, "growth_epochs": GROWTH_EPOCHS,
                   "seed_headline": SEED_HEADLINE, "harm_agreement": agreement}, tables)
