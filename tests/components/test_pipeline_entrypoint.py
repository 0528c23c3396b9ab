"""The whole-pipeline job's plumbing: which artifacts a job has, which steps run, what each step reads.

(Running the steps is covered where they run for real: the emulator's one-job deployment, the image check.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driftloop.components import pipeline as entrypoint
from driftloop.errors import UserError
from driftloop.pipelines import SERVE_PIPELINE, TRAIN_PIPELINE


def test_an_artifact_without_a_channel_folder_is_one_the_run_lacks(tmp_path: Path) -> None:
    for artifact in ("raw_train", "raw_val"):
        (tmp_path / artifact).mkdir()
    folders = entrypoint.input_folders(TRAIN_PIPELINE, tmp_path)
    assert folders == {"raw_train": tmp_path / "raw_train", "raw_val": tmp_path / "raw_val"}
    evaluate = TRAIN_PIPELINE.step("evaluate_champion")
    assert not entrypoint.runs(evaluate, folders) and entrypoint.runs(evaluate, {**folders, "champion_model": tmp_path})


def test_a_step_leaves_out_an_optional_channel_the_run_lacks_and_refuses_a_missing_required_one(
    tmp_path: Path,
) -> None:
    train = TRAIN_PIPELINE.step("train_model")
    folders = {"train_shards": tmp_path / "t", "val_shards": tmp_path / "v"}
    invocation = entrypoint.step_invocation(train, folders, tmp_path / "out", {"epochs": 2})
    assert invocation.inputs == {"train": tmp_path / "t", "val": tmp_path / "v"}
    assert invocation.outputs == {"model": tmp_path / "out" / "model"} and (tmp_path / "out" / "model").is_dir()
    with pytest.raises(UserError, match="no val_shards"):
        entrypoint.step_invocation(train, {"train_shards": tmp_path / "t"}, tmp_path / "out", {})


def test_a_step_takes_its_components_settings_then_the_runs_own() -> None:
    learn = TRAIN_PIPELINE.step("learn_reference")
    components: dict[str, dict[str, Any]] = {"drift": {"p_val": 0.01, "trained_on": "x"}, "algorithm": {"epochs": 3}}
    settings = entrypoint.step_settings(learn, components,
                                        {"learn_reference": {"trained_on": "original"}, "train_model": {"a": "b"}})
    assert settings == {"p_val": 0.01, "trained_on": "original"}


def test_each_artifact_has_its_own_channel_under_sagemakers_processing_paths() -> None:
    assert str(entrypoint.artifact_channel("input", "raw_batch")) == "/opt/ml/processing/input/raw_batch"
    assert str(entrypoint.artifact_channel("output", "drift_report")) == "/opt/ml/processing/output/drift_report"
    args = entrypoint.build_parser().parse_args(["--pipeline", "serve", "--settings-drift", '{"p_val": 0.01}'])
    assert (args.pipeline, args.settings_drift, args.settings_algorithm) == ("serve", '{"p_val": 0.01}', "{}")
    assert args.input_root == Path("/opt/ml/processing/input")
    assert SERVE_PIPELINE.optional_inputs() == () and TRAIN_PIPELINE.optional_inputs() == ("champion_model",)
