"""The rendered state machines do what driftloop.pipelines says, and fail safely.

Three renderings: the development defaults (every step on one instance: the serve run and the train
run each one job), production (serve steps on 2 and 3 instances: a job a serve step) and the defaults
with ``instances.process = 4`` (a job a serve step).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from driftloop.components.pipeline import artifact_channel
from driftloop.pipelines import RUN_FACTS_ENV, SERVE_PIPELINE, TRAIN_PIPELINE, Pipeline, container_path
from tools.cfn_template import resolve

from .conftest import REPO_ROOT, Synthesized
from .definitions import definition_of, happy_path, job_name_prefix, job_paths, reachable, sagemaker_jobs

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


@pytest.fixture(scope="module")
def per_step_definitions(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return _definitions(synthesized, synthesized.per_step)


@pytest.fixture(scope="module")
def all_definitions(definitions: dict[str, Any], per_step_definitions: dict[str, Any]) -> list[dict[str, Any]]:
    """Both forms: the development defaults' (one job a run) and the job-a-step serve machine."""
    return [definitions["train"], definitions["serve"], per_step_definitions["serve"]]


PIPELINES = {"train": TRAIN_PIPELINE, "serve": SERVE_PIPELINE}


def function_resource(function: Any) -> str:
    """How a Lambda state that returns the payload only names its function (its ``Arn``, resolved as
    ``definitions.definition_of`` resolves every token)."""
    from aws_cdk import Stack

    return resolve({"Fn::GetAtt": [Stack.of(function).resolve(function.node.default_child.logical_id), "Arn"]})
RECORD_STATES = {"train": "RecordTrain", "serve": "RecordServe"}


def _step_of(pipeline: Pipeline, state: str) -> str:
    from stacks.jobs import state_name

    return next(step.name for step in pipeline.steps if state_name(step) == state)


@pytest.mark.parametrize("name", ["train", "serve"])
def test_with_the_default_settings_every_run_starts_exactly_one_sagemaker_job(
    definitions: dict[str, Any], name: str
) -> None:
    """Every way through the state machine to the run's record starts one job, which runs the whole
    pipeline in-process and writes every artifact at the key of the run's plan."""
    paths = job_paths(definitions[name], RECORD_STATES[name])
    assert paths and all(len(jobs) == 1 for jobs in paths), paths
    pipeline = PIPELINES[name]
    for (state,) in paths:
        parameters = definitions[name]["States"][state]["Parameters"]
        app = parameters["AppSpecification"]
        assert app["ContainerEntrypoint"] == ["python", "-m", "driftloop.components.pipeline"]
        assert app["ContainerArguments"][:2] == ["--pipeline", name]
        assert parameters["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
        outputs = {o["OutputName"]: o["S3Output"] for o in parameters["ProcessingOutputConfig"]["Outputs"]}
        assert outputs == {a: {"S3Uri.$": f"$.plan.uri.{a}", "LocalPath": str(artifact_channel("output", a)),
                               "S3UploadMode": "EndOfJob"} for a in pipeline.produced()}
        inputs = {i["InputName"]: i["S3Input"]["LocalPath"] for i in parameters["ProcessingInputs"]}
        assert set(inputs) <= {*pipeline.external_artifacts(), *pipeline.resolved_artifacts()}
        assert inputs == {a: str(artifact_channel("input", a)) for a in inputs}


def test_with_a_serve_step_on_four_instances_every_step_is_its_own_job(per_step_definitions: dict[str, Any]) -> None:
    definition = per_step_definitions["serve"]
    paths = job_paths(definition, "RecordServe")
    assert paths
    for jobs in paths:
        assert [_step_of(SERVE_PIPELINE, state) for state in jobs] == [step.name for step in SERVE_PIPELINE.steps]
        counts = [definition["States"][j]["Parameters"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"]
                  for j in jobs]
        assert counts == [4, 1, 1, 1, 1]
    order = [_step_of(SERVE_PIPELINE, s) for s in happy_path(definition) if s in sagemaker_jobs(definition)]
    assert order == [step.name for step in SERVE_PIPELINE.steps]


def test_the_first_training_starts_its_job_without_a_champion_channel(definitions: dict[str, Any]) -> None:
    """SageMaker refuses a channel on an empty prefix: the first training starts without the champion's."""
    states = definitions["train"]["States"]
    choice = states["TrainRunWithChampionModel?"]
    assert choice["Choices"] == [{"Variable": "$.plan.uri.champion_model", "IsPresent": True, "Next": "TrainRun"}]
    assert choice["Default"] == "TrainRunWithoutChampionModel"
    with_champion, without = states["TrainRun"], states["TrainRunWithoutChampionModel"]
    inputs = [i["InputName"] for i in with_champion["Parameters"]["ProcessingInputs"]]
    assert inputs == ["raw_train", "raw_val", "champion_model"]
    assert [i["InputName"] for i in without["Parameters"]["ProcessingInputs"]] == ["raw_train", "raw_val"]
    # Otherwise the same job: settings, outputs, retries, catches and the state after it.
    differ = {"ProcessingInputs", "ProcessingJobName.$"}
    assert {k: v for k, v in with_champion["Parameters"].items() if k not in differ} == {
        k: v for k, v in without["Parameters"].items() if k not in differ}
    assert with_champion["Next"] == without["Next"] == "RecordTrain"
    assert with_champion["Retry"] == without["Retry"]
    assert [c["ErrorEquals"] for c in with_champion["Catch"]] == [c["ErrorEquals"] for c in without["Catch"]]


def test_every_sagemaker_job_is_sync_retries_only_quota_errors_in_place_and_is_caught(
    all_definitions: list[dict[str, Any]]
) -> None:
    for definition in all_definitions:
        for state_name, state in sagemaker_jobs(definition).items():
            assert state["Resource"].endswith("createProcessingJob.sync"), state_name
            retried = {error for retry in state.get("Retry", []) for error in retry["ErrorEquals"]}
            assert retried == {"SageMaker.ResourceLimitExceededException"}
            catches = [error for catch in state["Catch"] for error in catch["ErrorEquals"]]
            assert catches[-1] == "States.ALL", state_name
            # Every way out of a failed job ends in the failure notice and a Fail state.
            for catch in state["Catch"]:
                after = reachable(definition, catch["Next"])
                assert "NotifyFailure" in after
                assert any(definition["States"][s]["Type"] == "Fail" for s in after)


def test_a_failed_job_changes_no_parameter(all_definitions: list[dict[str, Any]]) -> None:
    for definition in all_definitions:
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


@pytest.mark.parametrize("form", ["one job", "a job a step"])
def test_capacity_errors_start_the_job_again_with_a_fresh_name(
    definitions: dict[str, Any], per_step_definitions: dict[str, Any], form: str
) -> None:
    definition, name = ((definitions["serve"], "ServeRun") if form == "one job"
                        else (per_step_definitions["serve"], "Predict"))
    states = definition["States"]
    job = states[name]
    choice = states[job["Catch"][0]["Next"]]
    assert job["Catch"][0]["ErrorEquals"] == ["States.TaskFailed", "SageMaker.AmazonSageMakerException"]
    retry_rule = next(rule for rule in choice["Choices"] if "And" in rule)
    assert {"Variable": "$.error.Cause", "StringMatches": "*CapacityError*"} in retry_rule["And"]
    assert name in reachable(definition, retry_rule["Next"], follow_catch=False)
    assert "States.UUID()" in job["Parameters"]["ProcessingJobName.$"]


def test_jobs_are_named_per_attempt_and_placed_by_the_runs_plan(all_definitions: list[dict[str, Any]]) -> None:
    for definition in all_definitions:
        plan = definition["States"]["Plan"]
        assert plan["Parameters"]["run_id.$"] == "$$.Execution.Name" and plan["Parameters"]["start.$"] == "$"
        for state in sagemaker_jobs(definition).values():
            parameters = state["Parameters"]
            assert len(job_name_prefix(state)) + 1 + 36 <= 63
            locations = [i["S3Input"]["S3Uri.$"] for i in parameters["ProcessingInputs"]]
            locations += [o["S3Output"]["S3Uri.$"] for o in parameters["ProcessingOutputConfig"]["Outputs"]]
            assert locations and all(re.fullmatch(r"\$\.plan\.uri\.[a-z_]+", uri) for uri in locations)


def test_per_run_settings_reach_the_steps_that_need_them(
    definitions: dict[str, Any], per_step_definitions: dict[str, Any]
) -> None:
    states = definitions["train"]["States"]
    for name in ("TrainRun", "TrainRunWithoutChampionModel"):
        assert states[name]["Parameters"]["Environment"] == {
            f"{RUN_FACTS_ENV}.$": "States.JsonToString($.plan.facts)"}
    # No serve step takes per-run settings.
    assert "Environment" not in definitions["serve"]["States"]["ServeRun"]["Parameters"]
    assert not [s for s in sagemaker_jobs(per_step_definitions["serve"]).values() if "Environment" in s["Parameters"]]


def test_processing_channels_use_sagemaker_container_paths(per_step_definitions: dict[str, Any]) -> None:
    from stacks.jobs import state_name

    states = per_step_definitions["serve"]["States"]
    for step in SERVE_PIPELINE.steps:
        parameters = states[state_name(step)]["Parameters"]
        assert parameters["AppSpecification"]["ContainerArguments"][:2] == ["--mode", step.mode]
        inputs = {i["InputName"]: i["S3Input"]["LocalPath"] for i in parameters["ProcessingInputs"]}
        outputs = {o["OutputName"]: o["S3Output"]["LocalPath"] for o in parameters["ProcessingOutputConfig"]["Outputs"]}
        assert inputs == {c: str(container_path(step.component, step.mode, "input", c)) for c, _ in step.inputs}
        assert outputs == {c: str(container_path(step.component, step.mode, "output", c)) for c, _ in step.outputs}


def test_the_train_run_writes_the_artifacts_the_record_reads(definitions: dict[str, Any]) -> None:
    states = definitions["train"]["States"]
    outputs = {o["OutputName"]: o["S3Output"]["S3Uri.$"]
               for o in states["TrainRun"]["Parameters"]["ProcessingOutputConfig"]["Outputs"]}
    for artifact in ("model", "detector", "explainer", "champion_eval"):
        assert outputs[artifact] == f"$.plan.uri.{artifact}"
    assert states["RecordTrain"]["Parameters"] == {"plan.$": "$.plan"}


def test_serve_without_a_trained_model_fails_fast_without_a_failure_notice(definitions: dict[str, Any]) -> None:
    states = definitions["serve"]["States"]
    catches = states["Plan"]["Catch"]
    assert catches[0]["ErrorEquals"] == ["NoModel"]
    no_model = states[catches[0]["Next"]]
    assert no_model["Type"] == "Fail" and "run the train pipeline first" in no_model["Cause"]
    assert catches[-1]["ErrorEquals"] == ["States.ALL"]
    assert "NotifyFailure" in reachable(definitions["serve"], catches[-1]["Next"])


def test_retrain_branch_takes_the_lease_and_starts_the_train_state_machine_only_if_taken(
    synthesized: Synthesized, definitions: dict[str, Any]
) -> None:
    from aws_cdk import Stack

    stack = synthesized.development
    train = stack.pipelines.train
    train_ref = f"ref-{Stack.of(train).resolve(train.node.default_child.logical_id)}"
    definition = definitions["serve"]
    states = definition["States"]
    retrain = states["Retrain?"]
    assert retrain["Choices"][0]["Variable"] == "$.decision.retrain"
    take = states[retrain["Choices"][0]["Next"]]
    assert take["Resource"] == function_resource(stack.functions.take_retrain_lease)
    assert take["Parameters"] == {"decision.$": "$.decision"} and take["ResultPath"] == "$.lease"
    taken = states[take["Next"]]
    assert taken["Choices"] == [{"Variable": "$.lease.taken", "BooleanEquals": True, "Next": "StartRetrain"}]
    start, skipped = states["StartRetrain"], states[taken["Default"]]
    # The lease step comes before every start of a train run; nothing else reads the train runs.
    assert "StartRetrain" not in reachable(definition, definition["StartAt"], stop=frozenset({"TakeRetrainLease"}))
    assert not any(":sfn:listExecutions" in str(state.get("Resource")) for state in states.values())
    assert start["Resource"].endswith(":states:startExecution")
    assert start["Parameters"]["StateMachineArn"] == train_ref
    assert start["Parameters"]["Name.$"] == "$.lease.run_id"  # the train run's id is the lease holder's
    assert start["Parameters"]["Input"]["train_data.$"] == "$.decision.train_data"
    # Started or skipped, the outcome recorded is the lease step's (as the local runner records it).
    for outcome in (states[start["Next"]], skipped):
        assert (outcome["Type"], outcome["InputPath"], outcome["ResultPath"]) == ("Pass", "$.lease.outcome",
                                                                                  "$.outcome")
    for branch in (taken["Default"], "StartRetrain", retrain["Default"]):
        assert "RecordServe" in reachable(definition, branch, follow_catch=False)
    assert "StartRetrain" not in reachable(definition, retrain["Default"])
    assert "StartRetrain" not in reachable(definition, taken["Default"])


def test_a_train_run_lets_its_retrain_lease_go_whether_it_is_recorded_or_fails(
    synthesized: Synthesized, definitions: dict[str, Any]
) -> None:
    release = function_resource(synthesized.development.functions.release_retrain_lease)
    definition = definitions["train"]
    states = definition["States"]
    releases = {name for name, state in states.items() if state.get("Resource") == release}
    assert releases == {"ReleaseRetrainLease", "ReleaseRetrainLeaseOnFailure"}
    for name in releases:
        assert states[name]["Parameters"] == {"run_id.$": "$$.Execution.Name"}
    # Recorded: released after the record, before the run's result is told.
    path = list(happy_path(definition))
    assert path.index("RecordTrain") < path.index("ReleaseRetrainLease") < path.index("NotifyTrainResult")
    # Failed: the failure path (the notice, the Fail state) is entered by the release only, and a release
    # that fails there still reaches the notice and the Fail state, with the run's own error (its own
    # error is discarded).
    on_failure = states["ReleaseRetrainLeaseOnFailure"]
    before = reachable(definition, definition["StartAt"], stop=frozenset({"ReleaseRetrainLeaseOnFailure"}))
    assert "ReleaseRetrainLeaseOnFailure" in before and not {"NotifyFailure", "Failed"} & before
    assert states["Plan"]["Catch"][-1]["Next"] == "ReleaseRetrainLeaseOnFailure"
    (caught,) = on_failure["Catch"]
    assert caught["ErrorEquals"] == ["States.ALL"] and caught["ResultPath"] is None
    assert caught["Next"] == on_failure["Next"] and on_failure["ResultPath"] is None
    assert {"NotifyFailure", "Failed"} <= reachable(definition, on_failure["Next"])


def test_each_lambda_payload_has_exactly_its_contracts_fields(definitions: dict[str, Any]) -> None:
    from driftloop import loop
    from driftloop.contracts import field_names

    events = {"Plan": loop.PlanEvent, "Decide": loop.DecideEvent, "RecordServe": loop.RecordServeEvent,
              "RecordTrain": loop.RecordTrainEvent, "NextSimulationBatch": loop.NextBatchEvent,
              "TakeRetrainLease": loop.TakeRetrainLeaseEvent, "ReleaseRetrainLease": loop.ReleaseRetrainLeaseEvent,
              "ReleaseRetrainLeaseOnFailure": loop.ReleaseRetrainLeaseEvent}
    seen = set()
    for definition in definitions.values():
        for state, event in events.items():
            if state in definition["States"]:
                seen.add(state)
                payload = definition["States"][state]["Parameters"]
                assert {key.removesuffix(".$") for key in payload} == set(field_names(event)), state
    assert seen == set(events)
    outcome = definitions["serve"]["States"]["NoRetrain"]["Parameters"]
    assert {key.removesuffix(".$") for key in outcome} <= set(field_names(loop.RetrainOutcome))


def test_serve_record_is_written_last(definitions: dict[str, Any]) -> None:
    definition = definitions["serve"]
    states = definition["States"]
    after = reachable(definition, "RecordServe", follow_catch=False) - {"RecordServe"}
    assert all(states[s]["Type"] != "Task" or ":sns:" in states[s]["Resource"] for s in after)


def test_configured_resources_and_settings_reach_the_jobs(production_definitions: dict[str, Any]) -> None:
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
    train = production_definitions["train"]["States"]["TrainRun"]["Parameters"]
    arguments = train["AppSpecification"]["ContainerArguments"]
    settings = {arguments[i]: json.loads(arguments[i + 1]) for i in range(2, len(arguments), 2)}
    assert settings == {"--settings-algorithm": {"epochs": 12}, "--settings-drift": {"p_val": 0.01}}
    # The train run's one job runs where the training would (its heaviest step).
    assert train["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.xlarge"


def test_the_execution_timeout_outlasts_every_attempt_of_every_job_and_its_pauses(
    synthesized: Synthesized, all_definitions: list[dict[str, Any]]
) -> None:
    """An execution timeout cannot be caught: it must never stop a run that SageMaker would finish."""
    retries = synthesized.development.config.capacity_retries
    for definition in all_definitions:
        states = definition["States"]
        worst: dict[str, int] = {}  # per job name prefix: the two forms of one job never both run
        for job, state in sagemaker_jobs(definition).items():
            pause = max(s["Seconds"] for n, s in states.items() if n.startswith(f"{job}WaitFor"))
            parameters = state["Parameters"]
            name = parameters["ProcessingJobName.$"]
            cost = parameters["StoppingCondition"]["MaxRuntimeInSeconds"] * (1 + retries) + pause * retries
            worst[name] = max(worst.get(name, 0), cost)
        assert definition["TimeoutSeconds"] > sum(worst.values())


@pytest.mark.parametrize("variant", ["development", "production", "per_step"])
def test_the_retrain_lease_lasts_as_long_as_a_train_run_can(synthesized: Synthesized, variant: str) -> None:
    """A train run that never lets its lease go (its execution timed out) has ended when the lease expires."""
    stack = getattr(synthesized, variant)
    train = _definitions(synthesized, stack)["train"]
    from aws_cdk import Stack

    take = stack.functions.take_retrain_lease
    take = synthesized.template_json(stack)["Resources"][Stack.of(take).resolve(take.node.default_child.logical_id)]
    assert int(take["Properties"]["Environment"]["Variables"]["RETRAIN_LEASE_SECONDS"]) == train["TimeoutSeconds"]


def test_throttling_and_capacity_start_the_job_again_but_a_rejected_request_fails_the_run(
    definitions: dict[str, Any],
) -> None:
    states = definitions["serve"]["States"]
    choice = states[states["ServeRun"]["Catch"][0]["Next"]]
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


def test_definitions_pass_asl_validator(all_definitions: list[dict[str, Any]], tmp_path: Path) -> None:
    if not ASL_VALIDATOR.exists():
        pytest.skip("node_modules is not installed: run `make install` (npm ci)")
    paths = []
    for index, definition in enumerate(all_definitions):
        path = tmp_path / f"{index}.asl.json"
        path.write_text(json.dumps(definition))
        paths += ["--json-path", str(path)]
    result = subprocess.run([str(ASL_VALIDATOR), *paths], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_in_production_the_claim_comes_first_and_nothing_to_serve_starts_no_job(
    production_definitions: dict[str, Any]
) -> None:
    from driftloop import loop
    from driftloop.contracts import field_names

    definition = production_definitions["serve"]
    states = definition["States"]
    named = states[definition["StartAt"]]
    assert named["Choices"] == [{"Variable": "$.batch", "IsPresent": True, "Next": "ClaimNamedBatch"}]
    assert named["Default"] == "ClaimNextBatch"
    for claim in ("ClaimNamedBatch", "ClaimNextBatch"):
        assert states[claim]["Next"] == "NothingToServe?"
        assert states[claim]["Parameters"]["run_id.$"] == "$$.Execution.Name"
        assert states[claim]["Parameters"]["time.$"] == "$$.Execution.StartTime"
    fields = set(field_names(loop.ClaimBatchEvent))
    assert {k.removesuffix(".$") for k in states["ClaimNamedBatch"]["Parameters"]} == fields
    assert states["ClaimNamedBatch"]["Parameters"]["batch.$"] == "$.batch"
    # A scheduled run names no batch: the contract's default (None), the oldest unserved batch.
    assert {k.removesuffix(".$") for k in states["ClaimNextBatch"]["Parameters"]} == fields - {"batch"}
    choice = states["NothingToServe?"]
    assert choice["Choices"] == [{"Variable": "$.claim.batch", "IsNull": True, "Next": "NothingToServe"}]
    assert states["NothingToServe"]["Type"] == "Succeed"
    assert not reachable(definition, "NothingToServe") & set(sagemaker_jobs(definition))
    # Otherwise the run's start input is exactly the claimed batch, and the plan follows.
    serve = states[choice["Default"]]
    assert serve["Parameters"] == {"batch.$": "$.claim.batch"} and serve["Next"] == "Plan"
    assert "NextSimulationBatch" not in states


def test_in_simulation_the_next_stage_comes_first_and_there_is_no_claim(definitions: dict[str, Any]) -> None:
    states = definitions["serve"]["States"]
    assert definitions["serve"]["StartAt"] == "BatchGiven?" and "NextSimulationBatch" in states
    assert not {s for s in states if s.startswith("Claim")}


@pytest.mark.parametrize("variant", ["definitions", "production_definitions"])
def test_a_label_request_is_notified_with_its_manifest_and_size(variant: str, request: pytest.FixtureRequest) -> None:
    states = request.getfixturevalue(variant)["serve"]["States"]
    choice = states["Drift?"]
    first = choice["Choices"][0]
    assert (first["Variable"], first["IsString"]) == ("$.record.label_request", True)
    message = states[first["Next"]]["Parameters"]["Message.$"]
    assert "$.record.label_request_images" in message and "$.record.label_request)" in message.replace(", ", ")")
    assert "Labels requested: {} images are listed in the Ground Truth input manifest {}" in message
    assert choice["Choices"][1]["Variable"] == "$.record.is_drift"


def _notices(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in definition["States"].items()
            if state["Type"] == "Task" and ":sns:" in state["Resource"]}


def _told_errors(synthesized: Synthesized) -> set[str]:
    """The errors of FAILED executions that an EventBridge rule tells the topic of."""
    rules = synthesized.template_json(synthesized.development)["Resources"].values()
    details = [rule["Properties"]["EventPattern"]["detail"] for rule in rules if rule["Type"] == "AWS::Events::Rule"]
    return {error for detail in details for end in detail.get("$or", [detail]) if end["status"] == ["FAILED"]
            for error in end.get("error", [])}


@pytest.mark.parametrize("variant", ["definitions", "production_definitions"])
def test_a_notice_that_cannot_be_published_fails_the_run_with_an_error_a_rule_tells(
    synthesized: Synthesized, variant: str, request: pytest.FixtureRequest
) -> None:
    """An SNS or KMS error in a Notify state is caught: the run fails with a named error (seen in the
    console and by the status-change rule), its cause saying what the run did and why the notice failed."""
    from stacks.pipelines import FIX_NOTICES

    told = _told_errors(synthesized)
    definitions = request.getfixturevalue(variant)
    names = {pipeline: set(_notices(definitions[pipeline])) for pipeline in ("train", "serve")}
    assert names == {"train": {"NotifyTrainResult", "NotifyFailure"},
                     "serve": {"NotifyLabelRequest", "NotifyDrift", "NotifyFailure"}}
    for definition in definitions.values():
        for name, state in _notices(definition).items():
            (catch,) = state["Catch"]
            assert (catch["ErrorEquals"], catch["ResultPath"]) == (["States.ALL"], "$.notice"), name
            fail = definition["States"][catch["Next"]]
            assert fail["Type"] == "Fail" and fail["Error"] in told, name
            assert "States.JsonToString($.notice)" in fail["CausePath"] and FIX_NOTICES in fail["CausePath"], name
            if name == "NotifyFailure":  # the run's own error stays in the cause
                assert "$.failure.error, $.failure.cause" in fail["CausePath"]
            else:  # the run's records were written before its notice
                assert "wrote its records (/" in fail["CausePath"]
