"""The ``driftloop`` command: data sets, local train/serve runs and the simulation."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_WORKDIR = Path("runs/simulation")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftloop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="make data sets").add_subparsers(dest="data_command", required=True)
    make = data.add_parser("make", help="write the seeded synthetic set and its seven stages")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--size", choices=["blog", "small"], default="blog")
    stages = data.add_parser("stages", help="make the seven stages from ROOT/{train,val,test}/<class>/<image>")
    stages.add_argument("--src", type=Path, required=True)
    stages.add_argument("--out", type=Path, required=True)
    stages.add_argument("--seed", type=int, default=0)

    train = commands.add_parser("train", help="run the train pipeline locally")
    train.add_argument("--data", type=Path, required=True, help="folder with train/ and val/ (class subfolders)")
    train.add_argument("--workdir", type=Path, required=True, help="state folder (object + parameter store)")

    serve = commands.add_parser("serve", help="run the serve pipeline locally on one batch")
    serve.add_argument("--input", type=Path, required=True, help="folder of images (class subfolders optional)")
    serve.add_argument("--workdir", type=Path, required=True)

    simulate = commands.add_parser("simulate", help="the whole loop over the seven stages, on a simulated clock")
    simulate.add_argument("--data", type=Path, help="stages folder (default: make the synthetic set)")
    simulate.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    simulate.add_argument("--cycles", type=int, default=1, help="passes over the seven stages")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--size", choices=["blog", "small"], default="blog", help="synthetic set size")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from driftloop.components.entrypoint import ComponentError, configure_process

    configure_process()
    args = _parser().parse_args(argv)
    try:
        if args.command == "data" and args.data_command == "make":
            from driftloop.data.synthetic import make_dataset

            make_dataset(args.out, seed=args.seed, size=args.size)
        elif args.command == "data":
            from driftloop.data.stages import make_stages

            make_stages(args.src, args.out, seed=args.seed)
        elif args.command == "train":
            from driftloop.runner import LocalSystem

            record = LocalSystem(args.workdir).train(args.data / "train", args.data / "val")
            print(record.summary())
        elif args.command == "serve":
            from driftloop.runner import LocalSystem

            outcome = LocalSystem(args.workdir).serve(args.input)
            print(outcome.summary())
        elif args.command == "simulate":
            from driftloop.simulation import SimulationOptions, simulate

            simulate(
                SimulationOptions(
                    data=args.data, workdir=args.workdir, cycles=args.cycles, seed=args.seed, size=args.size
                )
            )
    except (ComponentError, LookupError, FileNotFoundError) as error:
        # Missing models, parameters or objects: their messages say what to do; no traceback.
        print(f"driftloop: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
