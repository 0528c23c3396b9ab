"""The seven-stage simulation: the seed's experiment, on one machine, on a simulated clock.

The train pipeline runs once on the Original set; then the serve pipeline runs "hourly" (11:05,
12:05, … — no real waiting) on the test sets Original → Stage-1 → … → Noisy → Original, retraining
as the drift decision says (drift on stage k's test set retrains on stage k's train and validation
sets). Labels are known in a simulation, so each run's accuracy is recorded too, and at the end every
model the run trained is evaluated on every stage's test set (the accuracy matrix).
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from tqdm import tqdm

from driftloop.components import algorithm
from driftloop.components.entrypoint import Invocation
from driftloop.components.processing import available_cores
from driftloop.config import Settings
from driftloop.layout import STAGE_NAMES, artifact_prefix, data_prefix, simulation_stage, simulation_test_set
from driftloop.local.outcome import RunRow, SimulationResult, timeline_header, timeline_line
from driftloop.local.report import write_report
from driftloop.local.runner import LocalSystem, ServeOutcome, component_runner, numbered_run_ids
from driftloop.local.timings import Stopwatch
from driftloop.ml.model_io import load_model
from driftloop.pipelines import Component

# The seed blog's date; the initial training runs at 10:05 and the first serve run at 11:05.
SIMULATION_START = datetime(2023, 2, 5, 10, 5, tzinfo=UTC)
DATA_MARKER = ".driftloop-data.json"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationOptions:
    workdir: Path
    data: Path | None = None
    cycles: int = 1
    seed: int = 0
    size: str = "blog"
    settings: Settings = field(default_factory=Settings)
    progress: bool = True


def ensure_data(options: SimulationOptions) -> Path:
    """The stages folder: the user's, or the synthetic set, made once per (seed, size)."""
    if options.data is not None:
        missing = [s for s in STAGE_NAMES if not (options.data / s).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"{options.data} lacks the stage folders {missing}; make them with "
                "`driftloop data stages --src ORIG --out DIR` or `driftloop data make --out DIR`"
            )
        return options.data
    from driftloop.local.data.synthetic import make_dataset

    folder = options.workdir / "data"
    wanted = {"seed": options.seed, "size": options.size}
    marker = folder / DATA_MARKER
    if not (marker.exists() and json.loads(marker.read_text()) == wanted):
        shutil.rmtree(folder, ignore_errors=True)
        make_dataset(folder, seed=options.seed, size=options.size)
        marker.write_text(json.dumps(wanted))
    return folder


class _Evaluator:
    """Accuracy and loss of a model folder on each stage's test set (test sets processed once)."""

    def __init__(self, system: LocalSystem, data: Path, scratch: Path) -> None:
        self.system = system
        self.data = data
        self.scratch = scratch

    def processed(self, stage: str) -> Path:
        out = self.scratch / "processed" / stage
        if not (out / "summary.json").exists():
            component_runner(Component.PROCESSING, "serve")(Invocation(
                mode="serve", inputs={"batch": self.data / stage / "test"}, outputs={"batch": out},
                settings=self.system.settings.processing.to_dict(),
            ))
        return out

    def row(self, model_dir: Path) -> dict[str, dict[str, float]]:
        """One model on every stage: loaded and compiled once (``algorithm.evaluate``, serve mode's scores)."""
        loaded = load_model(model_dir)
        cells = {}
        for stage in STAGE_NAMES:
            scores = algorithm.evaluate(loaded, self.processed(stage))
            if scores.accuracy is None or scores.loss is None:
                raise ValueError(f"{model_dir} cannot be scored on {stage}: {scores.reason}")
            cells[stage] = {"accuracy": scores.accuracy, "loss": scores.loss}
        return cells


TIMINGS_FILE: Final = "timings.json"


def simulate(options: SimulationOptions) -> SimulationResult:
    """Run the simulation; the console shows one progress bar and one timeline line per hourly run.

    Each phase's wall and CPU time (and each pipeline step's) goes to ``timings.json``.
    """
    clock = Stopwatch()
    n_runs = options.cycles * len(STAGE_NAMES) + 1
    # Steps: the data, the initial training, each hourly run, the accuracy matrix.
    bar = tqdm(total=n_runs + 3, desc="simulation", unit="step", disable=not options.progress)
    data, system = _prepare(options, clock, bar)
    bar.set_postfix_str("initial training on original")
    with clock.phase("initial training") as notes:
        first = system.train(data_prefix("original", "train"), data_prefix("original", "val"), when=SIMULATION_START)
        notes["train_run"] = first.run_id
    bar.update()
    models = {first.run_id: "original"}  # train run id -> matrix label
    rows = _hourly_runs(system, n_runs, clock, bar, models)
    bar.set_postfix_str("accuracy matrix")
    with clock.phase("final evaluation"):
        matrix = _accuracy_matrix(system, data, models, options.workdir)
    bar.update()
    bar.close()
    result = SimulationResult(runs=[_with_drop(row, matrix) for row in rows], matrix=matrix, workdir=options.workdir,
                              models={label: run_id for run_id, label in models.items()})
    with clock.phase("report"):
        write_outputs(result, system)
    clock.write(options.workdir / TIMINGS_FILE)
    log.info("phases (wall s / CPU s): %s", "; ".join(
        f"{t.name} {t.wall_s:.1f}/{t.cpu_s:.1f}" for t in clock.records if not t.within))
    print(f"wrote {options.workdir / 'simulation.json'}, accuracy_matrix.csv, report.html and {TIMINGS_FILE}")
    return result


def _prepare(options: SimulationOptions, clock: Stopwatch, bar: tqdm) -> tuple[Path, LocalSystem]:
    """The stages folder and an empty system with every stage imported: each simulation starts from scratch."""
    bar.set_postfix_str("data")
    with clock.phase("data: generate"):
        data = ensure_data(options)
    state = options.workdir / "state"
    shutil.rmtree(state, ignore_errors=True)
    # Numbered run ids: the same seed writes the same results, byte for byte.
    system = LocalSystem(state, settings=options.settings, stopwatch=clock, run_ids=numbered_run_ids())
    with clock.phase("data: import"):
        for stage in STAGE_NAMES:
            system.import_dataset(data / stage, stage)
    bar.update()
    return data, system


def _hourly_runs(system: LocalSystem, n_runs: int, clock: Stopwatch, bar: tqdm, models: dict[str, str],
                 ) -> list[RunRow]:
    """Serve each test set at its simulated hour, retraining as decided; ``models`` gains each retrain's label."""
    for line in timeline_header():
        tqdm.write(line)
    rows: list[RunRow] = []
    for position in range(n_runs):
        when = SIMULATION_START + timedelta(hours=position + 1)
        test_set = simulation_stage(position)
        bar.set_postfix_str(f"{when:%H:%M} serve on {test_set}")
        with clock.phase(f"serve {when:%H:%M} {test_set}") as notes:
            outcome = system.serve(simulation_test_set(position), when=when)
            notes["serve_run"] = outcome.record.run_id
            if outcome.retrain is not None:
                notes["train_run"] = outcome.retrain.run_id
        if outcome.retrain is not None:
            models[outcome.retrain.run_id] = _label(outcome.retrain.stage or "?", models)
        rows.append(_run_row(when, test_set, outcome, models))
        tqdm.write(timeline_line(rows[-1]))
        log.info("%s serve run on %s: %s", rows[-1].time, test_set, outcome.decision.reason)
        bar.update()
    return rows


def _run_row(when: datetime, test_set: str, outcome: ServeOutcome, models: dict[str, str]) -> RunRow:
    """One hourly run as the timeline and ``simulation.json`` show it (its accuracy drop is added at the end)."""
    retrain = outcome.retrain
    return RunRow(
        time=when.strftime("%H:%M"),
        test_set=test_set,
        reference_trained_on=outcome.report.detector.trained_on,
        drift=outcome.report.is_drift,
        statistic=outcome.report.statistic,
        threshold=outcome.report.threshold,
        retrained=retrain is not None,
        retrained_on=retrain.stage if retrain else None,
        promoted=retrain.promoted if retrain else None,
        accuracy=outcome.evaluation.accuracy if outcome.evaluation else None,
        loss=outcome.evaluation.loss if outcome.evaluation else None,
        n_images=outcome.record.n_images,
        n_skipped=outcome.record.n_skipped,
        reason=outcome.decision.reason,
        model_trained_on=models[outcome.record.model_run_id],
        explanations=outcome.record.explanations,
        accuracy_estimate=outcome.record.accuracy_estimate,
    )


def _label(stage: str, models: dict[str, str]) -> str:
    """Matrix row label: the stage trained on, with #2, #3 … when a stage is trained on again."""
    taken = set(models.values())
    if stage not in taken:
        return stage
    n = 2
    while f"{stage}#{n}" in taken:
        n += 1
    return f"{stage}#{n}"


def _accuracy_matrix(system: LocalSystem, data: Path, models: dict[str, str], workdir: Path,
                     ) -> dict[str, dict[str, dict[str, float]]]:
    """Every model on every stage's test set; one model per core at a time (the scores do not depend on it)."""
    scratch = workdir / "evaluation"
    shutil.rmtree(scratch, ignore_errors=True)
    evaluator = _Evaluator(system, data, scratch)
    for stage in STAGE_NAMES:  # before the threads: each stage is processed once
        evaluator.processed(stage)
    folders = {}
    for run_id, label in models.items():
        folders[label] = scratch / "models" / label
        system.objects.download_dir(artifact_prefix("train", run_id, "model"), folders[label])
    with ThreadPoolExecutor(max_workers=available_cores()) as pool:
        rows = list(pool.map(evaluator.row, folders.values()))
    return dict(zip(folders, rows, strict=True))


def _with_drop(row: RunRow, matrix: dict[str, dict[str, dict[str, float]]]) -> RunRow:
    if row.accuracy is None:
        return row
    own_stage = row.model_trained_on.split("#")[0]
    reference = matrix[row.model_trained_on][own_stage]["accuracy"]
    return replace(row, accuracy_drop=round(reference - row.accuracy, 6))


def write_outputs(result: SimulationResult, system: LocalSystem) -> None:
    workdir = result.workdir
    (workdir / "simulation.json").write_text(json.dumps(result.to_json(), indent=2))
    with (workdir / "accuracy_matrix.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model_trained_on", "metric", *STAGE_NAMES])
        for label, row in result.matrix.items():
            for metric in ("accuracy", "loss"):
                writer.writerow([label, metric, *(f"{row[s][metric]:.4f}" for s in STAGE_NAMES)])
    write_report(result, system.objects, workdir / "report.html", drift=system.settings.drift)
