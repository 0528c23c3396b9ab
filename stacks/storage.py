"""The bucket for data and run artifacts, and the bucket its access logs go to.

Both are encrypted (SSE-S3), versioned, private and TLS-only. Teardown follows the config:
development deletes them with their contents; production retains them.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import checkov, nag
from stacks.config import DeploymentConfig

ACCESS_LOG_PREFIX = "data-bucket/"


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        destroy = config.destroy_on_teardown
        common = dict(
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.DESTROY if destroy else RemovalPolicy.RETAIN,
            auto_delete_objects=destroy,
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(config.access_log_retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                )
            ],
            **common,  # type: ignore[arg-type]
        )
        # data/ and batches/ are uploaded by users; runs/ is written by the pipelines (driftloop.layout).
        self.bucket = s3.Bucket(
            self,
            "Data",
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=ACCESS_LOG_PREFIX,
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            **common,  # type: ignore[arg-type]
        )
        self._suppress_findings()

    def _suppress_findings(self) -> None:
        """The access-log bucket logs nowhere; CDK's auto-delete handler (development) is CloudFormation's."""
        nag.suppress(
            self.access_logs,
            "AwsSolutions-S1",
            "This is the server access log bucket; logging its own accesses into itself would loop.",
        )
        checkov.skip(self.access_logs, checkov.ACCESS_LOG_BUCKET)
        provider = Stack.of(self).node.try_find_child(checkov.AUTO_DELETE_PROVIDER)
        if provider is not None:
            checkov.skip(provider.node.find_child("Handler"), checkov.AUTO_DELETE_HANDLER)
