"""The deployment config: cdk.json and command-line overrides, with typos refused."""

from __future__ import annotations

import re

import pytest

from driftloop.pipelines import Component
from stacks.config import LOG_RETENTION_DAYS, ConfigError, DeploymentConfig, JobResources
from stacks.driftloop_stack import cdk_json_context


def base() -> dict[str, object]:
    return dict(cdk_json_context()["driftloop"])


def test_every_default_lives_in_the_dataclasses_and_cdk_json_only_changes_them() -> None:
    defaults = DeploymentConfig()
    assert all(getattr(defaults, key) != value for key, value in base().items()), "cdk.json repeats a default"


def test_dotted_overrides_change_one_field() -> None:
    config = DeploymentConfig.from_context(
        base(),
        {
            "driftloop.environment": "production",
            "driftloop.schedule_enabled": "false",
            "driftloop.training.instance_type": "ml.m5.2xlarge",
            "driftloop.settings.drift.p_val": "0.01",
        },
    )
    assert config.environment == "production" and not config.destroy_on_teardown
    assert config.schedule_enabled is False
    assert config.training == JobResources("ml.m5.2xlarge", 30, 120)
    assert config.component_settings(Component.DRIFT) == {"p_val": 0.01}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("driftloop.enviroment", "production", "unknown setting"),
        ("driftloop.environment", "staging", "environment"),
        ("driftloop.training.instance_typ", "ml.m5.large", "unknown setting"),
        ("driftloop.processing.instance_type", "m5.large", "ml.m5.large"),
        ("driftloop.training.instance_count", "2", "unknown setting(s) ['instance_count'] in training"),
        ("driftloop.instances.predict", "0", "instances.predict must be in [1, 100], got 0"),
        ("driftloop.instances.explain", "2", "unknown setting(s) ['explain']"),
        ("driftloop.settings.drift.pval", "0.1", "pval"),
        ("driftloop.settings.trainer", "{}", "unknown component"),
        ("driftloop.settings.drift.features", '"pixels"', "features must be one of"),
        ("driftloop.decision.min_batch", "3", "min_batch"),
        ("driftloop.log_retention_days", "31", "log_retention_days"),
        ("driftloop.schedule_enabled", "yes", "true or false"),
        ("driftloop.schedule_expression", "hourly", "rate("),
        ("driftloop.batch_prefix", "batches/incoming", "unknown setting"),
        ("driftloop.parameter_prefix", "driftloop", "parameter prefix"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        DeploymentConfig.from_context(base(), {key: value})


def test_log_retention_choices_match_cloudwatch() -> None:
    from stacks.logs import _RETENTION

    assert tuple(sorted(_RETENTION)) == LOG_RETENTION_DAYS
