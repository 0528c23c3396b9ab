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
        readable = self.readable
        # S3Prefix inputs list their prefix; a listing outside these folders is refused.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}/*" for prefix in readable]}},
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{prefix}/*") for prefix in readable]
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{runs_prefix}/*")],
            )
        )
        for image in images.values():
            image.repository.grant_pull(self.role)
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
