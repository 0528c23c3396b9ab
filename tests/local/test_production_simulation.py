"""The production simulation end to end (a short stream), and the README block its real run writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftloop import intake
from driftloop.layout import STAGE_NAMES
from driftloop.local.production_simulation import (
    RESULT_FILE,
    HourRow,
    ProductionOptions,
    ProductionResult,
    batch_id,
    simulate_production,
)
from driftloop.stores.objects import LocalObjectStore
from tools.readme_production import BEGIN, END, render
from tools.readme_results import README, Measured


@pytest.mark.slow
def test_a_short_production_stream_serves_each_batch_once_and_joins_every_label(tmp_path: Path) -> None:
    options = ProductionOptions(workdir=tmp_path, size="small", hours_per_stage=1, batch_size=40,
                                label_fraction=0.8, label_delay_hours=1, progress=False)
    result = simulate_production(options)
    hours = len(STAGE_NAMES) * options.hours_per_stage
    assert [r.batch for r in result.rows] == [batch_id(h) for h in range(hours)]
    assert result.checks["every batch served exactly once"]
    assert result.checks["labels joined for every labelled batch"]
    assert result.checks["no retrain on the first stage"]
    objects = LocalObjectStore(tmp_path / "state" / "store")
    assert intake.next_batch(objects) is None  # nothing left unserved
    labelled = [r.labelled for r in result.rows if r.labelled]
    assert labelled and all(acc is not None for row in labelled for acc in row.values())
    assert json.loads((tmp_path / RESULT_FILE).read_text())["checks"] == result.checks


def _row(hour: int, stage: str, accuracy: float, retrained: bool = False) -> HourRow:
    return HourRow(hour=hour, time=f"05 {11 + hour}:05", stage=stage, batch=batch_id(hour), model_run_id="m",
                   accuracy=accuracy, estimate=0.9, drift=stage != "original", labels_arrived=[], labelled={},
                   label_request_images=0, retrained=retrained, promoted=retrained or None,
                   retrain_batches=["batch-000"] if retrained else [], reason="")


def test_the_readme_block_shows_the_timeline_the_recovery_and_the_checks(tmp_path: Path) -> None:
    rows = [_row(0, "original", 1.0), _row(1, "stage-1", 0.8, retrained=True), _row(2, "stage-1", 0.95)]
    result = ProductionResult(rows=rows, checks={"every batch served exactly once": True}, served={}, workdir=tmp_path)
    section = render(result, Measured(date="2026-12-07", machine="2 cores", wall_s=150.0), ProductionOptions(tmp_path))
    assert section.startswith(BEGIN) and section.endswith(END)
    assert "took 150 s wall" in section and "stage-1 80.0 → 95.0 %" in section
    assert "batch-001 | 80.0%" in section and "every batch served exactly once: yes" in section


def test_the_readme_holds_a_rendered_production_run() -> None:
    text = README.read_text()
    block = text[text.index(BEGIN):text.index(END)]
    assert "`driftloop simulate --production`" in block and "Checks:" in block
    assert "NO" not in block.split("Checks:")[1], "the README's production run failed a check"
