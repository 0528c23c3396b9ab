"""The two decisions of the loop, as pure functions (the local runner and the Lambdas call these).

* ``decide_retrain``: a drift report and a policy -> retrain or not, why, and on which data. The
  seed's rule: drift on stage k's test set retrains on stage k's train and validation sets. The
  policy's ``rule`` says which condition of the batch counts: ``drift``, ``harm`` (the report's
  label-free accuracy estimate at least ``harm_threshold_points`` below the model's validation
  accuracy), ``drift_and_harm`` (both) or ``drift_or_harm`` (either); the decision records which
  condition held, with its numbers.
* ``decide_promotion``: champion/challenger. A retrained model replaces the current one only if its
  accuracy on the new validation set is at least the current model's accuracy on that same set.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from driftloop.config import DecisionPolicy, Fired, Rule
from driftloop.contracts import Contract
from driftloop.drift_report import DriftReport
from driftloop.layout import data_prefix, stage_of_data_prefix
from driftloop.records import LabelledSummary
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
    # The policy's rule, and the rule that held for this batch (None: none did, or the batch was too
    # small to judge; "drift" under a harm rule when the report has no accuracy estimate).
    rule: Rule = "drift"
    fired: Fired | None = None
    # Their numbers: the drift statistic against its threshold; the estimated drop (points) against X.
    statistic: float | None = None
    threshold: float | None = None
    estimated_drop_points: float | None = None
    harm_threshold_points: float | None = None
    # Production mode: what the labels said (None in simulation mode). A retrain on labels leaves
    # ``train_data``/``val_data`` to the control step that assembles the set (``on_labels``).
    evidence: LabelEvidence | None = None
    on_labels: bool = False
    # The labelling request written for a drifting batch without labels (URI of its manifest) and its size.
    label_request: str | None = None
    label_request_images: int = 0
    labels_joined: list[LabelledSummary] = field(default_factory=list)


@dataclass(frozen=True)
class LabelEvidence(Contract):
    """What the labels that came back say when a production serve run decides."""

    harmed_batch: str | None  # the batch the current model served that lost most, if any lost the threshold
    measured_drop_points: float | None
    new_labels: int  # labelled images in the window that the current model did not train on
    window: list[str]  # the batches whose labels a retrain would add, oldest first


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
    decision = replace(_decide_retrain(report, batch_source, policy, runs_since_retrain),
                       runs_since_retrain=runs_since_retrain, rule=policy.rule)
    if report.too_small:
        return decision
    estimate = report.accuracy_estimate
    return replace(
        decision, statistic=report.statistic, threshold=report.threshold,
        estimated_drop_points=None if estimate is None else estimate.drop_points,
        harm_threshold_points=None if policy.rule == "drift" else policy.harm_threshold_points,
    )


@dataclass(frozen=True)
class Verdict:
    """What the policy's rule made of a batch: the rule that held (None: none), its name and numbers in words."""

    fired: Fired | None
    what: str  # "drift", "harm", "drift and harm", "no drift", ...
    numbers: str

    @property
    def reason(self) -> str:
        return f"{self.what}: {self.numbers}"


# Under a harm rule a report without an estimate (a model trained before calibrations existed) is
# judged by drift alone: only a retrain brings a calibrated model, so waiting for harm would keep
# an uncalibrated model for good.
NO_ESTIMATE = "no accuracy estimate (the model has no calibration), so drift alone decides"


def judge(report: DriftReport, policy: DecisionPolicy) -> Verdict:
    """Apply the policy's rule to a batch that was big enough to judge."""
    drift = report.is_drift
    p_value = report.verdict()  # the significance result, and the effect size against the floor
    estimate = report.accuracy_estimate
    if policy.rule == "drift" or estimate is None:
        numbers = p_value if policy.rule == "drift" else f"{p_value}; {NO_ESTIMATE}"
        return Verdict("drift", "drift", numbers) if drift else Verdict(None, "no drift", numbers)
    x = policy.harm_threshold_points
    harm = estimate.drop_points >= x
    drop = (f"estimated drop {estimate.drop_points:.1f} points {'>=' if harm else '<'} {x:g} ({estimate.method} "
            f"{100 * estimate.estimate:.1f}% vs validation {100 * estimate.validation_accuracy:.1f}%)")
    if policy.rule == "harm":
        return Verdict("harm", "harm", drop) if harm else Verdict(None, "no harm", drop)
    return Verdict(_fired_of_both(policy.rule, drift, harm), BOTH_CONDITIONS[(drift, harm)], f"{p_value}; {drop}")


BOTH_CONDITIONS: dict[tuple[bool, bool], str] = {
    (True, True): "drift and harm", (True, False): "drift but no harm",
    (False, True): "harm but no drift", (False, False): "no drift, no harm",
}


def _fired_of_both(rule: Rule, drift: bool, harm: bool) -> Fired | None:
    """Under ``drift_and_harm`` both conditions must hold; under ``drift_or_harm`` either does, and the
    decision records which (both: ``drift_and_harm``), so a retrain says what started it."""
    if drift and harm:
        return "drift_and_harm"
    if rule == "drift_or_harm" and (drift or harm):
        return "drift" if drift else "harm"
    return None


def _decide_retrain(
    report: DriftReport, batch_source: str, policy: DecisionPolicy, runs_since_retrain: int | None
) -> RetrainDecision:
    if report.too_small:
        return RetrainDecision(
            False,
            f"batch of {report.batch_size} images is below the minimum of {report.min_batch_size}: too small to judge",
        )
    verdict = judge(report, policy)
    if verdict.fired is None:
        return RetrainDecision(False, verdict.reason)
    if runs_since_retrain is not None and runs_since_retrain < policy.cooldown_runs:
        return RetrainDecision(
            False,
            f"{verdict.what}, but in cool-down: {runs_since_retrain} run(s) since the last retrain, "
            f"policy waits {policy.cooldown_runs}",
            fired=verdict.fired,
        )
    stage = stage_of_data_prefix(batch_source)
    if stage is None:
        return RetrainDecision(
            False,
            # The record names the batch already: a long key is not repeated (records stay small).
            f"{verdict.what}, but the batch is not a stage's data set (data/<stage>/test), so there is no "
            "matching train and validation data: upload it and start the train pipeline",
            fired=verdict.fired,
        )
    return RetrainDecision(
        True,
        f"{verdict.what} on {stage}: {verdict.numbers}",
        stage=stage,
        train_data=data_prefix(stage, "train"),
        val_data=data_prefix(stage, "val"),
        fired=verdict.fired,
    )


def _production_verdict(report: DriftReport, evidence: LabelEvidence, policy: DecisionPolicy) -> Verdict:
    drift = report.is_drift and not report.too_small
    drift_words = f"{'drift' if drift else 'no drift'} ({report.verdict()})"
    if evidence.harmed_batch is not None and evidence.measured_drop_points is not None:
        return Verdict("measured_harm", "measured harm",
                       f"batch {evidence.harmed_batch} scored {evidence.measured_drop_points:.1f} points below the "
                       f"model's validation accuracy on its labels (>= {policy.measured_harm_points:g}); {drift_words}")
    if drift and policy.production_rule == "drift_or_measured_harm":
        return Verdict("drift", "drift", drift_words)
    return Verdict(None, "no measured harm", drift_words)


def decide_production_retrain(
    report: DriftReport, *, policy: DecisionPolicy, evidence: LabelEvidence, runs_since_retrain: int | None = None,
) -> RetrainDecision:
    """Production mode: retrain on labelled production images when the labels (or drift) say so and enough came back.

    The training set is assembled by the control step afterwards (``on_labels``): the current model's
    base data plus the labelled images of ``evidence.window`` (``driftloop.production``).
    """
    verdict = _production_verdict(report, evidence, policy)
    decision = RetrainDecision(False, verdict.reason, runs_since_retrain=runs_since_retrain, rule=policy.rule,
                               fired=verdict.fired, statistic=report.statistic, threshold=report.threshold,
                               evidence=evidence)
    if verdict.fired is None:
        return decision
    if runs_since_retrain is not None and runs_since_retrain < policy.cooldown_runs:
        return replace(decision, reason=f"{verdict.what}, but in cool-down: {runs_since_retrain} run(s) since the "
                                        f"last retrain, policy waits {policy.cooldown_runs}")
    if evidence.new_labels < policy.min_new_labels:
        return replace(decision, reason=f"{verdict.reason}; waiting for labels: {evidence.new_labels} of "
                                        f"{policy.min_new_labels} new labelled images")
    return replace(decision, retrain=True, on_labels=True,
                   reason=f"{verdict.reason}; retrain on {evidence.new_labels} new labelled images of "
                          f"{len(evidence.window)} batch(es)")


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
