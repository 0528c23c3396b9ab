"""Typed settings: one table from component to settings, counts that must be positive, moved names."""

from __future__ import annotations

from typing import Any

import pytest

from driftloop.config import DecisionPolicy, ExplainConfig, FromMapping, ProcessingConfig, Settings, TrainingConfig

GIVEN: dict[str, dict[str, Any]] = {
    "processing": {"shard_size": 128},
    "algorithm": {"epochs": 3},
    "drift": {"p_val": 0.01},
    "explainability": {"n_explain": 4},
}


def test_each_components_overrides_land_in_its_settings_and_come_back() -> None:
    settings = Settings.from_overrides(GIVEN, {"cooldown_runs": 2}, {"predict": 2})
    assert (settings.processing.shard_size, settings.training.epochs, settings.drift.p_val,
            settings.explain.n_explain) == (128, 3, 0.01, 4)
    assert {name: settings.overrides(name) for name in GIVEN} == GIVEN
    assert (settings.policy.cooldown_runs, settings.instances.predict) == (2, 2)


def test_defaults_have_no_overrides() -> None:
    assert all(Settings().overrides(name) == {} for name in GIVEN)


def test_an_unknown_component_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown component\(s\) \['monitoring'\]"):
        Settings.from_overrides({"monitoring": {}}, {})


@pytest.mark.parametrize(("kind", "name"), [
    (ProcessingConfig, "image_size"), (ProcessingConfig, "shard_size"), (ProcessingConfig, "max_pixels"),
    (TrainingConfig, "epochs"), (TrainingConfig, "batch_size"), (TrainingConfig, "patience"),
    (ExplainConfig, "n_explain"), (ExplainConfig, "n_background"), (ExplainConfig, "nsamples"),
])
def test_a_count_of_zero_is_refused(kind: type[FromMapping], name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be at least 1, got 0"):
        kind.from_mapping({name: "0"})


def test_the_decisions_old_minimum_names_the_setting_to_use() -> None:
    with pytest.raises(ValueError, match="set settings.drift.min_batch_size instead"):
        Settings.from_overrides({}, {"min_batch_size": 30})
    assert "min_batch_size" not in DecisionPolicy().to_dict()
