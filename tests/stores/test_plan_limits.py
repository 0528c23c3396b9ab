"""What AWS would refuse is refused when a run is planned, on both backends, before any job runs."""

from __future__ import annotations

import json
import re

import pytest

from driftloop import loop
from driftloop.layout import MAX_START_PREFIX, ParameterNames
from driftloop.pipelines import RUN_FACTS_ENV, SERVE_PIPELINE
from driftloop.plan_checks import (
    MAX_JOB_ENVIRONMENT_VALUE,
    MAX_RUN_ID,
    InvalidInput,
    check_plannable,
    check_start,
    deployment_starts,
    job_environment,
)
from driftloop.stores.objects import ObjectStore
from driftloop.stores.params import ParameterStore

pytestmark = pytest.mark.faults  # the fault campaign: docs/reliability.md

TIME = "2026-12-01T10:05:07+00:00"


def plan_train(objects: ObjectStore, params: ParameterStore, train_data: str, *, run_id: str = "t1",
               val_data: str = "data/original/val") -> loop.RunPlan:
    stores = loop.Stores(objects=objects, params=params, names=ParameterNames())
    return loop.plan_run(stores, "train", run_id=run_id, time=TIME, start={"train_data": train_data,
                                                                             "val_data": val_data})


@pytest.mark.parametrize(("prefix", "why"), [
    ("datasets/x/train", "not under data or batches/, the folders the jobs may read"),
    ("runs/train/t0/model", "not under data or batches/"),
    ("data/x\x00/train", "holds a control character"),
    ("data/x\r\ny/train", "holds a control character"),
    ("data/caf\udce9/train", "not valid UTF-8"),
    ("data/../etc/train", "not an object-key prefix"),
    ("data/" + "s" * (MAX_START_PREFIX - len("data//train") + 1) + "/train", f"more than {MAX_START_PREFIX}"),
])
def test_a_start_prefix_aws_would_refuse_is_refused_at_plan_time(
    objects: ObjectStore, params: ParameterStore, prefix: str, why: str
) -> None:
    with pytest.raises(InvalidInput, match=f"train_data=.* is .*{re.escape(why)}"):
        plan_train(objects, params, prefix)
    assert objects.list("runs") == []


def test_the_longest_start_prefix_can_be_served() -> None:
    longest = "batches/" + "b" * (MAX_START_PREFIX - len("batches/"))
    assert len(longest) == MAX_START_PREFIX
    check_start(SERVE_PIPELINE, {"batch": longest})


@pytest.mark.parametrize(("name", "why"), [
    ("photos,v2", "holds ','"),
    ("n" * 170, "257 characters, not 1 to 256"),  # its lineage.json's URI, at a 63-character bucket
])
def test_train_data_that_sagemaker_model_registry_could_not_name_is_refused_at_plan_time(
    objects: ObjectStore, params: ParameterStore, name: str, why: str
) -> None:
    """The run's model package names its data as S3 URIs: short and plain, or registration fails at the end."""
    with pytest.raises(InvalidInput, match=f"train_data=.*{re.escape(why)}.*SageMaker Model Registry refuses"):
        plan_train(objects, params, f"data/{name}/train")
    assert plan_train(objects, params, f"data/{'n' * 169}/train", run_id="t2").facts["data_name"] == "n" * 169


def test_a_data_set_name_that_overfills_a_job_environment_value_is_refused_at_plan_time(
    objects: ObjectStore, params: ParameterStore
) -> None:
    """The issue's case: a 148-character data set name and an 80-character run id make SageMaker's
    ``DRIFTLOOP_RUN_SETTINGS`` of the learn_reference job 257 characters, one over its limit."""
    run_id = "r" * MAX_RUN_ID
    fits = plan_train(objects, params, f"data/{'n' * 147}/train", run_id=run_id)
    assert max(len(value) for value in job_environment(fits.facts, fits.settings).values()) == 256
    with pytest.raises(InvalidInput, match="DRIFTLOOP_RUN_SETTINGS of step learn_reference of 257 characters; "
                                           "SageMaker allows 256 a value. It holds data_name 'n{148}' "
                                           r"\(148 characters\), run_id 'r{80}' \(80 characters\)"):
        plan_train(objects, params, f"data/{'n' * 148}/train", run_id=run_id)


def test_the_one_job_form_carries_each_run_fact_once() -> None:
    """A data set name counts once against the 256 characters, not once a step that takes it."""
    facts = {"run_id": "r" * MAX_RUN_ID, "data_name": "n" * 147}
    environment = job_environment(facts, {"train_model": {"trained_on": facts["data_name"]},
                                          "learn_reference": {"trained_on": facts["data_name"], "run_id": "r" * 80}})
    assert json.loads(environment[RUN_FACTS_ENV]) == facts
    assert len(environment[RUN_FACTS_ENV]) < MAX_JOB_ENVIRONMENT_VALUE


@pytest.mark.parametrize("simulation", [True, False])
def test_every_run_a_deployment_starts_itself_fits_at_the_longest_run_ids(simulation: bool) -> None:
    """What ``cdk synth`` checks: among them production's retrain set, named after an 80-character serve run."""
    starts = deployment_starts(simulation=simulation)
    assert {pipeline for pipeline, _ in starts} == {"train", "serve"}
    for pipeline, start in starts:
        check_plannable(pipeline, start)


def test_synth_refuses_a_start_whose_run_would_be_refused() -> None:
    with pytest.raises(InvalidInput, match="learn_reference of 257 characters"):
        check_plannable("train", {"train_data": f"data/{'n' * 148}/train", "val_data": "data/x/val"})
