"""The pure parts of ``make images`` (tools/image_check.py); the check itself builds and runs the images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import image_check  # noqa: E402
from image_check import Channel, CheckFailed, Inputs, Job  # noqa: E402


def _job(
    state: str, inputs: tuple[str, ...], outputs: tuple[str, ...], environment: dict[str, str] | None = None
) -> Job:
    return Job(
        pipeline="train", state=state, component="processing", entrypoint=None, arguments=(),
        inputs=tuple(Channel(PurePosixPath(f"/opt/ml/processing/input/{a}"), a) for a in inputs),
        outputs=tuple(Channel(PurePosixPath(f"/opt/ml/processing/output/{a}"), a) for a in outputs),
        environment=environment or {},
    )  # fmt: skip


def test_jobs_run_after_the_jobs_that_write_their_inputs() -> None:
    jobs = [_job("Explain", ("model", "shards"), ("explainer",)), _job("Train", ("shards",), ("model",)),
            _job("Process", ("raw",), ("shards",))]  # fmt: skip
    assert [j.state for j in image_check.in_data_order(jobs, {"raw"})] == ["Process", "Train", "Explain"]


def test_an_input_nothing_provides_fails_with_its_name() -> None:
    with pytest.raises(CheckFailed, match="champion_model"):
        image_check.in_data_order([_job("Evaluate", ("champion_model",), ("eval",))], {"raw"})


def test_a_step_with_an_optional_channel_runs_with_it_when_the_run_has_its_artifact() -> None:
    jobs = [_job("Process", ("raw",), ("shards",)), _job("Train", ("shards", "champion_model"), ("model",)),
            _job("TrainWithoutChampion", ("shards",), ("model",)), _job("Evaluate", ("champion_model",), ("eval",))]
    first, skipped = image_check.runnable_jobs(jobs, {"raw"})
    assert [j.state for j in first] == ["Process", "TrainWithoutChampion"] and skipped == ["Evaluate"]
    retrain, skipped = image_check.runnable_jobs(jobs, {"raw", "champion_model"})
    assert [j.state for j in retrain] == ["Process", "Train", "Evaluate"] and skipped == []


def test_the_environment_is_rendered_from_the_plans_run_settings() -> None:
    inputs = Inputs(external={}, resolved={}, run_settings={"learn": {"trained_on": "data_name", "run_id": "run_id"}})
    job = _job("Learn", (), (), {"PLAIN": "1", "SETTINGS.$": "States.JsonToString($.plan.settings.learn)"})
    rendered = inputs.environment(job, {"run_id": "r1", "data_name": "original"})
    assert rendered["PLAIN"] == "1"
    assert json.loads(rendered["SETTINGS"]) == {"trained_on": "original", "run_id": "r1"}
    with pytest.raises(CheckFailed, match="teach the check"):
        inputs.environment(_job("X", (), (), {"E.$": "$.something.else"}), {})


def test_a_whole_pipeline_jobs_environment_holds_the_runs_facts_once() -> None:
    """As ``driftloop.loop.plan_run`` makes ``RunPlan.facts``: each step's settings are made from them in the job."""
    job = _job("TrainRun", (), (), {"DRIFTLOOP_RUN_FACTS.$": "States.JsonToString($.plan.facts)"})
    rendered = Inputs.of("train").environment(job, {"run_id": "train-1", "data_name": "original"})
    assert json.loads(rendered["DRIFTLOOP_RUN_FACTS"]) == {"run_id": "train-1", "data_name": "original"}


def test_a_first_training_writes_no_champion_evaluation_and_a_retrain_does() -> None:
    train = Inputs.of("train")
    assert train.not_written({"raw_train", "raw_val"}) == {"champion_eval"}
    assert train.not_written({"raw_train", "raw_val", "champion_model"}) == set()
    assert Inputs.of("serve").not_written({"raw_batch"}) == set()


def test_the_check_knows_both_pipelines_inputs() -> None:
    train, serve = Inputs.of("train"), Inputs.of("serve")
    assert set(train.external.values()) == {"train_data", "val_data"}
    assert set(serve.external.values()) == {"batch"}
    assert {"model", "detector", "explainer"} <= set(serve.resolved)


def test_build_secrets_pass_on_only_what_a_container_can_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    listing = (
        f"global.cert='{ca}'\nglobal.extra-index-url='file:///opt/pypi/simple https://mirror.example/simple'\n"
        "global.find-links='/opt/wheels'\n:env:.default-timeout='180'\n"
    )

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 0, listing, "")

    monkeypatch.setattr(image_check.subprocess, "run", fake_run)
    monkeypatch.delenv("PIP_CERT", raising=False)
    secrets = image_check.build_secrets(tmp_path)
    assert secrets == ["--secret", f"id=ca,src={ca}", "--secret", f"id=pip.conf,src={tmp_path / 'build-pip.conf'}"]
    conf = (tmp_path / "build-pip.conf").read_text()
    assert "https://mirror.example/simple" in conf and "file://" not in conf and "find-links" not in conf
    assert "cert = /run/secrets/ca" in conf and "default-timeout = 180" in conf
