"""Fixtures for local end-to-end runs (the small data set comes from tests/conftest.py)."""

from __future__ import annotations

import pytest

from driftloop.config import Settings, TrainingConfig


@pytest.fixture(scope="session")
def fast_settings() -> Settings:
    """Few epochs: these tests check the plumbing, not the model's quality."""
    return Settings(training=TrainingConfig(epochs=4, patience=2))
