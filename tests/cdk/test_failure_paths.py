"""The failure path of both state machines, run by Step Functions (moto's interpreter) on the
error shapes a Catch really hands it: ``Error`` with ``Cause`` (a failed job or Lambda) and
``Error`` alone (e.g. ``States.Timeout``, or the capacity Choice's no-cause branch). The train
run's path first lets its retrain lease go; a release that fails does not keep the run's own
failure from being told. And every notice, the failure's too, on a topic that is not there: the
run still fails, with a named error and a cause that says what happened."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.aws_emulation import emulated_aws
from support.deployed_system import wait_until
from support.job_runner import ImageCatalog
from support.moto_server import MotoServer

from stacks.pipelines import FIX_NOTICES

from .definitions import reachable
from .test_state_machines import definitions  # noqa: F401 - the fixture

pytestmark = pytest.mark.emulator

ERRORS = {
    "with a cause": {"Error": "States.TaskFailed", "Cause": "no usable images in the batch"},
    "without a cause": {"Error": "States.Timeout"},
}


# A Lambda that does not exist: a call of it fails (the train run's release of its retrain lease, here).
MISSING_FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:driftloop-missing"
# A topic that does not exist: a publish to it fails (SNS.NotFoundException), as one would on a
# disabled key or a denied publish.
MISSING_TOPIC = "arn:aws:sns:us-east-1:123456789012:driftloop-missing"


def failure_machine(definition: dict[str, Any], error: dict[str, str], topic: str) -> dict[str, Any]:
    """The states from a Catch's target on, entered with ``$.error`` as a Catch would set it; each
    Lambda they call (the train run lets its retrain lease go first) is one that fails."""
    return part_of(definition, definition["States"]["Plan"]["Catch"][-1]["Next"], topic,
                   {"Type": "Pass", "Result": error, "ResultPath": "$.error"})


def part_of(definition: dict[str, Any], entry: str, topic: str, before: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """The states from ``entry`` on, entered through ``before`` (a Pass that sets what they read),
    publishing to ``topic``; each Lambda they call is one that fails."""
    states = {name: definition["States"][name] for name in reachable(definition, entry)}
    text = json.dumps(states)
    for state in states.values():
        if "TopicArn" in state.get("Parameters", {}):
            text = text.replace(json.dumps(state["Parameters"]["TopicArn"]), json.dumps(topic))
        if ":resource/Lambdas" in state.get("Resource", ""):
            text = text.replace(json.dumps(state["Resource"]), json.dumps(MISSING_FUNCTION))
    return {"StartAt": "Before", "States": {"Before": {**(before or {"Type": "Pass"}), "Next": entry},
                                            **json.loads(text)}}


def run(moto_env: MotoServer, tmp_path: Path, machine: Callable[[str], dict[str, Any]], start: dict[str, Any]
        ) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    """Run ``machine(topic)`` (with a topic whose messages are read) as execution ``run-1`` on input ``start``,
    to its end: its description, the messages published and its history."""
    with emulated_aws(moto_env, images=ImageCatalog({}), workdir=tmp_path):
        sns, sqs, sfn = (moto_env.client(s) for s in ("sns", "sqs", "stepfunctions"))
        topic = sns.create_topic(Name="driftloop")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        arn = sfn.create_state_machine(name="part", definition=json.dumps(machine(topic)),
                                       roleArn="arn:aws:iam::123456789012:role/states")["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=arn, name="run-1", input=json.dumps(start))["executionArn"]
        ended = wait_until(lambda: (d := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" and d,
                           timeout=30, what="the execution ends")
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        history = sfn.get_execution_history(executionArn=execution)["events"]
    return ended, [json.loads(m["Body"])["Message"] for m in messages], history


@pytest.mark.parametrize("pipeline", ["train", "serve"])
@pytest.mark.parametrize("shape", sorted(ERRORS))
def test_a_caught_error_is_notified_and_fails_the_run(
    moto_env: MotoServer, moto_reset: MotoServer, tmp_path: Path, definitions: dict[str, Any],  # noqa: F811
    pipeline: str, shape: str,
) -> None:
    error = ERRORS[shape]
    ended, messages, history = run(
        moto_env, tmp_path, lambda topic: failure_machine(definitions[pipeline], error, topic), {})
    assert ended["status"] == "FAILED"
    failed_calls = [e["type"] for e in history if e["type"] in ("LambdaFunctionFailed", "TaskFailed")]
    assert bool(failed_calls) == (pipeline == "train"), history  # the release was tried, and failed
    assert ended["error"] == error["Error"]
    assert ended["cause"] == error.get("Cause", "Step Functions gave no cause")
    (message,) = messages
    assert f"{pipeline} run run-1 failed: {error['Error']}" in message and "No parameter was changed" in message


@pytest.mark.parametrize("pipeline", ["train", "serve"])
def test_a_failure_that_cannot_be_notified_still_fails_the_run_with_its_own_error_in_the_cause(
    moto_env: MotoServer, moto_reset: MotoServer, tmp_path: Path, definitions: dict[str, Any],  # noqa: F811
    pipeline: str,
) -> None:
    error = ERRORS["with a cause"]
    ended, messages, _ = run(
        moto_env, tmp_path, lambda _: failure_machine(definitions[pipeline], error, MISSING_TOPIC), {})
    assert (ended["status"], ended["error"], messages) == ("FAILED", "NoticeNotSent", [])
    assert ended["cause"].startswith(f"driftloop {pipeline} run run-1 failed: {error['Error']}: {error['Cause']}. "
                                     "No parameter was changed. Its failure notice could not be published")
    assert '"Error":"SNS.NotFoundException"' in ended["cause"] and FIX_NOTICES in ended["cause"]


# Each result notice, and what it reads (the run's record or outcome, written before it).
RESULT_NOTICES: dict[tuple[str, str], tuple[dict[str, Any], str]] = {
    ("train", "NotifyTrainResult"): ({"outcome": {"summary": "promoted"}}, "/driftloop/train/last-attempt"),
    ("serve", "NotifyDrift"): ({"record": {"run_id": "run-1", "input": "batches/b", "statistic": 0.001,
                                           "threshold": 0.05, "retrain_reason": "drift"}}, "/driftloop/serve/latest"),
}


@pytest.mark.parametrize(("pipeline", "notice"), sorted(RESULT_NOTICES))
def test_a_result_that_cannot_be_notified_fails_the_run_saying_its_records_were_written(
    moto_env: MotoServer, moto_reset: MotoServer, tmp_path: Path, definitions: dict[str, Any],  # noqa: F811
    pipeline: str, notice: str,
) -> None:
    written, record = RESULT_NOTICES[(pipeline, notice)]
    ended, messages, _ = run(
        moto_env, tmp_path, lambda _: part_of(definitions[pipeline], notice, MISSING_TOPIC), written)
    assert (ended["status"], ended["error"], messages) == ("FAILED", "NoticeNotSent", [])
    assert ended["cause"].startswith(f"driftloop {pipeline} run run-1 finished and wrote its records ({record}")
    assert '"Error":"SNS.NotFoundException"' in ended["cause"] and FIX_NOTICES in ended["cause"]
