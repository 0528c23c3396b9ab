"""The Lambdas of the AWS loop: thin handlers over driftloop's decisions and records.

One code package, three functions, each deployed with its own least-privilege role:

* ``decide``: serve run's drift report -> retrain decision and the serve record (the serve state
  machine adds the retrain outcome, then writes ``serve/latest`` itself, last);
* ``record_train``: champion/challenger at the end of a train run; writes ``train/last-attempt``
  always and ``train/latest`` only when the new model is promoted;
* ``next_batch``: simulation mode, the next stage's test set; advances the cycle position.

The state machines pass every artifact as a URI (``artifacts``, keyed by the artifact names of
``driftloop.pipelines``). Settings come from the environment, read on each call.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from driftloop import aws_glue
from driftloop.config import DecisionPolicy
from driftloop.decision import decide_retrain
from driftloop.drift_report import DriftReport
from driftloop.layout import DEFAULT_PARAMETER_PREFIX, STAGE_NAMES, ParameterNames, simulation_test_set
from driftloop.model_io import SAGEMAKER_ARCHIVE
from driftloop.pipelines import DRIFT_REPORT_FILE, EVALUATION_FILE, TRAIN_METRICS_FILE
from driftloop.records import ServeRecord, TrainRecord

logger = Logger(service=aws_glue.METRICS_SERVICE)
metrics = Metrics(namespace=aws_glue.METRICS_NAMESPACE, service=aws_glue.METRICS_SERVICE)


def _names() -> ParameterNames:
    return ParameterNames(os.environ.get("PARAMETER_PREFIX", DEFAULT_PARAMETER_PREFIX))


def _policy() -> DecisionPolicy:
    return DecisionPolicy.from_mapping(json.loads(os.environ.get("DECISION_POLICY", "{}")))


def _s3_body(uri: str) -> Any:
    bucket, key = aws_glue.split_s3_uri(uri)
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]


def _s3_json_or_none(uri: str) -> dict[str, Any] | None:
    """The JSON object at ``uri``; None when there is none (the role may list the prefix, so S3 says so)."""
    try:
        body = _s3_body(uri)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(body.read())  # type: ignore[no-any-return]


def _read_parameter(name: str) -> str:
    value = parameters.get_parameter(name, force_fetch=True)
    return str(value)


@logger.inject_lambda_context
@metrics.log_metrics
def decide(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Drift report -> retrain decision (``driftloop.decision.decide_retrain``) and the serve record."""
    artifacts = event["artifacts"]
    report_uri = aws_glue.artifact_file(artifacts["drift_report"], DRIFT_REPORT_FILE)
    report = DriftReport.from_json(_s3_body(report_uri).read())
    model = aws_glue.parse_record(event["model"], TrainRecord)
    if model is None:
        raise ValueError("the serve run has no model record: run the train pipeline first")
    previous = aws_glue.parse_record(_read_parameter(_names().serve_latest), ServeRecord)
    since = aws_glue.runs_since_retrain(previous)
    decision = decide_retrain(report, batch_source=event["batch"], policy=_policy(), runs_since_retrain=since)
    record = aws_glue.serve_record(
        run_id=event["run_id"], time=event["time"], model=model, artifacts=artifacts, report=report,
        decision=decision, since_retrain=since,
    )
    if not report.too_small:
        metrics.add_metric(name=aws_glue.METRIC_DRIFT_STATISTIC, unit=MetricUnit.NoUnit, value=report.statistic)
        metrics.add_metric(name=aws_glue.METRIC_DRIFT_DETECTED, unit=MetricUnit.Count, value=int(report.is_drift))
    metrics.add_metric(name=aws_glue.METRIC_BATCH_SIZE, unit=MetricUnit.Count, value=report.batch_size)
    logger.info("retrain decision", extra={"decision": decision.to_dict(), "report": report.message})
    return {**decision.to_dict(), "record": json.loads(record.to_json())}


@logger.inject_lambda_context
@metrics.log_metrics
def record_train(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Champion/challenger (``driftloop.decision.decide_promotion``), then the train pointers."""
    artifacts = event["artifacts"]
    archive = _s3_body(aws_glue.artifact_file(artifacts["model"], SAGEMAKER_ARCHIVE))
    train_metrics = json.loads(aws_glue.read_tar_member(archive, TRAIN_METRICS_FILE))
    champion = aws_glue.parse_record(event.get("champion"), TrainRecord)
    evaluation = None
    if champion is not None:
        evaluation = _s3_json_or_none(aws_glue.artifact_file(artifacts["champion_eval"], EVALUATION_FILE))
    record = aws_glue.train_record(
        run_id=event["run_id"], time=event["time"], train_prefix=event["train_data"], artifacts=artifacts,
        metrics=train_metrics, champion=champion, champion_evaluation=evaluation,
    )
    names = _names()
    # Every artifact the record names is complete (this is the pipeline's last step): now the pointers.
    parameters.set_parameter(names.train_last_attempt, record.to_json(), overwrite=True)
    if record.promoted:
        parameters.set_parameter(names.train_latest, record.to_json(), overwrite=True)
    metrics.add_metric(name=aws_glue.METRIC_CHALLENGER_ACCURACY, unit=MetricUnit.NoUnit, value=record.val_accuracy)
    if record.champion_val_accuracy is not None:
        metrics.add_metric(
            name=aws_glue.METRIC_CHAMPION_ACCURACY, unit=MetricUnit.NoUnit, value=record.champion_val_accuracy
        )
    metrics.add_metric(name=aws_glue.METRIC_PROMOTED, unit=MetricUnit.Count, value=int(record.promoted))
    logger.info(record.summary())
    return {"promoted": record.promoted, "summary": record.summary(), "record": json.loads(record.to_json())}


@logger.inject_lambda_context
def next_batch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Simulation mode: the test set at the cycle position (Original, Stage-1, …, Noisy, Original, …)."""
    names = _names()
    position = int(_read_parameter(names.simulation_position))
    batch = simulation_test_set(position)
    parameters.set_parameter(names.simulation_position, str((position + 1) % len(STAGE_NAMES)), overwrite=True)
    logger.info("next simulation batch", extra={"batch": batch, "position": position})
    return {"batch": batch, "position": position}
