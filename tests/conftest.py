"""Shared test setup: process settings that must precede the first TensorFlow import, the one
moto server (on loopback) that every emulated-AWS test in the session shares, and the small
synthetic data set the end-to-end suites share."""

from pathlib import Path

import pytest

from driftloop.components.entrypoint import configure_process

configure_process()

pytest_plugins = ("support.moto_server",)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``driftloop data make --size small``: seven stages, made once per test session."""
    from driftloop.local.data.synthetic import make_dataset

    folder = tmp_path_factory.mktemp("data")
    make_dataset(folder, seed=0, size="small")
    return folder
