"""Serve on 2 local workers against 1: the local runner's scale-out on this machine's cores.

A whole ``driftloop serve`` run, as a user types it, on a batch of photo-like JPEGs
(``bench.photos``, cached), with every serve step that scales out (``ScaleOut``: process,
drift_features, predict) on 1 and then on 2 worker processes (``--settings`` with
``"instances"``), alternating, best of ``REPEATS`` each. The model is trained once by
``driftloop train`` on the Original data set. The batch is not a stage's data set, so drift starts
no retrain: the runs time the serve pipeline only, the local store's copying included.

The ratio says what a second worker buys on a machine whose one worker already uses both cores
(processing decodes with a process per core, TensorFlow runs on both): on SageMaker each worker is
an instance with cores of its own.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from bench import fixtures
from bench.common import BenchOptions, Result, run_measured, table
from bench.jpeg_decode import PHOTO_SEED, photo_folder

GOALS = {"two_workers_vs_one": 1.8}
REPEATS = 2
WORKER_COUNTS = (1, 2)


def _driftloop(*args: str) -> list[str]:
    """The console script, as a user runs it (beside this interpreter in the venv)."""
    return [str(Path(sys.executable).parent / "driftloop"), *args]


def run(options: BenchOptions) -> Result:
    count, distinct = (2000, 400) if options.quick else (10_000, 2000)
    data = fixtures.dataset(options.workdir, options.seed, "small" if options.quick else "blog")
    photos = photo_folder(options.workdir, PHOTO_SEED + options.seed, count, distinct)
    work = options.workdir / f"workers-{count}"
    system = work / "system"
    shutil.rmtree(system, ignore_errors=True)
    run_measured(_driftloop("train", "--data", str(data / "original"), "--workdir", str(system)), work / "train.log")
    settings: dict[int, Path] = {}
    for n in WORKER_COUNTS:
        settings[n] = work / f"instances-{n}.json"
        settings[n].write_text(json.dumps({"instances": {"process": n, "drift_features": n, "predict": n}}))
    walls: dict[int, list[float]] = {n: [] for n in WORKER_COUNTS}
    peaks: dict[int, float] = {n: 0.0 for n in WORKER_COUNTS}
    for repeat in range(REPEATS):
        for n in WORKER_COUNTS:
            measured = run_measured(_driftloop("serve", "--input", str(photos), "--workdir", str(system),
                                               "--settings", str(settings[n])), work / f"serve-{n}-{repeat}.log")
            walls[n].append(measured.wall_s)
            peaks[n] = max(peaks[n], measured.tree_peak_rss_mb)
    best = {n: min(walls[n]) for n in WORKER_COUNTS}
    ratio = best[1] / best[2]
    data_out = {"images": count, "distinct_files": distinct, "repeats": REPEATS, "wall_s": walls, "best_wall_s": best,
                "tree_peak_rss_mb": peaks, "two_workers_vs_one": ratio, "goals": GOALS}
    rows = [(n, *walls[n], best[n], count / best[n], peaks[n]) for n in WORKER_COUNTS]
    header = ("workers", *(f"wall s, run {i + 1}" for i in range(REPEATS)), "best s", "images/s", "tree peak MB")
    return Result(data_out, [table(header, rows, f"driftloop serve of {count:,} photo-like JPEGs: 2 workers vs 1 = "
                                                 f"{ratio:.2f}x (goal >= {GOALS['two_workers_vs_one']})")])
