"""What AWS would refuse, refused when a run is planned: its id, its start prefixes, its jobs' environment.

A run that AWS refuses halfway costs the jobs it already ran and leaves a half-done run behind, so
each limit a run's names meet on the way is checked before its first job, on both backends (the
local runner plans with the same function): a local run fails where AWS would. ``cdk synth`` checks
the start inputs a deployment makes itself at the longest run ids it can get (``check_plannable``).

Pure: no store, no clock, nothing the decide Lambda lacks.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Final

from driftloop.layout import (
    MAX_BATCH_ID,
    MAX_START_PREFIX,
    STAGE_NAMES,
    START_ROOTS,
    PipelineName,
    batch_prefix,
    data_prefix,
    lineage_key,
    retrain_set_prefix,
    stage_of_data_prefix,
)
from driftloop.pipelines import BATCH_START_FIELD, PIPELINES, RUN_FACTS_ENV, RUN_SETTINGS_ENV, Pipeline
from driftloop.registry import metadata_problem
from driftloop.stores.objects import check_key

# A Step Functions execution name (1 to 80 letters, digits, '-' and '_'): a run id is one, and one folder.
MAX_RUN_ID: Final = 80
RUN_ID: Final = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_RUN_ID}}}")
# SageMaker's limit on one value of a job's ``Environment`` (CreateProcessingJob).
MAX_JOB_ENVIRONMENT_VALUE: Final = 256
# The longest S3 bucket name: a data name that is a URI (a prefix outside data/<name>/<split>) holds one.
MAX_BUCKET_NAME: Final = 63


class InvalidInput(ValueError):
    """A run's start input or id that no run can use (the message shows the expected form)."""


def usage(pipeline: Pipeline) -> str:
    fields = ", ".join(f'"{name}": "<key prefix>"' for name in pipeline.start_inputs())
    roots = " or ".join(f"{root}/" for root in START_ROOTS)
    return (
        f"start the {pipeline.name} pipeline with {{{fields}}}: object-key prefixes in the data store under "
        f"{roots}, at most {MAX_START_PREFIX} characters, without s3:// and without slashes at either end "
        "(e.g. data/<stage>/train)"
    )


def check_run_id(run_id: str) -> None:
    """What a Step Functions execution name allows, so that an id that works locally works on AWS, and
    one id is one folder (no '/')."""
    if not RUN_ID.fullmatch(run_id):
        raise InvalidInput(f"run id {run_id!r} must be 1 to {MAX_RUN_ID} letters, digits, '-' or '_' (as a Step "
                           "Functions execution name): start the run with another name")


def prefix_problem(prefix: object) -> str | None:
    """Why a start prefix can't be one (None: it can): a key under a start root, short enough for the
    run's records, in printable text S3 can store (UTF-8, no control characters)."""
    if not isinstance(prefix, str) or prefix.startswith("s3:"):
        return "not an object-key prefix"
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8 text (S3 keys are UTF-8)"
    if any(unicodedata.category(char) == "Cc" for char in prefix):
        return "holds a control character (NUL, tab, CR or LF)"
    try:
        check_key(prefix)
    except ValueError:
        return "not an object-key prefix"
    if prefix.split("/")[0] not in START_ROOTS:
        return f"not under {' or '.join(START_ROOTS)}/, the folders the jobs may read"
    if len(prefix) > MAX_START_PREFIX:
        return f"{len(prefix)} characters, more than {MAX_START_PREFIX} (the run's records must fit the Standard tier)"
    return None


def check_start(pipeline: Pipeline, start: Mapping[str, object]) -> None:
    """The start input must have exactly the pipeline's fields, each a prefix a run can start on."""
    expected = set(pipeline.start_inputs())
    if set(start) != expected:
        raise InvalidInput(f"got fields {sorted(start)}, expected {sorted(expected)}: {usage(pipeline)}")
    for name, prefix in start.items():
        if (problem := prefix_problem(prefix)) is not None:
            raise InvalidInput(f"{name}={prefix!r} is {problem}: {usage(pipeline)}")


def job_environment(facts: Mapping[str, str], settings: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The environment values a run's jobs get, as long as the state machine can make them
    (``States.JsonToString``; non-ASCII escaped, the longest form): one a step in the one-job-a-step
    form, and the run's facts in the one-job form."""
    def render(value: object) -> str:
        return json.dumps(value, separators=(",", ":"))

    values = {f"{RUN_SETTINGS_ENV} of step {step}": render(step_settings) for step, step_settings in settings.items()}
    if settings:
        values[RUN_FACTS_ENV] = render(facts)
    return values


def check_job_environment(facts: Mapping[str, str], settings: Mapping[str, Mapping[str, str]]) -> None:
    """Every job environment value within SageMaker's limit; else which names to shorten, and how long they are."""
    for variable, value in job_environment(facts, settings).items():
        if len(value) > MAX_JOB_ENVIRONMENT_VALUE:
            names = ", ".join(f"{fact} {facts[fact]!r} ({len(facts[fact])} characters)" for fact in sorted(facts))
            raise InvalidInput(
                f"the run's jobs would get {variable} of {len(value)} characters; SageMaker allows "
                f"{MAX_JOB_ENVIRONMENT_VALUE} a value. It holds {names}: start the run on a data set with a "
                "shorter name, or with a shorter run id"
            )


def check_registrable(pipeline: Pipeline, start: Mapping[str, str]) -> None:
    """A train run's model package names its data (and a retrain set's lineage) as S3 URIs, which SageMaker
    Model Registry takes only short and plain (``registry.metadata_problem``): checked at the longest
    bucket name on both backends, so that a local run is refused where AWS would refuse its last step."""
    if pipeline.name != "train":
        return
    for name, prefix in start.items():
        for key in (prefix, lineage_key(prefix)):
            if (problem := metadata_problem(f"s3://{'b' * MAX_BUCKET_NAME}/{key}")) is not None:
                raise InvalidInput(f"{name}={prefix!r}: the model package of this run would name {key} as an S3 URI "
                                   f"that is {problem} (at the longest bucket name), which SageMaker Model Registry "
                                   "refuses: give the data set a shorter name of letters, digits and '_.-'")


def data_name(prefix: str, uri: str) -> str:
    """The ``data_name`` run fact: a stage's name for its data set (``data/<stage>/<split>``), else its URI."""
    return stage_of_data_prefix(prefix) or uri


def deployment_starts(*, simulation: bool) -> list[tuple[PipelineName, dict[str, str]]]:
    """The start inputs a deployment makes itself, at their longest: the simulation's stage data sets, or
    production's batches (the longest batch id) and retrain sets (named by the longest serve run id)."""
    if simulation:
        return [start for stage in STAGE_NAMES for start in (
            ("serve", {BATCH_START_FIELD: data_prefix(stage, "test")}),
            ("train", {"train_data": data_prefix(stage, "train"), "val_data": data_prefix(stage, "val")}))]
    retrain_set = retrain_set_prefix("r" * MAX_RUN_ID)
    return [("serve", {BATCH_START_FIELD: batch_prefix("b" * MAX_BATCH_ID)}),
            ("train", {"train_data": f"{retrain_set}/train", "val_data": f"{retrain_set}/val"})]


def check_plannable(pipeline_name: PipelineName, start: Mapping[str, str], *, run_id_length: int = MAX_RUN_ID
                    ) -> None:
    """What ``cdk synth`` checks of a start input the deployment makes itself: a run on it, with a run id
    of ``run_id_length`` characters and the longest bucket name, can be planned."""
    pipeline = PIPELINES[pipeline_name]
    check_start(pipeline, start)
    check_registrable(pipeline, start)
    first = start[pipeline.start_inputs()[0]]
    facts = {"run_id": "r" * run_id_length,
                                 "data_name": data_name(first, f"s3://{'b' * MAX_BUCKET_NAME}/{first}")}
    check_job_environment(facts, pipeline.run_settings(facts))
