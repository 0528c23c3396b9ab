"""pytest fixtures for tests that talk to AWS through a real moto server on loopback.

Import the fixtures into a suite's conftest.py::

    from support.moto_server import moto_env, moto_reset, moto_server  # noqa: F401

``moto_server`` (session): one ThreadedMotoServer on 127.0.0.1, on a port the OS picked. It sets
``MOTO_PORT`` for the session (moto's Step Functions interpreter sends tasks to
``localhost:$MOTO_PORT``) and restores it at the end. Its ``client(service)`` carries the dummy
credentials and the endpoint itself, so nothing else in the environment changes.
``moto_reset`` (function): empties every moto backend before the test, so tests are independent.
``moto_env`` (function): the AWS_* variables for code that builds its own default clients
(``boto3.client("s3")``), set for one test and restored after it.
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pytest

REGION = "us-east-1"
DUMMY_CREDENTIALS = "testing"


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str
    port: int
    region: str = REGION

    def environment(self) -> dict[str, str]:
        """Variables that point default boto3 clients (in this or a child process) at the server."""
        return {
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS,
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS,
            "AWS_SESSION_TOKEN": DUMMY_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "MOTO_PORT": str(self.port),
        }

    @cached_property
    def _session(self) -> Any:
        """One session for every client: a fresh one reloads botocore's service models (~0.1 s each)."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id=DUMMY_CREDENTIALS,
            aws_secret_access_key=DUMMY_CREDENTIALS,
            aws_session_token=DUMMY_CREDENTIALS,
            region_name=self.region,
        )

    def client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self.endpoint_url)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 200:
                raise RuntimeError(f"moto reset failed: HTTP {response.status}")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    from moto.server import ThreadedMotoServer

    # Port 0: the server socket itself gets a free port, so no other process can take it in between.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    werkzeug_log = logging.getLogger("werkzeug")
    log_level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)  # one INFO line per request drowns failure output
    with pytest.MonkeyPatch.context() as patch:
        try:
            host, port = server.get_host_and_port()
            patch.setenv("MOTO_PORT", str(port))
            yield MotoServer(endpoint_url=f"http://{host}:{port}", port=port)
        finally:
            server.stop()
            werkzeug_log.setLevel(log_level)


@pytest.fixture
def moto_reset(moto_server: MotoServer) -> MotoServer:
    moto_server.reset()
    return moto_server


@pytest.fixture
def moto_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    # No profile or config file of the machine's user can redirect or re-credential the clients.
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(name, os.devnull)
    for name, value in moto_server.environment().items():
        monkeypatch.setenv(name, value)
    return moto_server
