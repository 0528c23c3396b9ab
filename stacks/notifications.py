"""The SNS topic for drift, retrain, promotion and failure messages (optional e-mail subscription).

TLS-only, encrypted with a key of this stack: EventBridge cannot publish to a topic encrypted with
the AWS-managed SNS key, and the rule below must (it tells of executions that ended in a way no
state inside them can catch: a timeout, an abort, or a failure Step Functions raised itself).
"""

from __future__ import annotations

from typing import Final

from aws_cdk import RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

# Execution ends that the state machines cannot report themselves. Their own Catch paths notify
# every other failure (with its cause), so a FAILED run is told here only when Step Functions
# failed it outside any Catch (States.Runtime: e.g. a path that was not there).
UNCAUGHT_ENDS: Final = ("TIMED_OUT", "ABORTED")
UNCAUGHT_ERRORS: Final = ("States.Runtime",)


class Notifications(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, email: str, retain: bool) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "TopicKey",
            description="driftloop notifications topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        self.topic = sns.Topic(self, "Topic", display_name="driftloop", enforce_ssl=True, master_key=self.key)
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

    def tell_uncaught_ends(self, *machines: sfn.IStateMachine) -> events.Rule:
        """An EventBridge rule: a timed-out, aborted or uncaught-failed execution reaches the topic."""
        arns = [m.state_machine_arn for m in machines]
        rule = events.Rule(
            self,
            "UncaughtEnds",
            description="driftloop: executions that ended where no state could report it",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={"stateMachineArn": arns, "$or": [
                    {"status": list(UNCAUGHT_ENDS)},
                    {"status": ["FAILED"], "error": list(UNCAUGHT_ERRORS)},
                ]},
            ),
        )
        message = events.RuleTargetInput.from_text(
            f"driftloop execution {events.EventField.from_path('$.detail.name')} "
            f"({events.EventField.from_path('$.detail.stateMachineArn')}) ended "
            f"{events.EventField.from_path('$.detail.status')}: {events.EventField.from_path('$.detail.error')} "
            f"{events.EventField.from_path('$.detail.cause')}. No parameter was changed by it."
        )
        rule.add_target(targets.SnsTopic(self.topic, message=message))
        return rule
