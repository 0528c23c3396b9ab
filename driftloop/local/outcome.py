"""What a simulation produced, and how it reads: its rows, its result, the criterion and the timeline.

Shared by the simulation that makes them, the report and the README generator that show them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from driftloop.drift_report import UNRELIABLE, EstimatedAccuracy
from driftloop.layout import STAGE_NAMES

HARM_POINTS = 0.05  # an accuracy drop this large should have been flagged as drift
# The default run's criterion (issue 14): a run that loses this much against the serving model's own
# stage must be acted on (a retrain started); drops from HARM_POINTS up to it are listed with the
# measured power, because a 42-image batch cannot reliably show 2-4 more wrong images.
ACTED_ON_POINTS = 0.10


@dataclass(frozen=True)
class RunRow:
    time: str
    test_set: str
    reference_trained_on: str
    drift: bool
    statistic: float
    threshold: float
    retrained: bool
    retrained_on: str | None
    promoted: bool | None
    accuracy: float | None
    loss: float | None
    n_images: int
    n_skipped: int
    reason: str
    model_trained_on: str
    # Accuracy of the current model on the test set of the stage it was trained on, minus this run's.
    accuracy_drop: float | None = None
    explanations: str = ""
    # The serve run's label-free estimate of ``accuracy`` (from its drift report), None if none was made.
    accuracy_estimate: EstimatedAccuracy | None = None


@dataclass
class SimulationResult:
    runs: list[RunRow]
    matrix: dict[str, dict[str, dict[str, float]]]
    workdir: Path
    models: dict[str, str] = field(default_factory=dict)  # matrix label -> train run id

    def to_json(self) -> dict[str, Any]:
        return {"runs": [asdict(r) for r in self.runs], "matrix": self.matrix, "models": self.models}


@dataclass(frozen=True)
class Criterion:
    """The default run's check: what must hold, and the runs in the band a 42-image batch may miss."""

    retrained_on_original: list[RunRow]  # retrains on Original while an Original model served: must be none
    harmful: list[RunRow]  # ACTED_ON_POINTS or more below the serving model's own stage
    mild: list[RunRow]  # from HARM_POINTS up to ACTED_ON_POINTS below: listed, with the measured power

    @property
    def harmful_not_acted_on(self) -> list[RunRow]:
        return [r for r in self.harmful if not r.retrained]

    @property
    def holds(self) -> bool:
        return not self.retrained_on_original and not self.harmful_not_acted_on


def criterion(rows: list[RunRow]) -> Criterion:
    """Judge a finished run by the criterion (drops come from the matrix: ``RunRow.accuracy_drop``)."""
    def drop(r: RunRow) -> float:
        return -1.0 if r.accuracy_drop is None else r.accuracy_drop

    return Criterion(
        retrained_on_original=[r for r in rows if r.retrained and r.test_set == "original"
                               and r.model_trained_on.split("#")[0] == "original"],
        harmful=[r for r in rows if drop(r) >= ACTED_ON_POINTS - 1e-9],
        mild=[r for r in rows if HARM_POINTS - 1e-9 <= drop(r) < ACTED_ON_POINTS - 1e-9],
    )


_TIMELINE_HEADER: Final = ("Time", "Input test set", "Detector trained on", "Drift", "Retrained", "Accuracy",
                           "Estimated")
# Fixed widths, so that each line can be printed as its run ends: wide enough for every stage name.
_TIMELINE_WIDTHS: Final = (
    5,
    max(len(_TIMELINE_HEADER[1]), *map(len, STAGE_NAMES)),
    max(len(_TIMELINE_HEADER[2]), *map(len, STAGE_NAMES)),
    5,
    max(len(f"on {stage} (kept champion)") for stage in STAGE_NAMES),
    len(_TIMELINE_HEADER[5]),
    max(len(_TIMELINE_HEADER[6]), len(UNRELIABLE)),
)


def _timeline_cells(cells: tuple[str, ...]) -> str:
    return " | ".join(cell.ljust(width) for cell, width in zip(cells, _TIMELINE_WIDTHS, strict=True)).rstrip()


def timeline_header() -> list[str]:
    """The timeline table's header and rule."""
    return [_timeline_cells(_TIMELINE_HEADER), "-+-".join("-" * width for width in _TIMELINE_WIDTHS)]


def timeline_line(r: RunRow) -> str:
    """One hourly run as a line of the timeline table."""
    retrained = f"on {r.retrained_on} ({'promoted' if r.promoted else 'kept champion'})" if r.retrained else "-"
    accuracy = "-" if r.accuracy is None else f"{100 * r.accuracy:.1f}%"
    return _timeline_cells((r.time, r.test_set, r.reference_trained_on, "TRUE" if r.drift else "false",
                            retrained, accuracy, estimate_point(r.accuracy_estimate)))


def estimate_point(estimate: EstimatedAccuracy | None) -> str:
    """An estimate in a narrow column: ``88.1%``, ``unreliable`` outside its calibration's domain, ``-`` without one."""
    if estimate is None:
        return "-"
    return UNRELIABLE if estimate.outside_domain else f"{100 * estimate.estimate:.1f}%"


def timeline_table(rows: list[RunRow]) -> str:
    """The whole timeline, as the simulation prints it line by line."""
    return "\n".join([*timeline_header(), *map(timeline_line, rows)])
