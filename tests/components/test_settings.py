"""Every component reads its settings one way: a bad value is a ``UserError`` naming the component."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop.components.entrypoint import Invocation, read_settings
from driftloop.config import DriftConfig, ExplainConfig, FromMapping, ProcessingConfig, TrainingConfig
from driftloop.errors import UserError


@pytest.mark.parametrize(("kind", "what", "settings", "message"), [
    (ProcessingConfig, "processing", {"shard_size": 0}, "shard_size must be at least 1"),
    (TrainingConfig, "training", {"epoch": 3}, r"unknown setting\(s\) \['epoch'\]"),
    (DriftConfig, "drift", {"p_val": "2"}, "p_val must be in"),
    (ExplainConfig, "explainability", {"nsamples": "0"}, "nsamples must be at least 1"),
])
def test_bad_settings_are_the_users_error(kind: type[FromMapping], what: str, settings: dict[str, object],
                                          message: str) -> None:
    invocation = Invocation("serve", {}, {"out": Path("unused")}, dict(settings))
    with pytest.raises(UserError, match=f"^bad {what} settings: .*{message}"):
        read_settings(invocation, kind, what)


def test_good_settings_are_typed() -> None:
    invocation = Invocation("train", {}, {}, {"epochs": "3", "deterministic": "false"})
    assert read_settings(invocation, TrainingConfig, "training") == TrainingConfig(epochs=3, deterministic=False)
