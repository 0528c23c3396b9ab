"""The accuracy-estimation benchmark judges its batches by the loop's own rules, not by a copy that drifted."""

from __future__ import annotations

import itertools

import pytest

from bench.accuracy_estimation import Policy, policies
from driftloop.config import DecisionPolicy
from driftloop.decision import judge
from driftloop.drift_report import DetectorIdentity, DriftReport, EstimatedAccuracy


def report(drift: bool, drop_points: float) -> DriftReport:
    estimate = EstimatedAccuracy(method="atc_ne", estimate=1 - drop_points / 100, lower=0.0, upper=1.0,
                                 confidence=0.95, n=42, validation_accuracy=1.0, drop_points=drop_points)
    return DriftReport(
        is_drift=drift, too_small=False, correction="bonferroni", p_val=0.05, threshold=0.05 / 7,
        statistic=1e-6 if drift else 0.2, p_values=[0.2] * 7, distances=[0.3] * 7, significant=drift,
        effect_size=0.3 if drift else 0.0, min_distance=0.1, batch_size=42, min_batch_size=20,
        detector=DetectorIdentity(features="predictions", trained_on="original", reference_size=408),
        accuracy_estimate=estimate,
    )


@pytest.mark.parametrize("kind", ["drift", "harm", "drift_and_harm", "drift_or_harm"])
def test_each_benchmarked_rule_fires_exactly_when_the_decision_would(kind: str) -> None:
    policy = Policy(kind, "atc_ne", 0.10)
    for drift, drop in itertools.product((False, True), (4.0, 10.0, 30.0)):
        decided = judge(report(drift, drop), DecisionPolicy(rule=kind, harm_threshold_points=10))  # type: ignore[arg-type]
        assert policy.fires(drift, {"atc_ne": drop / 100}) == (decided.fired is not None), (kind, drift, drop)


def test_every_rule_of_the_loop_is_benchmarked() -> None:
    from typing import get_args

    from driftloop.config import Rule

    assert {p.kind for p in policies()} == set(get_args(Rule))
