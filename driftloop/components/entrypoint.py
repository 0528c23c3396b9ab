"""The command line every component container shares.

``python -m driftloop.components.<name> --mode train|serve`` with one ``--input-<channel>`` and
``--output-<channel>`` option per channel of ``driftloop.pipelines.COMPONENT_IO``; each defaults
to SageMaker's container path, so the images need no arguments on AWS, and the local runner and
tests point them anywhere. Settings come from ``--config FILE`` (JSON; the training job's
hyperparameters file by default) and/or ``--settings JSON``, then the per-run settings a state
machine puts in the job's environment (``DRIFTLOOP_RUN_SETTINGS``, JSON).

SageMaker starts a training image as ``<image> train``: a bare ``train`` means ``--mode train``.
A processing job on several instances tells each which host it is in
``/opt/ml/config/resourceconfig.json`` (``driftloop.hosts``); the runner gets it as ``Invocation.hosts``.

A run that fails inside a SageMaker container (one with ``/opt/ml``) also writes its message where
SageMaker reads it: ``/opt/ml/output/failure`` for a training job (shown as ``FailureReason``),
``/opt/ml/output/message`` for a processing job (shown as ``ExitMessage``); the first 1,024 bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from driftloop.config import FromMapping, Mode
from driftloop.errors import UserError
from driftloop.hosts import Hosts
from driftloop.pipelines import (
    COMPONENT_IO,
    RUN_SETTINGS_ENV,
    TRAINING_HYPERPARAMETERS,
    Component,
    JobKind,
    container_path,
)

log = logging.getLogger("driftloop")

# SageMaker's container root, and the file each job kind reads a failure reason from (1 KB shown).
SAGEMAKER_ROOT = Path("/opt/ml")
FAILURE_FILES: dict[JobKind, str] = {JobKind.TRAINING: "output/failure", JobKind.PROCESSING: "output/message"}
FAILURE_LIMIT_BYTES = 1024


@dataclass(frozen=True)
class Invocation:
    mode: Mode
    inputs: dict[str, Path]
    outputs: dict[str, Path]
    settings: dict[str, Any] = field(default_factory=dict)
    # Which instance of the job this is; one host unless the step scales out.
    hosts: Hosts = field(default_factory=Hosts)


Runner = Callable[[Invocation], object]
S = TypeVar("S", bound=FromMapping)


def read_settings(invocation: Invocation, kind: type[S], what: str) -> S:
    """The invocation's settings as ``kind``: a bad value is the user's error (exit 2, a message), not a crash."""
    try:
        return kind.from_mapping(invocation.settings)
    except (TypeError, ValueError) as error:
        raise UserError(f"bad {what} settings: {error}") from error


def configure_process() -> None:
    """Process-wide settings that must precede the first TensorFlow import.

    Legacy Keras is chosen by ``TF_USE_LEGACY_KERAS`` only before TensorFlow loads: alibi-detect's
    detector save path imports transformers, which sets it when unset, so a run that left it unset
    would switch Keras mid-run. The images set the same in their ``ENV`` (containers/Dockerfile).

    TensorFlow picks its CPU kernels by processor: oneDNN's on Intel CPUs with AVX-512 VNNI, Eigen's
    on others (the AMD EPYC the benchmarks name). Choosing oneDNN everywhere gives every machine the
    same kernels, and on the AMD one 33 % less CPU for the production simulation (docs/benchmarks.md
    section 10).
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # alibi-detect logs every config field it resolves when loading a detector (~30 lines): warnings only.
    logging.getLogger("alibi_detect").setLevel(logging.WARNING)


def build_parser(component: Component) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m driftloop.components.{component}")
    parser.add_argument("--mode", choices=list(dict.fromkeys(m for c, m in COMPONENT_IO if c is component)),
                        required=True)
    parser.add_argument("--config", type=Path, help="JSON settings file")
    parser.add_argument("--settings", default="{}", help="JSON settings (override --config)")
    channels: dict[str, set[str]] = {"input": set(), "output": set()}
    for (comp, _mode), io in COMPONENT_IO.items():
        if comp is component:
            channels["input"].update(io.inputs)
            channels["output"].update(io.outputs)
    for direction, names in channels.items():
        for name in sorted(names):
            parser.add_argument(f"--{direction}-{name}", type=Path, dest=f"{direction}_{name}")
    return parser


def parse_invocation(component: Component, argv: Sequence[str]) -> Invocation:
    argv = list(argv)
    if argv[:1] == ["train"]:  # SageMaker training-job convention
        argv = ["--mode", "train", *argv[1:]]
    args = build_parser(component).parse_args(argv)
    mode: Mode = args.mode
    io = COMPONENT_IO[(component, mode)]

    def path_for(direction: str, channel: str) -> Path:
        given = getattr(args, f"{direction}_{channel}")
        return Path(given) if given else Path(str(container_path(component, mode, direction, channel)))

    settings: dict[str, Any] = {}
    config = args.config
    if config is None and io.job is JobKind.TRAINING and Path(str(TRAINING_HYPERPARAMETERS)).exists():
        config = Path(str(TRAINING_HYPERPARAMETERS))
    if config is not None:
        settings.update(json.loads(Path(config).read_text()))
    settings.update(json.loads(args.settings))
    # The settings that differ per run (e.g. the detector's trained_on), set by the state machine.
    settings.update(json.loads(os.environ.get(RUN_SETTINGS_ENV, "{}")))
    return Invocation(
        mode=mode,
        inputs={c: path_for("input", c) for c in io.inputs},
        outputs={c: path_for("output", c) for c in io.outputs},
        settings=settings,
        hosts=Hosts.read(),
    )


def run_component(component: Component, runners: Mapping[str, Runner], argv: Sequence[str] | None = None) -> int:
    """Parse, run the mode's runner, turn a ``UserError`` into a clear message and exit 2."""
    configure_process()
    invocation = parse_invocation(component, sys.argv[1:] if argv is None else argv)
    job = COMPONENT_IO[(component, invocation.mode)].job
    try:
        runners[invocation.mode](invocation)
    except UserError as error:
        message = f"driftloop {component} ({invocation.mode}): {error}"
        print(message, file=sys.stderr)
        write_failure_reason(job, message)
        return 2
    except Exception as error:  # a bug or an environment problem: keep the traceback, tell SageMaker too
        write_failure_reason(job, f"driftloop {component} ({invocation.mode}): {type(error).__name__}: {error}")
        raise
    return 0


def write_failure_reason(job: JobKind, message: str, root: Path | None = None) -> Path | None:
    """Write ``message`` where SageMaker reads a failed job's reason, when running in its container.

    Outside a SageMaker container (no ``root`` folder) this does nothing; a failure to write is
    logged and never hides the job's own error. Returns the file written, if any.
    """
    root = SAGEMAKER_ROOT if root is None else root
    if not root.is_dir():
        return None
    target = root / FAILURE_FILES[job]
    data = message.encode("utf-8")[:FAILURE_LIMIT_BYTES].decode("utf-8", errors="ignore")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data, encoding="utf-8")
    except OSError as error:
        log.warning("could not write the failure reason to %s: %s", target, error)
        return None
    return target
