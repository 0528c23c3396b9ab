"""Every local extension of moto (5.2.5, pinned exactly) that running the deployed system needs.

moto serves the AWS APIs; running the synthesized stacks end to end needs a few behaviours it
does not have. Each one is added here, and only here, at a named point of moto's code, with a
comment saying what is missing and why it matters. Nothing in ``driftloop/``, ``stacks/`` or
``lambdas/`` knows about any of it.

``emulated_aws()`` applies them all for the life of a ``with`` block and undoes them after:

1. Step Functions executes state machines (a moto config switch, off by default), names the
   executions started without a name, gives ``$$.Execution.StartTime`` as text, selects one
   value with a definite JSONPath, and lets a Fail state rethrow a ``States.*`` error.
2. CloudFormation creates state machines in the backend that executes them.
3. CloudFormation knows ``AWS::Scheduler::Schedule``, ``AWS::SageMaker::ModelPackageGroup`` and the
   CDK's ``Custom::S3AutoDeleteObjects``, runs a custom resource of CDK's Provider framework (its
   Python onEvent function, on create and on delete), deletes a resource only after those that depend
   on it, accepts (without applying) ``AWS::S3::BucketPolicy`` and ``AWS::SNS::TopicPolicy``, and does
   not report a bucket or a model package group it could not delete as deleted.
4. Step Functions' service integrations send and return AWS's parameter casing.
5. Step Functions runs ``sagemaker:createProcessingJob.sync`` / ``createTrainingJob.sync``.
6. SageMaker runs the jobs it is asked to create (``job_runner.LocalJobRunner``).
7. Lambda runs Python functions without Docker (``lambda_bootstrap.py`` in a subprocess), with
   the layers CloudFormation gave them; ``delete_stack`` deletes a template's layer.
8. SageMaker errors reach Step Functions named as AWS names them (``SageMaker.<modeled exception>``
   or the generic ``SageMaker.AmazonSageMakerException``, the error code in the cause).
9. SageMaker's UpdateModelPackage changes only what it is given, and DeleteModelPackage and
   DeleteModelPackageGroup exist, the latter refusing a group that holds packages
   (``model_packages_as_aws_has_them``, also applied alone by the registry's store and handler tests).
10. A model package's approval status reaches EventBridge ("SageMaker Model Package State Change",
   on create and on each status change), and EventBridge invokes Lambda targets (asynchronously,
   on a thread, as AWS does for a rule's target).
"""

from __future__ import annotations

import copy
import datetime
import importlib
import io
import json
import re
import subprocess
import sys
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape
from moto.awslambda import models as lambda_models
from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation.custom_model import CustomModel
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.core.config import default_user_config
from moto.core.responses import EmptyResult
from moto.core.utils import utcnow
from moto.events import models as events_models
from moto.events.models import events_backends
from moto.s3.exceptions import BucketNotEmpty
from moto.s3.models import FakeBucket, s3_backends
from moto.sagemaker.exceptions import ConflictException, ValidationError
from moto.sagemaker.models import SageMakerModelBackend, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.scheduler.models import scheduler_backends
from moto.stepfunctions import models as sfn_models
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils import json_path
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.backend.execution import Execution
from moto.stepfunctions.parser.models import StepFunctionsParserBackend, stepfunctions_parser_backends
from moto.stepfunctions.parser.utils import camel_to_snake_case
from moto.utilities.utils import get_partition

from support.job_runner import ImageCatalog, JobOutcome, LocalJobRunner
from support.moto_server import MotoServer

LAMBDA_BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
DEFAULT_ACCOUNT = "123456789012"  # moto's account for any access key that is not an STS one


@dataclass
class JobRecord:
    """One SageMaker job the emulation ran: its kind, its request and, once done, its outcome."""

    kind: str  # "processing" or "training"
    name: str
    request: dict[str, Any]
    future: Future[JobOutcome] = field(repr=False, default_factory=Future)


@dataclass
class Emulation:
    """Handle on a running emulation: the SageMaker jobs it ran, in the order they were created.

    Jobs run on worker threads, at most ``job_slots`` at a time (each is a process that imports
    TensorFlow; the machine has few cores). ``holding(which)`` keeps the jobs created meanwhile
    for which ``which(job)`` is true InProgress until the block ends: "a slow job", on demand, so
    that a test can make one execution overlap another deterministically.
    """

    server: MotoServer
    workdir: Path
    job_slots: int = 2
    jobs: list[JobRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _gates: list[tuple[Callable[[JobRecord], bool], threading.Event]] = field(default_factory=list, repr=False)
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(thread_name_prefix="job"), repr=False)

    def __post_init__(self) -> None:
        self._slots = threading.Semaphore(self.job_slots)

    @contextmanager
    def holding(self, which: Callable[[JobRecord], bool]) -> Iterator[None]:
        entry = (which, threading.Event())
        with self._lock:
            self._gates.append(entry)
        try:
            yield
        finally:
            with self._lock:
                self._gates.remove(entry)
            entry[1].set()

    def start(self, record: JobRecord, run: Callable[[dict[str, Any]], JobOutcome]) -> Future[JobOutcome]:
        with self._lock:
            self.jobs.append(record)
            gates = [gate for which, gate in self._gates if which(record)]

        def job() -> JobOutcome:
            for gate in gates:
                gate.wait()
            with self._slots:
                return run(record.request)

        return self._pool.submit(job)

    def close(self) -> None:
        with self._lock:
            for _, gate in self._gates:
                gate.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def emulated_aws(server: MotoServer, *, images: ImageCatalog, workdir: Path, job_slots: int = 2) -> Iterator[Emulation]:
    """Apply every extension below to the moto server running in this process."""
    workdir.mkdir(parents=True, exist_ok=True)
    emulation = Emulation(server=server, workdir=workdir, job_slots=job_slots)
    runner = LocalJobRunner(server.client("s3"), images, workdir / "jobs")
    try:
        with pytest.MonkeyPatch.context() as patch:
            _execute_state_machines(patch)
            _executions_without_a_name_get_one(patch)
            _context_start_time_is_text(patch)
            _definite_paths_select_one_value(patch)
            _fail_states_rethrow_any_error(patch)
            _state_machines_from_cloudformation_are_executable(patch)
            _cloudformation_knows_more_types(patch)
            _cloudformation_refuses_to_delete_full_buckets(patch)
            _cloudformation_deletes_dependants_first(patch)
            _service_integrations_use_aws_casing(patch)
            _sagemaker_sync_integration(patch)
            _sagemaker_runs_jobs(patch, emulation, runner)
            _cloudformation_keeps_layers(patch)
            _lambda_runs_python_in_a_subprocess(patch, server, workdir / "lambda")
            model_packages_as_aws_has_them(patch)
            _package_state_changes_reach_lambda_targets(patch, server)
            yield emulation
    finally:
        emulation.close()


# 1. ---------------------------------------------------------------------------------------------
def _execute_state_machines(patch: pytest.MonkeyPatch) -> None:
    """moto only records executions unless this switch is on (``moto.core.config``); with it on,
    ``moto.stepfunctions.responses.get_backend`` serves the parser backend, whose interpreter runs
    the definition and sends each Task to ``localhost:$MOTO_PORT`` (the ``moto_server`` fixture
    sets that port)."""
    patch.setitem(default_user_config["stepfunctions"], "execute_state_machine", True)


def _executions_without_a_name_get_one(patch: pytest.MonkeyPatch) -> None:
    """``StartExecution``'s name is optional and AWS makes up a UUID; the parser backend
    (``StepFunctionsParserBackend.start_execution``) uses ``None``, so the second unnamed
    execution of a state machine fails with ExecutionAlreadyExists (execution "...:None")."""
    start = StepFunctionsParserBackend.start_execution

    def start_execution(
        self: StepFunctionsParserBackend, state_machine_arn: str, name: str | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        return start(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)

    patch.setattr(StepFunctionsParserBackend, "start_execution", start_execution)


def _context_start_time_is_text(patch: pytest.MonkeyPatch) -> None:
    """``$$.Execution.StartTime`` is ISO-8601 text on AWS (``2026-01-01T11:05:00.123Z``); the
    parser backend puts the ``datetime`` of ``Execution.start_date`` there
    (``Execution.get_start_execution_details``), so a state that copies it into its output
    makes the execution's output unserialisable (DescribeExecution answers HTTP 500)."""
    details = Execution.get_start_execution_details

    def with_text_start_time(self: Execution) -> Any:
        result = details(self)
        start = self.start_date.astimezone(datetime.UTC)
        text = start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{start.microsecond // 1000:03d}Z"
        result.start_time = text  # type: ignore[misc]
        return result

    patch.setattr(Execution, "get_start_execution_details", with_text_start_time)


# A JSONPath that can select more than one node: wildcard, deep scan, filter, slice or union.
_INDEFINITE_PATH = re.compile(r"\*|\.\.|\[\?|\[[^\]]*[:,]")
_JSON_PATH_USERS = (
    "moto.stepfunctions.parser.asl.component.intrinsic.argument.argument",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.boolean_equals",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.numeric",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.string_operators",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.timestamp_operators",
    "moto.stepfunctions.parser.asl.eval.states",
)


def _definite_paths_select_one_value(patch: pytest.MonkeyPatch) -> None:
    """A definite path such as ``$.guard.running[0].Name`` selects one value on AWS; moto's
    ``json_path.extract_json`` wraps it in a list whenever a field follows an array index (its
    fix for filter queries, getmoto/moto#7825), so ``States.Format`` prints ``[name]``. Definite
    paths get the single value here; every other path keeps moto's answer. Replaced in each
    module that imported the function by name."""
    extract = json_path.extract_json

    def extract_json(path: str, data: Any) -> Any:
        if not _INDEFINITE_PATH.search(path):
            matches = json_path.parse(path).find(data)
            if len(matches) == 1:
                return matches[0].value
        return extract(path, data)

    for module in _JSON_PATH_USERS:
        patch.setattr(f"{module}.extract_json", extract_json)


class _RethrownErrorName(ErrorName):
    """An error name a Fail state raises at run time, whatever its prefix."""


def _fail_states_rethrow_any_error(patch: pytest.MonkeyPatch) -> None:
    """A Fail state with ``ErrorPath: $.error.Error`` rethrows what a Catch caught, e.g.
    ``States.TaskFailed``: the execution fails with that error on AWS. moto's ``StateFail``
    wraps the name in ``CustomErrorName``, which refuses the ``States.`` prefix (a rule for names
    written in a definition), and the execution ends with an interpreter error instead. Replaced
    in the Fail state's module only, which builds the name at run time."""
    patch.setattr("moto.stepfunctions.parser.asl.component.state.fail.state_fail.CustomErrorName", _RethrownErrorName)


# 2. ---------------------------------------------------------------------------------------------
def _state_machines_from_cloudformation_are_executable(patch: pytest.MonkeyPatch) -> None:
    """``AWS::StepFunctions::StateMachine`` (``moto.stepfunctions.models.StateMachine``'s
    ``*_from_cloudformation_json``) creates, updates and deletes state machines in
    ``stepfunctions_backends``, while the API with execution on (1.) reads
    ``stepfunctions_parser_backends``: a deployed state machine would not exist for
    ``StartExecution``. Those class methods are the module's only readers of the name, so
    pointing it at the parser backends makes CloudFormation and the API share one backend."""
    patch.setattr(sfn_models, "stepfunctions_backends", stepfunctions_parser_backends)


# 3. ---------------------------------------------------------------------------------------------
class _LocalModel:
    """What moto's CloudFormation asks of every resource it holds (``CloudFormationModel``)."""

    physical_resource_id: str

    def is_created(self) -> bool:
        return True

    def get_cfn_attribute(self, attribute_name: str) -> str:
        raise UnformattedGetAttTemplateException()


class _ScheduleResource(_LocalModel):
    """``AWS::Scheduler::Schedule`` for moto's CloudFormation, stored in moto's scheduler backend.

    moto's CloudFormation has no model for the type, so a template with one deploys without it
    (with a warning) and a ``Ref`` to it fails. moto's scheduler backend does hold schedules;
    this model creates and deletes them there. Nothing fires them: moto never runs a schedule.
    """

    def __init__(self, account_id: str, region: str, group_name: str, name: str, arn: str) -> None:
        self.physical_resource_id = name
        self.account_id, self.region = account_id, region
        self.group_name, self.name, self.arn = group_name, name, arn

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "Arn":
            return self.arn
        raise UnformattedGetAttTemplateException()

    def delete(self, account_id: str, region: str) -> None:
        scheduler_backends[account_id][region].delete_schedule(self.group_name, self.name)

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Scheduler::Schedule"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **_: Any
    ) -> _ScheduleResource:
        props = cloudformation_json["Properties"]
        group = props.get("GroupName") or "default"
        schedule = scheduler_backends[account_id][region_name].create_schedule(
            description=props.get("Description"),
            end_date=props.get("EndDate"),
            flexible_time_window=props["FlexibleTimeWindow"],
            group_name=group,
            kms_key_arn=props.get("KmsKeyArn"),
            name=resource_name,
            schedule_expression=props["ScheduleExpression"],
            schedule_expression_timezone=props.get("ScheduleExpressionTimezone"),
            start_date=props.get("StartDate"),
            state=props.get("State"),
            target=props["Target"],
            action_after_completion=None,
        )
        return cls(account_id, region_name, group, schedule.name, schedule.arn)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        group = cloudformation_json.get("Properties", {}).get("GroupName") or "default"
        scheduler_backends[account_id][region_name].delete_schedule(group, resource_name)


class _ModelPackageGroupResource(_LocalModel):
    """``AWS::SageMaker::ModelPackageGroup`` for moto's CloudFormation, stored in moto's SageMaker backend.

    moto's CloudFormation has no model for the type (it deploys the template without it, with a
    warning), so the stack's group would not exist and registering a model in it would fail. moto's
    SageMaker backend does hold groups; this model creates and deletes one there.
    """

    def __init__(self, account_id: str, region: str, name: str) -> None:
        self.physical_resource_id = name
        self.account_id, self.region, self.name = account_id, region, name

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "ModelPackageGroupArn":
            return str(sagemaker_backends[self.account_id][self.region].model_package_groups[self.name].arn)
        raise UnformattedGetAttTemplateException()

    def delete(self, account_id: str, region: str) -> None:
        """Refused while the group holds packages (as on AWS: 9.); moto retries it in a later pass."""
        if self.name in sagemaker_backends[account_id][region].model_package_groups:
            _delete_model_package_group(sagemaker_backends[account_id][region], self.name)

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SageMaker::ModelPackageGroup"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "ModelPackageGroupName"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **_: Any
    ) -> _ModelPackageGroupResource:
        props = cloudformation_json["Properties"]
        sagemaker_backends[account_id][region_name].create_model_package_group(
            model_package_group_name=resource_name,
            model_package_group_description=props.get("ModelPackageGroupDescription", ""),
        )
        return cls(account_id, region_name, resource_name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        cls(account_id, region_name, resource_name).delete(account_id, region_name)


class _AutoDeleteObjectsResource(_LocalModel):
    """``Custom::S3AutoDeleteObjects``, the CDK's ``autoDeleteObjects``: before CloudFormation
    deletes the bucket, every object version in it is deleted.

    On AWS a Node.js Lambda of the CDK does this. moto hands any ``Custom::`` resource to its
    ``CustomModel``, which invokes that Lambda and waits for its answer; Node.js functions do not
    run here (7.), so the stack would never finish. The handler's two effects are done here
    instead: nothing on create, emptying the bucket on delete (so the bucket's own deletion,
    which moto retries, then succeeds).
    """

    def __init__(self, name: str, bucket: str, account_id: str, region: str) -> None:
        self.physical_resource_id = name
        self.bucket, self.account_id, self.region = bucket, account_id, region

    def delete(self, account_id: str, region: str) -> None:
        s3 = boto_client_for(region=region, service="s3")
        try:
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket):
                versions = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
                if versions:
                    objects = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]
                    s3.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        except s3.exceptions.NoSuchBucket:
            return

    @staticmethod
    def cloudformation_type() -> str:
        return "Custom::S3AutoDeleteObjects"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **_: Any
    ) -> _AutoDeleteObjectsResource:
        return cls(resource_name, cloudformation_json["Properties"]["BucketName"], account_id, region_name)


class _ProviderFrameworkResource(_LocalModel):
    """A ``Custom::`` resource whose service token is CDK's Provider framework (``custom_resources.Provider``).

    moto hands any ``Custom::`` resource to its ``CustomModel``, which invokes the service token's function
    on create only (never on delete) and waits for an answer; the framework's function is CDK's Node.js
    code, which does not run here (7.). Its one job is done here instead: CloudFormation's event goes to the
    user's onEvent function (``USER_ON_EVENT_FUNCTION_ARN`` in the framework's environment), on create and
    on delete, synchronously; a function error fails the resource, as the framework fails it on AWS. Any
    other ``Custom::`` resource is left to moto's ``CustomModel``.
    """

    def __init__(self, name: str, properties: dict[str, Any], function: str, region: str, resource_type: str) -> None:
        self.physical_resource_id = name
        self.properties, self.function, self.region, self.resource_type = properties, function, region, resource_type

    def on_event(self, request_type: str) -> dict[str, Any]:
        event = {"RequestType": request_type, "ResourceType": self.resource_type,
                 "LogicalResourceId": self.physical_resource_id, "ResourceProperties": self.properties,
                 **({} if request_type == "Create" else {"PhysicalResourceId": self.physical_resource_id})}
        answer = boto_client_for(region=self.region, service="lambda").invoke(
            FunctionName=self.function, Payload=json.dumps(event))
        payload = json.loads(answer["Payload"].read() or b"{}")
        if answer.get("FunctionError"):
            raise RuntimeError(f"custom resource {self.resource_type}: {request_type} failed: {payload}")
        return payload if isinstance(payload, dict) else {}

    def delete(self, account_id: str, region: str) -> None:
        self.on_event("Delete")

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        properties = cloudformation_json["Properties"]
        framework = lambda_models.lambda_backends[account_id][region_name].get_function(properties["ServiceToken"])
        function = framework.environment_vars.get("USER_ON_EVENT_FUNCTION_ARN")
        if function is None:
            return CustomModel.create_from_cloudformation_json(resource_name, cloudformation_json, account_id,
                                                               region_name, **kwargs)
        resource = cls(resource_name, properties, function, region_name, kwargs["ResourceType"])
        resource.physical_resource_id = resource.on_event("Create").get("PhysicalResourceId") or resource_name
        return resource


class _PolicyResource(_LocalModel):
    """``AWS::S3::BucketPolicy`` and ``AWS::SNS::TopicPolicy``: accepted, and not applied.

    moto's CloudFormation has no model for either (it drops them with a warning). Applying them
    is not an option: moto's S3 evaluates bucket policies, and the stack's TLS-only statements
    (``aws:SecureTransport``) deny every request to an emulator that speaks plain HTTP on
    loopback. So they are kept as resources of the stack and nothing else; what they allow and
    deny is checked on the template (CDK assertions, cdk-nag), not here.
    """

    def __init__(self, name: str) -> None:
        self.physical_resource_id = name

    def delete(self, account_id: str, region: str) -> None:
        """Nothing was applied, so nothing is undone."""

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **_: Any
    ) -> _PolicyResource:
        return cls(resource_name)


class _BucketPolicy(_PolicyResource):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""


class _TopicPolicy(_PolicyResource):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::TopicPolicy"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""


# Resource types moto's CloudFormation lacks (or, for Custom::, cannot run), by type.
_CLOUDFORMATION_MODELS: dict[str, Any] = {
    model.cloudformation_type(): model
    for model in (_ScheduleResource, _ModelPackageGroupResource, _AutoDeleteObjectsResource, _BucketPolicy,
                  _TopicPolicy)
}


def _cloudformation_refuses_to_delete_full_buckets(patch: pytest.MonkeyPatch) -> None:
    """Deleting an ``AWS::S3::Bucket`` that still holds objects fails on AWS (BucketNotEmpty);
    moto's ``FakeBucket.delete_from_cloudformation_json`` leaves it in place without a word and
    the stack ends DELETE_COMPLETE. moto deletes a stack's resources in no particular order and
    retries a failed one in a further pass, so with this a bucket that ``Custom::S3AutoDeleteObjects``
    empties is deleted in a later pass, as on AWS, and one that nothing empties fails the delete."""
    delete = FakeBucket.delete_from_cloudformation_json

    def delete_if_empty(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        bucket = s3_backends[account_id][get_partition(region_name)].buckets.get(resource_name)
        if bucket is not None and bucket.keys:
            raise BucketNotEmpty(resource_name)
        delete(resource_name, cloudformation_json, account_id, region_name)

    patch.setattr(FakeBucket, "delete_from_cloudformation_json", classmethod(delete_if_empty))


def _references(value: Any) -> set[str]:
    """The logical ids a template fragment names: ``Ref``, ``Fn::GetAtt`` and ``${Id}`` in ``Fn::Sub``."""
    if isinstance(value, list):
        return set().union(*map(_references, value)) if value else set()
    if not isinstance(value, dict):
        return set()
    found = set().union(*map(_references, value.values())) if value else set()
    if isinstance(value.get("Ref"), str):
        found.add(value["Ref"])
    if "Fn::GetAtt" in value:
        attribute = value["Fn::GetAtt"]
        found.add(attribute[0] if isinstance(attribute, list) else str(attribute).split(".")[0])
    if "Fn::Sub" in value:
        text = value["Fn::Sub"][0] if isinstance(value["Fn::Sub"], list) else value["Fn::Sub"]
        found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", str(text))}
    return found


def _cloudformation_deletes_dependants_first(patch: pytest.MonkeyPatch) -> None:
    """CloudFormation deletes a resource only once nothing left in the stack depends on it (``DependsOn``,
    ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``); moto's ``ResourceMap.delete`` deletes in no particular order. That
    matters for a custom resource: its function must still be there when its delete runs (a custom resource
    that empties the model package group, before the group's own delete). A resource something still
    depends on is refused here, and moto's next pass deletes it. Retained resources block nothing."""
    delete = cfn_parsing.ResourceMap._delete_resource

    def delete_after_dependants(resource_map: Any, parsed_resource: Any, resource_json: dict[str, Any]) -> None:
        logical_id = parsed_resource.logical_resource_id
        templates = resource_map._resource_json_map
        waiting = [other for other in templates if other != logical_id and other in resource_map._parsed_resources
                   and templates[other].get("DeletionPolicy") != "Retain"
                   and logical_id in (_references(templates[other].get("Properties", {}))
                                      | set(_as_list(templates[other].get("DependsOn", []))))]
        if waiting:
            raise RuntimeError(f"{logical_id} is still needed by {', '.join(sorted(waiting))}")
        delete(resource_map, parsed_resource, resource_json)

    patch.setattr(cfn_parsing.ResourceMap, "_delete_resource", delete_after_dependants)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _cloudformation_knows_more_types(patch: pytest.MonkeyPatch) -> None:
    """Register the models above where moto's CloudFormation looks a resource type up
    (``moto.cloudformation.parsing.resource_class_from_type`` and the name-property lookup)."""
    find_class = cfn_parsing.resource_class_from_type
    find_name_property = cfn_parsing.resource_name_property_from_type
    models = _CLOUDFORMATION_MODELS
    def resource_class(resource_type: str) -> Any:
        if resource_type in models:
            return models[resource_type]
        return _ProviderFrameworkResource if resource_type.startswith("Custom::") else find_class(resource_type)

    patch.setattr(cfn_parsing, "resource_class_from_type", resource_class)
    patch.setattr(
        cfn_parsing,
        "resource_name_property_from_type",
        lambda t: models[t].cloudformation_name_type() or None if t in models else find_name_property(t),
    )


# 4. ---------------------------------------------------------------------------------------------
@cache
def _operation_model(service: str, snake_action: str) -> OperationModel | None:
    model = botocore.session.get_session().get_service_model(service)
    for name in model.operation_names:
        if camel_to_snake_case(name) == snake_action:
            return model.operation_model(name)
    return None


def _to_api_casing(value: Any, shape: Shape | None) -> None:
    """Rename keys, in place, from Step Functions' PascalCase to the API's own member names."""
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        members = {name.lower(): name for name in shape.members}
        for key in list(value):
            member = members.get(key.lower())
            if member is not None:
                value[member] = value.pop(key)
                _to_api_casing(value[member], shape.members[member])
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for item in value:
            _to_api_casing(item, shape.member)
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        for item in value.values():
            _to_api_casing(item, shape.value)


def _to_sfn_casing(value: Any, shape: Shape | None) -> Any:
    """An API response as Step Functions returns it: PascalCase keys, ISO-8601 timestamps.

    Dictionaries are changed in place (the interpreter holds the response object).
    """
    if isinstance(value, datetime.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for key in list(value):
            if key in shape.members:
                item = value.pop(key)
                value[key[:1].upper() + key[1:]] = _to_sfn_casing(item, shape.members[key])
    elif isinstance(shape, ListShape) and isinstance(value, list):
        value[:] = [_to_sfn_casing(item, shape.member) for item in value]
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        for key, item in value.items():
            value[key] = _to_sfn_casing(item, shape.value)
    return value


def _normalise_parameters(
    self: StateTaskService,
    parameters: dict,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    operation = _operation_model(
        self._get_boto_service_name(boto_service_name), self._get_boto_service_action(service_action_name)
    )
    if operation is not None:
        _to_api_casing(parameters, operation.input_shape)


def _normalise_response(
    self: StateTaskService, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
) -> None:
    operation = _operation_model(
        self._get_boto_service_name(boto_service_name), self._get_boto_service_action(service_action_name)
    )
    if operation is not None:
        _to_sfn_casing(response, operation.output_shape)


def _service_integrations_use_aws_casing(patch: pytest.MonkeyPatch) -> None:
    """moto's copy of LocalStack's interpreter stubs ``StateTaskService._normalise_parameters``
    and ``_normalise_response`` (both ``pass``): a Task's PascalCase parameters reach boto3
    unchanged (``aws-sdk:sfn:listExecutions`` and ``states:startExecution`` lose their
    ``StateMachineArn``: boto3's member is ``stateMachineArn`` and unknown keys are dropped), and
    camelCase responses come back as they are (AWS returns ``$.Executions``, not
    ``$.executions``). These two implement what the stubs stand for, from botocore's model."""
    patch.setattr(StateTaskService, "_normalise_parameters", _normalise_parameters)
    patch.setattr(StateTaskService, "_normalise_response", _normalise_response)


# 5. ---------------------------------------------------------------------------------------------
# The .sync integrations: which Describe call to poll, the job's name field and its status field.
# The errors SageMaker's API model names (botocore's service model: ResourceLimitExceeded, ...).
# Step Functions reports each by its SDK exception class (SageMaker.ResourceLimitExceededException),
# and every other error (throttling, validation, access) by the generic AmazonSageMakerException.
_SAGEMAKER_MODELED_ERRORS = frozenset(
    shape.name for shape in botocore.session.get_session().get_service_model("sagemaker").error_shapes
)
_SAGEMAKER_SYNC: dict[str, tuple[str, str, str]] = {
    "createProcessingJob": ("describe_processing_job", "ProcessingJobName", "ProcessingJobStatus"),
    "createTrainingJob": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
}


class _SageMakerTask(StateTaskServiceCallback):
    """``arn:aws:states:::sagemaker:<action>[.sync]`` as Step Functions runs it.

    moto lists ``sagemaker`` among its unsupported optimised integrations: the request is only
    forwarded, and ``.sync`` fails ("Unsupported .sync callback procedure"). Here the request
    is forwarded as-is (SageMaker's API is PascalCase already) and ``.sync`` polls Describe until
    the job ends, like the Glue integration: Completed returns the description, Failed or
    Stopped fails the Task with ``States.TaskFailed`` and the description as its cause.
    """

    def __init__(self) -> None:
        # WaitForTaskToken is listed only because moto's callback base class expects a task
        # token endpoint to exist whenever it evaluates an integration pattern.
        patterns: set[Any] = {ResourceCondition.Sync, ResourceCondition.WaitForTaskToken}
        super().__init__(supported_integration_patterns=patterns)

    def _validate_service_integration_is_supported(self) -> None:
        if self.resource.condition == ResourceCondition.Sync and self.resource.api_action not in _SAGEMAKER_SYNC:
            raise ValueError(f"{self.resource.resource_arn}: .sync is emulated for {sorted(_SAGEMAKER_SYNC)} only")

    def _normalise_response(self, response: Any, *_: Any, **__: Any) -> None:
        """SageMaker's responses are PascalCase already and are returned as they are."""

    def _from_error(self, env: Any, ex: Exception) -> FailureEvent:
        """Errors named as Step Functions names them: ``SageMaker.<exception>`` for the exceptions
        SageMaker's SDK models, the generic ``SageMaker.AmazonSageMakerException`` for the rest
        (throttling, validation, access), with the error code in the cause, as the Java SDK formats it."""
        if isinstance(ex, ClientError):
            code = str(ex.response["Error"].get("Code", ""))
            exception = f"{code.removesuffix('Exception')}Exception"
            error = f"SageMaker.{exception if code in _SAGEMAKER_MODELED_ERRORS else 'AmazonSageMakerException'}"
            status = ex.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
            request = ex.response.get("ResponseMetadata", {}).get("RequestId", "")
            cause = (f"{ex.response['Error'].get('Message', '')} (Service: AmazonSageMaker; Status Code: {status}; "
                     f"Error Code: {code}; Request ID: {request}; Proxy: null)")
            return FailureEvent(
                env=env,
                error_name=CustomErrorName(error),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(  # type: ignore[typeddict-item]
                    taskFailedEventDetails=TaskFailedEventDetails(  # type: ignore[typeddict-item]
                        error=error,
                        cause=cause,
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                    )
                ),
            )
        return super()._from_error(env=env, ex=ex)

    def _client(self, runtime: Any, credentials: Any) -> Any:
        return boto_client_for(region=runtime.region, service="sagemaker", state_credentials=credentials)

    def _eval_service_task(
        self, env: Any, resource_runtime_part: Any, normalised_parameters: dict, state_credentials: Any
    ) -> None:
        action = self._get_boto_service_action()
        response = getattr(self._client(resource_runtime_part, state_credentials), action)(**normalised_parameters)
        response.pop("ResponseMetadata", None)
        env.stack.append(response)

    def _build_sync_resolver(
        self, env: Any, resource_runtime_part: Any, normalised_parameters: dict, state_credentials: Any
    ) -> Callable[[], Any]:
        env.stack.pop()  # the Create response; the Task's output is the final description
        describe, name_field, status_field = _SAGEMAKER_SYNC[self.resource.api_action]
        client = self._client(resource_runtime_part, state_credentials)
        name = normalised_parameters[name_field]

        def resolve() -> Any:
            job = _epoch_millis(getattr(client, describe)(**{name_field: name}))
            job.pop("ResponseMetadata", None)
            if job[status_field] in ("InProgress", "Stopping"):
                return None
            if job[status_field] == "Completed":
                return job
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(  # type: ignore[typeddict-item]
                        taskFailedEventDetails=TaskFailedEventDetails(  # type: ignore[typeddict-item]
                            resource=self._get_sfn_resource(),
                            resourceType=self._get_sfn_resource_type(),
                            error=StatesErrorNameType.StatesTaskFailed.to_name(),
                            cause=to_json_str(job),
                        )
                    ),
                )
            )

        return resolve


def _epoch_millis(value: Any) -> Any:
    """SageMaker's integrations return timestamps as epoch milliseconds (boto3 parses them)."""
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {key: _epoch_millis(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_epoch_millis(item) for item in value]
    return value


def _sagemaker_sync_integration(patch: pytest.MonkeyPatch) -> None:
    """Serve ``sagemaker`` Tasks with ``_SageMakerTask`` at the point where the interpreter picks
    a service's Task class (``state_task_factory.state_task_service_for``)."""
    pick = state_task_factory.state_task_service_for
    patch.setattr(
        state_task_factory,
        "state_task_service_for",
        lambda service_name: _SageMakerTask() if service_name == "sagemaker" else pick(service_name),
    )


# 6. ---------------------------------------------------------------------------------------------
def _sagemaker_runs_jobs(patch: pytest.MonkeyPatch, emulation: Emulation, runner: LocalJobRunner) -> None:
    """moto's ``CreateProcessingJob``/``CreateTrainingJob`` store a job that is Completed at once
    and never runs (and drop ``Environment``). Wrapped at the API handlers
    (``SageMakerResponse.create_*_job``), where the whole request is at hand: the stored job
    becomes InProgress, ``LocalJobRunner`` runs it on a worker thread, and its status, failure
    reason and end time are then set on moto's job object, so Describe (and ``.sync``) see the
    job end as SageMaker's would."""

    def wrap(kind: str, create: Callable[[SageMakerResponse], Any]) -> Callable[[SageMakerResponse], Any]:
        def create_and_run(response: SageMakerResponse) -> Any:
            result = create(response)
            request = json.loads(response.body)
            backend = sagemaker_backends[response.current_account][response.region]
            job: Any
            if kind == "processing":
                name = request["ProcessingJobName"]
                job = backend.processing_jobs[name]
                job.processing_job_status, job.processing_end_time = "InProgress", None
                run = runner.run_processing_job
            else:
                name = request["TrainingJobName"]
                job = backend.training_jobs[name]
                job.training_job_status, job.secondary_status, job.training_end_time = "InProgress", "Training", None
                run = runner.run_training_job
            job.environment = request.get("Environment", {})
            record = JobRecord(kind=kind, name=name, request=request)
            future = emulation.start(record, run)
            future.add_done_callback(lambda done: _finish_job(kind, job, record, done))
            return result

        return create_and_run

    for kind in ("processing", "training"):
        name = f"create_{kind}_job"
        patch.setattr(SageMakerResponse, name, wrap(kind, getattr(SageMakerResponse, name)))


def _finish_job(kind: str, job: Any, record: JobRecord, done: Future[JobOutcome]) -> None:
    try:
        outcome = done.result()
    except BaseException as error:  # a bug of the emulation itself fails the job, visibly
        outcome = JobOutcome("Failed", f"InternalServerError: job runner crashed: {error!r}")
    now = utcnow()
    job.failure_reason = outcome.failure_reason or None
    job.last_modified_time = now
    if kind == "processing":
        job.processing_end_time = now
        job.processing_job_status = outcome.status
    else:
        job.training_end_time = now
        job.secondary_status = outcome.status
        job.training_job_status = outcome.status
    record.future.set_result(outcome)


# 7. ---------------------------------------------------------------------------------------------
def _cloudformation_keeps_layers(patch: pytest.MonkeyPatch) -> None:
    """``AWS::Lambda::Function`` (``LambdaFunction.create_from_cloudformation_json``) passes only
    a few properties on to ``create_function`` and drops ``Layers``: a function that imports a
    layer's package (Powertools) would fail on import. The created function gets its layers. A
    ``Ref`` to a layer of the same template reaches it as moto's ``LayerVersion`` object, whose ARN
    is what CloudFormation's ``Ref`` gives."""
    create = lambda_models.LambdaFunction.create_from_cloudformation_json

    def create_with_layers(
        cls: Any,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        function = create(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        layers = [getattr(layer, "arn", layer) for layer in cloudformation_json["Properties"].get("Layers", [])]
        if layers:
            function.layers = function._get_layers_data(layers)
        return function

    patch.setattr(lambda_models.LambdaFunction, "create_from_cloudformation_json", classmethod(create_with_layers))

    def delete_layer_version(self: Any, account_id: str, region: str) -> None:
        """``AWS::Lambda::LayerVersion`` has no delete in moto: ``delete_stack`` would leave it behind."""
        lambda_models.lambda_backends[account_id][region].delete_layer_version(self.name, str(self.version))

    patch.setattr(lambda_models.LayerVersion, "delete", delete_layer_version, raising=False)


# What the Lambda Python runtime provides besides the standard library: boto3 and its dependencies.
LAMBDA_RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


def _runtime_packages(folder: Path) -> Path:
    """A folder holding (links to) this venv's copies of the runtime-provided packages only, so a
    function that imports anything else must bring it in its bundle or a layer, as on AWS."""
    folder.mkdir(parents=True, exist_ok=True)
    for package in LAMBDA_RUNTIME_PACKAGES:
        origin = Path(importlib.import_module(package).__file__ or "")
        source = origin.parent if origin.name == "__init__.py" else origin
        link = folder / source.name
        if not link.exists():
            link.symlink_to(source)
    return folder


def _lambda_runs_python_in_a_subprocess(patch: pytest.MonkeyPatch, server: MotoServer, workdir: Path) -> None:
    """moto invokes a function by running it in a Docker container
    (``LambdaFunction._invoke_lambda``); there is no Docker engine here. Replaced at that point
    for Python runtimes: the deployed code and its layers are unpacked into folders, and the
    handler runs under ``lambda_bootstrap.py`` with this machine's Python, without site-packages
    (``-S``): the import path is the code, the layers' ``python/`` and the runtime's boto3, as in
    Lambda. It gets the function's environment variables and timeout and boto3 pointed at the
    moto server. Errors come back as the Lambda runtime reports them (``FunctionError`` and
    ``errorType``/``errorMessage``), so a Task's Retry/Catch sees what it would see on AWS.
    The function's log goes to ``<workdir>/<function>.log``: moto ignores a function's
    ``LoggingConfig``, so its own log group (``/aws/lambda/<name>``) would outlive the stack."""
    runtime = _runtime_packages(workdir / "runtime")

    def invoke(function: Any, event: Any = None) -> tuple[str, bool, str]:
        log = workdir / f"{function.function_name}.log"
        if not str(function.run_time).startswith("python"):
            message = f"runtime {function.run_time} is not emulated (only Python functions run here)"
            return json.dumps({"errorMessage": message, "errorType": "Runtime.NotEmulated"}), True, message
        with tempfile.TemporaryDirectory(prefix=f"{function.function_name}-", dir=workdir) as tmp:
            task, opt = Path(tmp) / "task", Path(tmp) / "opt"
            zipfile.ZipFile(io.BytesIO(function.code_bytes)).extractall(task)
            backend = lambda_models.lambda_backends[function.account_id][function.region]
            for layer in function.layers:
                code = backend.layers_versions_by_arn(layer["Arn"]).code_bytes  # type: ignore[union-attr]
                zipfile.ZipFile(io.BytesIO(code)).extractall(opt)
            env = {
                "PATH": "/usr/bin:/bin",
                "LANG": "C.UTF-8",
                "PYTHONPATH": f"{opt / 'python'}:{runtime}",
                "_HANDLER": function.handler,
                "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout),
                "AWS_LAMBDA_FUNCTION_VERSION": str(function.version),
                "DRIFTLOOP_EMULATED_FUNCTION_ARN": function.function_arn,
                **server.environment(),
                **function.environment_vars,
            }
            payload = event if isinstance(event, str) else json.dumps(event)
            try:
                done = subprocess.run(
                    [sys.executable, "-S", str(LAMBDA_BOOTSTRAP), function.handler],
                    input=payload,
                    cwd=task,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=float(function.timeout),
                    check=False,
                )
            except subprocess.TimeoutExpired:
                message = f"Task timed out after {float(function.timeout):.2f} seconds"
                return json.dumps({"errorMessage": message, "errorType": "Sandbox.Timedout"}), True, message
        with log.open("a") as out:
            out.write(done.stderr)
        lines = done.stdout.strip().splitlines()
        if not lines:
            crash = {"errorMessage": done.stderr[-1000:], "errorType": "Runtime.ExitError"}
            return json.dumps(crash), True, done.stderr
        outcome = json.loads(lines[-1])
        if "error" in outcome:
            return json.dumps(outcome["error"]), True, done.stderr
        return json.dumps(outcome["result"]), False, done.stderr

    patch.setattr(lambda_models.LambdaFunction, "_invoke_lambda", invoke)


# 9. ---------------------------------------------------------------------------------------------
def model_packages_as_aws_has_them(patch: pytest.MonkeyPatch) -> None:
    """``UpdateModelPackage`` leaves what it is not given as it was; moto's
    (``SageMakerModelBackend.update_model_package``) sets an omitted ``CustomerMetadataProperties`` to
    None, so approving a package would erase the model's metrics and lineage that driftloop keeps there."""
    update = SageMakerModelBackend.update_model_package

    def update_model_package(self: SageMakerModelBackend, model_package_arn: str, *args: Any, **kwargs: Any) -> str:
        package = self.describe_model_package(model_package_arn)
        kept = package.customer_metadata_properties
        arn = update(self, model_package_arn, *args, **kwargs)
        if package.customer_metadata_properties is None:
            package.customer_metadata_properties = kept
        return str(arn)

    patch.setattr(SageMakerModelBackend, "update_model_package", update_model_package)
    _model_packages_can_be_deleted(patch)


def _model_packages_can_be_deleted(patch: pytest.MonkeyPatch) -> None:
    """moto's SageMaker has neither DeleteModelPackage nor DeleteModelPackageGroup (its responses raise
    NotImplementedError). Added as AWS has them: a package is deleted by ARN or name; a group is deleted
    only once it holds no package (ConflictException otherwise), which is why the stack's teardown empties
    it first (``empty_package_group``)."""

    def delete_model_package(self: SageMakerModelBackend, model_package_name: str) -> None:
        arn = self.describe_model_package(model_package_name).arn
        self.model_packages.pop(arn)
        for name in [n for n, mapped in self.model_package_name_mapping.items() if mapped == arn]:
            del self.model_package_name_mapping[name]

    def respond_delete_model_package(response: SageMakerResponse) -> Any:
        delete_model_package(response.sagemaker_backend, response._get_param("ModelPackageName"))
        return EmptyResult()

    def respond_delete_model_package_group(response: SageMakerResponse) -> Any:
        _delete_model_package_group(response.sagemaker_backend, response._get_param("ModelPackageGroupName"))
        return EmptyResult()

    patch.setattr(SageMakerResponse, "delete_model_package", respond_delete_model_package, raising=False)
    patch.setattr(SageMakerResponse, "delete_model_package_group", respond_delete_model_package_group,
                  raising=False)


def _delete_model_package_group(backend: SageMakerModelBackend, name: str) -> None:
    """DeleteModelPackageGroup as AWS does it: refused while the group holds a package."""
    name = name.rsplit("/", 1)[-1]
    if name not in backend.model_package_groups:
        raise ValidationError(f"Model Package Group {name} does not exist.")
    held = [p.arn for p in backend.model_packages.values() if p.model_package_group_name == name]
    if held:
        raise ConflictException(f"Model Package Group {name} holds {len(held)} model packages: delete them first")
    del backend.model_package_groups[name]


# 10. --------------------------------------------------------------------------------------------
PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"


def _package_state_changes_reach_lambda_targets(patch: pytest.MonkeyPatch, server: MotoServer) -> None:
    """SageMaker sends EventBridge a "SageMaker Model Package State Change" event when a package is
    created or its approval status changes; moto's SageMaker sends none. And moto's EventBridge
    (``Rule.send_to_targets``) delivers to logs, archives, SQS, buses and API destinations only, not
    to a Lambda function. With both, approving a package in the registry runs the stack's promote
    Lambda, as on AWS: the event goes to the default bus, each matching rule invokes its Lambda
    targets on a thread (an asynchronous invocation: the API call that changed the status returns first).
    """
    create, update = SageMakerModelBackend.create_model_package, SageMakerModelBackend.update_model_package

    def tell(backend: SageMakerModelBackend, arn: str) -> None:
        package = backend.describe_model_package(arn)
        detail = {"ModelPackageGroupName": package.model_package_group_name, "ModelPackageArn": arn,
                  "ModelPackageVersion": package.model_package_version,
                  "ModelApprovalStatus": package.model_approval_status}
        events_backends[backend.account_id][backend.region_name].put_events([{
            "Source": "aws.sagemaker", "DetailType": PACKAGE_STATE_CHANGE, "Detail": json.dumps(detail),
            "EventBusName": "default"}])

    def create_model_package(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> str:
        arn = str(create(self, *args, **kwargs))
        tell(self, arn)
        return arn

    def update_model_package(self: SageMakerModelBackend, model_package_arn: str, *args: Any, **kwargs: Any) -> str:
        before = self.describe_model_package(model_package_arn).model_approval_status
        arn = str(update(self, model_package_arn, *args, **kwargs))
        if self.describe_model_package(arn).model_approval_status != before:
            tell(self, arn)
        return arn

    send = events_models.Rule.send_to_targets

    def send_to_targets(rule: Any, original_event: Any, transform_input: bool = True) -> None:
        functions = [t for t in rule.targets if t["Arn"].split(":")[2] == "lambda"]
        others = copy.copy(rule)  # moto raises NotImplementedError for a target type it does not know
        others.targets = [t for t in rule.targets if t not in functions]
        send(others, original_event, transform_input)
        if not functions or not rule.event_pattern.matches_event(original_event):
            return
        payload = json.dumps(original_event, default=str)
        for target in functions:
            threading.Thread(target=server.client("lambda").invoke, daemon=True,
                             kwargs={"FunctionName": target["Arn"], "Payload": payload}).start()

    patch.setattr(SageMakerModelBackend, "create_model_package", create_model_package)
    patch.setattr(SageMakerModelBackend, "update_model_package", update_model_package)
    patch.setattr(events_models.Rule, "send_to_targets", send_to_targets)
