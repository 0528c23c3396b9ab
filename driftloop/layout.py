"""Parameter names and the object-store layout: the only place either is spelled out.

The same names are used by the local runner (SQLite parameters, a directory as object store), by
the CDK stacks (SSM parameters, one S3 bucket) and by the drift-decision Lambda.

Object layout (keys are relative to the bucket or the local store's root)::

    data/<stage>/{train,val,test}/<class>/<image>   data sets as users upload them
    data/retrain-<serve run id>/lineage.json        a production retrain set's lineage, beside its splits
    batches/<id>/<image>                             new unlabelled serve batches (images at any depth)
    batches/<id>/_READY                              the batch's marker: the upload is complete
    ledger/served/<id>.json                          the first serve of a batch (its create-only claim)
    ledger/served-again/<id>/<n>.json                serve n >= 2 of a batch, by a run that named it
    labels/<id>/<file>                               labels that came back for a served batch
    label-requests/<id>/manifest.jsonl               a Ground Truth input manifest asking for labels
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
# The store's top-level folders: users upload data sets and batches; the pipelines write runs.
DATA_ROOT: Final = "data"
BATCHES_ROOT: Final = "batches"
RUNS_ROOT: Final = "runs"
# What a run may start on: the folders users upload to (the SageMaker jobs' role reads these and runs/).
START_ROOTS: Final = (DATA_ROOT, BATCHES_ROOT)
# The longest start prefix: at S3's and Step Functions' longest names (a 63-character bucket, an
# 80-character run id) every record of a run on it fits Parameter Store's free Standard tier
# (tests/test_records.py), although the record names the data up to four times.
MAX_START_PREFIX: Final = 256


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
    return f"{DATA_ROOT}/{stage}/{split}"


def simulation_stage(position: int) -> str:
    """The stage whose test set the simulation feeds at a cycle position (Original, Stage-1, …, Noisy, Original, …)."""
    return STAGE_NAMES[position % len(STAGE_NAMES)]


def simulation_test_set(position: int) -> str:
    """The key prefix of that stage's test set: what the serve run at ``position`` reads."""
    return data_prefix(simulation_stage(position), "test")


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
    return f"{RUNS_ROOT}/{pipeline}/{run_id}"


def run_claim_key(pipeline: PipelineName, run_id: str) -> str:
    """The marker a run creates first (``put_if_absent``): whoever creates it owns the run's prefix."""
    return f"{run_prefix(pipeline, run_id)}/claim.json"


# A lease generation's object, and the marker that its holder let it go: ``<generation><suffix>``.
LEASE_SUFFIX: Final = ".json"
LEASE_RELEASED_SUFFIX: Final = ".released"


def lease_prefix(name: str) -> str:
    return f"leases/{name}"


def lease_key(name: str, generation: int) -> str:
    """Generation ``generation`` of lease ``name``; zero-padded so that the keys sort by generation."""
    return f"{lease_prefix(name)}/{generation:012d}{LEASE_SUFFIX}"


def lease_release_key(name: str, generation: int) -> str:
    return f"{lease_prefix(name)}/{generation:012d}{LEASE_RELEASED_SUFFIX}"


def artifact_prefix(pipeline: PipelineName, run_id: str, artifact: str) -> str:
    return f"{run_prefix(pipeline, run_id)}/{artifact}"


def stage_of_data_prefix(prefix: str) -> str | None:
    """``data/stage-3/test`` -> ``stage-3``; anything else -> None (not a simulation data set)."""
    parts = prefix.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == DATA_ROOT and parts[2] in SPLITS:
        return parts[1]
    return None


BATCHES: Final = "batches"
# The object whose presence says a batch's upload is complete (written last, after every image).
READY_MARKER: Final = "_READY"
LEDGER_SERVED: Final = "ledger/served"
LEDGER_SERVED_AGAIN: Final = "ledger/served-again"
LEDGER_LABELLED: Final = "ledger/labelled"
# Where a production retrain's data set is assembled: base data plus labelled production images.
RETRAIN_SET: Final = "retrain"
RUN_RECORD_FILE: Final = "record.json"
LABELS: Final = "labels"
LABEL_REQUESTS: Final = "label-requests"
# A batch id is one key segment that is also a safe file and folder name on every OS: letters,
# digits, '.', '_', '-', starting with a letter or digit (so never '.', '..' or a hidden name).
MAX_BATCH_ID: Final = 128
_BATCH_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_BATCH_ID - 1}}}")


def batch_id_problem(batch_id: str) -> str | None:
    """Why ``batch_id`` cannot name a batch, or None when it can."""
    if _BATCH_ID.fullmatch(batch_id):
        return None
    return (f"bad batch id {batch_id!r}: use 1 to {MAX_BATCH_ID} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")


def check_batch_id(batch_id: str) -> None:
    if (problem := batch_id_problem(batch_id)) is not None:
        raise ValueError(problem)


def batch_prefix(batch_id: str) -> str:
    """``batches/<id>``: the folder the batch's images are under (and the serve run's ``batch`` field)."""
    check_batch_id(batch_id)
    return f"{BATCHES}/{batch_id}"


def batch_id_of_prefix(prefix: str) -> str | None:
    """``batches/<id>`` -> ``<id>``; None for any other prefix (e.g. a simulation data set)."""
    parts = prefix.strip("/").split("/")
    if len(parts) == 2 and parts[0] == BATCHES and batch_id_problem(parts[1]) is None:
        return parts[1]
    return None


def batch_marker(batch_id: str) -> str:
    return f"{batch_prefix(batch_id)}/{READY_MARKER}"


def served_entry(batch_id: str) -> str:
    check_batch_id(batch_id)
    return f"{LEDGER_SERVED}/{batch_id}.json"


def served_again_prefix(batch_id: str) -> str:
    check_batch_id(batch_id)
    return f"{LEDGER_SERVED_AGAIN}/{batch_id}"


def served_again_entry(batch_id: str, serve: int) -> str:
    """Serve number ``serve`` (2, 3, ...) of a batch that a run named after its first serve."""
    if serve < 2:
        raise ValueError(f"a batch's first serve is its served_entry; got serve {serve}")
    return f"{served_again_prefix(batch_id)}/{serve}.json"


def labels_prefix(batch_id: str) -> str:
    check_batch_id(batch_id)
    return f"{LABELS}/{batch_id}"


def label_request_manifest(batch_id: str) -> str:
    check_batch_id(batch_id)
    return f"{LABEL_REQUESTS}/{batch_id}/manifest.jsonl"


def labelled_entry(batch_id: str) -> str:
    """The batch's labels joined to its predictions (``driftloop.production.JoinedBatch``)."""
    check_batch_id(batch_id)
    return f"{LEDGER_LABELLED}/{batch_id}.json"


def retrain_set_prefix(name: str) -> str:
    """``data/retrain-<name>``: a production retrain's data set, with ``train``/``val`` splits and its lineage."""
    check_batch_id(name)
    return f"data/{RETRAIN_SET}-{name}"


LINEAGE_FILE: Final = "lineage.json"


def lineage_key(split_prefix: str) -> str:
    """A data set's lineage, beside its splits: ``data/retrain-x/train`` -> ``data/retrain-x/lineage.json``."""
    return f"{split_prefix.rpartition('/')[0]}/{LINEAGE_FILE}"


def run_record_key(pipeline: PipelineName, run_id: str) -> str:
    """A run's record as an object beside its artifacts: the history that joined labels and lineage point into."""
    return f"{run_prefix(pipeline, run_id)}/{RUN_RECORD_FILE}"
