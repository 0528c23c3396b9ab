"""The SNS topic for drift, retrain, promotion and failure messages (optional e-mail subscription).

Encrypted with the AWS-managed SNS key (no key to pay for or to grant), and TLS-only.
"""

from __future__ import annotations

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct


class Notifications(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, email: str) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="driftloop",
            enforce_ssl=True,
            master_key=kms.Alias.from_alias_name(self, "AwsManagedKey", "alias/aws/sns"),
        )
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
