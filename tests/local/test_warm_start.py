"""A retrain may start from the champion's weights: the local runner hands the train step the champion."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop import loop
from driftloop.config import Settings, TrainingConfig
from driftloop.layout import data_prefix
from driftloop.local.runner import LocalSystem

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("warm_start", [True, False])
def test_the_first_training_starts_from_random_weights_and_a_retrain_from_the_champions_if_asked(
    tmp_path: Path, small_data: Path, warm_start: bool
) -> None:
    system = LocalSystem(tmp_path, settings=Settings(training=TrainingConfig(epochs=2, patience=1,
                                                                             warm_start=warm_start)))
    for stage in ("original", "noisy"):
        system.import_dataset(small_data / stage, stage)
    first = system.train(data_prefix("original", "train"), data_prefix("original", "val"))
    retrain = system.train(data_prefix("noisy", "train"), data_prefix("noisy", "val"))
    assert loop.read_train_metrics(system.stores, first.model).initial_weights == "random"
    expected = "champion (trained on original)" if warm_start else "random"
    assert loop.read_train_metrics(system.stores, retrain.model).initial_weights == expected
