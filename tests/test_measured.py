"""The benchmark's figures on what the default rule can see: read from its file, and docs/drift.md kept equal to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from driftloop.config import DriftConfig
from driftloop.local.measured import SEED_BATCH_SIZE, DriftPower
from tools.readme_visibility import BEGIN, DOC, END, render_readme_section


def cell(model: str, test_set: str, own: float, pool: float, flagged: float, n: int = 100) -> dict[str, Any]:
    return {"model": model, "test_set": test_set, "own_accuracy": [own], "pool_accuracy": [pool],
            "by_batch_size": {"42": {"n_batches": n, "drift_rate": flagged}}}


@pytest.fixture
def power(tmp_path: Path) -> DriftPower:
    """Own-stage cells (false positives), and shifted cells at 3, 8, 12, 20 and 30 points."""
    cells = [
        cell("a", "a", 1.0, 1.0, 0.02, n=300), cell("b", "b", 0.9, 0.9, 0.06, n=100),
        cell("a", "b", 1.0, 0.97, 0.5), cell("a", "c", 1.0, 0.92, 0.3), cell("b", "a", 0.9, 0.78, 0.7),
        cell("b", "c", 0.9, 0.7, 0.9), cell("a", "d", 1.0, 0.7, 1.0),
    ]
    results = {"setup": {"drift": DriftConfig().to_dict(), "batch_sizes": [42], "seeds": [0]}, "cells": cells,
               "models": [{"calibration": {"val": {"n": 34}}}],
               "summary": {"estimation": [], "policies": [], "domain": []}}
    path = tmp_path / "accuracy_estimation.json"
    path.write_text(json.dumps({"date": "2026-12-01T10:00:00+00:00", "results": results}))
    loaded = DriftPower.load(path)
    assert loaded is not None
    return loaded


def test_the_false_positive_rate_pools_every_own_stage_batch(power: DriftPower) -> None:
    assert power.false_positive_rate(42) == (pytest.approx((0.02 * 300 + 0.06 * 100) / 400), 400)


def test_a_band_holds_the_shifted_cells_whose_mean_drop_is_in_it(power: DriftPower) -> None:
    band = power.band(5, 10, 42)
    assert [(c.model, c.test_set) for c in band.cells] == [("a", "c")]
    assert band.power == pytest.approx(0.3)
    assert power.band(10, 25, 42).power == pytest.approx(0.8)
    assert power.band(40, 50, 42).power is None


def test_the_smallest_drop_caught_needs_every_larger_drop_caught_too(power: DriftPower) -> None:
    """12 points is flagged in 70 %: below 80 %, so 20 points is the smallest drop caught that often."""
    caught = power.smallest_drop_caught(42, share=0.8)
    assert caught is not None and (caught.model, caught.test_set) == ("b", "c")
    assert caught.drop_points == pytest.approx(20)
    assert power.smallest_drop_caught(42, share=0.6) is not None
    assert power.smallest_drop_caught(42, share=1.01) is None


def test_a_missing_result_file_gives_none(tmp_path: Path) -> None:
    assert DriftPower.load(tmp_path / "none.json") is None


def test_the_figures_are_for_the_configured_detector(power: DriftPower) -> None:
    assert power.measured_for(DriftConfig())
    assert not power.measured_for(DriftConfig(p_val=0.01))


def test_the_drift_docs_section_is_the_benchmark_files() -> None:
    """The figures in docs/drift.md are rendered, not typed: `python -m tools.readme_visibility`."""
    power = DriftPower.load()
    assert power is not None and power.measured_for(DriftConfig())
    text = DOC.read_text()
    section = text[text.index(BEGIN):text.index(END) + len(END)]
    assert section == render_readme_section(power, DriftConfig(), SEED_BATCH_SIZE)
