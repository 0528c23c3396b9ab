"""The ``driftloop`` command: data sets, local train/serve runs, the simulation, and ``status``.

The console shows results (and, for ``simulate``, one progress bar and one line per hourly run).
Everything else — the components' logs, TensorFlow's own output, from Python or from its C++ core —
goes to ``W/driftloop.log`` in the work folder; ``-v`` shows the components' logs on the console too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.local.console import LOG_FILE, make_workdir, route_output

if TYPE_CHECKING:
    from driftloop.config import Settings
    from driftloop.local.runner import LocalSystem

DEFAULT_WORKDIR = Path("runs/simulation")
PRODUCTION_WORKDIR = Path("runs/production")

log = logging.getLogger("driftloop.local.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftloop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="show the components' logs on the console too (they always go to W/driftloop.log)")
    settings = argparse.ArgumentParser(add_help=False)
    settings.add_argument(
        "--settings", type=Path, metavar="FILE",
        help='JSON file of settings that differ from the defaults, shaped like cdk.json\'s: '
             '{"settings": {"algorithm": {"epochs": 10}, ...}, "decision": {"cooldown_runs": 1}, '
             '"instances": {"predict": 2}}',
    )
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="make data sets").add_subparsers(dest="data_command", required=True)
    make = data.add_parser("make", parents=[common], help="write the seeded synthetic set and its seven stages")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--size", choices=["blog", "small"], default="blog")
    stages = data.add_parser("stages", parents=[common],
                             help="make the seven stages from ROOT/{train,val,test}/<class>/<image>")
    stages.add_argument("--src", type=Path, required=True)
    stages.add_argument("--out", type=Path, required=True)
    stages.add_argument("--seed", type=int, default=0)

    train = commands.add_parser("train", parents=[common, settings], help="run the train pipeline locally")
    train.add_argument("--data", type=Path, required=True, help="folder with train/ and val/ (class subfolders)")
    train.add_argument("--workdir", type=Path, required=True, help="state folder (object + parameter store)")

    serve = commands.add_parser("serve", parents=[common, settings], help="run the serve pipeline locally on one batch")
    serve.add_argument("--input", type=Path, required=True,
                       help="folder of images (class subfolders optional); a stage's DATA/<stage>/test retrains "
                            "on that stage's train and val sets on drift, like the simulation")
    serve.add_argument("--workdir", type=Path, required=True)
    serve.add_argument("--timings", type=Path, metavar="FILE",
                       help="write the wall and CPU seconds of the run and of each pipeline step to FILE (JSON)")

    _add_simulate(commands, [common, settings])

    status = commands.add_parser("status", help="the current model, the last train attempt and the last serve runs")
    status.add_argument("-v", "--verbose", action="count", default=0,
                        help="show driftloop's log lines on the console (status only reads: it writes no log)")
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--workdir", type=Path, help="a local work folder (of train, serve or simulate)")
    where.add_argument("--aws", action="store_true", help="a deployment: the stack's Parameter Store records")
    status.add_argument("--stack", help='the stack (with --aws; default "Driftloop")')
    status.add_argument("--region", help="the stack's region (with --aws; default: the AWS configuration's)")
    status.add_argument("--runs", type=int, default=5, metavar="N", help="serve runs to show (default 5)")
    _add_approval(commands, common)
    return parser


def _add_approval(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``models``, ``approve`` and ``reject``: the model registry of a work folder."""
    models = commands.add_parser("models", parents=[common], help="every trained model's version and status")
    models.add_argument("--workdir", type=Path, required=True)
    approve = commands.add_parser("approve", parents=[common],
                                  help="approve a pending model (approval: manual): it serves from the next run")
    reject = commands.add_parser("reject", parents=[common], help="reject a pending model: the current one serves on")
    for command in (approve, reject):
        command.add_argument("run", metavar="RUN", help="the train run whose model it is (`driftloop models`)")
        command.add_argument("--workdir", type=Path, required=True)
    approve.add_argument("--reason", default="approved by hand", help="why (kept in the registry)")
    reject.add_argument("--reason", default="rejected by hand", help="why (kept in the registry)")


def _add_simulate(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """``simulate``; the production options default to ``ProductionOptions``'s (None here: not given)."""
    simulate = commands.add_parser("simulate", parents=parents,
                                   help="the whole loop over the seven stages, on a simulated clock")
    simulate.add_argument("--data", type=Path, help="stages folder (default: make the synthetic set)")
    simulate.add_argument("--workdir", type=Path,
                          help=f"default {DEFAULT_WORKDIR}, with --production {PRODUCTION_WORKDIR}")
    simulate.add_argument("--cycles", type=int, default=1, help="passes over the seven stages")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--size", choices=["blog", "small"], default="blog", help="synthetic set size")
    simulate.add_argument("--production", action="store_true",
                          help="production mode: new batches hourly from a drifting stream, labels back later")
    simulate.add_argument("--hours-per-stage", type=int, help="with --production: batches per stage")
    simulate.add_argument("--batch-size", type=int, help="with --production: images per batch")
    simulate.add_argument("--label-fraction", type=float,
                          help="with --production: share of each batch that gets labelled")
    simulate.add_argument("--label-delay", type=int, metavar="HOURS",
                          help="with --production: hours until a batch's labels come back")


# ------------------------------------------------------------------------------------------ commands
def load_settings(path: Path | None) -> Settings:
    """The settings of ``--settings FILE`` (defaults without it); ValueError says what is wrong."""
    from driftloop.config import Settings

    if path is None:
        return Settings()
    try:
        given = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read the settings file {path}: {error}") from error
    known = {"settings", "decision", "instances"}
    unknown = sorted(set(given) - known) if isinstance(given, dict) else ["(not an object)"]
    if unknown:
        raise ValueError(f"settings file {path}: unknown key(s) {unknown}; expected {sorted(known)}")
    try:
        return Settings.from_overrides(given.get("settings", {}), given.get("decision", {}), given.get("instances", {}))
    except (TypeError, ValueError) as error:
        raise ValueError(f"settings file {path}: {error}") from error


def _same_content(system: LocalSystem, folder: Path, prefix: str) -> bool:
    """Whether ``prefix`` in the store holds exactly the files an import of ``folder`` would put there."""
    from driftloop.files import NOT_IMPORTED_FILE, image_name_reason
    from driftloop.stores.objects import files_to_upload

    stored = [key for key in system.objects.list(prefix) if key != f"{prefix}/{NOT_IMPORTED_FILE}"]
    local = files_to_upload(folder, prefix, image_name_reason)[0] if folder.is_dir() else []
    if stored != sorted(f"{prefix}/{relative.as_posix()}" for relative in local):
        return False
    return all(system.objects.get_bytes(f"{prefix}/{relative.as_posix()}") == (folder / relative).read_bytes()
               for relative in local)


def import_data_set(system: LocalSystem, folder: Path) -> dict[str, str]:
    """Import ``folder/{train,val,test}`` as ``data/<name>/<split>``: the folder's name, or ``<name>-2``, …

    A name already in the store is reused only for the very same files, so training again on a
    folder whose images changed never trains on the old copy (records keep pointing at what
    their runs really read).
    """
    from driftloop.layout import SPLITS, data_prefix
    from driftloop.stores.objects import check_key

    base = folder.resolve().name
    try:
        check_key(base)
    except ValueError:
        base = "data"
    for n in count(1):
        name = base if n == 1 else f"{base}-{n}"
        prefixes = {split: data_prefix(name, split) for split in SPLITS}
        if not any(system.objects.list(p) for p in prefixes.values()) or all(
            _same_content(system, folder / split, prefix) for split, prefix in prefixes.items()
        ):
            return system.import_dataset(folder, name)
    raise AssertionError("unreachable")


def _is_split_of_data_set(folder: Path) -> bool:
    """``DATA/<stage>/test`` (or train/val) of a folder that also holds train/ and val/."""
    from driftloop.layout import SPLITS

    parent = folder.resolve().parent
    return folder.resolve().name in SPLITS and all((parent / split).is_dir() for split in ("train", "val"))


def _train(args: argparse.Namespace) -> None:
    from driftloop.errors import UserError
    from driftloop.local.runner import LocalSystem

    missing = [split for split in ("train", "val") if not (args.data / split).is_dir()]
    if missing:
        raise UserError(f"{args.data} lacks {missing}: expected {args.data}/train/<class>/<image> "
                             f"and {args.data}/val/<class>/<image> (e.g. DATA/original of `driftloop data make`)")
    system = LocalSystem(args.workdir, settings=load_settings(args.settings))
    keys = import_data_set(system, args.data)
    print(system.train(keys["train"], keys["val"]).summary())


def _serve(args: argparse.Namespace) -> None:
    from driftloop.errors import UserError
    from driftloop.local.runner import LocalSystem
    from driftloop.local.timings import Stopwatch

    if not args.input.is_dir():
        raise UserError(f"--input {args.input} is not a folder of images")
    clock = Stopwatch() if args.timings else None
    system = LocalSystem(args.workdir, settings=load_settings(args.settings), stopwatch=clock)
    batch: Path | str = args.input
    if _is_split_of_data_set(args.input):
        batch = import_data_set(system, args.input.resolve().parent)[args.input.resolve().name]
    print(system.serve(batch).summary())
    if clock is not None:
        clock.write(args.timings)


def _simulate(args: argparse.Namespace) -> None:
    if args.production:
        from driftloop.local.production_simulation import ProductionOptions, simulate_production

        given = {"hours_per_stage": args.hours_per_stage, "batch_size": args.batch_size,
                 "label_fraction": args.label_fraction, "label_delay_hours": args.label_delay}
        simulate_production(ProductionOptions(
            workdir=args.workdir, data=args.data, seed=args.seed, size=args.size, settings=load_settings(args.settings),
            **{name: value for name, value in given.items() if value is not None}))
        return
    from driftloop.local.simulation import SimulationOptions, simulate

    simulate(SimulationOptions(data=args.data, workdir=args.workdir, cycles=args.cycles, seed=args.seed,
                               size=args.size, settings=load_settings(args.settings)))


def _status(args: argparse.Namespace) -> None:
    from driftloop.local.status import DEFAULT_STACK, aws_source, local_source, read_status

    if args.runs < 0:
        raise ValueError(f"--runs must be 0 or more, got {args.runs}")
    if not args.aws and (args.stack or args.region):
        raise ValueError("--stack and --region go with --aws")
    source = aws_source(args.stack or DEFAULT_STACK, args.region) if args.aws else local_source(args.workdir)
    print("\n".join(read_status(source, runs=args.runs)))


def _models(args: argparse.Namespace) -> None:
    from driftloop.local.status import local_registry, local_source, model_lines
    from driftloop.records import TrainRecord, read_record

    source = local_source(args.workdir)
    print("\n".join(model_lines(local_registry(args.workdir),
                                read_record(source.params, source.names.train_latest, TrainRecord))))


def _approval_system(args: argparse.Namespace) -> LocalSystem:
    """The work folder's system (a simulation's ``state/``), for ``approve`` and ``reject``."""
    from driftloop.local.runner import LocalSystem
    from driftloop.local.status import parameters_file

    return LocalSystem(parameters_file(args.workdir).parent)


def _approve(args: argparse.Namespace) -> None:
    from driftloop import loop

    print(loop.approve(_approval_system(args).stores, args.run, args.reason).summary())


def _reject(args: argparse.Namespace) -> None:
    from driftloop import loop

    print(loop.reject(_approval_system(args).stores, args.run, args.reason).summary())


def _data(args: argparse.Namespace) -> None:
    if args.data_command == "make":
        from driftloop.local.data.synthetic import make_dataset

        report = make_dataset(args.out, seed=args.seed, size=args.size)
        print(f"wrote the synthetic {args.size} set (seed {args.seed}) to {args.out}: {report.summary()}")
        return
    from driftloop.local.data.stages import make_stages

    report = make_stages(args.src, args.out, seed=args.seed)  # warns of skipped entries, naming the manifest
    print(f"wrote the stages of {args.src} to {args.out}: {report.summary()}")


def main(argv: Sequence[str] | None = None) -> int:
    from driftloop.components.entrypoint import configure_process
    from driftloop.errors import UserError

    configure_process()
    args = _parser().parse_args(argv)
    if args.command == "simulate" and args.workdir is None:
        args.workdir = PRODUCTION_WORKDIR if args.production else DEFAULT_WORKDIR
    # status and models only read: they write no log into the folder they show (nor make a typo'd one).
    workdir: Path | None = getattr(args, "workdir", None) if args.command not in ("data", "status", "models") else None
    try:
        log_file = make_workdir(workdir) / LOG_FILE if workdir is not None else None
    except UserError as error:
        print(f"driftloop: {error}", file=sys.stderr)
        return 2
    route_output(log_file, verbose=args.verbose, fresh=args.command == "simulate")
    log.info("driftloop %s", " ".join(sys.argv[1:] if argv is None else argv))
    where = f" (the log: {log_file})" if log_file else ""
    try:
        {"data": _data, "train": _train, "serve": _serve, "simulate": _simulate, "status": _status, "models": _models,
         "approve": _approve, "reject": _reject}[args.command](args)
    except (UserError, LookupError, FileNotFoundError, ValueError) as error:
        # Missing models, parameters, objects or settings: their messages say what to do; no traceback.
        log.info("failed: %s", error, exc_info=True)
        print(f"driftloop: {error}{where}", file=sys.stderr)
        return 2
    except Exception:
        log.exception("driftloop %s failed%s", args.command, where)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
