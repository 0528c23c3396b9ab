"""What the benchmarks measured about the default drift rule, read from their result file, never retyped.

``bench/accuracy_estimation.py`` serves 7 models (one trained per stage, 3 data seeds) on every
stage, 200 batches per cell and batch size, and records per cell the share of batches the default
detector flags (``drift_rate``) and each seed's true accuracies. From that file this module gives
the false-positive rate (a model on held-out images of its own stage), the power for a band of
accuracy drops, the power in one model x stage cell, and the smallest drop caught in a given
share of batches. The simulation report and the README's "what the system can and cannot see"
section (``render_readme_section``) show these; a test keeps the README equal to the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from driftloop.config import DriftConfig

RESULTS_FILE: Final = Path(__file__).resolve().parents[1] / "bench" / "results" / "accuracy_estimation.json"
RUNS_PER_MONTH: Final = 24 * 30  # hourly serve runs (the default schedule) in a 30-day month
DETECTION_SHARE: Final = 0.8
SEED_BATCH_SIZE: Final = 42  # the seed's hourly batch: the test set of one stage
BEGIN: Final = "<!-- visibility:begin -->"
END: Final = "<!-- visibility:end -->"


@dataclass(frozen=True)
class Cell:
    """One model (trained on ``model``) served on ``test_set``: its mean drop and flag rate per batch size."""

    model: str
    test_set: str
    drop_points: float  # own-stage accuracy minus accuracy on this stage, mean over the seeds
    flagged: dict[int, float]  # batch size -> share of batches the default rule flags
    n_batches: dict[int, int]


@dataclass(frozen=True)
class Band:
    """The cells whose mean drop lies in [low, high) points, and their mean flag rate at one batch size."""

    low: float
    high: float
    batch_size: int
    cells: tuple[Cell, ...]

    @property
    def power(self) -> float | None:
        return sum(c.flagged[self.batch_size] for c in self.cells) / len(self.cells) if self.cells else None


@dataclass(frozen=True)
class DriftPower:
    """The default drift rule's measured flag rates (``bench/results/accuracy_estimation.json``)."""

    source: Path
    date: str
    drift: dict[str, Any]  # the detector settings it was measured with (DriftConfig fields)
    batch_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    cells: tuple[Cell, ...]
    validation_images: int = 0  # what each estimator was calibrated on (the model's validation set)
    estimation: tuple[dict[str, Any], ...] = ()  # per (calibration, method): errors, coverage, width
    policies: tuple[dict[str, Any], ...] = ()  # per (batch size, policy): harmful missed, needless retrains

    @classmethod
    def load(cls, path: Path = RESULTS_FILE) -> DriftPower | None:
        """None when the file is not there (an installed package without the repository's bench/)."""
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        results = data["results"]
        setup = results["setup"]
        cells = []
        for cell in results["cells"]:
            own, pool = cell["own_accuracy"], cell["pool_accuracy"]
            drop = 100 * (sum(own) / len(own) - sum(pool) / len(pool))
            by_size = cell["by_batch_size"]
            cells.append(Cell(model=cell["model"], test_set=cell["test_set"], drop_points=drop,
                              flagged={int(b): float(v["drift_rate"]) for b, v in by_size.items()},
                              n_batches={int(b): int(v["n_batches"]) for b, v in by_size.items()}))
        return cls(source=path, date=str(data["date"])[:10], drift=dict(setup["drift"]),
                   batch_sizes=tuple(int(b) for b in setup["batch_sizes"]), seeds=tuple(setup["seeds"]),
                   cells=tuple(cells), validation_images=int(results["models"][0]["calibration"]["val"]["n"]),
                   estimation=tuple(results["summary"]["estimation"]),
                   policies=tuple(results["summary"]["policies"]))

    def measured_for(self, config: DriftConfig) -> bool:
        """Whether these figures are for ``config``'s detector (features, correction, α)."""
        return all(self.drift[name] == getattr(config, name) for name in ("features", "correction", "p_val"))

    def nearest_size(self, batch_size: int) -> int:
        return min(self.batch_sizes, key=lambda size: (abs(size - batch_size), size))

    def false_positive_rate(self, batch_size: int) -> tuple[float, int]:
        """The share of flagged batches of held-out images of each model's own stage, and how many batches."""
        own = [c for c in self.cells if c.model == c.test_set]
        batches = sum(c.n_batches[batch_size] for c in own)
        flagged = sum(c.flagged[batch_size] * c.n_batches[batch_size] for c in own)
        return flagged / batches, batches

    def band(self, low: float, high: float, batch_size: int) -> Band:
        chosen = tuple(c for c in self.cells if c.model != c.test_set and low <= c.drop_points < high)
        return Band(low, high, batch_size, chosen)

    def estimation_error(self, method: str) -> dict[str, Any]:
        """The method's errors with the validation-set calibration (what train time has)."""
        return next(e for e in self.estimation if e["calibration"] == "val" and e["method"] == method)

    def policy(self, name: str, batch_size: int) -> dict[str, Any]:
        return next(p for p in self.policies if p["policy"] == name and p["batch_size"] == batch_size)

    def cell(self, model: str, test_set: str) -> Cell | None:
        return next((c for c in self.cells if (c.model, c.test_set) == (model, test_set)), None)

    def smallest_drop_caught(self, batch_size: int, share: float = DETECTION_SHARE) -> Cell | None:
        """The cell with the smallest drop such that every cell losing at least as much is flagged in ``share``.

        None when even the largest drop is flagged less often.
        """
        shifted = sorted((c for c in self.cells if c.model != c.test_set and c.drop_points > 0),
                         key=lambda c: c.drop_points)
        found = None
        for cell in reversed(shifted):
            if cell.flagged[batch_size] < share:
                break
            found = cell
        return found


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %"


def band_table(power: DriftPower, edges: Sequence[float] = (-100, 5, 10, 15, 20, 101)) -> list[str]:
    """Markdown rows: per band of the true accuracy drop, the shifted cells and their mean flag rate per batch size."""
    head = "| accuracy drop (points) | cells | " + " | ".join(f"flagged, batch {b}" for b in power.batch_sizes) + " |"
    lines = [head, "|---|---|" + "---|" * len(power.batch_sizes)]
    for low, high in zip(edges, edges[1:], strict=False):
        bands = [power.band(low, high, b) for b in power.batch_sizes]
        label = f"< {high:g} (harmless)" if low <= -100 else f"{low:g}–{high:g}" if high <= 100 else f"≥ {low:g}"
        shares = " | ".join("-" if b.power is None else _pct(b.power) for b in bands)
        lines.append(f"| {label} | {len(bands[0].cells)} | {shares} |")
    return lines


def render_readme_section(power: DriftPower, config: DriftConfig, batch_size: int) -> str:
    """The README's numbers on what the default rule can see, from the benchmark's result file."""
    size = power.nearest_size(batch_size)
    fpr, batches = power.false_positive_rate(size)
    caught = power.smallest_drop_caught(size)
    mild = power.band(5, 10, size)
    source = "bench/results/accuracy_estimation.json"
    for_config = ("" if power.measured_for(config) else
                  f" **These figures were measured with {power.drift}, not the configured detector.**")
    caught_text = ("no drop is caught that often" if caught is None else
                   f"**{caught.drop_points:.1f} points**: every model × stage cell that loses at least that much "
                   f"(the smallest: the {caught.model} model on {caught.test_set}) is flagged in ≥ "
                   f"{_pct(DETECTION_SHARE)} of its {size}-image batches")
    mild_text = ("no cell" if mild.power is None else
                 f"{len(mild.cells)} cells, flagged in {_pct(mild.power)} of their batches on average "
                 f"(from {_pct(min(c.flagged[size] for c in mild.cells))} to "
                 f"{_pct(max(c.flagged[size] for c in mild.cells))})")
    return "\n".join([
        BEGIN,
        f"Rendered from `{source}` (measured {power.date}; data seeds {', '.join(map(str, power.seeds))}; "
        f"7 models × 7 stages) by `python -m driftloop.measured`, for the configured detector "
        f"(`{config.features}` features, {config.correction}, α = {config.p_val:g}), batches of {batch_size} "
        f"and hourly runs.{for_config}",
        "",
        f"- **False alarms**: on held-out images of the model's own stage the rule flags "
        f"{100 * fpr:.1f} % of {size}-image batches ({batches:,} batches). At one run an hour "
        f"({RUNS_PER_MONTH} a month) that is **{fpr * RUNS_PER_MONTH:.0f} needless retrains a month** on "
        "data that did not change (in simulation mode; on a batch that is not a stage's test set the same "
        "flag is an alarm without a retrain). A cool-down (`cooldown_runs`) spaces the retrains out, not the alarms.",
        f"- **The smallest drop caught in ≥ {_pct(DETECTION_SHARE)} of batches**: {caught_text}. Drops of "
        f"5–10 points: {mild_text}.",
        "",
        *band_table(power),
        "",
        *_estimate_lines(power, size),
        END,
    ])


POLICIES_SHOWN: Final = ("drift", "harm(atc_ne, 5)", "harm(atc_ne, 10)", "drift_and_harm(atc_ne, 5)",
                         "drift_and_harm(agreement, 5)")


def _estimate_lines(power: DriftPower, size: int) -> list[str]:
    from driftloop.accuracy_estimate import DEFAULT_METHOD

    error = power.estimation_error(DEFAULT_METHOD)
    agreement = power.estimation_error("agreement")
    lines = [
        f"- **The estimate** (`{DEFAULT_METHOD}`, calibrated on the model's {power.validation_images} validation "
        "images): mean absolute error "
        f"**{100 * error[f'mae_{size}']:.1f} points** at {size} images ({100 * error['mae_200']:.1f} at 200); "
        f"{100 * error[f'mae_own_{size}']:.1f} on the model's own stage, {100 * error[f'mae_shifted_{size}']:.1f} "
        f"under shift; on average it is {100 * error[f'bias_{size}']:.1f} points too high. Its 95 % interval "
        f"is {100 * error[f'width_{size}']:.0f} points wide at {size} images and covers the batch's accuracy in "
        f"{_pct(error[f'coverage_{size}'])} of batches ({_pct(error[f'coverage_own_{size}'])} on the own stage). "
        f"Two copies of the model agreeing (`agreement`, needs a second training) err by "
        f"{100 * agreement[f'mae_{size}']:.1f} points.",
        "",
        f"| rule, batches of {size} | harmful batches (≥ 10 points) missed | harmless batches (< 5 points) "
        "retrained on | retrains per 7 batches |",
        "|---|---|---|---|",
    ]
    for name in POLICIES_SHOWN:
        row = power.policy(name, size)
        lines.append(f"| `{name}` | {_pct(row['missed_rate'])} | {_pct(row['needless_rate'])} | "
                     f"{row['retrains_per_cycle']:.2f} |")
    return lines



def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from driftloop.results_doc import replace_section

    parser = argparse.ArgumentParser(prog="python -m driftloop.measured", description=__doc__)
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args(argv)
    power = DriftPower.load()
    if power is None:
        parser.error(f"{RESULTS_FILE} is missing: run `python -m bench accuracy_estimation` first")
    section = render_readme_section(power, DriftConfig(), SEED_BATCH_SIZE)
    args.readme.write_text(replace_section(args.readme.read_text(), section, BEGIN, END))
    print(f"wrote the figures of {RESULTS_FILE.name} into {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
