"""The shared moto fixture keeps the promises other suites rely on."""

from __future__ import annotations

import os

import pytest
from support.moto_server import MotoServer


@pytest.mark.emulator
def test_server_port_is_exported_and_reset_empties_every_backend(moto_reset: MotoServer) -> None:
    # moto's Step Functions interpreter calls localhost:$MOTO_PORT: it must be this server.
    assert os.environ["MOTO_PORT"] == str(moto_reset.port)
    assert moto_reset.endpoint_url == f"http://127.0.0.1:{moto_reset.port}"
    ssm, s3 = moto_reset.client("ssm"), moto_reset.client("s3")
    ssm.put_parameter(Name="/x", Value="v", Type="String")
    s3.create_bucket(Bucket="reset-me")
    moto_reset.reset()
    assert ssm.describe_parameters()["Parameters"] == []
    assert s3.list_buckets()["Buckets"] == []


@pytest.mark.emulator
def test_env_is_scoped_to_one_test(moto_env: MotoServer) -> None:
    assert os.environ["AWS_ENDPOINT_URL"] == moto_env.endpoint_url
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"


def test_env_does_not_leak_into_the_next_test() -> None:
    assert "AWS_ENDPOINT_URL" not in os.environ
