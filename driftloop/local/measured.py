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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from driftloop.config import DriftConfig

RESULTS_FILE: Final = Path(__file__).resolve().parents[2] / "bench" / "results" / "accuracy_estimation.json"
RUNS_PER_MONTH: Final = 24 * 30  # hourly serve runs (the default schedule) in a 30-day month
DETECTION_SHARE: Final = 0.8
SEED_BATCH_SIZE: Final = 42  # the seed's hourly batch: the test set of one stage


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
    # Per (batch size, α): the default estimate's validity domain, how often marked and unmarked ones are far off.
    domain: tuple[dict[str, Any], ...] = ()
    # Per (batch size, mark): the loop's-own-models estimates under the class mix or a gap to the default's.
    marks: tuple[dict[str, Any], ...] = ()
    earlier_champions: int = 0  # how many champions before the serving model the models' estimates use
    switched_method: str = ""  # the default estimate inside its domain, a models' estimate outside it

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
                   policies=tuple(results["summary"]["policies"]), domain=tuple(results["summary"]["domain"]),
                   marks=tuple(results["summary"].get("marks", ())),
                   earlier_champions=int(setup.get("earlier_champions", 0)),
                   switched_method=str(setup.get("switched_method", "")))

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

    def domain_at(self, batch_size: int, alpha: float) -> dict[str, Any]:
        return next(d for d in self.domain if d["batch_size"] == batch_size and d["alpha"] == alpha)

    def best_of(self, methods: tuple[str, ...], batch_size: int) -> dict[str, Any]:
        """The errors of the method among ``methods`` with the smallest error at ``batch_size``."""
        return min((self.estimation_error(m) for m in methods), key=lambda e: e[f"mae_{batch_size}"])

    def fewest_unmarked(self, estimator: str, batch_size: int, far: int = 20) -> dict[str, Any] | None:
        """The mark of ``estimator``'s estimates that leaves the fewest more than ``far`` points off unmarked."""
        found = [m for m in self.marks if m["batch_size"] == batch_size and m["mark"].startswith(f"{estimator}:")]
        return min(found, key=lambda m: (m["unmarked"][f"off_{far}"], m["marked_share"]), default=None)

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

