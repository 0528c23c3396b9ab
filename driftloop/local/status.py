"""``driftloop status``: what the loop did last, read from the run records of a parameter store.

The same lines for a local work folder (its SQLite parameter store) and for a deployment (its SSM
Parameter Store, found through the stack's ``ParameterPrefix`` output): the current model
(``train/latest``), the last train attempt (``train/last-attempt``) and the last serve runs (the
version history of ``serve/latest``). A missing record gives one line that says what to run first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from driftloop.drift_report import EstimatedAccuracy
from driftloop.layout import STAGE_NAMES, ParameterNames
from driftloop.records import ServeRecord, TrainRecord, is_no_record, last_train_attempt, parse_record, read_record
from driftloop.registry import ModelRegistry, SqliteModelRegistry
from driftloop.stores.params import ParameterStore, SqliteParameterStore, SsmParameterStore

DEFAULT_RUNS: Final = 5
# The default deployment's name (stacks/config.py, DeploymentConfig.stack_name; a test keeps them equal).
DEFAULT_STACK: Final = "Driftloop"
INPUT_WIDTH: Final = max(len(stage) for stage in STAGE_NAMES)  # a batch's longer key just shifts its line
PARAMETERS_FILE: Final = "parameters.sqlite"  # LocalSystem's parameter store in a work folder
SIMULATION_STATE: Final = "state"  # the simulation's LocalSystem folder in its work folder (driftloop.local.simulation)


class StatusError(LookupError):
    """The state can't be read (no work folder, no stack, no credentials); the message says why."""


@dataclass(frozen=True)
class Hints:
    """What to run first when a record is missing, phrased for where the records live."""

    train: str
    serve: str
    # How to approve or reject a pending model, with ``{run_id}`` and ``{package_id}`` to fill in.
    approve: str


@dataclass(frozen=True)
class Source:
    """A parameter store to read, its names, and one line that says where it is."""

    params: ParameterStore
    names: ParameterNames
    where: str
    hints: Hints


# -------------------------------------------------------------------------------------- the lines
def _when(time: str) -> str:
    """ISO 8601 -> ``2026-12-01 13:05`` (in the record's own zone; UTC for every writer here)."""
    try:
        return datetime.fromisoformat(time).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return time


def train_line(record: TrainRecord) -> str:
    """The current model: run id, what it was trained on, its validation accuracy, when."""
    return (f"current model: {record.run_id} on {record.stage or record.train_data}, "
            f"val accuracy {record.val_accuracy:.3f}, trained {_when(record.time)}")


def attempt_line(record: TrainRecord, current: TrainRecord | None) -> str:
    """The last train attempt: promoted, pending approval, rejected or not promoted, and why."""
    same = " (the current model)" if current is not None and current.run_id == record.run_id else ""
    head = f"last train attempt: {record.run_id}{same} on {record.stage or record.train_data}, {_when(record.time)}"
    if record.champion_val_accuracy is None or _rejected_by_a_person(record):  # the reason says why
        return f"{head}: {_verdict(record)} ({record.reason})"
    # With a champion, champion/challenger is the whole reason (decision.decide_promotion): shown as numbers.
    sign = ">=" if record.val_accuracy >= record.champion_val_accuracy else "<"
    of = "" if record.champion_run_id is None else f" of {record.champion_run_id}"
    return (f"{head}: {_verdict(record)} (challenger {record.val_accuracy:.3f} {sign} champion "
            f"{record.champion_val_accuracy:.3f}{of} on the new validation set)")


def _rejected_by_a_person(record: TrainRecord) -> bool:
    """Champion/challenger rejects only a challenger below the champion: any other rejection is a person's."""
    return record.approval == "Rejected" and (record.champion_val_accuracy is None
                                              or record.val_accuracy >= record.champion_val_accuracy)


def _verdict(record: TrainRecord) -> str:
    if record.promoted:
        return "promoted"
    if record.pending:
        return "PENDING APPROVAL, the current model serves until then"
    kept = "" if record.champion_val_accuracy is None else ", kept the champion"
    return f"{'REJECTED' if _rejected_by_a_person(record) else 'NOT promoted'}{kept}"


def _estimated(estimate: EstimatedAccuracy) -> str:
    """``est. 88.1% [74.0, 95.1]``; outside the calibration's domain the mark first, and why."""
    return estimate.summary() if estimate.outside_domain else f"est. {estimate.percent()}"


def serve_line(record: ServeRecord) -> str:
    """One serve run: time, input, images (skipped), drift with statistic vs threshold, the estimated
    accuracy with its interval (when the run made one), the decision.

    A started retrain shows its run id (its reason is the drift on the line; the rule, when another
    than drift fired); any other decision its reason.
    """
    # Significant but below the effect-size floor reads "no (p < threshold)"; the reason says why.
    sign = "<" if record.statistic < record.threshold else ">="
    drift = f"drift: {'YES' if record.is_drift else 'no '} ({record.statistic:.3g} {sign} {record.threshold:.3g})"
    estimated = "" if record.accuracy_estimate is None else f"  {_estimated(record.accuracy_estimate)}"
    rule = "" if record.rule_fired in (None, "drift") else f" ({record.rule_fired})"
    decision = (f"retrain{rule}: {record.retrain_run_id or 'started'}" if record.retrain
                else f"no retrain ({record.retrain_reason})")
    labels = "".join(f"\n      labels back: {joined.summary()}" for joined in record.labels_joined)
    asked = (f"\n      labels asked: {record.label_request_images} images in {record.label_request}"
             if record.label_request else "")
    return (f"  {_when(record.time)}  {_input(record):<{INPUT_WIDTH}}  {record.n_images:>3} images "
            f"({record.n_skipped} skipped)  {drift}{estimated}  -> {decision}{labels}{asked}")


def _input(record: ServeRecord) -> str:
    """The batch's stage, else its key (an ``s3://`` URI without the bucket, which the header names)."""
    if record.stage:
        return record.stage
    return record.input.split("/", 3)[-1] if record.input.startswith("s3://") else record.input


def serve_history(params: ParameterStore, names: ParameterNames, runs: int) -> list[ServeRecord]:
    """The last ``runs`` serve records, oldest first (the versions of ``serve/latest``; the sentinel skipped).

    Only those versions are read as records: a damaged older one does not hide the runs after it.
    """
    if runs <= 0 or params.get_optional(names.serve_latest) is None:
        return []
    shown = [version for version in params.history(names.serve_latest) if not is_no_record(version.value)][-runs:]
    return [parse_record(params, names.serve_latest, version.value, ServeRecord, version.version) for version in shown]


def status_lines(params: ParameterStore, names: ParameterNames, hints: Hints, *,
                 runs: int = DEFAULT_RUNS) -> list[str]:
    """The status as lines for people: current model, last attempt, the last ``runs`` serve runs."""
    current = read_record(params, names.train_latest, TrainRecord)
    attempt = last_train_attempt(params, names)  # train/latest, if a kill left it the newer
    lines: list[str] = []
    if current is None and attempt is None:
        return [f"no train run has finished yet: {hints.train}"]
    lines.append(train_line(current) if current is not None
                 else f"current model: none (no train run was promoted): {hints.train}")
    if attempt is not None:
        lines.append(attempt_line(attempt, current))
        if attempt.pending:
            lines.append("  " + hints.approve.format(run_id=attempt.run_id, package_id=attempt.package_id))
    if runs <= 0:
        return lines
    served = serve_history(params, names, runs)
    if not served:
        return [*lines, f"no serve run has finished yet: {hints.serve}"]
    lines.append(f"last {len(served)} serve run{'s' if len(served) != 1 else ''} (oldest first):")
    lines += [serve_line(record) for record in served]
    return lines


# ----------------------------------------------------------------------------------- the sources
def parameters_file(workdir: Path) -> Path:
    """A work folder's SQLite file (a simulation's is in its ``state/``); StatusError if there is none."""
    workdir = Path(workdir)
    if not (workdir / PARAMETERS_FILE).is_file() and (workdir / SIMULATION_STATE / PARAMETERS_FILE).is_file():
        workdir = workdir / SIMULATION_STATE
    path = workdir / PARAMETERS_FILE
    if not path.is_file():  # SqliteParameterStore would create it: a typo'd folder must not become a workdir
        raise StatusError(f"no driftloop state in {workdir} ({path} does not exist): "
                          f"run `driftloop train --data DIR --workdir {workdir}` first")
    return path


def local_source(workdir: Path) -> Source:
    """A work folder of ``driftloop train``/``serve``, or a simulation's (its ``state/``); StatusError if no state."""
    path = parameters_file(workdir)
    workdir = path.parent
    return Source(
        params=SqliteParameterStore(path, read_only=True), names=ParameterNames(), where=f"work folder {workdir}",
        hints=Hints(train=f"run `driftloop train --data DIR --workdir {workdir}` first",
                    serve=f"run `driftloop serve --input DIR --workdir {workdir}` first",
                    approve=f"approve it: `driftloop approve {{run_id}} --workdir {workdir}`, or reject it: "
                            f"`driftloop reject {{run_id}} --workdir {workdir} --reason TEXT`"),
    )


def local_registry(workdir: Path) -> SqliteModelRegistry:
    """A work folder's model registry, read-only (``driftloop models``)."""
    return SqliteModelRegistry(SqliteParameterStore(parameters_file(workdir), read_only=True))


def model_lines(registry: ModelRegistry, current: TrainRecord | None) -> list[str]:
    """``driftloop models``: every version, oldest first, with its status (and which one serves)."""
    packages = registry.packages()
    if not packages:
        return [f"no model in {registry.describe()} yet: train one first"]
    serving = None if current is None else current.run_id
    return [f"{registry.describe()}:",
            *(f"  {'*' if p.run_id == serving else ' '} {p.summary()}" for p in packages),
            "(* serves)" if serving is not None else "(no model serves yet)"]


def aws_source(stack: str = DEFAULT_STACK, region: str | None = None, *, session: Any = None) -> Source:
    """A deployment: the stack's ``ParameterPrefix`` output (CloudFormation), its records in SSM.

    StatusError, with what to do, for no credentials, no region, no such stack or a stack without
    the output. ``session`` is a boto3 session (default: one from the environment and ``region``).
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        # AWS_REGION as the other SDKs and the CLI v2 read it (botocore reads AWS_DEFAULT_REGION only).
        session = session or boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
        cloudformation = session.client("cloudformation")
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"]
        ssm = session.client("ssm")
    except NoCredentialsError as error:
        raise StatusError("no AWS credentials found (environment, ~/.aws or an instance role): "
                          f"configure them, e.g. `aws configure` or AWS_PROFILE ({error})") from error
    except NoRegionError as error:
        raise StatusError("no AWS region: pass --region R or set AWS_DEFAULT_REGION") from error
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = str(error.response.get("Error", {}).get("Message", error))
        if code == "ValidationError" and "does not exist" in message:
            where = region or session.region_name
            raise StatusError(f"no stack {stack} in {where}: deploy it (npx cdk deploy) or name it with "
                              "--stack NAME (and --region R)") from error
        raise StatusError(f"cannot read stack {stack}: {code}: {message}") from error
    except BotoCoreError as error:
        raise StatusError(f"cannot read stack {stack}: {error}") from error
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described[0].get("Outputs", [])}
    if "ParameterPrefix" not in outputs:
        raise StatusError(f"stack {stack} has no ParameterPrefix output: is it a driftloop stack, "
                          f"deployed to the end (its status: {described[0].get('StackStatus')})?")
    names = ParameterNames(outputs["ParameterPrefix"])
    bucket = f", bucket {outputs['BucketName']}" if "BucketName" in outputs else ""
    return Source(
        params=SsmParameterStore(ssm), names=names,
        where=f"stack {stack} ({session.region_name}): parameters {names.prefix}/…{bucket}",
        hints=Hints(train="start the train pipeline first (the stack's TrainStateMachineArn; README, \"Train\")",
                    serve="wait for an hourly serve run, or start the serve pipeline "
                          "(the stack's ServeStateMachineArn)",
                    approve="approve it: `aws sagemaker update-model-package --model-package-arn {package_id} "
                            "--model-approval-status Approved`, or reject it (--model-approval-status Rejected)"),
    )


def read_status(source: Source, *, runs: int = DEFAULT_RUNS) -> list[str]:
    """Where the records are, then the status lines; AWS errors while reading become StatusError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return [source.where, *status_lines(source.params, source.names, source.hints, runs=runs)]
    except (ClientError, BotoCoreError) as error:
        raise StatusError(f"cannot read the records in {source.params.describe()}: {error}") from error
