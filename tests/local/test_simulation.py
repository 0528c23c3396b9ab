"""The default simulation end to end (``driftloop simulate``: seed 0, blog size, default settings), run twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftloop.layout import STAGE_NAMES
from driftloop.local.outcome import SimulationResult
from driftloop.local.simulation import SimulationOptions, simulate

pytestmark = pytest.mark.slow

RUN_FIELDS = {"time", "test_set", "reference_trained_on", "drift", "statistic", "threshold", "retrained",
              "retrained_on", "promoted", "accuracy", "loss", "n_images", "n_skipped"}


@pytest.fixture(scope="module")
def simulation(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """The default run, as `driftloop simulate` makes it: its criterion is a property of these settings."""
    workdir = tmp_path_factory.mktemp("simulation")
    return simulate(SimulationOptions(workdir=workdir, progress=False))


def test_plays_the_seven_test_sets_in_order_then_original_again(simulation: SimulationResult) -> None:
    assert [r.test_set for r in simulation.runs] == [*STAGE_NAMES, "original"]
    assert [r.time for r in simulation.runs][:3] == ["11:05", "12:05", "13:05"]


def test_writes_simulation_json_matrix_csv_and_report(simulation: SimulationResult) -> None:
    workdir = simulation.workdir
    data = json.loads((workdir / "simulation.json").read_text())
    assert len(data["runs"]) == 8
    assert set(data["runs"][0]) >= RUN_FIELDS
    for model, row in data["matrix"].items():
        assert set(row) == set(STAGE_NAMES), model
        for cell in row.values():
            assert 0.0 <= cell["accuracy"] <= 1.0 and cell["loss"] >= 0.0
    csv_lines = (workdir / "accuracy_matrix.csv").read_text().splitlines()
    assert csv_lines[0].split(",") == ["model_trained_on", "metric", *STAGE_NAMES]
    assert len(csv_lines) == 1 + 2 * len(data["matrix"])
    page = (workdir / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4  # drift, accuracy, matrix, at least one SHAP grid


def test_original_test_set_does_not_drift_against_the_original_detector(simulation: SimulationResult) -> None:
    first = simulation.runs[0]
    assert (first.test_set, first.reference_trained_on, first.drift) == ("original", "original", False)


def test_drift_is_followed_by_a_retrain_on_that_stages_data(simulation: SimulationResult) -> None:
    drifted = [r for r in simulation.runs if r.drift]
    assert drifted, "the noisy stage at least should drift"
    for run in drifted:
        assert run.retrained and run.retrained_on == run.test_set
    for before, after in zip(simulation.runs, simulation.runs[1:], strict=False):
        if before.retrained and before.promoted:
            assert after.reference_trained_on == before.retrained_on


def test_every_trained_model_is_in_the_matrix(simulation: SimulationResult) -> None:
    retrained_on = [r.retrained_on for r in simulation.runs if r.retrained]
    assert list(simulation.matrix)[0] == "original"
    assert [m.split("#")[0] for m in list(simulation.matrix)[1:]] == retrained_on


def test_each_matrix_row_names_the_train_run_whose_model_it_is(simulation: SimulationResult) -> None:
    models = json.loads((simulation.workdir / "simulation.json").read_text())["models"]
    assert list(models) == list(simulation.matrix)
    for label, run_id in models.items():
        model = simulation.workdir / "state" / "store" / "runs" / "train" / run_id / "model"
        assert (model / "model.keras").is_file(), label


def test_the_same_seed_on_one_machine_writes_byte_identical_results(simulation: SimulationResult,
                                                                     tmp_path: Path) -> None:
    # The data set is the first run's (its generation is checked byte for byte in tests/data).
    again = simulate(SimulationOptions(workdir=tmp_path, data=simulation.workdir / "data", progress=False))
    assert (again.workdir / "simulation.json").read_bytes() == (simulation.workdir / "simulation.json").read_bytes()
    assert (again.workdir / "accuracy_matrix.csv").read_bytes() == (
        simulation.workdir / "accuracy_matrix.csv").read_bytes()


def test_timings_split_the_run_by_phase_and_each_phase_by_its_pipeline_steps(simulation: SimulationResult) -> None:
    timings = json.loads((simulation.workdir / "timings.json").read_text())
    phases = [p for p in timings["phases"] if not p["within"]]
    serve_phases = [f"serve {r.time} {r.test_set}" for r in simulation.runs]
    assert [p["name"] for p in phases] == ["data: generate", "data: import", "initial training", *serve_phases,
                                           "final evaluation", "report"]
    steps = [p for p in timings["phases"] if p["within"]]
    for phase in phases:
        runs = {phase["notes"][key] for key in ("serve_run", "train_run") if key in phase["notes"]}
        inside = [s for s in steps if s["within"] in runs]
        assert phase["wall_s"] >= sum(s["wall_s"] for s in inside) > 0 or not runs, phase
        if "train_run" in phase["notes"]:
            assert {s["name"] for s in inside if s["within"] == phase["notes"]["train_run"]} >= {
                "train/process", "train/train_model", "train/learn_reference", "train/explain_background"}
    retrains = [p for p in phases if p["name"] in serve_phases and "train_run" in p["notes"]]
    assert len(retrains) == sum(r.retrained for r in simulation.runs)
    assert timings["total"]["wall_s"] >= sum(p["wall_s"] for p in phases)
    assert all(p["cpu_s"] >= 0 for p in timings["phases"])


def test_the_readme_results_are_written_from_the_run(simulation: SimulationResult) -> None:
    from driftloop.local.outcome import timeline_line
    from tools.readme_results import BEGIN, END, Measured, render
    from tools.sections import replace_section

    section = render(simulation, Measured(date="2026-12-01", machine="2 cores, test CPU", wall_s=61.4))
    assert section.startswith(BEGIN) and section.endswith(END)
    assert "Measured 2026-12-01 on 2 cores, test CPU" in section and "took 61 s wall" in section
    for run in simulation.runs:
        assert timeline_line(run) in section
    for label in simulation.matrix:
        assert f"| {label} | " in section
    readme = f"# title\n\nbefore\n{BEGIN}\nstale table\n{END}\nafter\n"
    assert replace_section(readme, section, BEGIN, END) == f"# title\n\nbefore\n{section}\nafter\n"
    with pytest.raises(ValueError, match="results:begin"):
        replace_section("# no markers\n", section, BEGIN, END)


def test_the_report_marks_each_retrain_on_the_run_that_started_it(simulation: SimulationResult) -> None:
    from driftloop.local.report import retrain_marks

    marks = retrain_marks(simulation.runs)
    started = [i for i, r in enumerate(simulation.runs) if r.retrained]
    assert [m.run for m in marks] == started
    for mark in marks:
        run = simulation.runs[mark.run]
        assert mark.label == f"→ {run.retrained_on}" and mark.promoted == bool(run.promoted)


def test_the_default_runs_criterion_holds(simulation: SimulationResult) -> None:
    """Issue 14, decided: no retrain on Original while the Original model serves; every run 10 points or
    more below the serving model's accuracy on its own stage is acted on; 5-10 points are listed."""
    from driftloop.local.outcome import criterion

    judged = criterion(simulation.runs)
    assert judged.retrained_on_original == []
    assert [r.test_set for r in simulation.runs if r.test_set == "original" and r.model_trained_on == "original"]
    assert judged.harmful and judged.harmful_not_acted_on == []
    assert judged.holds


def test_the_report_lists_the_5_to_10_point_runs_with_the_measured_power(simulation: SimulationResult) -> None:
    import html

    from driftloop.local.measured import DriftPower
    from driftloop.local.outcome import criterion
    from driftloop.local.report import mild_rows

    page = (simulation.workdir / "report.html").read_text()
    assert "What the rule could see" in page and "It holds." in page
    listed = mild_rows(simulation.runs, DriftPower.load())
    assert [cells[0] for cells in listed] == [r.time for r in criterion(simulation.runs).mild]
    for cells in listed:
        assert "of 600 batches of 42" in cells[6]  # the benchmark's cell for this model and stage
        assert "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" in page


def test_every_run_carries_its_label_free_estimate(simulation: SimulationResult) -> None:
    runs = json.loads((simulation.workdir / "simulation.json").read_text())["runs"]
    for run in runs:
        estimate = run["accuracy_estimate"]
        assert estimate["method"] == "atc_ne" and estimate["n"] == run["n_images"]
        assert estimate["lower"] <= estimate["estimate"] <= estimate["upper"]
    # The Original model on held-out Original images: right on all, and estimated close to that.
    first = simulation.runs[0]
    assert first.accuracy == 1.0 and first.accuracy_estimate is not None and first.accuracy_estimate.estimate > 0.9
