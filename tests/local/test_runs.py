"""Runs on one work folder never collide: each its own id, folder and batch, and one retrain at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from driftloop.config import Settings
from driftloop.errors import UserError
from driftloop.layout import data_prefix
from driftloop.local.runner import LocalSystem, ServeOutcome
from driftloop.pipelines import Pipeline, Step

pytestmark = pytest.mark.faults  # the fault campaign: docs/reliability.md

START = datetime(2023, 2, 5, 10, 5, tzinfo=UTC)


def test_a_batch_is_never_imported_over_another(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        (folder / f"{folder.name}.png").write_bytes(folder.name.encode())
    system = LocalSystem(tmp_path / "work")
    key = system.import_batch(first, "serve-1")
    with pytest.raises(UserError, match=r"cannot import .*second as batches/serve-1: that batch already holds files"):
        system.import_batch(second, "serve-1")
    assert system.objects.list(key) == ["batches/serve-1/first.png"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small_data: Path, fast_settings: Settings) -> Path:
    workdir = tmp_path_factory.mktemp("system")
    system = LocalSystem(workdir, settings=fast_settings)
    for stage in ("original", "noisy"):
        system.import_dataset(small_data / stage, stage)
    system.train(data_prefix("original", "train"), data_prefix("original", "val"), when=START)
    return workdir


@pytest.mark.slow
def test_two_folders_served_in_the_same_second_are_two_runs(trained: Path, small_data: Path,
                                                            fast_settings: Settings) -> None:
    system = LocalSystem(trained, settings=fast_settings)
    when = START + timedelta(hours=1)
    folders = [small_data / "original" / "test", small_data / "noisy" / "test" / "ring"]
    outcomes = [system.serve(folder, when=when, retrain=False) for folder in folders]

    assert outcomes[0].record.run_id != outcomes[1].record.run_id
    for folder, outcome in zip(folders, outcomes, strict=True):
        images = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        assert outcome.record.input == f"batches/{outcome.record.run_id}"
        stored = system.objects.list(outcome.record.input)
        assert [key.removeprefix(outcome.record.input + "/") for key in stored] == images
        assert outcome.record.n_images + outcome.record.n_skipped == len(images)
        assert outcome.record.drift_report == f"runs/serve/{outcome.record.run_id}/drift_report"


@pytest.mark.slow
def test_a_serve_that_wants_a_retrain_while_one_runs_starts_none(trained: Path, fast_settings: Settings) -> None:
    """The second serve starts and ends while the first one's retrain runs: it records why it did not retrain."""
    overlapping: list[ServeOutcome] = []

    def second_serve(pipeline: Pipeline, step: Step) -> None:
        if pipeline.name == "train" and not overlapping:
            other = LocalSystem(trained, settings=fast_settings)
            overlapping.append(other.serve(data_prefix("noisy", "test"), when=START + timedelta(hours=2)))

    first = LocalSystem(trained, settings=fast_settings, on_step=second_serve).serve(
        data_prefix("noisy", "test"), when=START + timedelta(hours=2))

    assert first.retrain is not None and first.record.retrain_run_id == first.retrain.run_id
    (second,) = overlapping
    assert second.decision.retrain and second.retrain is None and not second.record.retrain
    assert second.record.retrain_reason.startswith(f"skipped: a retrain is already running ({first.retrain.run_id}")
    third = LocalSystem(trained, settings=fast_settings).serve(data_prefix("noisy", "test"))  # the lease was let go
    assert third.decision.retrain is False or third.retrain is not None
