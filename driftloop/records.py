"""What the parameter store holds: typed records of train and serve runs (stored as JSON).

A record names artifacts by URI (``s3://…`` on AWS, ``file://…`` locally). It is written only after
every artifact it names is complete, so a reader never follows a pointer to a half-written run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Self


class _JsonRecord:
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, text: str) -> Self:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class TrainRecord(_JsonRecord):
    run_id: str
    time: str  # ISO 8601
    train_data: str  # URI of the raw train images
    val_data: str
    stage: str | None  # the simulation stage the data belongs to, if any
    model: str  # URIs of the artifacts
    detector: str
    explainer: str
    val_accuracy: float
    val_loss: float
    champion_val_accuracy: float | None = None
    promoted: bool = True
    reason: str = ""
    champion_run_id: str | None = None

    def summary(self) -> str:
        verdict = "promoted" if self.promoted else "not promoted"
        champion = "" if self.champion_val_accuracy is None else f", champion {self.champion_val_accuracy:.3f}"
        return (
            f"train run {self.run_id} on {self.stage or self.train_data}: val accuracy "
            f"{self.val_accuracy:.3f}{champion} -> {verdict} ({self.reason})"
        )


@dataclass(frozen=True)
class ServeRecord(_JsonRecord):
    run_id: str
    time: str
    input: str  # URI of the batch
    model_run_id: str  # the train run whose model, detector and explainer were used
    reference_trained_on: str  # the stage (or data URI) the detector was trained on
    drift_report: str  # URIs
    predictions: str
    explanations: str
    is_drift: bool
    statistic: float
    threshold: float
    n_images: int
    n_skipped: int
    retrain: bool
    retrain_reason: str
    retrain_run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        drift = "DRIFT" if self.is_drift else "no drift"
        retrain = f"; retrain: {self.retrain_run_id or 'started'}" if self.retrain else ""
        return (
            f"serve run {self.run_id} on {self.input}: {self.n_images} images ({self.n_skipped} skipped), "
            f"{drift} (statistic {self.statistic:.3g} vs threshold {self.threshold:.3g}); "
            f"{self.retrain_reason}{retrain}"
        )
