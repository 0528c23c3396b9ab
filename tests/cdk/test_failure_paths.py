"""The failure path of both state machines, run by Step Functions (moto's interpreter) on the
error shapes a Catch really hands it: ``Error`` with ``Cause`` (a failed job or Lambda) and
``Error`` alone (e.g. ``States.Timeout``, or the capacity Choice's no-cause branch). The train
run's path first lets its retrain lease go; a release that fails does not keep the run's own
failure from being told."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.aws_emulation import emulated_aws
from support.deployed_system import wait_until
from support.job_runner import ImageCatalog
from support.moto_server import MotoServer

from .definitions import reachable
from .test_state_machines import definitions  # noqa: F401 - the fixture

pytestmark = pytest.mark.emulator

ERRORS = {
    "with a cause": {"Error": "States.TaskFailed", "Cause": "no usable images in the batch"},
    "without a cause": {"Error": "States.Timeout"},
}


# A Lambda that does not exist: a call of it fails (the train run's release of its retrain lease, here).
MISSING_FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:driftloop-missing"


def failure_machine(definition: dict[str, Any], error: dict[str, str], topic: str) -> dict[str, Any]:
    """The states from a Catch's target on, entered with ``$.error`` as a Catch would set it; each
    Lambda they call (the train run lets its retrain lease go first) is one that fails."""
    entry = definition["States"]["Plan"]["Catch"][-1]["Next"]
    states = {name: definition["States"][name] for name in reachable(definition, entry)}
    text = json.dumps(states)
    for state in states.values():
        if "TopicArn" in state.get("Parameters", {}):
            text = text.replace(json.dumps(state["Parameters"]["TopicArn"]), json.dumps(topic))
        if ":resource/Lambdas" in state.get("Resource", ""):
            text = text.replace(json.dumps(state["Resource"]), json.dumps(MISSING_FUNCTION))
    caught = {"Type": "Pass", "Result": error, "ResultPath": "$.error", "Next": entry}
    return {"StartAt": "Caught", "States": {"Caught": caught, **json.loads(text)}}


@pytest.mark.parametrize("pipeline", ["train", "serve"])
@pytest.mark.parametrize("shape", sorted(ERRORS))
def test_a_caught_error_is_notified_and_fails_the_run(
    moto_env: MotoServer, moto_reset: MotoServer, tmp_path: Path, definitions: dict[str, Any],  # noqa: F811
    pipeline: str, shape: str,
) -> None:
    error = ERRORS[shape]
    with emulated_aws(moto_env, images=ImageCatalog({}), workdir=tmp_path):
        sns, sqs, sfn = (moto_env.client(s) for s in ("sns", "sqs", "stepfunctions"))
        topic = sns.create_topic(Name="driftloop")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        machine = sfn.create_state_machine(
            name=f"failure-{pipeline}", definition=json.dumps(failure_machine(definitions[pipeline], error, topic)),
            roleArn="arn:aws:iam::123456789012:role/states",
        )["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=machine, name="run-1", input="{}")["executionArn"]
        ended = wait_until(lambda: (d := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" and d,
                           timeout=30, what="the failure path ends")
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        history = sfn.get_execution_history(executionArn=execution)["events"]
    assert ended["status"] == "FAILED"
    failed_calls = [e["type"] for e in history if e["type"] in ("LambdaFunctionFailed", "TaskFailed")]
    assert bool(failed_calls) == (pipeline == "train"), history  # the release was tried, and failed
    assert ended["error"] == error["Error"]
    assert ended["cause"] == error.get("Cause", "Step Functions gave no cause")
    (message,) = [json.loads(m["Body"])["Message"] for m in messages]
    assert f"{pipeline} run run-1 failed: {error['Error']}" in message and "No parameter was changed" in message
