"""The drift report: what the monitoring component writes and the drift decision reads.

Standard library only (the decision Lambda reads it without numpy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from driftloop.contracts import Contract


@dataclass(frozen=True)
class DetectorIdentity(Contract):
    """Which detector judged the batch: its features and the data its reference came from."""

    features: str  # "uae" | "embeddings" | ...
    trained_on: str  # e.g. "original" or the train data's URI
    reference_size: int
    run_id: str = ""


# How an estimate outside its calibration's domain is shown in place of its number.
UNRELIABLE: Final = "unreliable"


@dataclass(frozen=True)
class EstimatedAccuracy(Contract):
    """The batch's label-free accuracy estimate (``driftloop.ml.accuracy_estimate``),
    from the drift test's forward pass.

    Fractions, except ``drop_points``: how far the estimate lies below the model's validation
    accuracy, in percentage points, which the ``harm`` retrain rules compare with their threshold.
    """

    method: str  # e.g. "atc_ne"
    estimate: float
    lower: float  # the interval for this batch's accuracy, at ``confidence``
    upper: float
    confidence: float
    n: int  # images estimated
    validation_accuracy: float  # the model's, on the validation set it was calibrated on
    drop_points: float  # 100 * (validation_accuracy - estimate); negative when the estimate is higher
    # The validity domain (``accuracy_estimate.class_mix_domain``): how far the batch's predicted class
    # mix lies from validation's, and the farthest sampling alone puts it. None: the calibration has no
    # class mix, or the record was written before domains existed.
    domain_distance: float | None = None
    domain_limit: float | None = None

    @property
    def outside_domain(self) -> bool:
        """The batch lies outside what the calibration covered: the estimate is not a number to believe."""
        if self.domain_distance is None or self.domain_limit is None:
            return False
        return self.domain_distance > self.domain_limit

    def percent(self) -> str:
        """``88.1% [74.0, 95.1]``: the estimate and its interval, for people."""
        return f"{100 * self.estimate:.1f}% [{100 * self.lower:.1f}, {100 * self.upper:.1f}]"

    def shown(self) -> str:
        """What a table cell shows: ``percent()``, or ``unreliable`` outside the domain (no number to believe)."""
        return UNRELIABLE if self.outside_domain else self.percent()

    def why_unreliable(self) -> str:
        """``class mix 0.52 from validation > 0.32``: why the batch is outside the domain (empty inside it)."""
        if not self.outside_domain:
            return ""
        return f"class mix {self.domain_distance:.2f} from validation > {self.domain_limit:.2f}"

    def summary(self) -> str:
        """``est. 88.1% [74.0, 95.1] (atc_ne), 11.9 points below validation``: for logs; outside the
        domain, ``est. unreliable (95.2%, atc_ne; class mix 0.52 from validation > 0.32)``."""
        if self.outside_domain:
            return f"est. {UNRELIABLE} ({100 * self.estimate:.1f}%, {self.method}; {self.why_unreliable()})"
        relation = "below" if self.drop_points >= 0 else "above"
        return f"est. {self.percent()} ({self.method}), {abs(self.drop_points):.1f} points {relation} validation"



@dataclass(frozen=True)
class DriftReport(Contract):
    is_drift: bool
    # True when the batch is smaller than the configured minimum: no judgement was made.
    too_small: bool
    correction: str  # "bonferroni" | "fdr"
    p_val: float  # the configured significance level before correction
    # The corrected per-feature threshold the statistic is compared against.
    threshold: float
    # Summary statistic: the smallest per-feature p-value (drift when below ``threshold``).
    statistic: float
    p_values: list[float]
    distances: list[float]
    # The effect-size floor (``driftloop.ml.drift.EffectSize``): ``is_drift`` is ``significant`` (the KS
    # test alone, ``statistic < threshold``) and ``effect_size`` (the largest KS distance among the
    # significant features) at least ``min_distance``.
    significant: bool
    effect_size: float
    min_distance: float
    batch_size: int
    min_batch_size: int
    detector: DetectorIdentity
    # Files of the batch that processing skipped (corrupt, empty, not an image): the serve record shows them.
    n_skipped: int = 0
    message: str = ""
    # None: the batch was too small to judge, or the model has no calibration (trained before it existed).
    accuracy_estimate: EstimatedAccuracy | None = None

    @property
    def n_features(self) -> int:
        return len(self.p_values)

    def verdict(self) -> str:
        """The significance result and the effect size against the floor, in one line for people."""
        relation = "<" if self.significant else ">="
        test = f"smallest p-value {self.statistic:.3g} {relation} threshold {self.threshold:.3g}"
        if not self.significant:
            return test
        floor = ">=" if self.effect_size >= self.min_distance else "<"
        return f"{test}, KS distance {self.effect_size:.3f} {floor} floor {self.min_distance:.3g}"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(indent=2))

    @classmethod
    def read(cls, path: Path) -> DriftReport:
        return cls.from_json(path.read_text())
