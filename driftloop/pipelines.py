"""The train and serve pipelines, defined once, as data.

``stacks/`` renders these definitions as Step Functions states (each step a SageMaker job) and
``driftloop.local.runner`` executes them locally; neither spells out a step of its own.

Vocabulary:

* a *channel* is a named input or output folder of a component in one mode (``COMPONENT_IO``);
  inside a container it is ``/opt/ml/processing/{input,output}/<channel>`` (processing jobs) or
  ``/opt/ml/input/data/<channel>`` and ``/opt/ml/model`` (the training job);
* an *artifact* is a named folder of one pipeline run (``runs/<pipeline>/<run_id>/<artifact>``,
  see ``driftloop.layout``), or an *external* input given when the run starts (the raw images),
  or a *resolved* input read from the current train record (the model, detector, explainer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Final, Literal

from driftloop.config import Mode, ScaleOut

# Facts of one run that a step's settings may name (``Step.run_settings``):
# * ``run_id``: the run's id;
# * ``data_name``: what the run's train data is called: the stage name for a stage's data set
#   (``data/<stage>/train``), else the data's URI.
RunFact = Literal["run_id", "data_name"]


class Component(StrEnum):
    PROCESSING = "processing"
    ALGORITHM = "algorithm"
    DRIFT = "drift"
    EXPLAINABILITY = "explainability"


class JobKind(StrEnum):
    PROCESSING = "processing"  # SageMaker Processing job
    TRAINING = "training"  # SageMaker Training job


@dataclass(frozen=True)
class ComponentIO:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    job: JobKind = JobKind.PROCESSING
    # Input channels a run may lack (its artifact is not in the plan, e.g. no champion yet): the
    # local runner leaves them out, the state machine starts the job without that channel.
    optional: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not set(self.optional) <= set(self.inputs):
            raise ValueError(f"optional channels {self.optional} must be among the inputs {self.inputs}")


# What each component reads and writes in each mode. The component entrypoints build their
# command-line options from this table, so a channel cannot be renamed in one place only.
COMPONENT_IO: Final[dict[tuple[Component, Mode], ComponentIO]] = {
    (Component.PROCESSING, "train"): ComponentIO(inputs=("train", "val"), outputs=("train", "val")),
    (Component.PROCESSING, "serve"): ComponentIO(inputs=("batch",), outputs=("batch",)),
    # ``champion``: the current model, which a retrain starts from with ``TrainingConfig.warm_start``.
    (Component.ALGORITHM, "train"): ComponentIO(
        inputs=("train", "val", "champion"), outputs=("model",), job=JobKind.TRAINING, optional=("champion",)
    ),
    (Component.ALGORITHM, "serve"): ComponentIO(inputs=("data", "model"), outputs=("predictions",)),
    (Component.DRIFT, "train"): ComponentIO(inputs=("train", "model"), outputs=("detector",)),
    # Serve: the drift features of this host's shards; merge: one KS test over every host's features.
    (Component.DRIFT, "serve"): ComponentIO(inputs=("batch", "detector", "model"), outputs=("features",)),
    (Component.DRIFT, "merge"): ComponentIO(inputs=("features", "detector"), outputs=("report",)),
    (Component.EXPLAINABILITY, "train"): ComponentIO(inputs=("train", "model"), outputs=("explainer",)),
    (Component.EXPLAINABILITY, "serve"): ComponentIO(
        inputs=("batch", "model", "explainer", "predictions"), outputs=("explanations",)
    ),
}

PROCESSING_INPUT_ROOT: Final = PurePosixPath("/opt/ml/processing/input")
PROCESSING_OUTPUT_ROOT: Final = PurePosixPath("/opt/ml/processing/output")
TRAINING_INPUT_ROOT: Final = PurePosixPath("/opt/ml/input/data")
TRAINING_MODEL_DIR: Final = PurePosixPath("/opt/ml/model")
TRAINING_HYPERPARAMETERS: Final = PurePosixPath("/opt/ml/input/config/hyperparameters.json")
# A job's environment variable with the step's per-run settings (JSON; ``Step.run_settings``).
RUN_SETTINGS_ENV: Final = "DRIFTLOOP_RUN_SETTINGS"
# A whole-pipeline job's environment variable with the run's facts (JSON of ``RunPlan.facts``:
# ``{fact: value}``; ``driftloop.components.pipeline`` makes each step's settings from them). Each fact
# once: a long data set name counts once, not once a step, against SageMaker's 256 characters a value.
RUN_FACTS_ENV: Final = "DRIFTLOOP_RUN_FACTS"


def container_path(component: Component, mode: Mode, direction: str, channel: str) -> PurePosixPath:
    """Where a channel lives inside the container, by SageMaker's conventions."""
    io = COMPONENT_IO[(component, mode)]
    names = io.inputs if direction == "input" else io.outputs
    if channel not in names:
        raise KeyError(f"{component}/{mode} has no {direction} channel {channel!r}; it has {names}")
    if io.job is JobKind.TRAINING:
        return TRAINING_INPUT_ROOT / channel if direction == "input" else TRAINING_MODEL_DIR
    root = PROCESSING_INPUT_ROOT if direction == "input" else PROCESSING_OUTPUT_ROOT
    return root / channel


@dataclass(frozen=True)
class Step:
    """One component run: which channel reads or writes which artifact."""

    name: str
    component: Component
    mode: Mode
    inputs: tuple[tuple[str, str], ...]  # (channel, artifact)
    outputs: tuple[tuple[str, str], ...]  # (channel, artifact)
    # The step runs only when every artifact named here exists (e.g. there is a champion model).
    only_if: tuple[str, ...] = ()
    # Settings that differ per run: (setting, run fact), e.g. the detector's ``trained_on``.
    run_settings: tuple[tuple[str, RunFact], ...] = ()
    # Input channels split by object key across the step's instances (``ScaleOut``), when it has
    # several: each instance gets its part of these and all of the other inputs.
    sharded: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        io = COMPONENT_IO[(self.component, self.mode)]
        if tuple(c for c, _ in self.inputs) != io.inputs or tuple(c for c, _ in self.outputs) != io.outputs:
            raise ValueError(f"step {self.name}: channels must be exactly {io}")
        if not set(self.sharded) <= set(io.inputs) or (self.sharded and io.job is JobKind.TRAINING):
            raise ValueError(f"step {self.name}: only input channels of a processing job can be sharded")

    def instance_count(self, scale: ScaleOut) -> int:
        """How many instances the step runs on: its ``ScaleOut`` field if it scales out, else one."""
        return int(getattr(scale, self.name)) if self.sharded else 1

    @property
    def job(self) -> JobKind:
        return COMPONENT_IO[(self.component, self.mode)].job

    def input_artifacts(self) -> tuple[str, ...]:
        return tuple(a for _, a in self.inputs)

    def optional_inputs(self) -> tuple[tuple[str, str], ...]:
        """(channel, artifact) of the inputs the step runs without when their artifact is absent."""
        optional = COMPONENT_IO[(self.component, self.mode)].optional
        return tuple((c, a) for c, a in self.inputs if c in optional)

    def required_artifacts(self) -> tuple[str, ...]:
        """The inputs a run of this step cannot do without (its ``only_if`` aside)."""
        optional = {a for _, a in self.optional_inputs()}
        return tuple(a for a in self.input_artifacts() if a not in optional and a not in self.only_if)

    def output_artifacts(self) -> tuple[str, ...]:
        return tuple(a for _, a in self.outputs)


@dataclass(frozen=True)
class Pipeline:
    name: Literal["train", "serve"]
    # Folders given when a run starts (e.g. the raw images): (artifact, field of the start input).
    external: tuple[tuple[str, str], ...]
    # Artifacts read from the current train record (parameter ``train/latest``): (artifact, record field).
    resolved: tuple[tuple[str, str], ...]
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        available = set(self.external_artifacts()) | set(self.resolved_artifacts())
        for step in self.steps:
            missing = set(step.input_artifacts()) - available
            if missing:
                raise ValueError(f"{self.name}/{step.name} reads {sorted(missing)} before anything writes it")
            available |= set(step.output_artifacts())

    def external_artifacts(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.external)

    def start_inputs(self) -> tuple[str, ...]:
        """The fields a run's start input must have (e.g. ``{"batch": "<key prefix>"}``)."""
        return tuple(f for _, f in self.external)

    def resolved_artifacts(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.resolved)

    def optional_inputs(self) -> tuple[str, ...]:
        """External and resolved artifacts a run may lack (no step requires them: e.g. no champion yet)."""
        required = {a for step in self.steps for a in step.required_artifacts()}
        return tuple(a for a in (*self.external_artifacts(), *self.resolved_artifacts()) if a not in required)

    def produced(self) -> tuple[str, ...]:
        return tuple(a for step in self.steps for a in step.output_artifacts())

    def run_settings(self, facts: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """Each step's per-run settings from the run's facts (``RunPlan.settings``): only the steps that take any."""
        return {s.name: {key: facts[fact] for key, fact in s.run_settings} for s in self.steps if s.run_settings}

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def on_one_host(self, scale: ScaleOut) -> bool:
        """Whether every step runs on one instance: then the whole run can be one job
        (``driftloop.components.pipeline``) instead of one job a step."""
        return all(step.instance_count(scale) == 1 for step in self.steps)


TRAIN_PIPELINE: Final = Pipeline(
    name="train",
    external=(("raw_train", "train_data"), ("raw_val", "val_data")),
    resolved=(("champion_model", "model"),),
    steps=(
        Step(
            "process",
            Component.PROCESSING,
            "train",
            inputs=(("train", "raw_train"), ("val", "raw_val")),
            outputs=(("train", "train_shards"), ("val", "val_shards")),
        ),
        Step(
            "train_model",
            Component.ALGORITHM,
            "train",
            inputs=(("train", "train_shards"), ("val", "val_shards"), ("champion", "champion_model")),
            outputs=(("model", "model"),),
            run_settings=(("trained_on", "data_name"),),
        ),
        # The current model on the new validation set: the champion's side of champion/challenger.
        Step(
            "evaluate_champion",
            Component.ALGORITHM,
            "serve",
            inputs=(("data", "val_shards"), ("model", "champion_model")),
            outputs=(("predictions", "champion_eval"),),
            only_if=("champion_model",),
        ),
        Step(
            "learn_reference",
            Component.DRIFT,
            "train",
            inputs=(("train", "train_shards"), ("model", "model")),
            outputs=(("detector", "detector"),),
            run_settings=(("trained_on", "data_name"), ("run_id", "run_id")),
        ),
        Step(
            "explain_background",
            Component.EXPLAINABILITY,
            "train",
            inputs=(("train", "train_shards"), ("model", "model")),
            outputs=(("explainer", "explainer"),),
        ),
    ),
)

# The serve run's start field: the key prefix of the batch to serve (``{"batch": "batches/<id>"}``).
BATCH_START_FIELD: Final = "batch"

SERVE_PIPELINE: Final = Pipeline(
    name="serve",
    external=(("raw_batch", BATCH_START_FIELD),),
    resolved=(("model", "model"), ("detector", "detector"), ("explainer", "explainer")),
    steps=(
        Step(
            "process",
            Component.PROCESSING,
            "serve",
            inputs=(("batch", "raw_batch"),),
            outputs=(("batch", "batch_shards"),),
            sharded=("batch",),
        ),
        Step(
            "drift_features",
            Component.DRIFT,
            "serve",
            inputs=(("batch", "batch_shards"), ("detector", "detector"), ("model", "model")),
            outputs=(("features", "drift_features"),),
            sharded=("batch",),
        ),
        # One instance: the KS test needs every image's features at once (they are small: n x features).
        Step(
            "detect_drift",
            Component.DRIFT,
            "merge",
            inputs=(("features", "drift_features"), ("detector", "detector")),
            outputs=(("report", "drift_report"),),
        ),
        Step(
            "predict",
            Component.ALGORITHM,
            "serve",
            inputs=(("data", "batch_shards"), ("model", "model")),
            outputs=(("predictions", "predictions"),),
            sharded=("data",),
        ),
        # One instance: it explains a fixed sample of n_explain images, whatever the batch's size.
        Step(
            "explain",
            Component.EXPLAINABILITY,
            "serve",
            inputs=(
                ("batch", "batch_shards"),
                ("model", "model"),
                ("explainer", "explainer"),
                ("predictions", "predictions"),
            ),
            outputs=(("explanations", "explanations"),),
        ),
    ),
)

PIPELINES: Final = {p.name: p for p in (TRAIN_PIPELINE, SERVE_PIPELINE)}

_SCALABLE = {s.name for s in SERVE_PIPELINE.steps if s.sharded}
if set(ScaleOut().to_dict()) != _SCALABLE or any(s.sharded for s in TRAIN_PIPELINE.steps):
    raise ValueError(f"ScaleOut's fields must be the serve steps that scale out: {sorted(_SCALABLE)}")

# File names inside artifacts that the pipeline glue (record step, decision) reads.
DRIFT_REPORT_FILE: Final = "drift_report.json"  # in drift_report
TRAIN_METRICS_FILE: Final = "metrics.json"  # in model
EVALUATION_FILE: Final = "evaluation.json"  # in predictions / champion_eval, when labels are known
PREDICTIONS_FILE: Final = "predictions.csv"  # in predictions (one per host: ``driftloop.hosts``)
MANIFEST_FILE: Final = "manifest.csv"  # in every processing output
