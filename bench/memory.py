"""Memory: peak RSS of the serve steps on N and 10×N images, each run in a fresh process.

Each step (processing, monitoring, inference) runs alone in its own process, as on AWS, where
each is a separate job; ``all`` runs the three in one process, as the local runner does. The goal
is that 10×N needs less than 1.3× the memory of N: every step streams shards, so its memory
should be bounded by the shard size, not the batch.
"""

from __future__ import annotations

import sys
from typing import Any

from bench import fixtures
from bench.common import BenchOptions, Result, last_json_line, run_measured, table
from bench.worker import STEPS
from driftloop.config import DriftConfig

GOAL = 1.3


def run(options: BenchOptions) -> Result:
    n = 200 if options.quick else 1000
    steps = ("all",) if options.quick else (*STEPS, "all")
    work = options.workdir / "memory"
    model = fixtures.untrained_model(options.workdir, options.seed)
    reference = fixtures.processed(fixtures.originals(options.workdir, options.seed, 484),
                                   options.workdir / "memory-reference-shards")
    detector = fixtures.detector(options.workdir, reference, model, DriftConfig())

    measured: dict[str, dict[str, Any]] = {}
    for count in (n, 10 * n):
        images = fixtures.originals(options.workdir, options.seed, count)
        for step in steps:
            out = work / f"{count}-{'all' if step == 'all' else 'steps'}"
            command = [sys.executable, "-m", "bench.worker", "serve-step", "--step", step, "--images", str(images),
                       "--model", str(model), "--detector", str(detector), "--out", str(out)]
            run = run_measured(command, work / "logs" / f"{count}-{step}.log")
            measured[f"{count}/{step}"] = {"images": count, "step": step, "wall_s": run.wall_s,
                                           "tree_peak_rss_mb": run.tree_peak_rss_mb,
                                           "largest_process_peak_rss_mb": run.process_peak_rss_mb,
                                           "main_peak_rss_mb": last_json_line(run.log)["peak_rss_mb"]}

    def ratio(step: str, key: str) -> float:
        return round(float(measured[f"{10 * n}/{step}"][key] / measured[f"{n}/{step}"][key]), 3)

    ratios = {step: {"tree": ratio(step, "tree_peak_rss_mb"), "main": ratio(step, "main_peak_rss_mb")}
              for step in steps}
    rows = []
    for step in steps:
        small, large = measured[f"{n}/{step}"], measured[f"{10 * n}/{step}"]
        rows.append((step, small["tree_peak_rss_mb"], large["tree_peak_rss_mb"], ratios[step]["tree"],
                     small["main_peak_rss_mb"], large["main_peak_rss_mb"], ratios[step]["main"], f"< {GOAL}",
                     small["wall_s"], large["wall_s"]))
    tables = [table(
        ("step", f"tree MB, {n}", f"tree MB, {10 * n}", "ratio", f"main MB, {n}", f"main MB, {10 * n}", "ratio",
         "goal", f"s, {n}", f"s, {10 * n}"),
        rows, f"Serve memory, {n} vs {10 * n} images, a fresh process each: peak RSS of the process tree "
        "(sampled, incl. any decode pool) and of the main process (its VmHWM)",
    )]
    return Result({"n": n, "goal": GOAL, "runs": measured, "ratios": ratios}, tables)
