"""The Lambdas of the AWS loop: thin handlers over ``driftloop.loop``, each with its own least-privilege role.

* ``claim_batch``: production mode, a serve run's first step -> the batch it serves (the one it named,
  else the oldest complete batch not served yet), or none: nothing to serve, the run ends without a job;
* ``plan``: a run's start -> its plan (artifact URIs, per-step settings, the current train record);
* ``decide``: a serve run's drift report (and in production, the labels that came back) -> the retrain
  decision; publishes the labelled accuracy of each batch whose labels it joined;
* ``record_serve``: the serve record, with the retrain outcome -> ``serve/latest`` (the run's last step);
* ``record_train``: champion/challenger -> ``train/last-attempt``, and ``train/latest`` when promoted;
* ``take_retrain_lease``: before a retrain starts, the retrain lease for a new train run id -> that id
  and the outcome to record (started, or skipped because another retrain holds the lease);
* ``release_retrain_lease``: when a train run ends, its lease (if it holds it) is let go;
* ``next_batch``: simulation mode, the next stage's test set; advances the cycle position;
* ``empty_package_group``: CloudFormation's custom resource for the stack's model package group
  (development only): on the stack's delete, every package of the group is deleted first, since
  CloudFormation cannot delete a group that holds packages;
* ``promote``: EventBridge's "SageMaker Model Package State Change" for a package of this stack's group
  set to Approved -> its model is promoted (``train/latest``); set to Rejected -> recorded as
  ``driftloop reject`` records it (``train/last-attempt``), the champion serving on. An approval or
  rejection refused (out of order, the serving model's) is logged and told on the topic.

Every event is parsed by its contract (``driftloop.loop``) before anything runs; a missing or unknown
field fails with its name, and a plan that is not the one planned for its run (``loop.check_plan``) is
refused before anything is read or recorded. The stores are the S3 bucket and Parameter Store named in the environment,
read on each call.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from driftloop import loop, telemetry
from driftloop.config import DecisionPolicy
from driftloop.drift_report import EstimatedAccuracy
from driftloop.layout import ParameterNames, make_run_id
from driftloop.registry import SageMakerModelRegistry
from driftloop.stores.objects import S3ObjectStore
from driftloop.stores.params import SsmParameterStore

logger = Logger(service=telemetry.SERVICE)
metrics = Metrics(namespace=telemetry.NAMESPACE, service=telemetry.SERVICE)


def _stores() -> loop.Stores:
    group = os.environ.get("MODEL_PACKAGE_GROUP")
    return loop.Stores(
        objects=S3ObjectStore(os.environ["BUCKET_NAME"]),
        params=SsmParameterStore(),
        names=ParameterNames(os.environ["PARAMETER_PREFIX"]),
        registry=SageMakerModelRegistry(group) if group else None,
    )


def _policy() -> DecisionPolicy:
    return DecisionPolicy.from_mapping(json.loads(os.environ["DECISION_POLICY"]))


def how_to_approve(package_arn: str) -> str:
    """What the notification of a pending model says to do."""
    return (f" Its model package waits for approval: approve it in SageMaker Model Registry (Studio), or with "
            f"`aws sagemaker update-model-package --model-package-arn {package_arn} --model-approval-status "
            f"Approved`; `--model-approval-status Rejected` keeps the champion.")


@logger.inject_lambda_context
def claim_batch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = loop.ClaimBatchEvent.from_dict(event)
    result = loop.claim_batch(_stores(), request)
    logger.info(result.summary, extra={"run_id": request.run_id, "batch": result.batch})
    return result.to_dict()


@logger.inject_lambda_context
def plan(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = loop.PlanEvent.from_dict(event)
    run = loop.plan_run(_stores(), request.pipeline, run_id=request.run_id, time=request.time, start=request.start)
    logger.info("planned", extra={"pipeline": run.pipeline, "uri": run.uri, "settings": run.settings})
    return run.to_dict()


@logger.inject_lambda_context
@metrics.log_metrics
def decide(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = loop.DecideEvent.from_dict(event)
    stores = _stores()
    loop.check_plan(stores, request.plan)
    report = loop.read_drift_report(stores, request.plan)
    policy = _policy()
    decided = loop.decide_and_join(stores, request.plan, report, policy)
    decision = decided.decision
    for joined in decided.joined:
        labelled = joined.labelled
        if labelled.accuracy is not None:
            metrics.add_metric(name=telemetry.LABELLED_ACCURACY, unit=MetricUnit.NoUnit, value=labelled.accuracy)
            metrics.add_metric(name=telemetry.LABELLED_IMAGES, unit=MetricUnit.Count, value=labelled.n_labelled)
        logger.info("labels joined", extra={"batch": joined.batch_id, "labelled": labelled.summary()})
    if not report.too_small:
        metrics.add_metric(name=telemetry.DRIFT_STATISTIC, unit=MetricUnit.NoUnit, value=report.statistic)
        metrics.add_metric(name=telemetry.DRIFT_DETECTED, unit=MetricUnit.Count, value=int(report.is_drift))
    metrics.add_metric(name=telemetry.BATCH_SIZE, unit=MetricUnit.Count, value=report.batch_size)
    if report.accuracy_estimate is not None:
        _estimate_metrics(report.accuracy_estimate)
    logger.info("retrain decision", extra={"decision": decision.to_dict(), "report": report.message})
    return decision.to_dict()


def _estimate_metrics(estimate: EstimatedAccuracy) -> None:
    """The estimate and its interval; outside its calibration's domain, only the unreliable estimate."""
    if estimate.outside_domain:
        metrics.add_metric(name=telemetry.ESTIMATED_ACCURACY_UNRELIABLE, unit=MetricUnit.NoUnit,
                           value=estimate.estimate)
        return
    for name, value in ((telemetry.ESTIMATED_ACCURACY, estimate.estimate),
                        (telemetry.ESTIMATED_ACCURACY_LOWER, estimate.lower),
                        (telemetry.ESTIMATED_ACCURACY_UPPER, estimate.upper)):
        metrics.add_metric(name=name, unit=MetricUnit.NoUnit, value=value)


@logger.inject_lambda_context
def record_serve(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = loop.RecordServeEvent.from_dict(event)
    stores = _stores()
    loop.check_plan(stores, request.plan)
    report = loop.read_drift_report(stores, request.plan)
    record = loop.record_serve(stores, request.plan, report, request.decision, request.outcome)
    logger.info(record.summary())
    return record.to_dict()


@logger.inject_lambda_context
@metrics.log_metrics
def record_train(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = loop.RecordTrainEvent.from_dict(event)
    stores = _stores()
    record = loop.record_train(stores, loop.check_plan(stores, request.plan), approval=_policy().approval,
                               image=os.environ.get("ALGORITHM_IMAGE") or None)
    metrics.add_metric(name=telemetry.CHALLENGER_ACCURACY, unit=MetricUnit.NoUnit, value=record.val_accuracy)
    if record.champion_val_accuracy is not None:
        metrics.add_metric(name=telemetry.CHAMPION_ACCURACY, unit=MetricUnit.NoUnit, value=record.champion_val_accuracy)
    metrics.add_metric(name=telemetry.PROMOTED, unit=MetricUnit.Count, value=int(record.promoted))
    summary = record.summary()
    if record.pending and record.package_id is not None:
        summary += how_to_approve(record.package_id)
    logger.info(summary)
    return loop.RecordTrainResult(promoted=record.promoted, summary=summary, record=record).to_dict()


@logger.inject_lambda_context
def promote(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A person's decision in the registry: an Approved package is promoted, a Rejected one recorded (the
    loop's ``approved_in_registry`` and ``rejected_in_registry``), or refused with a message (logged and on
    the topic). A refusal is an answer, not a failure: the event is not retried (nothing would change).
    """
    detail = event["detail"]
    arn, group, status = detail["ModelPackageArn"], detail["ModelPackageGroupName"], detail["ModelApprovalStatus"]
    try:
        if group != os.environ["MODEL_PACKAGE_GROUP"]:
            raise loop.NotApprovable(f"model package {arn} is of group {group}, not this stack's "
                                     f"{os.environ['MODEL_PACKAGE_GROUP']}: nothing done")
        if status == "Rejected":
            rejected = loop.rejected_in_registry(_stores(), arn)
            summary = f"model package {arn}: nothing to record" if rejected is None else rejected.summary()
            logger.info(summary, extra={"package": arn})
            return {"promoted": False, "summary": summary}
        record = loop.approved_in_registry(_stores(), arn)
    except loop.NotApprovable as refused:
        decision = "rejection" if status == "Rejected" else "approval"
        message = f"driftloop: {decision} of {arn} refused: {refused}"
        logger.warning(message)
        _notify(f"driftloop: {decision} refused", message)
        return {"promoted": False, "summary": message}
    logger.info(record.summary(), extra={"package": arn})
    return {"promoted": True, "summary": record.summary()}


@logger.inject_lambda_context
def empty_package_group(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The custom resource's onEvent (``custom_resources.Provider``): nothing on Create or Update; on Delete,
    the group's packages are deleted (CloudFormation then deletes the group, which must be empty)."""
    group = event["ResourceProperties"]["ModelPackageGroupName"]
    if event["RequestType"] == "Delete":
        deleted = SageMakerModelRegistry(group).delete_every_package()
        logger.info(f"deleted {len(deleted)} model packages of group {group}", extra={"packages": deleted})
    return {"PhysicalResourceId": event.get("PhysicalResourceId") or group}


def _notify(subject: str, message: str) -> None:
    import boto3

    boto3.client("sns").publish(TopicArn=os.environ["TOPIC_ARN"], Subject=subject, Message=message)


def _lease_ttl() -> timedelta:
    """``RETRAIN_LEASE_SECONDS``: how long a retrain's lease lasts if its execution never lets it go (the
    train state machine's timeout, so the lease outlives every run that can still be going)."""
    value = os.environ.get("RETRAIN_LEASE_SECONDS", "")
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"environment variable RETRAIN_LEASE_SECONDS={value!r}: set it to the train state "
                         "machine's timeout in whole seconds")
    return timedelta(seconds=int(value))


@logger.inject_lambda_context
def take_retrain_lease(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = loop.TakeRetrainLeaseEvent.from_dict(event)
    now = datetime.now(UTC)
    lease = loop.take_retrain_lease(_stores(), request.decision, run_id=make_run_id("train", now), now=now,
                                    ttl=_lease_ttl())
    logger.info("retrain lease", extra=lease.to_dict())
    return lease.to_dict()


@logger.inject_lambda_context
def release_retrain_lease(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = loop.ReleaseRetrainLeaseEvent.from_dict(event)
    result = loop.ReleaseRetrainLeaseResult(released=loop.release_retrain_lease(_stores(), request.run_id))
    logger.info("retrain lease released" if result.released else "no retrain lease held",
                extra={"run_id": request.run_id})
    return result.to_dict()


@logger.inject_lambda_context
def next_batch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    loop.NextBatchEvent.from_dict(event)
    result = loop.next_batch(_stores())
    logger.info("next simulation batch", extra=result.to_dict())
    return result.to_dict()
