"""Behaviour of the synthesized stack: who may do what, what runs when, what teardown leaves."""

from __future__ import annotations

import fnmatch
import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk.assertions import Match, Template

from driftloop.layout import ParameterNames
from driftloop.records import NO_RECORD
from tools.cfn_template import ACCOUNT, PARTITION, REGION, resolve

from .conftest import REPO_ROOT, Synthesized
from .definitions import definition_of, job_name_prefix, sagemaker_jobs


def logical_id(construct: Any) -> str:
    return str(Stack.of(construct).resolve(construct.node.default_child.logical_id))


def statements_of(template: Template, role: Any) -> list[dict[str, Any]]:
    """Every statement of every inline policy attached to ``role``."""
    role_id = logical_id(role)
    found = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_schedule_starts_the_serve_state_machine_hourly(synthesized: Synthesized, dev: Template) -> None:
    serve = logical_id(synthesized.development.pipelines.serve)
    dev.has_resource_properties(
        "AWS::Scheduler::Schedule",
        {
            "ScheduleExpression": "rate(1 hour)",
            "State": "ENABLED",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {"Arn": {"Ref": serve}, "Input": "{}", "RoleArn": Match.any_value()},
        },
    )
    (schedule,) = dev.find_resources("AWS::Scheduler::Schedule").values()
    role_id = schedule["Properties"]["Target"]["RoleArn"]["Fn::GetAtt"][0]
    role = dev.find_resources("AWS::IAM::Role")[role_id]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "scheduler.amazonaws.com"
    }
    policies = [
        p for p in dev.find_resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert statements == [{"Action": "states:StartExecution", "Effect": "Allow", "Resource": {"Ref": serve}}]


def test_schedule_outside_simulation_names_no_batch(prod: Template) -> None:
    """The claim step takes the oldest unserved batch: a scheduled run starts with nothing to name."""
    prod.has_resource_properties("AWS::Scheduler::Schedule", {"State": "DISABLED", "Target": {"Input": "{}"}})


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_buckets_are_encrypted_versioned_private_and_tls_only(variant: str, request: pytest.FixtureRequest) -> None:
    template: Template = request.getfixturevalue(variant)
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 2
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]["Statement"]
        for p in template.find_resources("AWS::S3::BucketPolicy").values()
    }
    for bucket_id, bucket in buckets.items():
        properties = bucket["Properties"]
        rule = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
        assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
        denies = [s for s in policies[bucket_id] if s["Effect"] == "Deny"]
        assert any(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false" for s in denies)
    logged = [b for b in buckets.values() if "LoggingConfiguration" in b["Properties"]]
    assert len(logged) == 1
    target = logged[0]["Properties"]["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
    assert target in buckets and "LoggingConfiguration" not in buckets[target]["Properties"]


def test_development_teardown_deletes_everything(dev: Template) -> None:
    buckets = dev.find_resources("AWS::S3::Bucket")
    assert {b["DeletionPolicy"] for b in buckets.values()} == {"Delete"}
    emptied = {r["Properties"]["BucketName"]["Ref"] for r in dev.find_resources("Custom::S3AutoDeleteObjects").values()}
    assert emptied == set(buckets)
    assert {g["DeletionPolicy"] for g in dev.find_resources("AWS::Logs::LogGroup").values()} == {"Delete"}


def test_production_teardown_retains_data(prod: Template) -> None:
    assert {b["DeletionPolicy"] for b in prod.find_resources("AWS::S3::Bucket").values()} == {"Retain"}
    assert prod.find_resources("Custom::S3AutoDeleteObjects") == {}
    assert {g["DeletionPolicy"] for g in prod.find_resources("AWS::Logs::LogGroup").values()} == {"Retain"}


def test_parameters_start_as_no_run_yet(dev: Template) -> None:
    names = ParameterNames()
    values = {
        p["Properties"]["Name"]: p["Properties"]["Value"] for p in dev.find_resources("AWS::SSM::Parameter").values()
    }
    assert values == {
        names.train_latest: NO_RECORD,
        names.train_last_attempt: NO_RECORD,
        names.serve_latest: NO_RECORD,
        names.simulation_position: "0",
    }


def _parameter_names(template: Template) -> dict[str, str]:
    return {lid: p["Properties"]["Name"] for lid, p in template.find_resources("AWS::SSM::Parameter").items()}


def _s3_resources(statement: dict[str, Any]) -> list[str]:
    return [resolve(r) for r in as_list(statement["Resource"])]


def test_lambdas_write_only_driftloop_parameters(synthesized: Synthesized, dev: Template) -> None:
    functions = synthesized.development.functions
    parameters = _parameter_names(dev)
    names = ParameterNames()
    written: dict[str, set[str]] = {}
    for function in functions.all():
        role_id = logical_id(function.role)
        assert "ManagedPolicyArns" not in dev.find_resources("AWS::IAM::Role")[role_id]["Properties"]
        for statement in statements_of(dev, function.role):
            assert statement["Resource"] != "*" or statement["Action"] == "sagemaker:ListModelPackages"
            if any(a.startswith("ssm:") for a in as_list(statement["Action"])):
                for resource in as_list(statement["Resource"]):
                    parts = resource["Fn::Join"][1]
                    (ref,) = [p["Ref"] for p in parts if isinstance(p, dict) and p.get("Ref") in parameters]
                    if "ssm:PutParameter" in as_list(statement["Action"]):
                        written.setdefault(function.node.id, set()).add(parameters[ref])
    assert written == {
        "RecordTrain": {names.train_latest, names.train_last_attempt},
        "RecordServe": {names.serve_latest},
        "NextBatch": {names.simulation_position},
    }
    assert all(name.startswith(names.prefix + "/") for name in parameters.values())


def test_parameter_actions_are_ones_that_can_be_scoped_to_a_parameter(synthesized: Synthesized, dev: Template) -> None:
    """ssm:DescribeParameters has no resource-level permissions: granted on a parameter, it does nothing."""
    functions = synthesized.development.functions
    for function in functions.all():
        actions = {a for s in statements_of(dev, function.role) for a in as_list(s["Action"]) if a.startswith("ssm:")}
        assert actions <= {"ssm:GetParameter", "ssm:PutParameter"}, function.node.id
        # Every step reads or writes a parameter but the retrain lease's, which lives in the bucket.
        assert bool(actions) != (function in (functions.take_retrain_lease, functions.release_retrain_lease))


def test_two_stacks_share_no_parameter_and_production_keeps_its_records(dev: Template, prod: Template) -> None:
    assert not set(_parameter_names(dev).values()) & set(_parameter_names(prod).values())
    assert all(name.startswith("/driftloopprod/") for name in _parameter_names(prod).values())
    assert {p["DeletionPolicy"] for p in prod.find_resources("AWS::SSM::Parameter").values()} == {"Retain"}
    assert {p["DeletionPolicy"] for p in dev.find_resources("AWS::SSM::Parameter").values()} == {"Delete"}


def test_sagemaker_jobs_write_only_under_runs(synthesized: Synthesized, dev: Template) -> None:
    stack = synthesized.development
    bucket = resolve({"Fn::GetAtt": [logical_id(stack.storage.bucket), "Arn"]})
    statements = statements_of(dev, stack.job_role.role)
    writes = [s for s in statements if "s3:PutObject" in as_list(s["Action"])]
    assert [r for s in writes for r in _s3_resources(s)] == [f"{bucket}/runs/*"]
    for statement in statements:
        if statement["Resource"] == "*":
            assert statement["Action"] == "ecr:GetAuthorizationToken"


def test_the_lambda_runtime_is_the_python_the_handler_tests_run_on() -> None:
    from stacks.control_steps import runtime_is_the_tested_python

    assert runtime_is_the_tested_python()


def test_lambdas_run_the_handlers_with_powertools(synthesized: Synthesized, dev: Template, prod: Template) -> None:
    functions = dev.find_resources("AWS::Lambda::Function", {"Properties": {"Runtime": "python3.11"}})
    handlers = sorted(f["Properties"]["Handler"] for f in functions.values())
    lease = ("release_retrain_lease", "take_retrain_lease")
    # Development also empties the model package group when the stack is deleted.
    steps = ("decide", "empty_package_group", "next_batch", "plan", "record_serve", "record_train", *lease)
    assert handlers == [f"lambdas.control_steps.handlers.{h}" for h in steps]
    production = prod.find_resources("AWS::Lambda::Function", {"Properties": {"Runtime": "python3.11"}})
    # Production here approves by hand: the promote Lambda (stacks.control_steps) exists.
    manual = ("claim_batch", "decide", "plan", "promote", "record_serve", "record_train", *lease)
    assert sorted(f["Properties"]["Handler"] for f in production.values()) == [
        f"lambdas.control_steps.handlers.{h}" for h in manual]
    # No public parameter is resolved at deploy time: the layer is part of the stack.
    assert not [p for p in dev.to_json().get("Parameters", {}).values() if "/aws/service/" in p.get("Default", "")]
    (layer,) = dev.find_resources("AWS::Lambda::LayerVersion").values()
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.11"]
    layer_asset = synthesized.outdir / f"asset.{layer['Properties']['Content']['S3Key'].removesuffix('.zip')}"
    assert (layer_asset / "python" / "aws_lambda_powertools" / "__init__.py").is_file()
    (function,) = [f for f in functions.values() if f["Properties"]["Handler"].endswith(".decide")]
    asset = synthesized.outdir / f"asset.{function['Properties']['Code']['S3Key'].removesuffix('.zip')}"
    assert (asset / "lambdas" / "control_steps" / "handlers.py").is_file()
    assert (asset / "driftloop" / "loop.py").is_file()
    assert {p.name for p in asset.iterdir()} == {"lambdas", "driftloop"}


def test_state_machines_log_everything_and_trace(dev: Template) -> None:
    machines = dev.find_resources("AWS::StepFunctions::StateMachine")
    assert len(machines) == 2
    for machine in machines.values():
        assert machine["Properties"]["LoggingConfiguration"]["Level"] == "ALL"
        assert machine["Properties"]["TracingConfiguration"] == {"Enabled": True}
    retention = {g["Properties"]["RetentionInDays"] for g in dev.find_resources("AWS::Logs::LogGroup").values()}
    assert retention == {30}


def test_topic_is_encrypted_tls_only_and_mails_when_configured(
    synthesized: Synthesized, dev: Template, prod: Template
) -> None:
    (topic,) = dev.find_resources("AWS::SNS::Topic").values()
    key = logical_id(synthesized.development.notifications.key)
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key, "Arn"]}
    assert dev.find_resources("AWS::KMS::Key")[key]["Properties"]["EnableKeyRotation"] is True
    dev.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )
    dev.resource_count_is("AWS::SNS::Subscription", 0)
    prod.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})


def test_executions_that_end_outside_any_catch_reach_the_topic(synthesized: Synthesized, dev: Template) -> None:
    stack = synthesized.development
    rules = {rule_id: r for rule_id, r in dev.find_resources("AWS::Events::Rule").items()
             if r["Properties"]["EventPattern"]["source"] == ["aws.states"]}
    assert set(rules) == {logical_id(stack.notifications.node.find_child(r)) for r in ("UncaughtEnds", "UnsentNotices")}
    machines = [{"Ref": logical_id(m)} for m in (stack.pipelines.train, stack.pipelines.serve)]
    ends = {}
    for rule_id, rule in rules.items():
        pattern = rule["Properties"]["EventPattern"]
        assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
        assert pattern["detail"]["stateMachineArn"] == machines
        ends[rule_id] = {k: v for k, v in pattern["detail"].items() if k != "stateMachineArn"}
        (target,) = rule["Properties"]["Targets"]
        assert target["Arn"] == {"Ref": logical_id(stack.notifications.topic)}
    assert ends[logical_id(stack.notifications.node.find_child("UncaughtEnds"))] == {"$or": [
        {"status": ["TIMED_OUT", "ABORTED"]}, {"status": ["FAILED"], "error": ["States.Runtime"]}]}
    # A run that could not publish its own notice fails with NoticeNotSent; the topic hears of it here.
    assert ends[logical_id(stack.notifications.node.find_child("UnsentNotices"))] == {
        "status": ["FAILED"], "error": ["NoticeNotSent"]}
    # EventBridge may publish to the encrypted topic: the key lets it, and the topic policy does.
    key = dev.find_resources("AWS::KMS::Key")[logical_id(stack.notifications.key)]
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    assert any(s.get("Principal") == {"Service": "events.amazonaws.com"} for s in statements)


def _processing_job_patterns(synthesized: Synthesized, stack: Any) -> list[str]:
    """Every processing-job ARN (with IAM's wildcards) any policy of the stack grants anything on."""
    policies = synthesized.template_json(stack)["Resources"].values()
    resources = [resolve(r) for p in policies if p["Type"] == "AWS::IAM::Policy"
                 for s in p["Properties"]["PolicyDocument"]["Statement"] for r in as_list(s["Resource"])]
    return [r for r in resources if ":processing-job/" in r]


def _job_arns(synthesized: Synthesized, stack: Any) -> list[str]:
    """The ARN of a job each of the stack's job states would start (with a fresh uuid, as ``States.UUID()``)."""
    template = synthesized.template_json(stack)
    return [
        f"arn:{PARTITION}:sagemaker:{REGION}:{ACCOUNT}:processing-job/{job_name_prefix(state)}-{uuid.uuid4()}"
        for machine in (stack.pipelines.train, stack.pipelines.serve)
        for state in sagemaker_jobs(definition_of(template, logical_id(machine))).values()
    ]


def test_a_stack_may_start_describe_and_stop_its_own_jobs_and_no_other_stacks(synthesized: Synthesized) -> None:
    """Three stacks with different names, one account and region: each state machine's job permissions
    cover every job its stack starts, and no job another stack starts."""
    stacks = (synthesized.development, synthesized.production, synthesized.per_step)
    patterns = {stack.stack_name: _processing_job_patterns(synthesized, stack) for stack in stacks}
    jobs = {stack.stack_name: _job_arns(synthesized, stack) for stack in stacks}
    for name in patterns:
        assert patterns[name] and jobs[name], name
        uncovered = [j for j in jobs[name] if not any(fnmatch.fnmatchcase(j, p) for p in patterns[name])]
        assert uncovered == [], name
    for mine, other in itertools.permutations(patterns, 2):
        reached = [(p, j) for p in patterns[mine] for j in jobs[other] if fnmatch.fnmatchcase(j, p)]
        assert reached == [], f"{mine} may act on {other}'s jobs"


def test_dashboard_shows_drift_accuracy_and_outcomes(dev: Template) -> None:
    (dashboard,) = dev.find_resources("AWS::CloudWatch::Dashboard").values()
    body = resolve(dashboard["Properties"]["DashboardBody"])
    shown = ("DriftStatistic", "ChallengerAccuracy", "ChampionAccuracy", "EstimatedAccuracy", "EstimatedAccuracyLower",
             "EstimatedAccuracyUpper", "EstimatedAccuracyUnreliable", "LabelledAccuracy", "LabelledImages",
             "ExecutionsFailed", "ExecutionsSucceeded")
    assert [metric for metric in shown if metric not in body] == []


def test_stacks_name_no_arn_literals() -> None:
    sources = [*Path(REPO_ROOT, "stacks").glob("*.py"), REPO_ROOT / "app.py"]
    offenders = [p.name for p in sources if "arn:aws:" in p.read_text()]
    assert offenders == []
