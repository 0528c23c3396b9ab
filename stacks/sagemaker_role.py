"""The role SageMaker jobs run as: read the data, read and write the runs, pull the images, log.

Its whole policy is here: the job states get it ``without_policy_updates()`` (see ``jobs``).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from driftloop.pipelines import Component
from stacks import nag

JOB_LOG_GROUPS = ("/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs")


class SageMakerJobRole(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        images: dict[Component, ecr_assets.DockerImageAsset],
        data_prefixes: tuple[str, ...],
        runs_prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="driftloop SageMaker processing and training jobs",
        )
        self.readable = (*data_prefixes, runs_prefix)
        self._grant_objects(bucket, runs_prefix)
        for image in images.values():
            image.repository.grant_pull(self.role)
        self._grant_logs()
        self._suppress_findings(bucket)

    def _grant_objects(self, bucket: s3.IBucket, runs_prefix: str) -> None:
        """Read the readable folders, write the runs."""
        # S3Prefix inputs list their prefix; a listing outside these folders is refused.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}/*" for prefix in self.readable]}},
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{prefix}/*") for prefix in self.readable]
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{runs_prefix}/*")],
            )
        )

    def _grant_logs(self) -> None:
        stack = Stack.of(self)
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[
                    stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name=f"{group}:*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                    for group in JOB_LOG_GROUPS
                ],
            )
        )

    def _suppress_findings(self, bucket: s3.IBucket) -> None:
        """The role's wildcards: run ids and log streams made at run time, an action granted only on "*"."""
        nag.wildcards(
            self.role,
            "SageMaker jobs read uploaded data sets and batches (any stage, any batch name) and each run's "
            "artifacts, and write under runs/<pipeline>/<run id>/; the run id is the execution name, known only "
            "at run time.",
            resources=tuple(nag.objects(bucket, f"{prefix}/*") for prefix in self.readable),
        )
        nag.wildcards(
            self.role, "ecr:GetAuthorizationToken is only granted on '*' (it names no repository).", resources=("*",)
        )
        nag.wildcards(
            self.role,
            "SageMaker writes one log stream per job into its fixed log group; stream names are made per job.",
            resources=tuple(nag.arn("logs", f"log-group:{group}:*") for group in JOB_LOG_GROUPS),
        )
