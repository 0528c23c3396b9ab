"""Smoke test of the labels-join benchmark in quick mode: it runs, checks itself, and reports every size.

A measurement, not a test of speed: nothing here asserts a time or a ratio's size.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.common import BenchOptions
from bench.labels_join import QUICK_SIZES, bare_join, join, make_files, run


def test_quick_run_reports_every_size(tmp_path: Path) -> None:
    result = run(BenchOptions(quick=True, workdir=tmp_path))
    assert result.data["sizes"] == list(QUICK_SIZES)
    for n in QUICK_SIZES:
        figures = result.data["by_size"][str(n)]
        assert all(math.isfinite(figures[name]) and figures[name] > 0 for name in ("join_s", "bare_s", "ratio"))
    assert math.isfinite(result.data["growth"]["log_log_slope"])
    assert "Labels join" in result.tables[0]


def test_the_step_and_its_bare_limit_count_the_same_matches() -> None:
    predictions, labels = make_files(500, seed=1)
    measured = join(predictions, labels, lambda uri: uri)
    assert measured.n_labelled == 500 and measured.n_correct == bare_join(predictions, labels)
    assert 0.7 < (measured.accuracy or 0) < 0.95  # 80 % agree as drawn, plus chance agreement
