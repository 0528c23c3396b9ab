"""The two decisions of the loop, as pure functions (the local runner and the Lambdas call these).

* ``decide_retrain``: a drift report and a policy -> retrain or not, why, and on which data. The
  seed's rule: drift on stage k's test set retrains on stage k's train and validation sets.
* ``decide_promotion``: champion/challenger. A retrained model replaces the current one only if its
  accuracy on the new validation set is at least the current model's accuracy on that same set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from driftloop.config import DecisionPolicy
from driftloop.contracts import Contract
from driftloop.drift_report import DriftReport
from driftloop.layout import data_prefix, stage_of_data_prefix
from driftloop.scores import Evaluation, TrainMetrics


@dataclass(frozen=True)
class RetrainDecision(Contract):
    retrain: bool
    reason: str
    stage: str | None = None
    # Object-store keys (prefixes) of the data to train on, when ``retrain``.
    train_data: str | None = None
    val_data: str | None = None
    # What the cool-down counted: serve runs since the last one that started a retrain (None: never).
    runs_since_retrain: int | None = None


@dataclass(frozen=True)
class PromotionDecision(Contract):
    promote: bool
    reason: str
    challenger_accuracy: float
    champion_accuracy: float | None


def decide_retrain(
    report: DriftReport,
    *,
    batch_source: str,
    policy: DecisionPolicy,
    runs_since_retrain: int | None = None,
) -> RetrainDecision:
    """Decide whether the batch read from ``batch_source`` (an object-store key prefix) retrains.

    ``runs_since_retrain`` counts serve runs since the last retrain started (None: never), for the
    optional cool-down.
    """
    return replace(_decide_retrain(report, batch_source, policy, runs_since_retrain),
                   runs_since_retrain=runs_since_retrain)


def _decide_retrain(
    report: DriftReport, batch_source: str, policy: DecisionPolicy, runs_since_retrain: int | None
) -> RetrainDecision:
    if report.too_small or report.batch_size < policy.min_batch_size:
        return RetrainDecision(
            False,
            f"batch of {report.batch_size} images is below the minimum of "
            f"{max(policy.min_batch_size, report.min_batch_size)}: too small to judge",
        )
    if not report.is_drift:
        return RetrainDecision(
            False, f"no drift: {report.verdict()}"
        )
    if runs_since_retrain is not None and runs_since_retrain < policy.cooldown_runs:
        return RetrainDecision(
            False,
            f"drift, but in cool-down: {runs_since_retrain} run(s) since the last retrain, "
            f"policy waits {policy.cooldown_runs}",
        )
    stage = stage_of_data_prefix(batch_source)
    if stage is None:
        return RetrainDecision(
            False,
            # The record names the batch already: a long key is not repeated (records stay small).
            "drift, but the batch is not a stage's data set (data/<stage>/test), so there is no matching "
            "train and validation data: upload it and start the train pipeline",
        )
    return RetrainDecision(
        True,
        f"drift on {stage}: {report.verdict()}",
        stage=stage,
        train_data=data_prefix(stage, "train"),
        val_data=data_prefix(stage, "val"),
    )


def decide_promotion(challenger_metrics: TrainMetrics, champion_evaluation: Evaluation | None) -> PromotionDecision:
    """Compare the new model's validation accuracy with the current model's on the same set.

    ``champion_evaluation`` is the current model's evaluation on the new validation set, None when
    there is no current model (the first training always promotes).
    """
    challenger = challenger_metrics.val_accuracy
    if champion_evaluation is None:
        return PromotionDecision(True, "no current model: the first model is promoted", challenger, None)
    if champion_evaluation.accuracy is None:
        raise ValueError(
            "the champion's evaluation has no accuracy (were the validation images labelled with the "
            f"model's classes?): {champion_evaluation.reason}"
        )
    champion = champion_evaluation.accuracy
    if challenger >= champion:
        return PromotionDecision(
            True, f"challenger {challenger:.3f} >= champion {champion:.3f} on the new validation set",
            challenger, champion,
        )
    return PromotionDecision(
        False, f"challenger {challenger:.3f} < champion {champion:.3f} on the new validation set: kept champion",
        challenger, champion,
    )
