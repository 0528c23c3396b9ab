"""Parameter store behaviour, identical for SQLite and SSM (moto server over HTTP)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC
from pathlib import Path

import pytest
from botocore.stub import Stubber
from support.moto_server import MotoServer

from driftloop.layout import ParameterNames
from driftloop.stores.params import (
    STANDARD_TIER_MAX_BYTES,
    ParameterNotFound,
    ParameterStore,
    ParameterTooLarge,
    SqliteParameterStore,
    SsmParameterStore,
)

NAMES = ParameterNames("/driftloop-test")


def test_put_get_keeps_every_version_oldest_first(params: ParameterStore) -> None:
    for value in ("first", "second", "third"):
        params.put(NAMES.train_latest, value)
    params.put(NAMES.serve_latest, "other")

    assert params.get(NAMES.train_latest) == "third"
    history = params.history(NAMES.train_latest)
    assert [(v.version, v.value) for v in history] == [(1, "first"), (2, "second"), (3, "third")]
    assert all(v.modified.utcoffset() == UTC.utcoffset(None) for v in history)
    assert [v.modified for v in history] == sorted(v.modified for v in history)
    assert [v.value for v in params.history(NAMES.serve_latest)] == ["other"]


def test_history_reads_every_page(params: ParameterStore) -> None:
    # SSM returns history 50 versions a page: 55 needs the paginator.
    for i in range(55):
        params.put(NAMES.simulation_position, str(i))
    history = params.history(NAMES.simulation_position)
    assert [v.version for v in history] == list(range(1, 56))
    assert [v.value for v in history] == [str(i) for i in range(55)]


def test_missing_parameter_says_what_to_run(params: ParameterStore) -> None:
    assert params.get_optional(NAMES.train_latest) is None
    with pytest.raises(ParameterNotFound, match="/driftloop-test/train/latest.*run the train pipeline first"):
        params.get(NAMES.train_latest)
    with pytest.raises(LookupError, match="run the serve pipeline first"):
        params.get_json(NAMES.serve_latest)
    with pytest.raises(ParameterNotFound, match="/driftloop-test/train/latest"):
        params.history(NAMES.train_latest)


def test_json_helpers_round_trip(params: ParameterStore) -> None:
    record = {"run_id": "r1", "accuracy": 0.875, "promoted": True, "stage": None, "uris": ["s3://b/k"]}
    params.put_json(NAMES.train_last_attempt, record)
    assert params.get_json(NAMES.train_last_attempt) == record
    params.put(NAMES.train_last_attempt, "not json")
    with pytest.raises(ValueError, match="not JSON"):
        params.get_json(NAMES.train_last_attempt)


@pytest.mark.parametrize("name", ["driftloop/x", "/driftloop/", "/a//b", "/a b", "", "/ü"])
def test_rejects_names_ssm_would_reject(params: ParameterStore, name: str) -> None:
    with pytest.raises(ValueError, match="parameter name"):
        params.put(name, "v")
    with pytest.raises(ValueError, match="parameter name"):
        params.get_optional(name)


def test_a_value_over_the_standard_tier_is_refused_and_nothing_is_written(params: ParameterStore) -> None:
    """On both backends: 4,096 bytes is the free tier's most; one byte more is an error that says so."""
    params.put(NAMES.serve_latest, "x" * STANDARD_TIER_MAX_BYTES)
    assert params.get(NAMES.serve_latest) == "x" * STANDARD_TIER_MAX_BYTES
    for value in ("x" * (STANDARD_TIER_MAX_BYTES + 1), "é" * (STANDARD_TIER_MAX_BYTES // 2 + 1)):
        with pytest.raises(ParameterTooLarge, match=f"{NAMES.serve_latest} would be .* bytes; .*Standard tier"):
            params.put(NAMES.serve_latest, value)
    with pytest.raises(ValueError, match="empty value"):
        params.put(NAMES.serve_latest, "")
    assert len(params.history(NAMES.serve_latest)) == 1


@pytest.mark.emulator
def test_ssm_parameters_are_standard_tier_strings(moto_reset: MotoServer) -> None:
    client = moto_reset.client("ssm")
    store = SsmParameterStore(client)
    store.put("/t/largest", "x" * STANDARD_TIER_MAX_BYTES)
    with pytest.raises(ParameterTooLarge):
        store.put("/t/large", "x" * (STANDARD_TIER_MAX_BYTES + 1))
    described = client.describe_parameters()["Parameters"]
    assert [(p["Name"], p["Tier"], p["Type"]) for p in described] == [("/t/largest", "Standard", "String")]


def test_ssm_keeps_an_advanced_parameter_advanced() -> None:
    # moto does not model AWS's refusal to downgrade a tier; a stubbed client replays it.
    import boto3

    client = boto3.client("ssm", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    put = {"Name": "/t/p", "Value": "small", "Type": "String", "Overwrite": True}
    with Stubber(client) as stub:
        stub.add_client_error(
            "put_parameter",
            service_error_code="ValidationException",
            service_message="You can't downgrade a parameter from the advanced-parameter tier to the standard-parameter"
            " tier.",
            expected_params={**put, "Tier": "Standard"},
        )
        stub.add_response("put_parameter", {"Version": 2, "Tier": "Advanced"}, {**put, "Tier": "Advanced"})
        SsmParameterStore(client).put("/t/p", "small")
        stub.assert_no_pending_responses()


@pytest.mark.emulator
def test_ssm_default_client_uses_the_environment(moto_env: MotoServer) -> None:
    moto_env.reset()
    SsmParameterStore().put("/t/env", "v")
    assert moto_env.client("ssm").get_parameter(Name="/t/env")["Parameter"]["Value"] == "v"


def test_sqlite_file_is_shared_by_two_stores(tmp_path: Path) -> None:
    path = tmp_path / "parameters.sqlite"
    first, second = SqliteParameterStore(path), SqliteParameterStore(path)
    first.put("/p", "a")
    assert second.get("/p") == "a"
    second.put("/p", "b")
    first.put("/p", "c")
    assert [(v.version, v.value) for v in second.history("/p")] == [(1, "a"), (2, "b"), (3, "c")]
    assert first.history("/p") == second.history("/p")


def test_sqlite_versions_stay_unique_under_concurrent_processes(tmp_path: Path) -> None:
    path, puts = tmp_path / "parameters.sqlite", 40
    # Each writer imports, then blocks on stdin: closing it starts both at once, so their puts interleave.
    # Its clock is slow: the time read between "last version?" and the insert widens the window a
    # missing lock would leave open, so a broken put fails this test every run, not once in a while.
    writer = (
        "import sys, time, datetime as dt; import driftloop.stores.params as params\n"
        "class SlowClock(dt.datetime):\n"
        "    @classmethod\n"
        "    def now(cls, tz=None): time.sleep(0.002); return dt.datetime.now(tz)\n"
        "params.datetime = SlowClock; s = params.SqliteParameterStore(sys.argv[1]); sys.stdin.read()\n"
        f"for i in range({puts}): s.put('/p', sys.argv[2] + str(i))\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", writer, str(path), tag], stdin=subprocess.PIPE) for tag in "ab"
    ]
    for process in processes:
        assert process.stdin is not None
        process.stdin.close()
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    history = SqliteParameterStore(path).history("/p")
    assert [v.version for v in history] == list(range(1, 2 * puts + 1))
    for tag in "ab":  # every put is there, each writer's in its own order
        assert [v.value for v in history if v.value[0] == tag] == [f"{tag}{i}" for i in range(puts)]
