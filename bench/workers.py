"""Serve on 2 local workers against 1: what the local runner's scale-out buys, in two arrangements.

A whole ``driftloop serve`` run, as a user types it, on a batch of photo-like JPEGs
(``bench.photos``, cached), with every serve step that scales out (``ScaleOut``: process,
drift_features, predict) on 1 and on 2 worker processes (``--settings`` with ``"instances"``),
alternating, best of 2 each (10,000 photos; 100,000 once). The model is trained once by ``driftloop train`` on the
Original data set. The batch is not a stage's data set, so drift starts no retrain: the runs time
the serve pipeline only, the local store's copying included. ``--timings`` gives each step's wall
time, so the three steps that scale out are timed apart from the rest (the drift merge and the
explanations run on one host, the store's bookkeeping in the parent).

- **a core per worker**: the 1-worker run may use one core, the 2-worker run two, one per worker
  (the runner pins each worker to its share, ``driftloop.hosts.core_shares``). This is what
  ``instances`` 2 does on SageMaker, where each instance brings cores of its own.
- **shared cores**: both runs may use every core of the machine; one worker already uses them all
  (processing decodes on a thread or process per core, TensorFlow's forward pass is
  multi-threaded), so a second can only divide them.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from bench import fixtures
from bench.common import BenchOptions, Result, run_measured, table
from bench.jpeg_decode import PHOTO_SEED, photo_folder
from driftloop.hosts import own_cores
from driftloop.pipelines import SERVE_PIPELINE

GOALS = {"two_workers_vs_one": 1.8}
WORKER_COUNTS = (1, 2)
BOTH = ("a core per worker", "shared cores")
# (photos, arrangements, repeats): at 100,000 only the arrangement that stands for instances, once.
CASES = ((10_000, BOTH, 2), (100_000, BOTH[:1], 1))
QUICK_CASES = ((2000, BOTH, 1),)
SCALED_STEPS = tuple(f"{SERVE_PIPELINE.name}/{step}" for step in ("process", "drift_features", "predict"))


def _driftloop(*args: str) -> list[str]:
    """The console script, as a user runs it (beside this interpreter in the venv)."""
    return [str(Path(sys.executable).parent / "driftloop"), *args]


def _arrangements() -> dict[str, dict[int, list[int]]]:
    """Which cores each run may use: per arrangement, per worker count."""
    cores = own_cores()
    return {"a core per worker": {n: cores[:n] for n in WORKER_COUNTS},
            "shared cores": {n: cores for n in WORKER_COUNTS}}


def _serve_runs(system: Path, photos: Path, work: Path, settings: dict[int, Path], cores_of: dict[int, list[int]],
                repeats: int) -> dict[int, list[dict[str, float]]]:
    """``repeats`` rounds of one serve per worker count, alternating; each run's wall, step times and memory."""
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in WORKER_COUNTS}
    for repeat in range(repeats):
        for n in WORKER_COUNTS:
            timings = work / f"timings-{n}.json"
            measured = run_measured(
                _driftloop("serve", "--input", str(photos), "--workdir", str(system), "--settings", str(settings[n]),
                           "--timings", str(timings)),
                work / f"serve-{n}-{repeat}.log", cores=cores_of[n])
            # The imported batch and the run's outputs: nothing reads them again (6 GB at 100,000 photos).
            for done in ("batches", "runs/serve"):
                shutil.rmtree(system / "store" / done, ignore_errors=True)
            steps = {t["name"]: t["wall_s"] for t in json.loads(timings.read_text())["phases"]}
            scaled = round(sum(steps[s] for s in SCALED_STEPS), 2)
            runs[n].append({"wall_s": measured.wall_s, "scaled_steps_s": scaled,
                            "tree_peak_rss_mb": measured.tree_peak_rss_mb, **steps})
    return runs


def run(options: BenchOptions) -> Result:
    cases, distinct = (QUICK_CASES, 400) if options.quick else (CASES, 2000)
    data = fixtures.dataset(options.workdir, options.seed, "small" if options.quick else "blog")
    work = options.workdir / "workers"
    system = work / "system"
    shutil.rmtree(system, ignore_errors=True)
    run_measured(_driftloop("train", "--data", str(data / "original"), "--workdir", str(system)), work / "train.log")
    settings: dict[int, Path] = {}
    for n in WORKER_COUNTS:
        settings[n] = work / f"instances-{n}.json"
        settings[n].write_text(json.dumps({"instances": {"process": n, "drift_features": n, "predict": n}}))
    found: dict[str, Any] = {}
    tables = []
    for count, arrangements, repeats in cases:
        photos = photo_folder(options.workdir, PHOTO_SEED + options.seed, count, distinct)
        for arrangement in arrangements:
            cores_of = _arrangements()[arrangement]
            runs = _serve_runs(system, photos, work, settings, cores_of, repeats)
            best = {n: min(runs[n], key=lambda r: r["wall_s"]) for n in WORKER_COUNTS}
            ratio = best[1]["wall_s"] / best[2]["wall_s"]
            steps_ratio = best[1]["scaled_steps_s"] / best[2]["scaled_steps_s"]
            found[f"{count}: {arrangement}"] = {
                "images": count, "arrangement": arrangement, "cores": cores_of, "repeats": repeats, "runs": runs,
                "two_workers_vs_one": round(ratio, 3), "two_workers_vs_one_scaled_steps": round(steps_ratio, 3)}
            rows = [(n, len(cores_of[n]), best[n]["wall_s"], count / best[n]["wall_s"], best[n]["scaled_steps_s"],
                     *(best[n][s] for s in SCALED_STEPS), best[n]["tree_peak_rss_mb"]) for n in WORKER_COUNTS]
            header = ("workers", "cores", "wall s (best)", "images/s", "3 scaled steps s",
                      *(s.split("/")[1] + " s" for s in SCALED_STEPS), "tree peak MB")
            tables.append(table(header, rows, (
                f"{arrangement}: driftloop serve of {count:,} photo-like JPEGs, 2 workers vs 1 = {ratio:.2f}x end to "
                f"end, {steps_ratio:.2f}x on the 3 steps that scale out (goal >= {GOALS['two_workers_vs_one']})")))
    data_out = {"distinct_files": distinct, "cases": found, "goals": GOALS}
    return Result(data_out, tables)
