"""Synth: wall time and peak memory of ``python app.py`` (the CDK app, into a scratch output folder)."""

from __future__ import annotations

import shutil
import sys
from typing import Any

from bench.common import REPO_ROOT, BenchOptions, Result, run_measured, table


def run(options: BenchOptions) -> Result:
    repeats = 1 if options.quick else 3
    runs: list[dict[str, Any]] = []
    for i in range(repeats):
        out = options.workdir / "synth" / "cdk.out"
        shutil.rmtree(out, ignore_errors=True)
        measured = run_measured(
            [sys.executable, "app.py"], options.workdir / "synth" / f"run-{i}.log", cwd=REPO_ROOT,
            # CDK_OUTDIR keeps the repository's own cdk.out untouched.
            env={"CDK_OUTDIR": str(out), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"},
        )
        templates = sorted(p.name for p in out.glob("*.template.json"))
        runs.append({"wall_s": measured.wall_s, "peak_rss_mb": measured.process_peak_rss_mb,
                     "tree_peak_rss_mb": measured.tree_peak_rss_mb, "templates": templates})
    best = min(r["wall_s"] for r in runs)
    rows = [(i + 1, r["wall_s"], r["peak_rss_mb"], r["tree_peak_rss_mb"], len(r["templates"]))
            for i, r in enumerate(runs)]
    return Result({"runs": runs, "best_wall_s": best},
                  [table(("run", "wall s", "peak MB (largest process)", "peak MB (python + node)", "templates"),
                         rows, "Synth: python app.py")])
