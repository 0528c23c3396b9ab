"""What the algorithm component writes for the control steps: training metrics and an evaluation.

``metrics.json`` (in the model artifact) and ``evaluation.json`` (in a predictions artifact, when
the images were labelled) are read by champion/challenger on both backends, so each has one
contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from driftloop.contracts import Contract


@dataclass(frozen=True)
class TrainMetrics(Contract):
    val_accuracy: float  # of the restored (best) weights: what champion/challenger compares
    val_loss: float
    epochs: int
    best_epoch: int
    wall_time_s: float
    n_train: int
    n_val: int
    n_params: int
    classes: list[str]
    trained_on: str
    config: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    # Where training started: "random", or "champion (trained on <data>)"; with why, if not the champion.
    initial_weights: str = "random"


@dataclass(frozen=True)
class Evaluation(Contract):
    """Scores on labelled images; without scores (``accuracy`` None) ``reason`` says why."""

    n: int
    classes: list[str]
    accuracy: float | None = None
    loss: float | None = None
    confusion_matrix: list[list[int]] | None = None
    reason: str = ""

    @classmethod
    def merge(cls, parts: Sequence[Evaluation]) -> Evaluation:
        """One evaluation of a batch from each host's part (``driftloop.hosts``): confusion matrices
        added up, the loss weighted by images; without scores if any part has none."""
        if len(parts) == 1:
            return parts[0]
        n = sum(p.n for p in parts)
        classes = parts[0].classes
        if any(p.classes != classes for p in parts):
            raise ValueError(f"evaluation parts of one batch name different classes: {[p.classes for p in parts]}")
        unscored = [p for p in parts if p.confusion_matrix is None or p.loss is None]
        if unscored:
            return cls(n=n, classes=classes, reason=unscored[0].reason)
        confusion = [[sum(row) for row in zip(*rows, strict=True)]
                     for rows in zip(*(p.confusion_matrix or [] for p in parts), strict=True)]
        loss = sum((p.loss or 0.0) * p.n for p in parts) / n
        accuracy = sum(confusion[i][i] for i in range(len(confusion))) / n
        return cls(n=n, classes=classes, accuracy=accuracy, loss=loss, confusion_matrix=confusion)
