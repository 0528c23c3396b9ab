"""The README's results of the default simulation, written from a real run instead of typed by hand.

``python -m tools.readme_results`` (``make readme-results``) runs the default simulation, then
replaces the part of README.md between ``<!-- results:begin -->`` and ``<!-- results:end -->``
with the run's timeline, its accuracy matrix, the runs that lost accuracy without being flagged,
and the machine, date and wall time it was measured on. ``render`` is pure: tested on its own.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from driftloop.components.entrypoint import configure_process
from driftloop.layout import STAGE_NAMES
from driftloop.local.console import LOG_FILE, route_output
from driftloop.local.outcome import HARM_POINTS, RunRow, SimulationResult, timeline_table
from driftloop.local.simulation import SimulationOptions, simulate
from tools.sections import replace_section

README: Final = Path(__file__).resolve().parents[1] / "README.md"
BEGIN: Final = "<!-- results:begin -->"
END: Final = "<!-- results:end -->"


@dataclass(frozen=True)
class Measured:
    """Where and when a run was measured."""

    date: str
    machine: str
    wall_s: float

    @classmethod
    def here(cls, wall_s: float) -> Measured:
        return cls(date=datetime.now(UTC).strftime("%Y-%m-%d"), machine=describe_machine(), wall_s=wall_s)


def describe_machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), flags=re.MULTILINE)
        cpu = names[0].strip() if names else cpu
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def matrix_table(result: SimulationResult) -> str:
    """Every model the run trained on every stage's test set; bold: the model's own stage."""
    lines = ["| trained on | " + " | ".join(STAGE_NAMES) + " |", "| --- |" + " --- |" * len(STAGE_NAMES)]
    for label, row in result.matrix.items():
        own = label.split("#")[0]
        cells = [f"**{_percent(row[s]['accuracy'])}**" if s == own else _percent(row[s]["accuracy"])
                 for s in STAGE_NAMES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _missed(rows: Sequence[RunRow]) -> list[str]:
    return [
        f"{r.time} {r.test_set} ({100 * r.accuracy_drop:.1f} points, smallest p-value {r.statistic:.2g} "
        f"against {r.threshold:.2g})"
        for r in rows
        if r.accuracy_drop is not None and r.accuracy_drop >= HARM_POINTS and not r.drift
    ]


def _replacements(result: SimulationResult) -> list[str]:
    """Each retrain's new model against the one it replaced, on the drifted stage's test set.

    The matrix lists the models in the order the run trained them (after the first), so the i-th
    retrain's model is the matrix's (i + 1)-th row.
    """
    labels = list(result.matrix)[1:]
    retrains = [r for r in result.runs if r.retrained]
    return [
        f"{r.test_set}: {_percent(result.matrix[label][r.test_set]['accuracy'])} vs {_percent(r.accuracy)}"
        f"{'' if r.promoted else ' (kept champion)'}"
        for r, label in zip(retrains, labels, strict=True)
    ]


def render(result: SimulationResult, measured: Measured) -> str:
    """The README section, from a finished simulation and where it was measured."""
    missed = _missed(result.runs)
    retrains = sum(r.retrained for r in result.runs)
    promoted = sum(bool(r.promoted) for r in result.runs)
    return "\n".join([
        BEGIN,
        f"Measured {measured.date} on {measured.machine}; `driftloop simulate` (seed 0, blog size) took "
        f"{measured.wall_s:.0f} s wall, the data set included. Written by `make readme-results`; "
        "on another CPU kind the accuracies may differ in a few images (floating-point reduction order), "
        "on one machine a run is byte-for-byte reproducible.",
        "",
        "```",
        timeline_table(result.runs),
        "```",
        "",
        f"{retrains} retrains, {promoted} promoted; each retrained model against the one it replaced, on the "
        f"drifted stage's test set: {'; '.join(_replacements(result)) or 'none'}. Runs that lost "
        f"{100 * HARM_POINTS:.0f} points or more against the serving model's own stage without being flagged: "
        + ("; ".join(missed) if missed else "none") + ".",
        "",
        "Accuracy (%) of every model the run trained on every stage's test set (`accuracy_matrix.csv`; "
        "bold: the model's own stage):",
        "",
        matrix_table(result),
        END,
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.readme_results", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("runs/readme-results"))
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    configure_process()
    route_output(args.workdir / LOG_FILE, verbose=0, fresh=True)  # the console as `driftloop simulate` keeps it
    started = time.perf_counter()
    result = simulate(SimulationOptions(workdir=args.workdir))
    section = render(result, Measured.here(time.perf_counter() - started))
    args.readme.write_text(replace_section(args.readme.read_text(), section, BEGIN, END))
    print(f"wrote the results of {args.workdir / 'simulation.json'} into {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
