"""The README's results of the production simulation, written from a real run instead of typed by hand.

``python -m tools.readme_production`` (``make readme-production``) runs ``driftloop simulate --production``
with its defaults, then replaces the part of README.md between ``<!-- production:begin -->`` and
``<!-- production:end -->`` with the hour-by-hour timeline, the run's checks, and the machine, date and
wall time it was measured on. ``render`` is pure: tested on its own.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from driftloop.components.entrypoint import configure_process
from driftloop.local.console import LOG_FILE, route_output
from driftloop.local.production_simulation import (
    TIMELINE_HEADER,
    ProductionOptions,
    ProductionResult,
    simulate_production,
    timeline_line,
)
from tools.readme_results import README, Measured
from tools.sections import replace_section

BEGIN: Final = "<!-- production:begin -->"
END: Final = "<!-- production:end -->"


def _recovery(result: ProductionResult) -> str:
    """Per stage: the mean true accuracy of the batches served before its first retrain and after it."""
    parts = []
    for stage in dict.fromkeys(r.stage for r in result.rows):
        rows = [r for r in result.rows if r.stage == stage]
        first = next((r.hour for r in rows if r.retrained and r.promoted), None)
        if first is None:
            continue
        before = [r.accuracy for r in rows if r.hour <= first]
        after = [r.accuracy for r in rows if r.hour > first]
        if after:
            parts.append(f"{stage} {100 * sum(before) / len(before):.1f} → {100 * sum(after) / len(after):.1f} %")
    return "; ".join(parts) or "no stage had a batch after its retrain"


def render(result: ProductionResult, measured: Measured, options: ProductionOptions) -> str:
    """The README section, from a finished production simulation and where it was measured."""
    retrains = [r for r in result.rows if r.retrained]
    return "\n".join([
        BEGIN,
        f"Measured {measured.date} on {measured.machine}; `driftloop simulate --production` (seed {options.seed}, "
        f"{options.hours_per_stage} batches of {options.batch_size} images a stage, "
        f"{100 * options.label_fraction:.0f} % "
        f"of each labelled {options.label_delay_hours} h later) took {measured.wall_s:.0f} s wall. Written by "
        "`make readme-production`. *Accuracy* is the truth the simulation knows; the loop sees only *Estimated*, "
        "*Drift* and the labels that came back (*Labels back*: the batch and its labelled accuracy).",
        "",
        "```",
        " | ".join(TIMELINE_HEADER),
        *map(timeline_line, result.rows),
        "```",
        "",
        f"{len(retrains)} retrains on labelled production images, {sum(bool(r.promoted) for r in retrains)} promoted. "
        f"Mean true accuracy of a stage's batches before its first promoted retrain and after it: "
        f"{_recovery(result)}.",
        "",
        "Checks: " + "; ".join(f"{name}: {'yes' if holds else 'NO'}" for name, holds in result.checks.items()) + ".",
        END,
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.readme_production", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("runs/readme-production"))
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    configure_process()
    route_output(args.workdir / LOG_FILE, verbose=0, fresh=True)  # the console as `driftloop simulate` keeps it
    options = ProductionOptions(workdir=args.workdir)
    started = time.perf_counter()
    result = simulate_production(options)
    section = render(result, Measured.here(time.perf_counter() - started), options)
    args.readme.write_text(replace_section(args.readme.read_text(), section, BEGIN, END))
    print(f"wrote the production run of {args.workdir} into {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
