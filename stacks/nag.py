"""cdk-nag suppressions, each scoped to one resource and with the reason it is acceptable.

Every wildcard left is one of: an object key that holds a run id known only at run time; a job
name made per execution; a log stream made per job or invocation; an action AWS only grants on
"*". ``appliesTo`` names each finding exactly, so a new wildcard is still reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Stack
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct

from driftloop.pipelines import SERVE_PIPELINE, TRAIN_PIPELINE, JobKind
from stacks.jobs import job_name_prefix
from stacks.sagemaker_role import JOB_LOG_GROUPS

if TYPE_CHECKING:
    from stacks.driftloop_stack import DriftloopStack

IAM5 = "AwsSolutions-IAM5"


def _ref(stack: Stack, construct: IConstruct) -> str:
    """How cdk-nag writes a construct's ``Arn`` attribute in a finding: ``<LogicalId.Arn>``."""
    default = construct.node.default_child
    assert default is not None
    return f"<{stack.resolve(stack.get_logical_id(default))}.Arn>"  # type: ignore[arg-type]


def _arn(service: str, resource: str) -> str:
    return f"arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:{resource}"


def _iam5(construct: IConstruct, reason: str, *resources: str) -> None:
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=IAM5, reason=reason, applies_to=[f"Resource::{r}" for r in resources])],
        apply_to_children=True,
    )


def suppress(stack: DriftloopStack) -> None:
    bucket = _ref(stack, stack.storage.bucket)
    NagSuppressions.add_resource_suppressions(
        stack.storage.access_logs,
        [
            NagPackSuppression(
                id="AwsSolutions-S1",
                reason="This is the server access log bucket; logging its own accesses into itself would loop.",
            )
        ],
    )

    role = stack.job_role
    _iam5(
        role.role,
        "SageMaker jobs read uploaded data sets and batches (any stage, any batch name) and each run's artifacts, "
        "and write under runs/<pipeline>/<run id>/; the run id is the execution name, known only at run time.",
        *(f"{bucket}/{prefix}/*" for prefix in role.readable),
    )
    _iam5(role.role, "ecr:GetAuthorizationToken is only granted on '*' (it names no repository).", "*")
    _iam5(
        role.role,
        "SageMaker writes one log stream per job into its fixed log group; stream names are made per job.",
        *(_arn("logs", f"log-group:{group}:*") for group in JOB_LOG_GROUPS),
    )

    functions = stack.functions
    for function in functions.all():
        NagSuppressions.add_resource_suppressions(
            function,
            [NagPackSuppression(
                id="AwsSolutions-L1",
                reason="The handlers run on the Python the project pins and tests them on (3.11, "
                "requires-python); a newer runtime would run code no test has run.",
            )],
        )
    for reader in (functions.decide, functions.record_serve):
        _iam5(
            reader.role,  # type: ignore[arg-type]
            "Reads only drift reports, which sit under each serve run's id (the execution name, made at run time).",
            f"{bucket}/runs/serve/*/drift_report/*",
        )
    _iam5(
        functions.record_train.role,  # type: ignore[arg-type]
        "Reads only the new model's archive and the champion's evaluation, under the train run's id "
        "(the execution name, made at run time).",
        f"{bucket}/runs/train/*/model/*",
        f"{bucket}/runs/train/*/champion_eval/*",
    )

    pipelines = stack.pipelines
    for machine, pipeline, invoked in (
        (pipelines.train, TRAIN_PIPELINE, [functions.plan, functions.record_train]),
        (
            pipelines.serve,
            SERVE_PIPELINE,
            [f for f in (functions.plan, functions.decide, functions.record_serve, functions.next_batch) if f],
        ),
    ):
        jobs = [
            _arn("sagemaker", f"processing-job/{job_name_prefix(pipeline, step)}-*")
            for step in pipeline.steps
            if step.job is JobKind.PROCESSING
        ]
        _iam5(
            machine.role,
            "Processing job names are <pipeline>-<step>-<uuid>, made per attempt; each step is limited to its prefix.",
            *jobs,
        )
        if any(step.job is JobKind.TRAINING for step in pipeline.steps):
            _iam5(
                machine.role,
                "CDK's training-job task cannot scope a name built at run time (train-train-model-<uuid>).",
                _arn("sagemaker", "training-job/*"),
            )
        _iam5(
            machine.role,
            "Granted by CDK for the Lambda task: invoking the function's versions and aliases.",
            *(f"{_ref(stack, f)}:*" for f in invoked),
        )
        NagSuppressions.add_resource_suppressions(
            machine.role,
            [NagPackSuppression(
                id=IAM5,
                reason="Granted by CDK's topic.grant_publish on the topic's own key only: SNS needs "
                "kms:GenerateDataKey* (every data-key variant) to encrypt a message.",
                applies_to=["Action::kms:GenerateDataKey*"],
            )],
            apply_to_children=True,
        )
        _iam5(
            machine.role,
            "Granted by CDK: CloudWatch Logs delivery and X-Ray tracing of the state machine and "
            "sagemaker:ListTags support no resource-level permissions.",
            "*",
        )
