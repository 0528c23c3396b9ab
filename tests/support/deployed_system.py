"""The deployed stacks as a test sees them: start executions, wait for them, read what they left.

Everything goes through the AWS APIs of the moto server (S3, SSM, Step Functions, SQS), as an
operator's scripts would; nothing reads moto's internals.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacks.jobs import UUID_LENGTH, stack_token
from support.aws_emulation import Emulation, JobRecord
from support.cdk_deploy import CloudAssembly
from support.moto_server import MotoServer

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
POLL_S = 0.25


class NotYet(AssertionError):
    """A condition was still false at its deadline."""


def wait_until(condition: Any, *, timeout: float, what: str) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise NotYet(f"not within {timeout:.0f} s: {what}")
        time.sleep(POLL_S)


@dataclass
class DeployedSystem:
    server: MotoServer
    emulation: Emulation
    assembly: CloudAssembly
    stack_name: str
    bucket: str
    train_machine: str  # state machine ARNs
    serve_machine: str
    topic: str
    parameter_prefix: str
    package_group: str  # the stack's model package group (SageMaker Model Registry)
    destroyed: bool = False
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = self.server.client(service)
        return self.clients[service]

    # ---------------------------------------------------------------- data
    def upload_folder(self, folder: Path, prefix: str) -> int:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        for path in files:
            self.client("s3").upload_file(str(path), self.bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")
        return len(files)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def keys(self, uri: str) -> list[str]:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def parameter(self, suffix: str) -> dict[str, Any]:
        value = self.client("ssm").get_parameter(Name=f"{self.parameter_prefix}/{suffix}")["Parameter"]["Value"]
        return dict(json.loads(value))

    def jobs(self) -> list[tuple[str, JobRecord]]:
        """The SageMaker jobs this stack started (the emulation runs every stack's), each with its name
        between the stack's token and the uuid: ``serve-run``, ``serve-predict``, ..."""
        token = f"{stack_token(self.stack_name)}-"
        return [(job.name[len(token):-UUID_LENGTH - 1], job) for job in self.emulation.jobs
                if job.name.startswith(token)]

    # ---------------------------------------------------------- executions
    def start(self, machine: str, name: str, payload: dict[str, Any]) -> str:
        return str(
            self.client("stepfunctions").start_execution(stateMachineArn=machine, name=name, input=json.dumps(payload))[
                "executionArn"
            ]
        )

    def describe(self, execution: str) -> dict[str, Any]:
        return dict(self.client("stepfunctions").describe_execution(executionArn=execution))

    def wait(self, execution: str, timeout: float = 600) -> dict[str, Any]:
        return dict(
            wait_until(
                lambda: (d := self.describe(execution))["status"] in TERMINAL and d,
                timeout=timeout,
                what=f"execution {execution} ends",
            )
        )

    def executions(self, machine: str) -> list[dict[str, Any]]:
        pages = self.client("stepfunctions").get_paginator("list_executions").paginate(stateMachineArn=machine)
        return [e for page in pages for e in page["executions"]]

    def history(self, execution: str) -> list[dict[str, Any]]:
        pages = self.client("stepfunctions").get_paginator("get_execution_history").paginate(executionArn=execution)
        return [e for page in pages for e in page["events"]]
