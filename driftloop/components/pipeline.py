"""A whole pipeline as one job: every step of one ``driftloop.pipelines`` definition, in one process.

``python -m driftloop.components.pipeline --pipeline serve|train`` runs the definition's steps in
order, each through its component's in-process runner (``RUNNERS``), so TensorFlow is imported
once and a job's start-up (instance, image pull, imports) is paid once a run instead of once a step.
The local runner runs its one-host steps through the same functions (``run_step``), so the two
cannot drift apart.

The job's channels are artifacts, not component channels:

* an input channel per external or resolved artifact the run has, at
  ``/opt/ml/processing/input/<artifact>``; an artifact the run lacks (no champion yet) has no
  channel, since SageMaker refuses an empty one: a step that needs it (``Step.only_if``) is skipped
  and an optional channel left out, as in the per-step form;
* an output channel per produced artifact, at ``/opt/ml/processing/output/<artifact>``, uploaded
  to the artifact's URI in the run's plan: exactly the keys the per-step jobs write.

Settings: ``--settings-<component> JSON`` (each component's non-default settings; one argument per
component, since SageMaker allows 256 characters an argument), and the run's facts (``RunPlan.facts``,
``{fact: value}``) in ``DRIFTLOOP_RUN_FACTS``, from which each step's run settings are made as the plan
makes ``RunPlan.settings`` (``Pipeline.run_settings``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Collection, Container, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from driftloop.components.entrypoint import Invocation, Runner, configure_process, write_failure_reason
from driftloop.errors import UserError
from driftloop.pipelines import (
    PIPELINES,
    PROCESSING_INPUT_ROOT,
    PROCESSING_OUTPUT_ROOT,
    RUN_FACTS_ENV,
    Component,
    JobKind,
    Pipeline,
    Step,
)


def component_runner(component: Component, mode: str) -> Runner:
    """The in-process runner behind a component's container entrypoint."""
    module = importlib.import_module(f"driftloop.components.{component.value}")
    runners: Mapping[str, Runner] = module.RUNNERS
    return runners[mode]


def runs(step: Step, present: Container[str]) -> bool:
    """Whether a run with these artifacts runs the step: every artifact of its ``only_if`` exists."""
    return all(artifact in present for artifact in step.only_if)


def step_settings(step: Step, components: Mapping[str, Mapping[str, Any]],
                  run_settings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A step's settings: its component's, then the run's own for that step (e.g. ``trained_on``)."""
    return {**components.get(step.component.value, {}), **run_settings.get(step.name, {})}


def step_invocation(step: Step, folders: Mapping[str, Path], output_root: Path, settings: Mapping[str, Any],
                    *, leave_out: Collection[str] = ()) -> Invocation:
    """The step over artifact folders: each input channel reads its artifact's folder (an optional one
    the run lacks is left out), each output writes ``output_root/<artifact>``.

    ``leave_out`` names input channels the caller fills per host (a scaled-out step's sharded ones).
    """
    optional = {channel for channel, _ in step.optional_inputs()}
    inputs: dict[str, Path] = {}
    for channel, artifact in step.inputs:
        if channel in leave_out:
            continue
        if artifact in folders:
            inputs[channel] = folders[artifact]
        elif channel not in optional:
            raise UserError(f"step {step.name}: the run has no {artifact} for its {channel} channel")
    outputs = {channel: output_root / artifact for channel, artifact in step.outputs}
    for folder in outputs.values():
        folder.mkdir(parents=True, exist_ok=True)
    return Invocation(mode=step.mode, inputs=inputs, outputs=outputs, settings=dict(settings))


def run_step(step: Step, folders: Mapping[str, Path], output_root: Path, settings: Mapping[str, Any]
             ) -> dict[str, Path]:
    """One step on this host, in this process; returns each artifact it wrote and its folder."""
    invocation = step_invocation(step, folders, output_root, settings)
    component_runner(step.component, step.mode)(invocation)
    return {artifact: invocation.outputs[channel] for channel, artifact in step.outputs}


def run_steps(pipeline: Pipeline, folders: Mapping[str, Path], output_root: Path,
              components: Mapping[str, Mapping[str, Any]], run_settings: Mapping[str, Mapping[str, Any]]
              ) -> dict[str, Path]:
    """Every step the run's artifacts allow, in order; returns every artifact's folder, inputs included."""
    available = dict(folders)
    for step in pipeline.steps:
        if runs(step, available):
            available.update(run_step(step, available, output_root, step_settings(step, components, run_settings)))
    return available


def artifact_channel(direction: str, artifact: str) -> PurePosixPath:
    """Where an artifact's channel lives in a whole-pipeline job (the state machine renders the same)."""
    return (PROCESSING_INPUT_ROOT if direction == "input" else PROCESSING_OUTPUT_ROOT) / artifact


def input_folders(pipeline: Pipeline, input_root: Path) -> dict[str, Path]:
    """The run's external and resolved artifacts that have a channel (a folder) in this job."""
    names = (*pipeline.external_artifacts(), *pipeline.resolved_artifacts())
    return {artifact: input_root / artifact for artifact in names if (input_root / artifact).is_dir()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m driftloop.components.pipeline")
    parser.add_argument("--pipeline", choices=sorted(PIPELINES), required=True)
    parser.add_argument("--input-root", type=Path, default=Path(str(PROCESSING_INPUT_ROOT)))
    parser.add_argument("--output-root", type=Path, default=Path(str(PROCESSING_OUTPUT_ROOT)))
    for component in Component:
        parser.add_argument(f"--settings-{component.value}", default="{}", dest=f"settings_{component.value}",
                            help=f"JSON: the {component.value} component's non-default settings")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run every step, and tell SageMaker why when a step fails (its ``ExitMessage``)."""
    configure_process()
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    pipeline = PIPELINES[args.pipeline]
    components = {c.value: json.loads(getattr(args, f"settings_{c.value}")) for c in Component}
    run_settings = pipeline.run_settings(json.loads(os.environ.get(RUN_FACTS_ENV, "{}")))
    try:
        run_steps(pipeline, input_folders(pipeline, args.input_root), args.output_root, components, run_settings)
    except UserError as error:
        message = f"driftloop {pipeline.name} pipeline: {error}"
        print(message, file=sys.stderr)
        write_failure_reason(JobKind.PROCESSING, message)
        return 2
    except Exception as error:  # a bug or an environment problem: keep the traceback, tell SageMaker too
        write_failure_reason(JobKind.PROCESSING, f"driftloop {pipeline.name} pipeline: {type(error).__name__}: {error}")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
