"""Work the benchmarks run in a fresh process, so its peak memory is its own.

``python -m bench.worker serve-step --step processing|monitoring|inference|all ...`` runs serve
steps through the components' in-process runners (as the local runner does);
``python -m bench.worker simulate ...`` runs the simulation with capped training epochs (and,
for smoke runs, cheap explanations).
Each prints one JSON line last: its wall time, each serve step's, and the peak RSS of its own (main)
process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

STEPS = ("processing", "monitoring", "inference")


def _serve_steps(args: argparse.Namespace) -> dict[str, float]:
    """The serve steps in pipeline order; with ``--explainer``, ``all`` explains the batch too.

    Returns each step's wall time (s).
    """
    from bench.fixtures import run_component
    from driftloop.config import DriftConfig, ProcessingConfig
    from driftloop.pipelines import Component

    steps = STEPS if args.step == "all" else (args.step,)
    shards, predictions = args.out / "shards", args.out / "predictions"
    seconds: dict[str, float] = {}
    for step in steps:
        started = time.perf_counter()
        if step == "processing":
            run_component(Component.PROCESSING, "serve", {"batch": args.images}, {"batch": shards},
                          ProcessingConfig().to_dict())
        elif step == "monitoring":
            # Both drift steps of the serve pipeline: the features, then one KS test over them.
            run_component(Component.DRIFT, "serve",
                          {"batch": shards, "detector": args.detector, "model": args.model},
                          {"features": args.out / "features"}, {})
            run_component(Component.DRIFT, "merge", {"features": args.out / "features", "detector": args.detector},
                          {"report": args.out / "report"}, DriftConfig().to_dict())
        else:
            run_component(Component.ALGORITHM, "serve", {"data": shards, "model": args.model},
                          {"predictions": predictions}, {})
        seconds[step] = time.perf_counter() - started
    if args.explainer is not None and args.step == "all":
        started = time.perf_counter()
        run_component(Component.EXPLAINABILITY, "serve",
                      {"batch": shards, "model": args.model, "explainer": args.explainer,
                       "predictions": predictions}, {"explanations": args.out / "explanations"}, {})
        seconds["explainability"] = time.perf_counter() - started
    return seconds


def _simulate(args: argparse.Namespace) -> None:
    from driftloop.config import ExplainConfig, Settings, TrainingConfig
    from driftloop.local.simulation import SimulationOptions, simulate

    explain = ExplainConfig(n_explain=2, nsamples=8, per_class=1) if args.cheap_explanations else ExplainConfig()
    settings = Settings(training=TrainingConfig(epochs=args.epochs, patience=args.patience), explain=explain)
    simulate(SimulationOptions(workdir=args.workdir, data=args.data, settings=settings, progress=False))


def main(argv: Sequence[str] | None = None) -> int:
    from bench.common import proc_status_kb
    from driftloop.components.entrypoint import configure_process

    configure_process()
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve-step")
    serve.add_argument("--step", choices=[*STEPS, "all"], required=True)
    serve.add_argument("--images", type=Path, required=True)
    serve.add_argument("--model", type=Path, required=True)
    serve.add_argument("--detector", type=Path, required=True)
    serve.add_argument("--out", type=Path, required=True)
    serve.add_argument("--explainer", type=Path, help="with --step all: explain the batch too")
    sim = commands.add_parser("simulate")
    sim.add_argument("--data", type=Path, required=True)
    sim.add_argument("--workdir", type=Path, required=True)
    sim.add_argument("--epochs", type=int, required=True)
    sim.add_argument("--patience", type=int, required=True)
    sim.add_argument("--cheap-explanations", action="store_true", help="2 images, 8 SHAP samples (smoke runs)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    steps: dict[str, float] = {}
    if args.command == "serve-step":
        steps = _serve_steps(args)
    else:
        _simulate(args)
    print(json.dumps({
        "wall_s": round(time.perf_counter() - started, 3),
        "step_s": {name: round(value, 3) for name, value in steps.items()},
        "peak_rss_mb": round(proc_status_kb("self", "VmHWM") / 1024, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
