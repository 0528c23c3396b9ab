"""A run killed at any step leaves the parameter store pointing only at whole artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop.config import Settings
from driftloop.layout import data_prefix
from driftloop.local.runner import LocalSystem
from driftloop.pipelines import SERVE_PIPELINE, TRAIN_PIPELINE, Pipeline, Step
from driftloop.records import ServeRecord, TrainRecord
from driftloop.stores.objects import ObjectStore

pytestmark = [pytest.mark.slow, pytest.mark.faults]  # the fault campaign: docs/reliability.md


class Killed(BaseException):
    """Stands for the process dying: not an Exception, so nothing may catch and carry on."""


def kill_at(step_name: str, pipeline_name: str):  # type: ignore[no-untyped-def]
    def hook(pipeline: Pipeline, step: Step) -> None:
        if pipeline.name == pipeline_name and step.name == step_name:
            raise Killed(step_name)

    return hook


def assert_whole(objects: ObjectStore, uri: str, expected_file: str) -> None:
    key = objects.key_from_uri(uri)
    assert objects.exists(f"{key}/{expected_file}"), f"{uri} lacks {expected_file}"


def assert_train_record_whole(objects: ObjectStore, record: TrainRecord) -> None:
    assert_whole(objects, record.model, "model.keras")
    assert_whole(objects, record.model, "metrics.json")
    assert objects.list(objects.key_from_uri(record.detector))
    assert objects.list(objects.key_from_uri(record.explainer))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small_data: Path, fast_settings: Settings) -> Path:
    workdir = tmp_path_factory.mktemp("system")
    system = LocalSystem(workdir, settings=fast_settings)
    for stage in ("original", "noisy"):
        system.import_dataset(small_data / stage, stage)
    system.train(data_prefix("original", "train"), data_prefix("original", "val"))
    system.serve(data_prefix("original", "test"))
    return workdir


@pytest.mark.parametrize("step", [s.name for s in TRAIN_PIPELINE.steps])
def test_killed_train_run_leaves_the_previous_model_in_place(trained: Path, fast_settings: Settings,
                                                             step: str) -> None:
    system = LocalSystem(trained, settings=fast_settings, on_step=kill_at(step, "train"))
    before = {name: system.params.get_optional(name) for name in system.names.all()}

    with pytest.raises(Killed):
        system.train(data_prefix("noisy", "train"), data_prefix("noisy", "val"))

    after = {name: system.params.get_optional(name) for name in system.names.all()}
    assert after == before
    current = system.current_model()
    assert current is not None and current.stage == "original"
    assert_train_record_whole(system.objects, current)


@pytest.mark.parametrize("step", [s.name for s in SERVE_PIPELINE.steps])
def test_killed_serve_run_leaves_the_previous_serve_record_in_place(trained: Path, fast_settings: Settings,
                                                                    step: str) -> None:
    system = LocalSystem(trained, settings=fast_settings, on_step=kill_at(step, "serve"))
    before = system.params.get(system.names.serve_latest)

    with pytest.raises(Killed):
        system.serve(data_prefix("noisy", "test"))

    assert system.params.get(system.names.serve_latest) == before
    record = ServeRecord.from_json(before)
    assert_whole(system.objects, record.drift_report, "drift_report.json")
    assert_whole(system.objects, record.predictions, "predictions.csv")


def test_killed_retrain_inside_a_serve_run_writes_no_serve_record(trained: Path, fast_settings: Settings) -> None:
    system = LocalSystem(trained, settings=fast_settings, on_step=kill_at("learn_reference", "train"))
    before = {name: system.params.get_optional(name) for name in system.names.all()}

    with pytest.raises(Killed):
        outcome = system.serve(data_prefix("noisy", "test"))
        pytest.fail(f"the noisy batch should have drifted and retrained: {outcome.summary()}")

    assert {name: system.params.get_optional(name) for name in system.names.all()} == before
