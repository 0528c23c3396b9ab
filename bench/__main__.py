"""``python -m bench [--quick] [NAME ...]``: run benchmarks, print their tables, write their JSON."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench.common import DEFAULT_RESULTS, DEFAULT_WORKDIR, BenchOptions, load_average, write_result

# name -> module with ``run(BenchOptions) -> Result``; run in this order (cheap first).
BENCHMARKS = {
    "serve": "bench.serve",
    "labels_join": "bench.labels_join",
    "memory": "bench.memory",
    "drift": "bench.drift_quality",
    "drift_scale": "bench.drift_scale",
    "jpeg": "bench.jpeg_decode",
    "scale": "bench.scale",
    "simulate": "bench.main_job",
    "synth": "bench.synth",
    "accuracy_estimation": "bench.accuracy_estimation",
    "warm_start": "bench.warm_start",
    "workers": "bench.workers",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few minutes")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS,
                        help="folder for <name>.json (<name>-quick.json with --quick)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="cache of generated data and models, reused by later runs")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from driftloop.components.entrypoint import configure_process

    configure_process()
    args = _parser().parse_args(argv)
    options = BenchOptions(quick=args.quick, workdir=args.workdir.resolve(), seed=args.seed)
    failed = []
    for name in args.names or list(BENCHMARKS):
        started, load_start = time.perf_counter(), load_average()
        try:
            result = importlib.import_module(BENCHMARKS[name]).run(options)
        except Exception:  # one broken benchmark must not cost the others' results
            traceback.print_exc()
            failed.append(name)
            continue
        path = write_result(name, options, result, started, load_start, args.out)
        print(f"\n## {name} ({time.perf_counter() - started:.0f} s, load {load_start} -> {load_average()})\n")
        print("\n\n".join(result.tables))
        print(f"\nwrote {path}")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
