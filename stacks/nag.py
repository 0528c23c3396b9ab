"""cdk-nag suppressions: how a construct suppresses a finding on its own resources, with its reason.

Each construct calls these next to the grant that causes the finding, so the reason sits beside
the permission it excuses; this module knows no construct. Every wildcard left is one of: an
object key that holds a run id known only at run time; a job name made per execution; a log
stream made per job or invocation; an action AWS only grants on "*". ``appliesTo`` names each
finding exactly, so a new wildcard is still reported.

cdk-nag writes a suppression into the resources that exist when it is called: call these after
the construct's last grant (a role's policy is made by its first one).
"""

from __future__ import annotations

from aws_cdk import Stack
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct

IAM5 = "AwsSolutions-IAM5"


def ref(construct: IConstruct) -> str:
    """How cdk-nag writes a construct's ``Arn`` attribute in a finding: ``<LogicalId.Arn>``."""
    stack = Stack.of(construct)
    default = construct.node.default_child
    assert default is not None
    return f"<{stack.resolve(stack.get_logical_id(default))}.Arn>"  # type: ignore[arg-type]


def arn(service: str, resource: str) -> str:
    """How cdk-nag writes an ARN the stack formats (``Stack.format_arn``) in a finding."""
    return f"arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:{resource}"


def objects(bucket: IConstruct, pattern: str) -> str:
    """How cdk-nag writes ``bucket.arn_for_objects(pattern)`` in a finding."""
    return f"{ref(bucket)}/{pattern}"


def suppress(construct: IConstruct, rule: str, reason: str) -> None:
    """Suppress a rule on one resource (not its children)."""
    NagSuppressions.add_resource_suppressions(construct, [NagPackSuppression(id=rule, reason=reason)])


def wildcards(construct: IConstruct, reason: str, *, resources: tuple[str, ...] = (), actions: tuple[str, ...] = ()
              ) -> None:
    """Suppress IAM5 on the construct's policies for exactly these wildcard resources and actions."""
    applies_to = [f"Resource::{r}" for r in resources] + [f"Action::{a}" for a in actions]
    NagSuppressions.add_resource_suppressions(
        construct, [NagPackSuppression(id=IAM5, reason=reason, applies_to=applies_to)], apply_to_children=True
    )


def managed_policy(construct: IConstruct, reason: str, policy: str) -> None:
    """Suppress IAM4 on the construct for exactly this AWS managed policy (``service-role/<name>``)."""
    NagSuppressions.add_resource_suppressions(construct, [NagPackSuppression(
        id="AwsSolutions-IAM4", reason=reason, applies_to=[f"Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}"])],
        apply_to_children=True)
