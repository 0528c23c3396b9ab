"""The model registry in the template: one package group per stack, the rule that promotes on approval and
records a rejection, and IAM that reaches this group's packages only (driftloop.registry, stacks.control_steps)."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from stacks.config import ConfigError, DeploymentConfig
from stacks.control_steps import PACKAGE_GROUP_EMPTIED

from .conftest import Synthesized
from .test_stack import as_list, logical_id, statements_of


def test_each_stack_has_its_own_package_group_named_from_the_stack(dev: Template, prod: Template) -> None:
    dev.resource_count_is("AWS::SageMaker::ModelPackageGroup", 1)
    dev.has_resource_properties("AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": "Driftloop"})
    prod.has_resource_properties("AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": "DriftloopProd"})


def test_a_stack_name_that_is_no_group_name_is_refused_at_synth_saying_what_to_set() -> None:
    with pytest.raises(ConfigError, match="model_package_group"):
        DeploymentConfig.from_mapping({"stack_name": "D" * 64})
    config = DeploymentConfig.from_mapping({"stack_name": "D" * 64, "model_package_group": "driftloop-models"})
    assert config.package_group == "driftloop-models"
    for bad in ("-x", "x-", "a_b", "x" * 64):
        with pytest.raises(ConfigError, match="model_package_group"):
            DeploymentConfig.from_mapping({"model_package_group": bad})


def _package_rules(template: Template) -> list[Any]:
    return [r for r in template.find_resources("AWS::Events::Rule").values()
            if r["Properties"]["EventPattern"].get("source") == ["aws.sagemaker"]]


def test_in_manual_mode_a_rule_takes_approvals_and_rejections_of_this_group_only(synthesized: Synthesized,
                                                                                  prod: Template) -> None:
    """Approved promotes; Rejected is recorded (loop.rejected_in_registry); PendingManualApproval (a new
    winner's registration) and other groups' packages never reach the Lambda."""
    promote = logical_id(synthesized.production.functions.promote)
    (rule,) = _package_rules(prod)
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {"ModelPackageGroupName": ["DriftloopProd"], "ModelApprovalStatus": ["Approved", "Rejected"]},
    }
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [promote, "Arn"]}


def test_in_automatic_mode_no_rule_promotes(synthesized: Synthesized, dev: Template) -> None:
    """record_train promotes a winner it registers Approved; SageMaker's event for that new package must not
    start a second promotion."""
    assert _package_rules(dev) == [] and synthesized.development.functions.promote is None


def _registry_statements(template: Template, function: Any) -> list[dict[str, Any]]:
    return [s for s in statements_of(template, function.role)
            if any(a.startswith("sagemaker:") for a in as_list(s["Action"]))]


def _arn_text(resource: Any) -> str:
    return "".join(p if isinstance(p, str) else "<ref>" for p in resource["Fn::Join"][1])


def test_registry_access_is_limited_to_the_stacks_group(synthesized: Synthesized, prod: Template) -> None:
    functions = synthesized.production.functions
    granted: dict[str, set[str]] = {}
    for function in functions.all():
        for statement in _registry_statements(prod, function):
            actions = set(as_list(statement["Action"]))
            granted.setdefault(function.node.id, set()).update(actions)
            if statement["Resource"] == "*":
                assert actions == {"sagemaker:ListModelPackages"}  # grants on no resource type
                continue
            assert {_arn_text(r) for r in as_list(statement["Resource"])} == {
                "arn:<ref>:sagemaker:<ref>:<ref>:model-package-group/driftloopprod",
                "arn:<ref>:sagemaker:<ref>:<ref>:model-package/driftloopprod/*",
            }
    assert granted == {
        "RecordTrain": {"sagemaker:ListModelPackages", "sagemaker:DescribeModelPackage",
                        "sagemaker:CreateModelPackage"},
        "Promote": {"sagemaker:ListModelPackages", "sagemaker:DescribeModelPackage"},
    }


def test_record_train_knows_the_group_the_policy_and_the_algorithm_image(synthesized: Synthesized,
                                                                          dev: Template) -> None:
    record = dev.find_resources("AWS::Lambda::Function")[logical_id(synthesized.development.functions.record_train)]
    environment = record["Properties"]["Environment"]["Variables"]
    assert environment["MODEL_PACKAGE_GROUP"] == "Driftloop"
    assert '"approval": "automatic"' in environment["DECISION_POLICY"]
    assert "container-assets" in str(environment["ALGORITHM_IMAGE"])


def test_a_failed_promotion_reaches_the_topic(synthesized: Synthesized, prod: Template) -> None:
    stack = synthesized.production
    promote = prod.find_resources("AWS::Lambda::Function")[logical_id(stack.functions.promote)]
    topic = logical_id(stack.notifications.topic)
    assert promote["Properties"]["DeadLetterConfig"] == {"TargetArn": {"Ref": topic}}
    assert promote["Properties"]["Environment"]["Variables"]["TOPIC_ARN"] == {"Ref": topic}


# ------------------------------------------------------------------------------------------ teardown
def test_development_empties_the_group_before_deleting_it_and_production_keeps_it(
        synthesized: Synthesized, dev: Template, prod: Template) -> None:
    """CloudFormation cannot delete a group that still holds packages: the custom resource that deletes them
    depends on the group, so CloudFormation creates it after the group and deletes it first."""
    functions = synthesized.development.functions
    (group_id, group), = dev.find_resources("AWS::SageMaker::ModelPackageGroup").items()
    assert group.get("DeletionPolicy", "Delete") == "Delete"
    (emptied,) = dev.find_resources(PACKAGE_GROUP_EMPTIED).values()
    assert group_id in emptied["DependsOn"]
    assert emptied["Properties"]["ModelPackageGroupName"] == "Driftloop"
    assert emptied.get("DeletionPolicy", "Delete") == "Delete"
    framework = emptied["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    environment = dev.find_resources("AWS::Lambda::Function")[framework]["Properties"]["Environment"]["Variables"]
    assert environment["USER_ON_EVENT_FUNCTION_ARN"] == {"Fn::GetAtt": [logical_id(functions.empty_package_group),
                                                                        "Arn"]}
    handler = dev.find_resources("AWS::Lambda::Function")[logical_id(functions.empty_package_group)]
    assert handler["Properties"]["Handler"] == "lambdas.control_steps.handlers.empty_package_group"

    (kept,) = prod.find_resources("AWS::SageMaker::ModelPackageGroup").values()
    assert kept["DeletionPolicy"] == "Retain" and prod.find_resources(PACKAGE_GROUP_EMPTIED) == {}
    assert synthesized.production.functions.empty_package_group is None


def test_the_emptying_lambda_may_delete_only_this_groups_packages(synthesized: Synthesized, dev: Template) -> None:
    empty = synthesized.development.functions.empty_package_group
    granted = {}
    for statement in statements_of(dev, empty.role):
        for action in as_list(statement["Action"]):
            if action.startswith("sagemaker:"):
                resources = as_list(statement["Resource"])
                granted[action] = ["*" if r == "*" else _arn_text(r) for r in resources]
    assert granted == {"sagemaker:ListModelPackages": ["*"],  # grants on no resource type
                       "sagemaker:DeleteModelPackage": ["arn:<ref>:sagemaker:<ref>:<ref>:model-package/driftloop/*"]}
    # The Provider framework's Lambda may invoke the emptying function only.
    (emptied,) = dev.find_resources(PACKAGE_GROUP_EMPTIED).values()
    framework = dev.find_resources("AWS::Lambda::Function")[emptied["Properties"]["ServiceToken"]["Fn::GetAtt"][0]]
    role = framework["Properties"]["Role"]["Fn::GetAtt"][0]
    invoked = [r for p in dev.find_resources("AWS::IAM::Policy").values() if {"Ref": role} in p["Properties"]["Roles"]
               for s in p["Properties"]["PolicyDocument"]["Statement"] for r in as_list(s["Resource"])]
    target = logical_id(empty)
    assert invoked and all(str(r).count(target) == 1 for r in invoked), invoked
