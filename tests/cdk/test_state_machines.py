"""The rendered state machines do what driftloop.pipelines says, and fail safely."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from driftloop.pipelines import SERVE_PIPELINE, TRAIN_PIPELINE, JobKind, Pipeline, container_path
from driftloop.records import ServeRecord

from .conftest import REPO_ROOT, Synthesized
from .definitions import definition_of, happy_path, reachable, sagemaker_jobs

ASL_VALIDATOR = REPO_ROOT / "node_modules" / ".bin" / "asl-validator"


def _definitions(synthesized: Synthesized, stack: Any) -> dict[str, dict[str, Any]]:
    from aws_cdk import Stack

    template = synthesized.template_json(stack)
    pipelines = stack.pipelines
    return {
        name: definition_of(template, Stack.of(machine).resolve(machine.node.default_child.logical_id))
        for name, machine in (("train", pipelines.train), ("serve", pipelines.serve))
    }


@pytest.fixture(scope="module")
def definitions(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return _definitions(synthesized, synthesized.development)


@pytest.fixture(scope="module")
def production_definitions(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return _definitions(synthesized, synthesized.production)


PIPELINES = {"train": TRAIN_PIPELINE, "serve": SERVE_PIPELINE}


def _step_of(pipeline: Pipeline, state: str) -> str:
    from stacks.jobs import state_name

    return next(step.name for step in pipeline.steps if state_name(step) == state)


@pytest.mark.parametrize("name", ["train", "serve"])
def test_jobs_run_in_the_order_of_the_pipeline_definition(definitions: dict[str, Any], name: str) -> None:
    definition = definitions[name]
    jobs = sagemaker_jobs(definition)
    order = [_step_of(PIPELINES[name], state) for state in happy_path(definition) if state in jobs]
    assert order == [step.name for step in PIPELINES[name].steps]


@pytest.mark.parametrize("name", ["train", "serve"])
def test_every_sagemaker_job_is_sync_retries_only_throttling_and_is_caught(
    definitions: dict[str, Any], name: str
) -> None:
    definition = definitions[name]
    jobs = sagemaker_jobs(definition)
    assert len(jobs) == len(PIPELINES[name].steps)
    for state_name, state in jobs.items():
        assert state["Resource"].endswith(".sync"), state_name
        retried = {error for retry in state.get("Retry", []) for error in retry["ErrorEquals"]}
        assert retried == {"SageMaker.AmazonSageMakerException", "SageMaker.ResourceLimitExceededException"}
        catches = [error for catch in state["Catch"] for error in catch["ErrorEquals"]]
        assert catches[-1] == "States.ALL", state_name
        # Every way out of a failed job ends in the failure notice and a Fail state.
        for catch in state["Catch"]:
            after = reachable(definition, catch["Next"])
            assert "NotifyFailure" in after
            assert any(definition["States"][s]["Type"] == "Fail" for s in after)


@pytest.mark.parametrize("name", ["train", "serve"])
def test_a_failed_job_changes_no_parameter(definitions: dict[str, Any], name: str) -> None:
    definition = definitions[name]
    writers = {
        s for s, state in definition["States"].items()
        if state["Type"] == "Task" and ("putParameter" in state["Resource"] or "RecordTrain" in s)
    }
    assert writers, "expected states that write the records"
    for job, state in sagemaker_jobs(definition).items():
        for catch in state["Catch"]:
            # The capacity retry may start the job again; up to that point nothing is written.
            after = reachable(definition, catch["Next"], stop=frozenset({job}))
            assert not after & writers, (job, after & writers)
            assert "NotifyFailure" in after


def test_capacity_errors_start_the_job_again_with_a_fresh_name(definitions: dict[str, Any]) -> None:
    definition = definitions["serve"]
    states = definition["States"]
    job = states["Predict"]
    choice = states[job["Catch"][0]["Next"]]
    assert job["Catch"][0]["ErrorEquals"] == ["States.TaskFailed"]
    retry_rule = next(rule for rule in choice["Choices"] if "And" in rule)
    assert {"Variable": "$.error.Cause", "StringMatches": "*CapacityError*"} in retry_rule["And"]
    assert "Predict" in reachable(definition, retry_rule["Next"], follow_catch=False)
    assert "States.UUID()" in job["Parameters"]["ProcessingJobName.$"]


@pytest.mark.parametrize("name", ["train", "serve"])
def test_jobs_are_named_and_placed_per_execution(definitions: dict[str, Any], name: str) -> None:
    definition = definitions[name]
    start = definition["States"]["Start"]["Parameters"]
    for artifact in PIPELINES[name].produced():
        template = start["uri"][f"{artifact}.$"]
        assert f"runs/{name}/{{}}/{artifact}'" in template and "$$.Execution.Name" in template
    for state in sagemaker_jobs(definition).values():
        parameters = state["Parameters"]
        job_name = parameters.get("ProcessingJobName.$") or parameters["TrainingJobName.$"]
        prefix = re.fullmatch(r"States\.Format\('([a-z0-9-]+)-\{\}', States\.UUID\(\)\)", job_name)
        assert prefix is not None, job_name
        assert len(prefix.group(1)) + 1 + 36 <= 63


@pytest.mark.parametrize("name", ["train", "serve"])
def test_processing_channels_use_sagemaker_container_paths(definitions: dict[str, Any], name: str) -> None:
    from stacks.jobs import state_name

    pipeline = PIPELINES[name]
    states = definitions[name]["States"]
    for step in pipeline.steps:
        state = states[state_name(step)]
        parameters = state["Parameters"]
        if step.job is JobKind.TRAINING:
            channels = [c["ChannelName"] for c in parameters["InputDataConfig"]]
            assert channels == [c for c, _ in step.inputs]
            assert state["Resource"].endswith("createTrainingJob.sync")
            continue
        assert parameters["AppSpecification"]["ContainerArguments"][:2] == ["--mode", step.mode]
        inputs = {i["InputName"]: i["S3Input"]["LocalPath"] for i in parameters["ProcessingInputs"]}
        outputs = {o["OutputName"]: o["S3Output"]["LocalPath"] for o in parameters["ProcessingOutputConfig"]["Outputs"]}
        assert inputs == {c: str(container_path(step.component, step.mode, "input", c)) for c, _ in step.inputs}
        assert outputs == {c: str(container_path(step.component, step.mode, "output", c)) for c, _ in step.outputs}


def test_the_champion_is_evaluated_only_when_there_is_one(definitions: dict[str, Any]) -> None:
    states = definitions["train"]["States"]
    choice = states["EvaluateChampion?"]
    assert choice["Choices"] == [{"Variable": "$.current.record.model", "IsPresent": True, "Next": "EvaluateChampion"}]
    assert choice["Default"] == "LearnReference"
    assert states["EvaluateChampion"]["Parameters"]["ProcessingInputs"][1]["S3Input"]["S3Uri.$"] == (
        "$.current.record.model"
    )


def test_training_output_feeds_the_later_steps(definitions: dict[str, Any]) -> None:
    states = definitions["train"]["States"]
    train = states["TrainModel"]
    assert train["ResultPath"] == "$.trained.model"
    assert "$.OutputDataConfig.S3OutputPath" in train["ResultSelector"]["uri.$"]
    model_inputs = [i for i in states["LearnReference"]["Parameters"]["ProcessingInputs"] if i["InputName"] == "model"]
    assert model_inputs[0]["S3Input"]["S3Uri.$"] == "$.trained.model.uri"
    assert states["RecordTrain"]["Parameters"]["artifacts"]["model.$"] == "$.trained.model.uri"


def test_serve_needs_a_trained_model(definitions: dict[str, Any]) -> None:
    states = definitions["serve"]["States"]
    choice = states["HaveModel?"]
    assert {c["Variable"] for c in choice["Choices"][0]["And"]} == {
        "$.current.record.model", "$.current.record.detector", "$.current.record.explainer"
    }
    no_model = states[choice["Default"]]
    assert no_model["Type"] == "Fail" and "run the train pipeline first" in no_model["Cause"]


def test_retrain_branch_starts_the_train_state_machine_unless_one_is_running(
    synthesized: Synthesized, definitions: dict[str, Any]
) -> None:
    from aws_cdk import Stack

    train = synthesized.development.pipelines.train
    train_ref = f"ref-{Stack.of(train).resolve(train.node.default_child.logical_id)}"
    definition = definitions["serve"]
    states = definition["States"]
    retrain = states["Retrain?"]
    assert retrain["Choices"][0]["Variable"] == "$.decision.retrain"
    guard = states[retrain["Choices"][0]["Next"]]
    assert guard["Resource"].endswith(":aws-sdk:sfn:listExecutions")
    assert guard["Parameters"] == {"StateMachineArn": train_ref, "StatusFilter": "RUNNING", "MaxResults": 1}
    already = states[guard["Next"]]
    skipped, start = already["Choices"][0]["Next"], already["Default"]
    assert states[start]["Resource"].endswith(":states:startExecution")
    assert states[start]["Parameters"]["StateMachineArn"] == train_ref
    assert states[start]["Parameters"]["Input"]["train_data.$"] == "$.decision.train_data"
    assert "skipped: a retrain is already running" in states[skipped]["Parameters"]["reason.$"]
    # Both outcomes, and no retrain at all, are recorded in serve/latest.
    for branch in (skipped, start, retrain["Default"]):
        assert "WriteServeRecord" in reachable(definition, branch, follow_catch=False)
    assert start not in reachable(definition, retrain["Default"])


def test_serve_record_is_written_last_with_every_field(definitions: dict[str, Any]) -> None:
    definition = definitions["serve"]
    states = definition["States"]
    record = states["BuildServeRecord"]["Parameters"]
    assert {key.removesuffix(".$") for key in record} == {f.name for f in fields(ServeRecord)}
    after = reachable(definition, "WriteServeRecord", follow_catch=False) - {"WriteServeRecord"}
    assert all(states[s]["Type"] != "Task" or ":sns:" in states[s]["Resource"] for s in after)
    assert states["WriteServeRecord"]["Parameters"]["Value.$"] == "States.JsonToString($.record)"


def test_simulation_picks_the_batch_only_when_none_is_given(
    definitions: dict[str, Any], production_definitions: dict[str, Any]
) -> None:
    simulated = definitions["serve"]["States"]
    assert simulated["BatchGiven?"]["Default"] == "NextSimulationBatch"
    assert "NextSimulationBatch" not in production_definitions["serve"]["States"]
    assert production_definitions["serve"]["States"]["BatchGiven?"]["Default"] == "InputValid?"


def test_configured_resources_and_settings_reach_the_jobs(
    definitions: dict[str, Any], production_definitions: dict[str, Any]
) -> None:
    states = production_definitions["serve"]["States"]
    predict = states["Predict"]["Parameters"]
    assert predict["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 3
    data = next(i for i in predict["ProcessingInputs"] if i["InputName"] == "data")
    assert data["S3Input"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert json.loads(states["DetectDrift"]["Parameters"]["AppSpecification"]["ContainerArguments"][3]) == {
        "p_val": 0.01
    }
    train = production_definitions["train"]["States"]["TrainModel"]["Parameters"]
    assert train["HyperParameters"] == {"epochs": "12"}
    assert train["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert definitions["train"]["TimeoutSeconds"] == 360 * 60
    assert definitions["serve"]["TimeoutSeconds"] == 180 * 60


def test_definitions_pass_asl_validator(definitions: dict[str, Any], tmp_path: Path) -> None:
    if not ASL_VALIDATOR.exists():
        pytest.skip("node_modules is not installed: run `make install` (npm ci)")
    paths = []
    for name, definition in definitions.items():
        path = tmp_path / f"{name}.asl.json"
        path.write_text(json.dumps(definition))
        paths += ["--json-path", str(path)]
    result = subprocess.run([str(ASL_VALIDATOR), *paths], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
