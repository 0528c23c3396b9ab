"""checkov suppressions, each on one resource (its ``checkov`` metadata) and with the reason it is acceptable.

The reasons are here; each construct skips them on its own resources (``skip``), and this module
knows no construct.

checkov (``--framework cloudformation``) runs on the synthesized templates in the CDK suite
(``tests/cdk/test_checkov.py``), as cdk-nag does; a check suppressed here is still reported for
every resource not named here. No finding asks for a change this system needs; each is by design:
- the control-step Lambdas are called only synchronously by this stack's state machines, need no
  network but the S3, SSM and SageMaker APIs, and hold no secret in their environment; the promote
  Lambda, called by an EventBridge rule on a person's approval, has the topic as its dead-letter target;
- the log groups hold run metadata, never a secret or an image, and CloudWatch Logs encrypts them
  at rest with its own keys (the data bucket they describe is SSE-S3 too);
- the access-log bucket cannot log into itself;
- CDK's own auto-delete-objects handler and the model package group's emptying custom resource (its
  Lambda and CDK's Provider framework; development only) serve CloudFormation, not the pipelines.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import CfnResource
from constructs import IConstruct

# The construct CDK adds once per stack for ``auto_delete_objects=True`` (development), and its function.
AUTO_DELETE_PROVIDER: Final = "Custom::S3AutoDeleteObjectsCustomResourceProvider"

CONTROL_STEP_LAMBDA: Final = {
    "CKV_AWS_116": "Called only by this stack's state machines, synchronously (LambdaInvoke, RequestResponse): a "
    "failure returns to the calling state, whose Retry and Catch handle it and notify the topic. A dead-letter "
    "queue only receives failed asynchronous invocations, and there are none.",
    "CKV_AWS_115": "Only this stack's state machines are granted invoke, one call per state per execution, so "
    "concurrency is at most the executions running at once (the schedule starts one serve run an hour; a serve "
    "run starts a train run only when none is running). Reserving concurrency takes it from the account's "
    "unreserved pool, which must keep its minimum (in a new account at a quota of 10, all of it), so the deploy "
    "can fail; and a throttled call (Lambda.TooManyRequestsException, not retried) would fail the run.",
    "CKV_AWS_117": "Reaches only the S3, SSM and SageMaker APIs (over TLS, by IAM); the stack has no VPC and no "
    "private resource to reach, so a VPC would add a NAT gateway or endpoints and protect nothing.",
    "CKV_AWS_173": "The environment holds no secret: the bucket name, the parameter prefix, the decision policy's "
    "thresholds and the Powertools settings, all also in the template. Lambda encrypts it at rest with a "
    "service key by default.",
}
# The promote Lambda: EventBridge invokes it, asynchronously (its dead-letter target is the topic, so
# CKV_AWS_116 holds); the VPC and environment reasons are the control steps'.
PROMOTE_LAMBDA: Final = {
    "CKV_AWS_115": "Invoked only by this stack's EventBridge rule, once per model package of its group set to "
    "Approved (a person's approval): a handful a day at most. Reserving concurrency takes it from the account's "
    "unreserved pool, which must keep its minimum, so the deploy can fail; a throttled asynchronous invocation "
    "is retried by Lambda.",
    "CKV_AWS_117": "Reaches only the S3, SSM, SNS and SageMaker APIs (over TLS, by IAM); the stack has no VPC and no "
    "private resource to reach, so a VPC would add a NAT gateway or endpoints and protect nothing.",
    "CKV_AWS_173": CONTROL_STEP_LAMBDA["CKV_AWS_173"],
}
LOG_GROUP: Final = {
    "CKV_AWS_158": "Holds run metadata only (state inputs and outputs: S3 URIs, plans, decisions, drift "
    "statistics, job descriptions and error messages), never a secret or an image; CloudWatch Logs encrypts "
    "every log group at rest with its own keys, and the data bucket these entries point at is SSE-S3. A "
    "customer key would add a key policy for the logs service and, in production, a retained key.",
}
ACCESS_LOG_BUCKET: Final = {
    "CKV_AWS_18": "This is the server access log bucket (the data bucket logs into it); logging its own "
    "accesses into itself would loop. Also suppressed for cdk-nag (AwsSolutions-S1).",
}
AUTO_DELETE_HANDLER: Final = {
    "CKV_AWS_116": "CDK's auto-delete-objects handler (development only), invoked by CloudFormation for its "
    "custom resources (it empties a bucket of this stack being deleted): CloudFormation fails the stack "
    "operation when the handler fails or gives no answer, which is where a failure shows; a dead-letter queue "
    "would hold only the CloudFormation event.",
    "CKV_AWS_115": "CDK's auto-delete-objects handler (development only): invoked only by CloudFormation, once "
    "per create, update or delete of its two custom resources (one per bucket); reserving concurrency would "
    "take it from the account's unreserved pool and can fail the deploy in an account at a low quota.",
    "CKV_AWS_117": "CDK's auto-delete-objects handler (development only) calls only the S3 API to empty this "
    "stack's buckets; the stack has no VPC and no private resource to reach.",
}

# The Lambda that empties the model package group when the stack is deleted (development only).
TEARDOWN_LAMBDA: Final = {
    "CKV_AWS_116": "Invoked only by CDK's Provider framework for CloudFormation, synchronously: a failure fails "
    "the stack's delete, which is where it shows; a dead-letter queue would hold only the CloudFormation event.",
    "CKV_AWS_115": "Invoked once per create, update or delete of its one custom resource; reserving concurrency "
    "would take it from the account's unreserved pool and can fail the deploy in an account at a low quota.",
    "CKV_AWS_117": "Calls only the SageMaker API (over TLS, by IAM) to delete this stack's model packages; the "
    "stack has no VPC and no private resource to reach.",
    "CKV_AWS_173": CONTROL_STEP_LAMBDA["CKV_AWS_173"],
}
# CDK's Provider framework Lambda for that custom resource: CDK's code, which relays CloudFormation's event.
PROVIDER_FRAMEWORK_LAMBDA: Final = {
    "CKV_AWS_116": "CDK's Provider framework onEvent Lambda, invoked by CloudFormation for the one custom "
    "resource that empties the model package group: CloudFormation fails the stack operation when it fails, "
    "which is where a failure shows; a dead-letter queue would hold only the CloudFormation event.",
    "CKV_AWS_115": TEARDOWN_LAMBDA["CKV_AWS_115"],
    "CKV_AWS_117": "CDK's Provider framework onEvent Lambda calls only the Lambda API (the emptying function) and "
    "CloudFormation's response URL; the stack has no VPC and no private resource to reach.",
    "CKV_AWS_173": "Its environment holds only the emptying function's ARN (also in the template).",
}


def skip(construct: IConstruct, skips: dict[str, str]) -> None:
    """Tell checkov to skip these checks, each with its reason, on this resource only."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    assert isinstance(resource, CfnResource), construct.node.path
    resource.add_metadata("checkov", {"skip": [{"id": id_, "comment": comment} for id_, comment in skips.items()]})
