"""The drift report: what the monitoring component writes and the drift decision reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from driftloop.contracts import Contract


@dataclass(frozen=True)
class DetectorIdentity(Contract):
    """Which detector judged the batch: its features and the data its reference came from."""

    features: str  # "uae" | "embeddings" | ...
    trained_on: str  # e.g. "original" or the train data's URI
    reference_size: int
    run_id: str = ""


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
    # The effect-size floor (``driftloop.drift.EffectSize``): ``is_drift`` is ``significant`` (the KS
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

    @property
    def n_features(self) -> int:
        return len(self.p_values)

    @property
    def below_floor(self) -> bool:
        """Significant, but no significant feature moved by ``min_distance``: not drift."""
        return self.significant and not self.is_drift

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
