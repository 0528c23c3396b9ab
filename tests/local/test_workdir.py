"""A workdir holds everything a local system needs: copied or moved, it still serves."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from driftloop.config import Settings
from driftloop.layout import data_prefix
from driftloop.local.runner import LocalSystem

pytestmark = pytest.mark.slow


def test_a_copied_workdir_serves_from_its_own_store(tmp_path: Path, small_data: Path, fast_settings: Settings) -> None:
    original = LocalSystem(tmp_path / "original", settings=fast_settings)
    original.import_dataset(small_data / "original", "original")
    trained = original.train(data_prefix("original", "train"), data_prefix("original", "val"))

    shutil.copytree(tmp_path / "original", tmp_path / "copy")
    shutil.rmtree(tmp_path / "original")  # nothing may still point into the old folder
    copy = LocalSystem(tmp_path / "copy", settings=fast_settings)
    outcome = copy.serve(data_prefix("original", "test"))

    assert outcome.record.model_run_id == trained.run_id
    assert copy.objects.exists(f"{copy.objects.key_from_uri(outcome.record.predictions)}/predictions.csv")
    assert outcome.record.n_images == 48
