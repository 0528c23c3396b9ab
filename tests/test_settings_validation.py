"""Settings are typed strictly: a wrong type or a value out of range is refused when the settings are
read, before any work starts, by a message that names the key (its dotted path), the value and what
it may be. One check reads every field's declared type and range, so no field escapes it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from driftloop.config import (
    DecisionPolicy,
    DriftConfig,
    ExplainConfig,
    FromMapping,
    ProcessingConfig,
    ScaleOut,
    SettingError,
    TrainingConfig,
)
from driftloop.local.cli import load_settings
from stacks.config import ConfigError, DeploymentConfig

pytestmark = pytest.mark.faults  # the fault campaign: docs/reliability.md

KINDS: list[type[FromMapping]] = [ProcessingConfig, TrainingConfig, DriftConfig, ExplainConfig, DecisionPolicy,
                                  ScaleOut]


NOT_AN_INT = "settings.algorithm.epochs must be an integer, at least 1, got"


@pytest.mark.parametrize(("document", "message"), [
    ({"settings": []}, "settings must be an object of settings by component name, got []"),
    ({"settings": {"algorithm": None}}, "settings.algorithm must be an object of settings, got None"),
    ({"settings": {"algorithm": {"epochs": 2.5}}}, f"{NOT_AN_INT} 2.5"),
    ({"settings": {"algorithm": {"epochs": None}}}, f"{NOT_AN_INT} None"),
    ({"settings": {"algorithm": {"epochs": [3]}}}, f"{NOT_AN_INT} [3]"),
    ({"settings": {"algorithm": {"epochs": True}}}, f"{NOT_AN_INT} True"),
    ({"settings": {"algorithm": {"epochs": 0}}}, "settings.algorithm.epochs must be at least 1, got 0"),
    ({"settings": {"algorithm": {"batch_size": 0}}}, "settings.algorithm.batch_size must be at least 1, got 0"),
    ({"settings": {"drift": {"min_batch_size": -5}}}, "settings.drift.min_batch_size must be at least 1, got -5"),
    ({"settings": {"drift": {"p_val": 1.5}}}, "settings.drift.p_val must be in (0, 1), got 1.5"),
    ({"decision": {"cooldown_runs": -1}}, "decision.cooldown_runs must be at least 0, got -1"),
    ({"decision": {"rule": 1}},
     "decision.rule must be one of ('drift', 'harm', 'drift_and_harm', 'drift_or_harm'), got 1"),
    ({"decision": None}, "decision must be an object of settings, got None"),
    ({"instances": []}, "instances must be an object of settings, got []"),
    ({"instances": {"predict": 101}}, "instances.predict must be in [1, 100], got 101"),
])
def test_a_settings_file_with_a_wrong_type_or_range_is_refused_naming_the_key(
        tmp_path: Path, document: dict[str, Any], message: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError) as refused:
        load_settings(path)
    assert str(refused.value) == f"settings file {path}: {message}"


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_every_field_refuses_a_value_of_another_type(kind: type[FromMapping]) -> None:
    for field in dataclasses.fields(kind):  # type: ignore[arg-type]
        with pytest.raises(SettingError, match=rf"^x\.{field.name} must be .*, got \[1\]$"):
            kind.from_mapping({field.name: [1]}, "x")


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_every_declared_range_is_enforced_at_its_ends(kind: type[FromMapping]) -> None:
    for field in dataclasses.fields(kind):  # type: ignore[arg-type]
        allowed = field.metadata.get("range")
        if allowed is None:
            continue
        outside = [allowed.low if allowed.open_ends else allowed.low - 1]
        if allowed.high is not None:
            outside.append(allowed.high if allowed.open_ends else allowed.high + 1)
        for value in outside:
            with pytest.raises(SettingError, match=re.escape(f"{field.name} must be {allowed}, got {value!r}")):
                kind(**{field.name: value})


def test_bool_is_not_an_int_nor_an_int_a_bool() -> None:
    with pytest.raises(SettingError, match="epochs must be an integer"):
        TrainingConfig(epochs=True)
    with pytest.raises(SettingError, match="warm_start must be true or false, got 1"):
        TrainingConfig(warm_start=1)  # type: ignore[arg-type]


def test_sagemakers_strings_are_read_as_their_type_and_a_string_that_is_not_is_refused() -> None:
    assert TrainingConfig.from_mapping({"epochs": "3", "learning_rate": "0.01", "warm_start": "False"}) == \
        TrainingConfig(epochs=3, learning_rate=0.01, warm_start=False)
    for name, text, shown in [("epochs", "2.5", "'2.5'"), ("warm_start", "maybe", "'maybe'"),
                              ("learning_rate", "nan", "nan")]:
        with pytest.raises(SettingError, match=f"^{name} must be .*, got {shown}$"):
            TrainingConfig.from_mapping({name: text})


@pytest.mark.parametrize(("key", "value", "message"), [
    ("driftloop.settings.algorithm.epochs", "2.5", f"{NOT_AN_INT} 2.5"),
    ("driftloop.settings", "[]", "settings must be an object"),
    ("driftloop.decision", "null", "decision must be an object of settings, got None"),
    ("driftloop.decision.cooldown_runs", "-1", "decision.cooldown_runs must be at least 0, got -1"),
    ("driftloop.log_retention_days", "true", "log_retention_days must be an integer, got True"),
])
def test_cdk_synth_refuses_the_same_settings(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        DeploymentConfig.from_context({}, {key: value})


def test_simulate_with_bad_settings_stops_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"settings": {"algorithm": {"epochs": 2.5}}}))
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_")}
    done = subprocess.run(
        [sys.executable, "-m", "driftloop.local.cli", "simulate", "--settings", "bad.json", "--workdir", "W",
         "--data", "DATA", "--size", "small"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(Path(__file__).parents[1])}, capture_output=True, text=True,
        timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    assert f"{NOT_AN_INT} 2.5" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "DATA").exists() and sorted(p.name for p in (tmp_path / "W").iterdir()) == ["driftloop.log"]
