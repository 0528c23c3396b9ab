"""The drift decision and champion/challenger, case by case."""

from __future__ import annotations

import pytest

from driftloop.config import DecisionPolicy
from driftloop.decision import decide_promotion, decide_retrain
from driftloop.drift_report import DetectorIdentity, DriftReport
from driftloop.scores import Evaluation, TrainMetrics


def trained(val_accuracy: float) -> TrainMetrics:
    return TrainMetrics(val_accuracy=val_accuracy, val_loss=0.5, epochs=3, best_epoch=2, wall_time_s=1.0, n_train=10,
                        n_val=5, n_params=100, classes=["a", "b"], trained_on="original", config={})


def report(*, is_drift: bool, batch_size: int = 42, too_small: bool = False, statistic: float = 1e-6,
           significant: bool | None = None, effect_size: float = 0.3) -> DriftReport:
    significant = is_drift if significant is None else significant
    return DriftReport(
        is_drift=is_drift, too_small=too_small, correction="bonferroni", p_val=0.05, threshold=0.05 / 32,
        statistic=statistic if significant else 0.2, p_values=[0.2] * 32, distances=[0.1] * 32,
        significant=significant, effect_size=effect_size if significant else 0.0, min_distance=0.1,
        batch_size=batch_size, min_batch_size=20,
        detector=DetectorIdentity(features="uae", trained_on="original", reference_size=408),
    )


POLICY = DecisionPolicy()


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


@pytest.mark.parametrize("size, too_small", [(5, True), (10, False)])
def test_a_batch_below_the_minimum_is_too_small_to_judge(size: int, too_small: bool) -> None:
    decision = decide_retrain(report(is_drift=True, batch_size=size, too_small=too_small),
                              batch_source="data/noisy/test", policy=POLICY)
    assert not decision.retrain
    assert "too small to judge" in decision.reason


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
