"""Parameter names and the object-store layout: the only place either is spelled out.

The same names are used by the local runner (SQLite parameters, a directory as object store), by
the CDK stacks (SSM parameters, one S3 bucket) and by the drift-decision Lambda.

Object layout (keys are relative to the bucket or the local store's root)::

    data/<stage>/{train,val,test}/<class>/<image>   data sets as users upload them
    batches/<name>/<image>                           new unlabelled serve batches
    runs/train/<run_id>/<artifact>/...               everything one train run wrote
    runs/serve/<run_id>/<artifact>/...               everything one serve run wrote
    runs/<pipeline>/<run_id>/claim.json              the run's claim on its id (written first, once)
    leases/<name>/<generation>.json                  a lease's generations (``driftloop.loop``)
    leases/<name>/<generation>.released              the holder of that generation let it go

A run id is ``<pipeline>-<UTC time to the second>-<8 random hex digits>``: sortable by time, unique
without coordination, and valid in a Step Functions execution name and in SageMaker job names
(letters, digits and '-').
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Final, Literal

DEFAULT_PARAMETER_PREFIX: Final = "/driftloop"

PipelineName = Literal["train", "serve"]
SPLITS: Final = ("train", "val", "test")
# The seven data sets, in the order the simulation feeds their test sets to the serve pipeline.
STAGE_NAMES: Final = ("original", "stage-1", "stage-2", "stage-3", "stage-4", "stage-5", "noisy")
# The archive a SageMaker training job writes its model directory to (under the run's model prefix).
SAGEMAKER_ARCHIVE: Final = "model.tar.gz"


class ParameterNames:
    """Parameter Store keys under one prefix (``/driftloop`` unless a deployment names another)."""

    def __init__(self, prefix: str = DEFAULT_PARAMETER_PREFIX) -> None:
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"parameter prefix must start with '/' and not end with one: {prefix!r}")
        self.prefix = prefix

    @property
    def train_latest(self) -> str:
        """The promoted (current) model, detector and explainer, and the data they came from."""
        return f"{self.prefix}/train/latest"

    @property
    def train_last_attempt(self) -> str:
        """The newest train run, promoted or not, with challenger and champion accuracies."""
        return f"{self.prefix}/train/last-attempt"

    @property
    def serve_latest(self) -> str:
        """The newest complete serve run: its drift report, predictions and explanations."""
        return f"{self.prefix}/serve/latest"

    @property
    def simulation_position(self) -> str:
        """Index of the next test set in the simulation's stage cycle."""
        return f"{self.prefix}/simulation/position"

    def all(self) -> tuple[str, ...]:
        return (self.train_latest, self.train_last_attempt, self.serve_latest, self.simulation_position)


def data_prefix(stage: str, split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return f"data/{stage}/{split}"


def simulation_test_set(position: int) -> str:
    """The test set the simulation feeds at a cycle position (Original, Stage-1, …, Noisy, Original, …)."""
    return data_prefix(STAGE_NAMES[position % len(STAGE_NAMES)], "test")


RUN_ID_SUFFIX_HEX: Final = 8
RUN_ID_PATTERN: Final = re.compile(rf"(?P<pipeline>[a-z]+)-(?P<time>\d{{8}}T\d{{6}})-[0-9a-f]{{{RUN_ID_SUFFIX_HEX}}}")


def make_run_id(pipeline: PipelineName, when: datetime, suffix: int | None = None) -> str:
    """A new run id: the time (in UTC, to the second) for sorting, a random suffix so that two runs
    started in the same second still differ (or ``suffix``, for a writer that numbers its own runs)."""
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    tail = secrets.token_hex(RUN_ID_SUFFIX_HEX // 2) if suffix is None else f"{suffix:0{RUN_ID_SUFFIX_HEX}x}"
    if len(tail) != RUN_ID_SUFFIX_HEX:
        raise ValueError(f"run id suffix {suffix} does not fit in {RUN_ID_SUFFIX_HEX} hex digits")
    return f"{pipeline}-{stamp}-{tail}"


def run_prefix(pipeline: PipelineName, run_id: str) -> str:
    return f"runs/{pipeline}/{run_id}"


def run_claim_key(pipeline: PipelineName, run_id: str) -> str:
    """The marker a run creates first (``put_if_absent``): whoever creates it owns the run's prefix."""
    return f"{run_prefix(pipeline, run_id)}/claim.json"


def lease_prefix(name: str) -> str:
    return f"leases/{name}"


def lease_key(name: str, generation: int) -> str:
    """Generation ``generation`` of lease ``name``; zero-padded so that the keys sort by generation."""
    return f"{lease_prefix(name)}/{generation:012d}.json"


def lease_release_key(name: str, generation: int) -> str:
    return f"{lease_prefix(name)}/{generation:012d}.released"


def artifact_prefix(pipeline: PipelineName, run_id: str, artifact: str) -> str:
    return f"{run_prefix(pipeline, run_id)}/{artifact}"


def stage_of_data_prefix(prefix: str) -> str | None:
    """``data/stage-3/test`` -> ``stage-3``; anything else -> None (not a simulation data set)."""
    parts = prefix.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "data" and parts[2] in SPLITS:
        return parts[1]
    return None
