"""What the algorithm component writes for the control steps: training metrics and an evaluation.

``metrics.json`` (in the model artifact) and ``evaluation.json`` (in a predictions artifact, when
the images were labelled) are read by champion/challenger on both backends, so each has one
contract.
"""

from __future__ import annotations

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
