"""A failed job tells SageMaker why: the entrypoint writes its message to /opt/ml/output/{failure,message}."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop.components import entrypoint
from driftloop.components.entrypoint import Invocation, run_component, write_failure_reason
from driftloop.errors import UserError
from driftloop.pipelines import Component, JobKind


@pytest.fixture
def sagemaker_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "opt" / "ml"
    root.mkdir(parents=True)  # SageMaker's container has /opt/ml (its channels live below it)
    monkeypatch.setattr(entrypoint, "SAGEMAKER_ROOT", root)
    return root


def _fails_with(error: Exception):  # type: ignore[no-untyped-def]
    def runner(invocation: Invocation) -> None:
        raise error

    return runner


def test_a_processing_job_writes_its_clear_message_as_exit_message(
    sagemaker_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runners = {"serve": _fails_with(UserError("no usable image in /opt/ml/processing/input/batch"))}
    assert run_component(Component.PROCESSING, runners, ["--mode", "serve"]) == 2
    message = (sagemaker_root / "output" / "message").read_text()
    assert message == "driftloop processing (serve): no usable image in /opt/ml/processing/input/batch"
    assert message in capsys.readouterr().err
    assert not (sagemaker_root / "output" / "failure").exists()


def test_the_training_job_writes_failure_for_failure_reason(sagemaker_root: Path) -> None:
    runners = {"train": _fails_with(UserError("no training shards"))}
    assert run_component(Component.ALGORITHM, runners, ["train"]) == 2  # SageMaker runs `<image> train`
    assert (sagemaker_root / "output" / "failure").read_text() == "driftloop algorithm (train): no training shards"


def test_an_unexpected_error_is_written_and_still_raised(sagemaker_root: Path) -> None:
    runners = {"serve": _fails_with(ValueError("bad shard header"))}
    with pytest.raises(ValueError, match="bad shard header"):
        run_component(Component.DRIFT, runners, ["--mode", "serve"])
    assert (sagemaker_root / "output" / "message").read_text() == (
        "driftloop drift (serve): ValueError: bad shard header"
    )


def test_a_successful_run_writes_nothing(sagemaker_root: Path) -> None:
    assert run_component(Component.PROCESSING, {"serve": lambda invocation: None}, ["--mode", "serve"]) == 0
    assert not (sagemaker_root / "output").exists()


def test_outside_a_sagemaker_container_nothing_is_written(tmp_path: Path) -> None:
    assert write_failure_reason(JobKind.TRAINING, "boom", root=tmp_path / "no-opt-ml") is None
    assert list(tmp_path.iterdir()) == []


def test_the_reason_is_cut_to_sagemakers_1_kb_on_a_character_boundary(tmp_path: Path) -> None:
    written = write_failure_reason(JobKind.PROCESSING, "é" * 1000, root=tmp_path)
    assert written is not None
    text = written.read_text(encoding="utf-8")
    assert text == "é" * 512 and len(text.encode()) == 1024


def test_an_unwritable_output_folder_does_not_hide_the_error(tmp_path: Path) -> None:
    (tmp_path / "output").write_text("a file where the folder should be")
    assert write_failure_reason(JobKind.TRAINING, "boom", root=tmp_path) is None
