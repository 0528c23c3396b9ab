"""The drift report: what the monitoring component writes and the drift decision reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DetectorIdentity:
    """Which detector judged the batch: its features and the data its reference came from."""

    features: str  # "uae" | "embeddings" | ...
    trained_on: str  # e.g. "original" or the train data's URI
    reference_size: int
    run_id: str = ""


@dataclass(frozen=True)
class DriftReport:
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
    batch_size: int
    min_batch_size: int
    detector: DetectorIdentity
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return len(self.p_values)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReport:
        data = dict(data)
        data["detector"] = DetectorIdentity(**data["detector"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> DriftReport:
        return cls.from_dict(json.loads(text))

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())

    @classmethod
    def read(cls, path: Path) -> DriftReport:
        return cls.from_json(path.read_text())
