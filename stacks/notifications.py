"""The SNS topic for drift, retrain, promotion and failure messages (optional e-mail subscription).

TLS-only, encrypted with a key of this stack: EventBridge cannot publish to a topic encrypted with
the AWS-managed SNS key, and the rules below must: one tells of executions that ended in a way no
state inside them can catch (a timeout, an abort, or a failure Step Functions raised itself), the
other of runs that could not publish their own notice (they fail with ``NOTICE_NOT_SENT``).
"""

from __future__ import annotations

from typing import Any, Final

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
# The error of a run that could not publish its own notice (its cause says what the run did and why
# the notice failed): the state machines end such a run with it, and a rule tells the topic.
NOTICE_NOT_SENT: Final = "NoticeNotSent"


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

    def tell_unreported_ends(self, *machines: sfn.IStateMachine) -> tuple[events.Rule, events.Rule]:
        """EventBridge rules: a timed-out, aborted or uncaught-failed execution, and one that could not
        publish its own notice, reach the topic. EventBridge publishes with its own grant on the key, so
        a notice that the state machine's role could not send may still arrive; when none can (the topic
        is gone), the execution still shows FAILED with the cause, on the dashboard and in the console."""
        detail = ("name", "stateMachineArn", "status", "error", "cause")
        name, arn, status, error, cause = (events.EventField.from_path(f"$.detail.{key}") for key in detail)
        uncaught = self._status_rule(
            "UncaughtEnds",
            "driftloop: executions that ended where no state could report it",
            machines,
            {"$or": [{"status": list(UNCAUGHT_ENDS)}, {"status": ["FAILED"], "error": list(UNCAUGHT_ERRORS)}]},
            f"driftloop execution {name} ({arn}) ended {status}: {error} {cause}. No parameter was changed by it.",
        )
        unsent = self._status_rule(
            "UnsentNotices",
            "driftloop: runs that could not publish their own notice",
            machines,
            {"status": ["FAILED"], "error": [NOTICE_NOT_SENT]},
            f"driftloop execution {name} ({arn}) failed with {error}: {cause}",
        )
        return uncaught, unsent

    def _status_rule(self, construct_id: str, description: str, machines: tuple[sfn.IStateMachine, ...],
                     ends: dict[str, Any], message: str) -> events.Rule:
        """A rule on the machines' status changes whose details match ``ends``, publishing ``message``."""
        rule = events.Rule(
            self,
            construct_id,
            description=description,
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={"stateMachineArn": [m.state_machine_arn for m in machines], **ends},
            ),
        )
        rule.add_target(targets.SnsTopic(self.topic, message=events.RuleTargetInput.from_text(message)))
        return rule
