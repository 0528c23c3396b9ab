"""The drift decision and champion/challenger, case by case."""

from __future__ import annotations

import pytest

from driftloop.config import DecisionPolicy
from driftloop.decision import RetrainDecision, decide_promotion, decide_retrain
from driftloop.drift_report import DetectorIdentity, DriftReport, EstimatedAccuracy
from driftloop.scores import Evaluation, TrainMetrics


def trained(val_accuracy: float) -> TrainMetrics:
    return TrainMetrics(val_accuracy=val_accuracy, val_loss=0.5, epochs=3, best_epoch=2, wall_time_s=1.0, n_train=10,
                        n_val=5, n_params=100, classes=["a", "b"], trained_on="original", config={})


def estimated(drop_points: float, validation_accuracy: float = 1.0) -> EstimatedAccuracy:
    """An estimate ``drop_points`` below the validation accuracy (its interval is not what rules read)."""
    value = validation_accuracy - drop_points / 100
    return EstimatedAccuracy(method="atc_ne", estimate=value, lower=max(0.0, value - 0.1), upper=min(1.0, value + 0.1),
                             confidence=0.95, n=42, validation_accuracy=validation_accuracy, drop_points=drop_points)


def report(*, is_drift: bool, batch_size: int = 42, too_small: bool = False, statistic: float = 1e-6,
           significant: bool | None = None, effect_size: float = 0.3,
           estimate: EstimatedAccuracy | None = None) -> DriftReport:
    significant = is_drift if significant is None else significant
    return DriftReport(
        is_drift=is_drift, too_small=too_small, correction="bonferroni", p_val=0.05, threshold=0.05 / 32,
        statistic=statistic if significant else 0.2, p_values=[0.2] * 32, distances=[0.1] * 32,
        significant=significant, effect_size=effect_size if significant else 0.0, min_distance=0.1,
        batch_size=batch_size, min_batch_size=20,
        detector=DetectorIdentity(features="uae", trained_on="original", reference_size=408),
        accuracy_estimate=estimate,
    )


POLICY = DecisionPolicy(rule="drift")  # the drift rule on its own: the cases below are about drift


def test_drift_on_a_stage_test_set_retrains_on_that_stages_train_and_val() -> None:
    decision = decide_retrain(report(is_drift=True), batch_source="data/stage-3/test", policy=POLICY)
    assert decision.retrain
    assert (decision.stage, decision.train_data, decision.val_data) == (
        "stage-3", "data/stage-3/train", "data/stage-3/val")
    assert "drift on stage-3" in decision.reason


def test_no_drift_does_not_retrain() -> None:
    decision = decide_retrain(report(is_drift=False), batch_source="data/stage-1/test", policy=POLICY)
    assert not decision.retrain
    assert decision.reason.startswith("no drift")
    assert decision.train_data is None


def test_a_significant_shift_below_the_effect_size_floor_does_not_retrain() -> None:
    small = report(is_drift=False, significant=True, statistic=1e-30, effect_size=0.04)
    decision = decide_retrain(small, batch_source="data/stage-1/test", policy=POLICY)
    assert not decision.retrain
    assert decision.reason == "no drift: smallest p-value 1e-30 < threshold 0.00156, KS distance 0.040 < floor 0.1"


def test_a_drift_reason_states_the_test_and_the_effect_size() -> None:
    decision = decide_retrain(report(is_drift=True), batch_source="data/stage-3/test", policy=POLICY)
    assert decision.reason == (
        "drift on stage-3: smallest p-value 1e-06 < threshold 0.00156, KS distance 0.300 >= floor 0.1")


def test_a_batch_below_the_minimum_is_too_small_to_judge() -> None:
    decision = decide_retrain(report(is_drift=True, batch_size=5, too_small=True),
                              batch_source="data/noisy/test", policy=POLICY)
    assert not decision.retrain
    assert decision.reason == "batch of 5 images is below the minimum of 20: too small to judge"


def test_the_drift_settings_minimum_is_the_only_one() -> None:
    """A batch the drift component judged (its minimum set lower) is decided on, whatever its size."""
    decision = decide_retrain(report(is_drift=True, batch_size=10), batch_source="data/noisy/test", policy=POLICY)
    assert decision.retrain


def test_cool_down_holds_back_a_retrain_until_enough_runs_have_passed() -> None:
    policy = DecisionPolicy(cooldown_runs=2)
    held = decide_retrain(report(is_drift=True), batch_source="data/stage-5/test", policy=policy,
                          runs_since_retrain=1)
    assert not held.retrain and "cool-down" in held.reason
    allowed = decide_retrain(report(is_drift=True), batch_source="data/stage-5/test", policy=policy,
                             runs_since_retrain=2)
    assert allowed.retrain
    first = decide_retrain(report(is_drift=True), batch_source="data/stage-5/test", policy=policy,
                           runs_since_retrain=None)
    assert first.retrain


def test_drift_on_a_batch_without_a_stage_says_what_to_do() -> None:
    decision = decide_retrain(report(is_drift=True), batch_source="batches/2026-11-25", policy=POLICY)
    assert not decision.retrain
    assert "upload" in decision.reason


def test_under_the_drift_rule_the_decision_records_its_numbers() -> None:
    decision = decide_retrain(report(is_drift=True, statistic=1e-6, estimate=estimated(2.0)),
                              batch_source="data/stage-3/test", policy=POLICY)
    assert decision.retrain
    assert (decision.rule, decision.fired) == ("drift", "drift")
    assert (decision.statistic, decision.threshold) == (1e-6, 0.05 / 32)
    # The estimate is recorded beside the drift rule's numbers, but drift alone decided: X does not apply.
    assert (decision.estimated_drop_points, decision.harm_threshold_points) == (2.0, None)


def test_the_default_rule_acts_on_drift_or_an_estimated_drop_of_10_points() -> None:
    """The default (docs/benchmarks.md section 6): fewer harmful batches missed than drift alone, and no
    more retrains on Original under the Original model."""
    default = DecisionPolicy()
    assert (default.rule, default.harm_threshold_points) == ("drift_or_harm", 10.0)
    for drift, drop, fired in ((True, 0.0, "drift"), (False, 10.0, "harm"), (False, 9.9, None)):
        decision = decide_retrain(report(is_drift=drift, estimate=estimated(drop)), batch_source="data/stage-3/test",
                                  policy=default)
        assert (decision.retrain, decision.fired) == (fired is not None, fired)


HARM = DecisionPolicy(rule="harm", harm_threshold_points=10)
BOTH = DecisionPolicy(rule="drift_and_harm", harm_threshold_points=10)
EITHER = DecisionPolicy(rule="drift_or_harm", harm_threshold_points=10)


@pytest.mark.parametrize(("policy", "drift", "drop", "retrain", "fired", "reason"), [
    (HARM, False, 12.0, True, "harm", "harm on stage-4: estimated drop 12.0 points >= 10 (atc_ne 88.0% vs "
                                      "validation 100.0%)"),
    (HARM, True, 10.0, True, "harm", "harm on stage-4: estimated drop 10.0 points >= 10"),
    (HARM, True, 9.9, False, None, "no harm: estimated drop 9.9 points < 10"),
    (BOTH, True, 12.0, True, "drift_and_harm", "drift and harm on stage-4: smallest p-value 1e-06 < threshold "
                                               "0.00156, KS distance 0.300 >= floor 0.1; "
                                               "estimated drop 12.0 points >= 10"),
    (BOTH, True, 4.0, False, None, "drift but no harm: smallest p-value 1e-06 < threshold 0.00156, "
                                   "KS distance 0.300 >= floor 0.1; estimated drop 4.0 points < 10"),
    (BOTH, False, 30.0, False, None, "harm but no drift: smallest p-value 0.2 >= threshold 0.00156; "
                                     "estimated drop 30.0 points >= 10"),
    (BOTH, False, 1.0, False, None, "no drift, no harm"),
    # Either condition retrains, and the decision says which held: the Stage-1 model that lost 11.9
    # points on Stage-3 without a drift flag (issue 24) is caught by its estimate alone.
    (EITHER, False, 12.0, True, "harm", "harm but no drift on stage-4: smallest p-value 0.2 >= threshold 0.00156; "
                                        "estimated drop 12.0 points >= 10"),
    (EITHER, True, 4.0, True, "drift", "drift but no harm on stage-4: smallest p-value 1e-06 < threshold "
                                       "0.00156, KS distance 0.300 >= floor 0.1; estimated drop 4.0 points < 10"),
    (EITHER, True, 12.0, True, "drift_and_harm", "drift and harm on stage-4"),
    (EITHER, False, 9.9, False, None, "no drift, no harm: smallest p-value 0.2 >= threshold 0.00156; "
                                      "estimated drop 9.9 points < 10"),
])
def test_the_harm_rules_compare_the_estimated_drop_with_x(
    policy: DecisionPolicy, drift: bool, drop: float, retrain: bool, fired: str | None, reason: str
) -> None:
    decision = decide_retrain(report(is_drift=drift, estimate=estimated(drop)), batch_source="data/stage-4/test",
                              policy=policy)
    assert (decision.retrain, decision.rule, decision.fired) == (retrain, policy.rule, fired)
    assert decision.reason.startswith(reason)
    assert (decision.estimated_drop_points, decision.harm_threshold_points) == (drop, 10)
    assert decision.statistic == (1e-6 if drift else 0.2)
    assert (decision.train_data is not None) is retrain
    assert RetrainDecision.from_json(decision.to_json()) == decision  # as the state machine hands it on


def test_harm_is_a_drop_from_the_models_own_validation_accuracy() -> None:
    """A model that was 80 % right on validation and is estimated at 75 % has lost 5 points, not 25."""
    decision = decide_retrain(report(is_drift=False, estimate=estimated(5.0, validation_accuracy=0.8)),
                              batch_source="data/stage-5/test",
                              policy=DecisionPolicy(rule="harm", harm_threshold_points=5))
    assert decision.retrain and "atc_ne 75.0% vs validation 80.0%" in decision.reason


@pytest.mark.parametrize("policy", [HARM, BOTH, EITHER])
@pytest.mark.parametrize("drift", [True, False])
def test_without_an_estimate_the_harm_rules_let_drift_alone_decide(policy: DecisionPolicy, drift: bool) -> None:
    """A model trained before calibrations existed has no estimate. Drift decides then: only a retrain
    brings a calibrated model, so waiting for harm would keep the uncalibrated one for good."""
    decision = decide_retrain(report(is_drift=drift), batch_source="data/noisy/test", policy=policy)
    assert decision.retrain is drift
    assert (decision.rule, decision.fired) == (policy.rule, "drift" if drift else None)
    assert "no accuracy estimate (the model has no calibration), so drift alone decides" in decision.reason
    assert (decision.estimated_drop_points, decision.harm_threshold_points) == (None, 10)


def test_a_harm_rule_in_cool_down_or_off_a_stage_says_which_rule_held() -> None:
    held = decide_retrain(report(is_drift=False, estimate=estimated(20.0)), batch_source="data/stage-5/test",
                          policy=DecisionPolicy(rule="harm", cooldown_runs=2), runs_since_retrain=0)
    assert not held.retrain and held.fired == "harm" and held.reason.startswith("harm, but in cool-down")
    elsewhere = decide_retrain(report(is_drift=False, estimate=estimated(20.0)), batch_source="batches/today",
                               policy=HARM)
    assert not elsewhere.retrain and elsewhere.fired == "harm" and elsewhere.reason.startswith("harm, but the batch")


def test_a_too_small_batch_is_not_judged_by_any_rule() -> None:
    decision = decide_retrain(report(is_drift=False, batch_size=5, too_small=True, estimate=estimated(50.0)),
                              batch_source="data/noisy/test", policy=HARM)
    assert not decision.retrain and "too small to judge" in decision.reason
    assert (decision.fired, decision.statistic, decision.estimated_drop_points) == (None, None, None)


@pytest.mark.parametrize(("values", "message"), [
    ({"rule": "harmful"}, "rule must be one of"), ({"harm_threshold_points": "-1"}, "harm_threshold_points"),
    ({"min_batch_size": "20"}, "min_batch_size is not a setting here any more; set settings.drift.min_batch_size"),
])
def test_a_bad_policy_is_a_clear_error(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecisionPolicy.from_mapping(values)


def test_the_policy_reads_cdk_json_strings() -> None:
    policy = DecisionPolicy.from_mapping({"rule": "drift_and_harm", "harm_threshold_points": "7.5"})
    assert (policy.rule, policy.harm_threshold_points) == ("drift_and_harm", 7.5)


def test_first_model_is_always_promoted() -> None:
    decision = decide_promotion(trained(0.5), None)
    assert decision.promote and decision.champion_accuracy is None


@pytest.mark.parametrize("challenger, champion, promote", [(0.9, 0.8, True), (0.8, 0.8, True), (0.7, 0.8, False)])
def test_challenger_replaces_champion_only_if_at_least_as_good(challenger: float, champion: float,
                                                                promote: bool) -> None:
    decision = decide_promotion(trained(challenger), Evaluation(n=5, classes=["a", "b"], accuracy=champion))
    assert decision.promote is promote
    assert (decision.challenger_accuracy, decision.champion_accuracy) == (challenger, champion)


def test_champion_evaluation_without_accuracy_is_an_error_not_a_promotion() -> None:
    with pytest.raises(ValueError, match="no accuracy"):
        decide_promotion(trained(0.9), Evaluation(n=5, classes=["a"], reason="unknown classes"))
