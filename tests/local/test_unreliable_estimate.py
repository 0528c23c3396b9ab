"""An estimate outside its calibration's domain reads "unreliable" wherever a person sees it: the
console line of a serve run (both simulations), the report's cell and ``driftloop status``.

Its number is not one to believe (the Noisy batch of issue 24: estimated 95.2 %, truly 23.8 %), so
no place shows it as a plain figure beside the believable ones. Records are written as the runs
write them; no model is trained.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from driftloop.drift_report import EstimatedAccuracy
from driftloop.layout import ParameterNames
from driftloop.local.outcome import RunRow, timeline_line
from driftloop.local.production_simulation import HourRow
from driftloop.local.production_simulation import timeline_line as production_line
from driftloop.local.report import estimate_cell
from driftloop.local.status import local_source, read_status
from driftloop.records import ServeRecord, TrainRecord
from driftloop.stores.params import SqliteParameterStore

# The Noisy batch of issue 24 as the estimate saw it, inside and outside the calibration's class mix.
INSIDE = EstimatedAccuracy(method="atc_ne", estimate=0.952, lower=0.85, upper=0.99, confidence=0.95, n=42,
                           validation_accuracy=1.0, drop_points=4.8, domain_distance=0.2, domain_limit=0.32)
OUTSIDE = replace(INSIDE, domain_distance=0.52)


def run_row(estimate: EstimatedAccuracy) -> RunRow:
    return RunRow(time="17:05", test_set="noisy", reference_trained_on="original", drift=True, statistic=1e-9,
                  threshold=0.0071, retrained=False, retrained_on=None, promoted=None, accuracy=0.238, loss=None,
                  n_images=42, n_skipped=0, reason="", model_trained_on="original", accuracy_estimate=estimate)


MODEL = TrainRecord(
    run_id="train-20261201T100500", time="2026-12-01T10:05:00+00:00", train_data="data/original/train",
    val_data="data/original/val", stage="original", model="runs/train/train-20261201T100500/model",
    detector="runs/train/train-20261201T100500/detector", explainer="runs/train/train-20261201T100500/explainer",
    val_accuracy=1.0, val_loss=0.01, champion_val_accuracy=None, promoted=True,
    reason="no current model: the first model is promoted", champion_run_id=None,
)


def serve_record(estimate: EstimatedAccuracy) -> ServeRecord:
    run_id = "serve-20261201T170500"
    return ServeRecord(
        run_id=run_id, time="2026-12-01T17:05:00+00:00", input="data/noisy/test", stage="noisy",
        model_run_id="train-20261201T100500", reference_trained_on="data/original/train",
        drift_report=f"runs/serve/{run_id}/drift_report", predictions=f"runs/serve/{run_id}/predictions",
        explanations=f"runs/serve/{run_id}/explanations", is_drift=False, statistic=0.3, threshold=0.0071,
        n_images=42, n_skipped=0, retrain=False, retrain_reason="no drift: smallest p-value 0.3 >= threshold 0.0071",
        retrain_run_id=None, runs_since_retrain=None, accuracy_estimate=estimate,
    )


def test_the_console_line_shows_unreliable_instead_of_the_number() -> None:
    assert timeline_line(run_row(INSIDE)).endswith("| 23.8%    | 95.2%")
    outside = timeline_line(run_row(OUTSIDE))
    assert outside.endswith("| 23.8%    | unreliable") and "95.2" not in outside


def test_the_production_simulations_console_line_shows_it_too() -> None:
    row = HourRow(hour=6, time="05 17:05", stage="noisy", batch="b-006", model_run_id="m", accuracy=0.238,
                  estimate=0.952, drift=False, labels_arrived=[], labelled={}, label_request_images=0,
                  retrained=False, promoted=None, retrain_batches=[], reason="", estimate_outside_domain=True)
    assert "| unreliable |" in production_line(row) and "95.2" not in production_line(row)
    assert "| 95.2%      |" in production_line(replace(row, estimate_outside_domain=False))


def test_the_reports_cell_says_why_and_gives_no_interval() -> None:
    assert estimate_cell(run_row(INSIDE)) == "95.2% [85.0, 99.0]"
    assert estimate_cell(run_row(OUTSIDE)) == "unreliable (class mix 0.52 from validation > 0.32)"


@pytest.mark.parametrize(("estimate", "shown"), [
    (INSIDE, "est. 95.2% [85.0, 99.0]"),
    (OUTSIDE, "est. unreliable (95.2%, atc_ne; class mix 0.52 from validation > 0.32)"),
])
def test_driftloop_status_marks_the_estimate_from_the_stored_record(tmp_path: Path, estimate: EstimatedAccuracy,
                                                                    shown: str) -> None:
    """Through the record as the serve run stores it (JSON in the parameter store) and back."""
    params, names = SqliteParameterStore(tmp_path / "parameters.sqlite"), ParameterNames()
    for name in (names.train_last_attempt, names.train_latest):
        params.put(name, MODEL.to_json())
    params.put(names.serve_latest, serve_record(estimate).to_json())
    line = read_status(local_source(tmp_path))[-1]
    assert f"drift: no  (0.3 >= 0.0071)  {shown}  -> no retrain" in line


def test_a_record_written_before_domains_existed_shows_its_estimate_as_before() -> None:
    old = serve_record(INSIDE).to_dict()
    for key in ("domain_distance", "domain_limit"):
        del old["accuracy_estimate"][key]
    estimate = ServeRecord.from_dict(old).accuracy_estimate
    assert estimate is not None and not estimate.outside_domain and estimate.shown() == "95.2% [85.0, 99.0]"
