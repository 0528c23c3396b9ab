"""The rendered state machines do what driftloop.pipelines says, and fail safely."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from driftloop.pipelines import SERVE_PIPELINE, TRAIN_PIPELINE, JobKind, Pipeline, container_path

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
def test_every_sagemaker_job_is_sync_retries_only_quota_errors_in_place_and_is_caught(
    definitions: dict[str, Any], name: str
) -> None:
    definition = definitions[name]
    jobs = sagemaker_jobs(definition)
    # One job a step; two for a step with an optional channel (with it and without it).
    steps = PIPELINES[name].steps
    assert len(jobs) == len(steps) + sum(bool(step.optional_inputs()) for step in steps)
    for state_name, state in jobs.items():
        assert state["Resource"].endswith(".sync"), state_name
        retried = {error for retry in state.get("Retry", []) for error in retry["ErrorEquals"]}
        assert retried == {"SageMaker.ResourceLimitExceededException"}
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
        if state["Type"] == "Task" and s in ("RecordTrain", "RecordServe")
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
    assert job["Catch"][0]["ErrorEquals"] == ["States.TaskFailed", "SageMaker.AmazonSageMakerException"]
    retry_rule = next(rule for rule in choice["Choices"] if "And" in rule)
    assert {"Variable": "$.error.Cause", "StringMatches": "*CapacityError*"} in retry_rule["And"]
    assert "Predict" in reachable(definition, retry_rule["Next"], follow_catch=False)
    assert "States.UUID()" in job["Parameters"]["ProcessingJobName.$"]


@pytest.mark.parametrize("name", ["train", "serve"])
def test_jobs_are_named_per_attempt_and_placed_by_the_runs_plan(definitions: dict[str, Any], name: str) -> None:
    definition = definitions[name]
    plan = definition["States"]["Plan"]
    assert plan["Parameters"] == {
        "pipeline": name, "run_id.$": "$$.Execution.Name", "time.$": "$$.Execution.StartTime", "start.$": "$",
    }
    for state in sagemaker_jobs(definition).values():
        parameters = state["Parameters"]
        job_name = parameters.get("ProcessingJobName.$") or parameters["TrainingJobName.$"]
        prefix = re.fullmatch(r"States\.Format\('([a-z0-9-]+)-\{\}', States\.UUID\(\)\)", job_name)
        assert prefix is not None, job_name
        assert len(prefix.group(1)) + 1 + 36 <= 63
        locations = [i["S3Input"]["S3Uri.$"] for i in parameters.get("ProcessingInputs", [])]
        locations += [o["S3Output"]["S3Uri.$"] for o in parameters.get("ProcessingOutputConfig", {}).get("Outputs", [])]
        locations += [c["DataSource"]["S3DataSource"]["S3Uri.$"] for c in parameters.get("InputDataConfig", [])]
        assert locations and all(re.fullmatch(r"\$\.plan\.uri\.[a-z_]+", uri) for uri in locations), locations


def test_per_run_settings_reach_the_steps_that_need_them(definitions: dict[str, Any]) -> None:
    from driftloop.pipelines import RUN_SETTINGS_ENV

    states = definitions["train"]["States"]
    assert states["LearnReference"]["Parameters"]["Environment"] == {
        f"{RUN_SETTINGS_ENV}.$": "States.JsonToString($.plan.settings.learn_reference)"
    }
    assert states["TrainModel"]["Parameters"]["Environment"] == {
        f"{RUN_SETTINGS_ENV}.$": "States.JsonToString($.plan.settings.train_model)"
    }
    assert "Environment" not in states["ExplainBackground"]["Parameters"]


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
    assert choice["Choices"] == [{"Variable": "$.plan.uri.champion_model", "IsPresent": True,
                                  "Next": "EvaluateChampion"}]
    assert choice["Default"] == "LearnReference"
    assert states["EvaluateChampion"]["Parameters"]["ProcessingInputs"][1]["S3Input"]["S3Uri.$"] == (
        "$.plan.uri.champion_model"
    )


def test_the_training_job_reads_the_champion_only_when_there_is_one(definitions: dict[str, Any]) -> None:
    """SageMaker refuses a channel on an empty prefix: the first training starts without the champion's."""
    states = definitions["train"]["States"]
    choice = states["TrainModelWithChampion?"]
    assert choice["Choices"] == [{"Variable": "$.plan.uri.champion_model", "IsPresent": True, "Next": "TrainModel"}]
    assert choice["Default"] == "TrainModelWithoutChampion"
    assert states["Plan"]["Next"] == "TrainModelWithChampion?" or "TrainModelWithChampion?" in reachable(
        definitions["train"], states["Plan"]["Next"], follow_catch=False)
    with_champion, without = states["TrainModel"], states["TrainModelWithoutChampion"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri.$"]
                for c in with_champion["Parameters"]["InputDataConfig"]}
    assert channels == {"train": "$.plan.uri.train_shards", "val": "$.plan.uri.val_shards",
                        "champion": "$.plan.uri.champion_model"}
    assert [c["ChannelName"] for c in without["Parameters"]["InputDataConfig"]] == ["train", "val"]
    # Otherwise the same job: settings, output, retries, catches and the state after it.
    differ = {"InputDataConfig", "TrainingJobName.$"}
    assert {k: v for k, v in with_champion["Parameters"].items() if k not in differ} == {
        k: v for k, v in without["Parameters"].items() if k not in differ}
    assert with_champion["Next"] == without["Next"] == "EvaluateChampion?"
    assert with_champion["Retry"] == without["Retry"]
    assert [c["ErrorEquals"] for c in with_champion["Catch"]] == [c["ErrorEquals"] for c in without["Catch"]]


def test_training_output_feeds_the_later_steps(definitions: dict[str, Any]) -> None:
    states = definitions["train"]["States"]
    train = states["TrainModel"]
    assert train["Parameters"]["OutputDataConfig"]["S3OutputPath.$"] == "$.plan.uri.model"
    model_inputs = [i for i in states["LearnReference"]["Parameters"]["ProcessingInputs"] if i["InputName"] == "model"]
    assert model_inputs[0]["S3Input"]["S3Uri.$"] == "$.plan.uri.model"
    assert states["RecordTrain"]["Parameters"] == {"plan.$": "$.plan"}


def test_serve_without_a_trained_model_fails_fast_without_a_failure_notice(definitions: dict[str, Any]) -> None:
    states = definitions["serve"]["States"]
    catches = states["Plan"]["Catch"]
    assert catches[0]["ErrorEquals"] == ["NoModel"]
    no_model = states[catches[0]["Next"]]
    assert no_model["Type"] == "Fail" and "run the train pipeline first" in no_model["Cause"]
    assert catches[-1]["ErrorEquals"] == ["States.ALL"]
    assert "NotifyFailure" in reachable(definitions["serve"], catches[-1]["Next"])


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
        assert "RecordServe" in reachable(definition, branch, follow_catch=False)
    assert start not in reachable(definition, retrain["Default"])


def test_each_lambda_payload_has_exactly_its_contracts_fields(definitions: dict[str, Any]) -> None:
    from driftloop import loop
    from driftloop.contracts import field_names

    events = {"Plan": loop.PlanEvent, "Decide": loop.DecideEvent, "RecordServe": loop.RecordServeEvent,
              "RecordTrain": loop.RecordTrainEvent, "NextSimulationBatch": loop.NextBatchEvent}
    for definition in definitions.values():
        for state, event in events.items():
            if state in definition["States"]:
                payload = definition["States"][state]["Parameters"]
                assert {key.removesuffix(".$") for key in payload} == set(field_names(event)), state
    outcomes = [definitions["serve"]["States"][s]["Parameters"] for s in ("NoRetrain", "RetrainSkipped",
                                                                          "RetrainStarted")]
    for outcome in outcomes:
        assert {key.removesuffix(".$") for key in outcome} <= set(field_names(loop.RetrainOutcome))


def test_serve_record_is_written_last(definitions: dict[str, Any]) -> None:
    definition = definitions["serve"]
    states = definition["States"]
    after = reachable(definition, "RecordServe", follow_catch=False) - {"RecordServe"}
    assert all(states[s]["Type"] != "Task" or ":sns:" in states[s]["Resource"] for s in after)


def test_configured_resources_and_settings_reach_the_jobs(
    definitions: dict[str, Any], production_definitions: dict[str, Any]
) -> None:
    states = production_definitions["serve"]["States"]
    predict = states["Predict"]["Parameters"]
    assert predict["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 3
    assert states["Process"]["Parameters"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 2
    for name in ("DriftFeatures", "DetectDrift", "Explain"):
        assert states[name]["Parameters"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    data = next(i for i in predict["ProcessingInputs"] if i["InputName"] == "data")
    assert data["S3Input"]["S3DataDistributionType"] == "ShardedByS3Key"
    model = next(i for i in predict["ProcessingInputs"] if i["InputName"] == "model")
    assert model["S3Input"]["S3DataDistributionType"] == "FullyReplicated"
    assert json.loads(states["DetectDrift"]["Parameters"]["AppSpecification"]["ContainerArguments"][3]) == {
        "p_val": 0.01
    }
    train = production_definitions["train"]["States"]["TrainModel"]["Parameters"]
    assert train["HyperParameters"] == {"epochs": "12"}
    assert train["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"


@pytest.mark.parametrize("name", ["train", "serve"])
def test_the_execution_timeout_outlasts_every_attempt_of_every_job_and_its_pauses(
    synthesized: Synthesized, definitions: dict[str, Any], name: str
) -> None:
    """An execution timeout cannot be caught: it must never stop a run that SageMaker would finish."""
    retries = synthesized.development.config.capacity_retries
    definition = definitions[name]
    states = definition["States"]
    worst: dict[str, int] = {}  # per step (its job name prefix): the two jobs of one step never both run
    for job, state in sagemaker_jobs(definition).items():
        pause = max(s["Seconds"] for n, s in states.items() if n.startswith(f"{job}WaitFor"))
        parameters = state["Parameters"]
        step = parameters.get("ProcessingJobName.$") or parameters["TrainingJobName.$"]
        cost = parameters["StoppingCondition"]["MaxRuntimeInSeconds"] * (1 + retries) + pause * retries
        worst[step] = max(worst.get(step, 0), cost)
    assert len(worst) == len(PIPELINES[name].steps)
    assert definition["TimeoutSeconds"] > sum(worst.values())


def test_throttling_and_capacity_start_the_job_again_but_a_rejected_request_fails_the_run(
    definitions: dict[str, Any],
) -> None:
    states = definitions["serve"]["States"]
    choice = states[states["Predict"]["Catch"][0]["Next"]]
    patterns = {c["StringMatches"] for rule in choice["Choices"] if "And" in rule for c in _leaves(rule)
                if "StringMatches" in c}
    assert patterns == {"*CapacityError*", "*ThrottlingException*", "*Rate exceeded*"}
    assert choice["Default"] in ("NotifyFailure", "FailureHasCause?")


def _leaves(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """The plain conditions inside a Choice rule's And/Or/Not."""
    for key in ("And", "Or"):
        if key in rule:
            return [leaf for part in rule[key] for leaf in _leaves(part)]
    return _leaves(rule["Not"]) if "Not" in rule else [rule]


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
