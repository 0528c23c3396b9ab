"""Label-free accuracy estimation for a batch, from the classifier's class probabilities.

A drift flag says that the inputs moved, not that the model got worse. This module estimates how
accurate the model is on an unlabelled batch, with an interval that reflects the batch size, from
the softmax outputs alone. It is calibrated once, at train time, on the labelled validation set
(``calibrate``), and the calibration is a small frozen, JSON-serialisable object
(``AccuracyCalibration``) saved beside the model or detector. Methods (``METHODS``):

* ``average_confidence``: the mean of the largest class probability. The baseline: right only if
  the model is calibrated, and softmax CNNs are over-confident, more so under shift.
* ``atc_mc`` / ``atc_ne``: Average Thresholded Confidence (Garg et al., "Leveraging Unlabeled Data
  to Predict Out-of-Distribution Performance", ICLR 2022). On validation, pick the threshold ``t``
  so that the fraction of examples scoring at least ``t`` equals the validation accuracy; the
  estimate for a batch is the fraction of its examples scoring at least ``t``. The score is the
  maximum confidence (``mc``) or the negative entropy of the probabilities (``ne``; the paper's
  better variant).
* ``cbpe``: confidence-based performance estimation after NannyML's CBPE, for the one binary
  target "the prediction is right": calibrate the maximum confidence on validation (isotonic
  regression, pool-adjacent-violators), then the expected accuracy of a batch is the mean of its
  calibrated confidences. A validation set without errors makes the map the constant 1.

One more method needs a second model, so it sits beside the others (``estimate_agreement``):

* ``agreement``: generalisation disagreement equality (Jiang et al., "Assessing Generalization of
  SGD via Disagreement", ICLR 2022): two copies of the classifier trained alike but from another
  seed agree on about as many images as each gets right, so the estimate is the share of the batch
  on which their predicted classes agree. No calibration; it sees a model that is confidently
  wrong (which no confidence-based method can) when the two copies are wrong differently.

The loop's own models (``estimate_with_models``, issue 24): the serving model and the champions before
it, each trained on another stage, all scored on the batch and on the serving model's labelled
validation set (``ModelsCalibration``). ``triplet`` solves agreement(i, j) = a_i a_j over every pair
(independent errors; Platanios et al., UAI 2014) and is the best of them on the benchmark (10.4 points
at 200 images against ATC's 12.8; docs/benchmarks.md section 6.2); ``aline`` is ALine-S (Baek et al.,
NeurIPS 2022), ``previous_agreement`` and ``previous_scaled`` use the newest earlier champion alone.
The loop does not run them yet: the serve step does not have the earlier champions.

Intervals (``AccuracyEstimate.lower``/``upper``, at ``confidence``, 0.95 by default):

* ``average_confidence`` and ``cbpe`` say each image is right with its own probability ``p_i``; if
  so, the number right in the batch is Poisson-binomial, and the interval is that distribution's
  central interval (exact for up to ``EXACT_MAX_N`` images, normal beyond). It is the interval for
  *this batch's* accuracy, and it narrows as 1/sqrt(n).
* ATC (and ``agreement``) gives a count, not per-image probabilities: ``k`` of ``n`` images score at
  least ``t`` (or agree).
  Under ATC's assumption the batch's accuracy ``A`` and ``k / n`` are two proportions of the same
  ``n`` images with one mean ``p``; ``A - k / n`` has variance ``D / n``, where ``D`` is the chance
  that "right" and "above the threshold" disagree, and ``D <= 2 p (1 - p)`` whenever the score is
  not anti-correlated with being right. So the interval is the Wilson score interval for ``k / n``
  at an effective size ``n / 2`` (``paired_wilson``): it covers at least its nominal rate when ATC's
  assumption holds, more when the score separates right from wrong well. (The plain Wilson interval
  at ``n`` covers the *population* accuracy, not the batch's; the normal one collapses to a point at
  ``k = n``, the usual case for a good model on a small batch.)

Validity domain (``class_mix_domain``): the calibration saw the model's *predicted class mix* on the
validation set (``AccuracyCalibration.predicted_counts``). A batch whose mix lies further from it (total
variation distance) than sampling alone puts a batch of its size in all but ``DOMAIN_ALPHA`` of draws
is outside what the calibration covered, and its estimate is marked unreliable. Why the class mix:
the estimate fails where the model is *confidently wrong*, and confident errors are systematic, so
they pile into a few classes; the confidence cannot show that, the mix of predicted classes does
(measured against the other label-free statistics on the benchmark's first seed: the KS distances of
the drift features, of the entropy, the share of scores below validation's; docs/benchmarks.md
section 6). A true change of the class mix (label shift) marks the estimate too, rightly: the
calibration did not cover it either.

Neither interval includes the error of the method under shift (its bias), nor the error of a
threshold or map fitted on a small validation set: ``bench/accuracy_estimation.py`` measures how
often they cover the true batch accuracy (docs/benchmarks.md).

Pure numpy: no TensorFlow, and nothing here is imported by the decision Lambda's modules
(``driftloop.decision``, ``driftloop.records``), which must run without numpy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist
from typing import Any, Final, Literal, get_args

import numpy as np

from driftloop.drift_report import EstimatedAccuracy
from driftloop.intervals import wilson_interval  # one function for both layers; re-exported here

Method = Literal["average_confidence", "atc_mc", "atc_ne", "cbpe"]
METHODS: Final[tuple[Method, ...]] = get_args(Method)
AGREEMENT: Final = "agreement"  # needs a second model: ``estimate_agreement``
# Measured (docs/benchmarks.md, section 6): the smallest error of the single-model methods at
# 200-image batches over 3 data seeds × 7 models × 7 stages (``agreement`` is smaller, at the cost
# of a second trained copy).
DEFAULT_METHOD: Final[Method] = "atc_ne"
CALIBRATION_FILE: Final = "accuracy_calibration.json"
SCHEMA_VERSION: Final = 1
DEFAULT_CONFIDENCE: Final = 0.95
# A batch's class mix outside the range sampling gives in all but this share of draws is outside the
# domain: the drift test's α (DriftConfig.p_val's default), so an unchanged batch is marked about as
# rarely as it is flagged. The range is simulated from this many draws, with a fixed seed (repeatable).
DOMAIN_ALPHA: Final = 0.05
DOMAIN_DRAWS: Final = 4000
EXACT_MAX_N: Final = 5000  # Poisson-binomial by dynamic programming up to here (O(n^2)), normal beyond
ENTROPY_FLOOR: Final = 1e-12  # p log p at p = 0 is taken as 0 via log(max(p, floor)), as driftloop.ml.drift does
_INTERVALS: Final[dict[Method, str]] = {
    "average_confidence": "poisson_binomial", "cbpe": "poisson_binomial",
    "atc_mc": "paired_wilson", "atc_ne": "paired_wilson",
}


def _probabilities(probabilities: Any, n_classes: int | None = None) -> np.ndarray:
    array = np.asarray(probabilities, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(f"probabilities must be an (n, n_classes >= 2) array, got shape {array.shape}")
    if n_classes is not None and array.shape[1] != n_classes:
        raise ValueError(f"probabilities have {array.shape[1]} classes, the calibration {n_classes}")
    if not np.all(np.isfinite(array)) or array.min(initial=0.0) < 0.0 or array.max(initial=0.0) > 1.0 + 1e-6:
        raise ValueError("probabilities must be finite and within [0, 1]")
    return array


def negative_entropy(probabilities: Any) -> np.ndarray:
    """``sum p log p`` of each row (0 for a one-hot row, ``-log n_classes`` for a uniform one)."""
    p = _probabilities(probabilities)
    return np.asarray((p * np.log(np.maximum(p, ENTROPY_FLOOR))).sum(axis=1))


def atc_threshold(scores: Any, correct: Any) -> float:
    """The threshold ``t`` at which the fraction of ``scores >= t`` equals the fraction ``correct``.

    With ``k`` of ``n`` correct, ``t`` is the ``k``-th largest score, so that exactly ``k`` examples
    score at least ``t`` when no scores tie: Garg et al.'s rule. With ``k = 0``, the next float above
    the largest score (finite, so the calibration stays strict JSON).
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    k = int(np.count_nonzero(np.asarray(correct, dtype=bool)))
    if len(s) == 0:
        raise ValueError("no scores to choose a threshold from")
    return math.nextafter(float(s[-1]), math.inf) if k == 0 else float(s[len(s) - k])


def isotonic_fit(x: Any, y: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Non-decreasing least-squares fit of ``y`` on ``x`` (pool adjacent violators).

    Returns knots ``(xs, ys)``: both ends of every pooled block, so ``np.interp(x, xs, ys)`` is the
    step function with linear steps between blocks and the end values beyond (what scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip")`` predicts). Tied ``x`` are averaged first.
    """
    x_arr, y_arr = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x_arr.shape != y_arr.shape or x_arr.ndim != 1 or len(x_arr) == 0:
        raise ValueError("x and y must be non-empty 1-D arrays of one length")
    unique, inverse, counts = np.unique(x_arr, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=y_arr)
    # Blocks as (value sum, weight, first x, last x); merge while the last two do not increase.
    blocks: list[tuple[float, float, float, float]] = []
    for value, weight, position in zip(sums.tolist(), counts.tolist(), unique.tolist(), strict=True):
        blocks.append((float(value), float(weight), float(position), float(position)))
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            last = blocks.pop()
            first = blocks.pop()
            blocks.append((first[0] + last[0], first[1] + last[1], first[2], last[3]))
    xs: list[float] = []
    ys: list[float] = []
    for total, weight, first_x, last_x in blocks:
        for position in (first_x, last_x) if last_x > first_x else (first_x,):
            xs.append(position)
            ys.append(total / weight)
    return tuple(xs), tuple(ys)


@dataclass(frozen=True)
class AccuracyCalibration:
    """What the estimators learned from the labelled validation set; saved as JSON at train time."""

    n: int  # validation images
    n_classes: int
    accuracy: float  # validation accuracy: the reference the harm policy measures a drop from
    average_confidence: float  # mean max confidence on validation (> accuracy: over-confident)
    atc_mc_threshold: float  # score >= threshold counts as right
    atc_ne_threshold: float
    cbpe_x: tuple[float, ...]  # isotonic map of max confidence -> P(correct): knots
    cbpe_y: tuple[float, ...]
    schema: int = SCHEMA_VERSION
    # Validation images predicted as each class: the class mix the calibration covered (the validity
    # domain). Empty in calibrations written before domains existed: their estimates have no domain.
    predicted_counts: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cbpe_x"], data["cbpe_y"] = list(self.cbpe_x), list(self.cbpe_y)
        data["predicted_counts"] = list(self.predicted_counts)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccuracyCalibration:
        known = {f.name for f in fields(cls)}
        optional = {f.name for f in fields(cls) if f.default is not MISSING}
        unknown, missing = sorted(set(data) - known), sorted(known - set(data) - optional)
        if unknown or missing:
            raise ValueError(f"AccuracyCalibration: unknown keys {unknown}, missing keys {missing}")
        if data.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"AccuracyCalibration schema {data['schema']} is not {SCHEMA_VERSION}")
        values = dict(data)
        values["cbpe_x"] = tuple(float(v) for v in data["cbpe_x"])
        values["cbpe_y"] = tuple(float(v) for v in data["cbpe_y"])
        values["predicted_counts"] = tuple(int(v) for v in data.get("predicted_counts", ()))
        for name in ("accuracy", "average_confidence", "atc_mc_threshold", "atc_ne_threshold"):
            values[name] = float(data[name])
        calibration = cls(**values)
        if len(calibration.cbpe_x) != len(calibration.cbpe_y) or not calibration.cbpe_x:
            raise ValueError("AccuracyCalibration: cbpe_x and cbpe_y must be non-empty and of one length")
        if calibration.predicted_counts and len(calibration.predicted_counts) != calibration.n_classes:
            raise ValueError("AccuracyCalibration: predicted_counts must count each of the n_classes")
        return calibration

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> AccuracyCalibration:
        return cls.from_dict(json.loads(text))

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")

    @classmethod
    def read(cls, path: Path) -> AccuracyCalibration:
        return cls.from_json(path.read_text())


def calibrate(probabilities: Any, labels: Any) -> AccuracyCalibration:
    """Learn every method's threshold or map from labelled (validation) outputs."""
    p = _probabilities(probabilities)
    y = np.asarray(labels)
    if y.shape != (len(p),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {len(p)} integer class indices, got {y.dtype} {y.shape}")
    if len(p) == 0:
        raise ValueError("calibration needs at least one labelled example")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must index the {p.shape[1]} classes")
    correct = p.argmax(axis=1) == y
    confidence = p.max(axis=1)
    xs, ys = isotonic_fit(confidence, correct.astype(np.float64))
    return AccuracyCalibration(
        n=len(p), n_classes=p.shape[1], accuracy=float(correct.mean()), average_confidence=float(confidence.mean()),
        atc_mc_threshold=atc_threshold(confidence, correct),
        atc_ne_threshold=atc_threshold(negative_entropy(p), correct),
        cbpe_x=xs, cbpe_y=ys, predicted_counts=tuple(int(c) for c in predicted_counts(p)),
    )


def predicted_counts(probabilities: Any) -> np.ndarray:
    """How many images of the batch the model predicts as each class."""
    p = _probabilities(probabilities)
    return np.bincount(p.argmax(axis=1), minlength=p.shape[1])


def class_mix_distance(counts: Any, reference: Any) -> float:
    """Total variation distance between two class mixes given as counts: the share of the predictions
    that would have to change class for one mix to become the other (0 to 1)."""
    a, b = np.asarray(counts, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


@lru_cache(maxsize=256)
def class_mix_limit(reference: tuple[int, ...], n: int, alpha: float = DOMAIN_ALPHA) -> float:
    """The class-mix distance that sampling alone exceeds in ``alpha`` of draws: a batch of ``n`` and
    the ``reference`` counts' own images, both drawn from the reference's mix (so the small
    validation set's own noise widens the range, as it should). Cached: a loop serves one size often."""
    counts = np.asarray(reference, dtype=np.int64)
    m, shares = int(counts.sum()), counts / counts.sum()
    rng = np.random.default_rng(0)
    again = rng.multinomial(m, shares, size=DOMAIN_DRAWS) / m
    batch = rng.multinomial(n, shares, size=DOMAIN_DRAWS) / n
    return float(np.quantile(0.5 * np.abs(again - batch).sum(axis=1), 1 - alpha))


def class_mix_domain(probabilities: Any, calibration: AccuracyCalibration,
                     alpha: float = DOMAIN_ALPHA) -> tuple[float, float] | None:
    """The batch's class-mix distance from validation and the limit of the calibration's domain
    (outside when the distance exceeds the limit); None for a calibration without its class mix."""
    if not calibration.predicted_counts:
        return None
    counts = predicted_counts(_probabilities(probabilities, calibration.n_classes))
    return (class_mix_distance(counts, calibration.predicted_counts),
            class_mix_limit(calibration.predicted_counts, int(counts.sum()), alpha))


@dataclass(frozen=True)
class AccuracyEstimate:
    """A batch's estimated accuracy (a fraction) and its interval for this batch size."""

    method: str
    accuracy: float
    lower: float
    upper: float
    confidence: float  # of the interval
    interval: str  # "paired_wilson" (ATC) or "poisson_binomial"
    n: int  # images in the batch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccuracyEstimate:
        return cls(method=str(data["method"]), accuracy=float(data["accuracy"]), lower=float(data["lower"]),
                   upper=float(data["upper"]), confidence=float(data["confidence"]), interval=str(data["interval"]),
                   n=int(data["n"]))


def poisson_binomial_interval(p: Any, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Central interval of ``(number of successes) / n`` for independent Bernoulli(``p_i``).

    Exact (the distribution by dynamic programming) up to ``EXACT_MAX_N`` trials: the smallest
    counts whose CDF reaches (1 - confidence) / 2 and (1 + confidence) / 2, so it covers at least
    ``confidence``. Beyond, the normal approximation.
    """
    probs = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    n = len(probs)
    if n < 1:
        raise ValueError("need at least one trial")
    tail = (1.0 - confidence) / 2
    if n > EXACT_MAX_N:
        mean, sd = float(probs.mean()), float(np.sqrt((probs * (1 - probs)).sum()) / n)
        z = NormalDist().inv_cdf(1 - tail)
        return max(0.0, mean - z * sd), min(1.0, mean + z * sd)
    pmf = np.zeros(n + 1)
    pmf[0] = 1.0
    for i, q in enumerate(probs, start=1):
        pmf[1:i + 1] = pmf[1:i + 1] * (1 - q) + pmf[:i] * q
        pmf[0] *= 1 - q
    cdf = np.cumsum(pmf)
    low = int(np.searchsorted(cdf, tail - 1e-12))
    high = int(np.searchsorted(cdf, 1 - tail - 1e-12))
    return low / n, min(high, n) / n


def per_image_probability(probabilities: Any, calibration: AccuracyCalibration, method: Method) -> np.ndarray:
    """What a method takes as each image's chance of being right (ATC: 1 above the threshold, else 0)."""
    p = _probabilities(probabilities, calibration.n_classes)
    if method == "average_confidence":
        return np.asarray(p.max(axis=1))
    if method == "cbpe":
        return np.asarray(np.interp(p.max(axis=1), calibration.cbpe_x, calibration.cbpe_y))
    if method == "atc_mc":
        return (p.max(axis=1) >= calibration.atc_mc_threshold).astype(np.float64)
    if method == "atc_ne":
        return (negative_entropy(p) >= calibration.atc_ne_threshold).astype(np.float64)
    raise ValueError(f"unknown method {method!r}; known: {METHODS}")


def estimate(probabilities: Any, calibration: AccuracyCalibration, method: Method = DEFAULT_METHOD,
             confidence: float = DEFAULT_CONFIDENCE) -> AccuracyEstimate:
    """Estimate the accuracy of the model on one unlabelled batch from its class probabilities."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    chance = per_image_probability(probabilities, calibration, method)
    n = len(chance)
    if n == 0:
        raise ValueError("cannot estimate the accuracy of an empty batch")
    point = float(chance.mean())
    interval = _INTERVALS[method]
    if interval == "paired_wilson":
        # The truth and the estimate are two proportions of the same n images with one mean (ATC's
        # assumption); their difference has variance D / n, D = P(right != above threshold) <=
        # 2 p (1 - p) when the score is not anti-correlated with being right: Wilson at n / 2.
        lower, upper = wilson_interval(n * point / 2, n / 2, confidence)
    else:
        lower, upper = poisson_binomial_interval(chance, confidence)
    return AccuracyEstimate(method=method, accuracy=point, lower=min(lower, point), upper=max(upper, point),
                            confidence=confidence, interval=interval, n=n)


def estimate_agreement(probabilities: Any, second: Any, confidence: float = DEFAULT_CONFIDENCE) -> AccuracyEstimate:
    """The share of the batch on which two independently trained copies of the model agree.

    ``probabilities`` and ``second`` are both copies' outputs on the same images, in one order.
    The interval is ``paired_wilson``, as for ATC (the count is of agreeing images).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    first, other = _probabilities(probabilities), _probabilities(second)
    if first.shape != other.shape:
        raise ValueError(f"the two models' outputs differ in shape: {first.shape} vs {other.shape}")
    n = len(first)
    if n == 0:
        raise ValueError("cannot estimate the accuracy of an empty batch")
    point = float(np.mean(first.argmax(axis=1) == other.argmax(axis=1)))
    lower, upper = wilson_interval(n * point / 2, n / 2, confidence)
    return AccuracyEstimate(method=AGREEMENT, accuracy=point, lower=min(lower, point), upper=max(upper, point),
                            confidence=confidence, interval="paired_wilson", n=n)


def estimate_all(probabilities: Any, calibration: AccuracyCalibration,
                 confidence: float = DEFAULT_CONFIDENCE) -> dict[str, AccuracyEstimate]:
    """Every method's estimate of one batch, by method name."""
    return {method: estimate(probabilities, calibration, method, confidence) for method in METHODS}


def estimated_accuracy(probabilities: Any, calibration: AccuracyCalibration, method: Method = DEFAULT_METHOD,
                       confidence: float = DEFAULT_CONFIDENCE) -> EstimatedAccuracy:
    """One batch's estimate as the drift report and the serve record carry it: with the drop from validation."""
    found = estimate(probabilities, calibration, method, confidence)
    domain = class_mix_domain(probabilities, calibration)
    return EstimatedAccuracy(
        method=found.method, estimate=found.accuracy, lower=found.lower, upper=found.upper,
        confidence=found.confidence, n=found.n, validation_accuracy=calibration.accuracy,
        drop_points=100 * (calibration.accuracy - found.accuracy),
        domain_distance=None if domain is None else domain[0], domain_limit=None if domain is None else domain[1],
    )


# The loop's own models (issue 24, item 3): the serving model and the champions before it, each
# trained on another stage, scored on the same batch. Calibrated on the serving model's labelled
# validation set, on which every one of them is run once (``ModelsCalibration``).
ModelsMethod = Literal["previous_agreement", "previous_scaled", "aline", "triplet"]
MODELS_METHODS: Final[tuple[ModelsMethod, ...]] = get_args(ModelsMethod)


def agreement_matrix(predictions: Any) -> np.ndarray:
    """Pairwise share of images on which two models predict the same class (models × models).

    ``predictions`` holds each model's predicted class per image, serving model first, all in one order."""
    classes = np.asarray(predictions)
    if classes.ndim != 2 or classes.shape[1] == 0:
        raise ValueError(f"need models × images predicted classes, got shape {classes.shape}")
    return np.asarray((classes[:, None, :] == classes[None, :, :]).mean(axis=2))


@dataclass(frozen=True)
class ModelsCalibration:
    """The models on the serving model's validation set: each one's accuracy and their agreements."""

    accuracies: tuple[float, ...]  # serving model first, then the champions before it, newest first
    agreements: tuple[tuple[float, ...], ...]
    n: int  # validation images

    @classmethod
    def fit(cls, predictions: Any, labels: Any) -> ModelsCalibration:
        classes, truth = np.asarray(predictions), np.asarray(labels)
        matrix = agreement_matrix(classes)
        return cls(accuracies=tuple(float(a) for a in (classes == truth[None, :]).mean(axis=1)),
                   agreements=tuple(tuple(float(x) for x in row) for row in matrix), n=len(truth))


def _probit(rate: Any, n: int) -> np.ndarray:
    """The normal quantile of a rate, moved off 0 and 1 by half an image (a 34-image 100 % stays finite)."""
    clipped = (np.asarray(rate, dtype=np.float64) * n + 0.5) / (n + 1)
    return np.vectorize(NormalDist().inv_cdf)(clipped)


def _aline(batch: np.ndarray, calibration: ModelsCalibration, n: int) -> float:
    """ALine-S (Baek et al., NeurIPS 2022): the line that maps validation agreement to batch agreement
    in probit space, over every pair of models, maps the serving model's validation accuracy too."""
    m = len(calibration.accuracies)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    x = _probit([calibration.agreements[i][j] for i, j in pairs], calibration.n)
    y = _probit([batch[i, j] for i, j in pairs], n)
    if len(pairs) < 2 or float(np.ptp(x)) < 1e-9:
        slope, offset = 1.0, float(np.mean(y - x))
    else:
        slope, offset = (float(v) for v in np.polyfit(x, y, 1))
    return NormalDist().cdf(slope * float(_probit(calibration.accuracies[0], calibration.n)) + offset)


def _triplet(batch: np.ndarray, iterations: int = 100) -> float:
    """Accuracies ``a`` with ``agreement(i, j) = a_i a_j`` (independent errors that never coincide;
    Platanios et al., UAI 2014), by alternating least squares; the serving model's."""
    m = len(batch)
    accuracy = np.full(m, float(np.sqrt(np.clip(batch[np.triu_indices(m, 1)].mean(), 0.0, 1.0))))
    off_diagonal = batch * (1 - np.eye(m))
    for _ in range(iterations):
        before = accuracy.copy()
        for i in range(m):
            weight = float((accuracy ** 2).sum() - accuracy[i] ** 2)
            if weight > 0:
                accuracy[i] = min(max(float(off_diagonal[i] @ accuracy) / weight, 0.0), 1.0)
        if float(np.abs(accuracy - before).max()) < 1e-6:
            break
    return float(accuracy[0])


def estimate_with_models(predictions: Any, calibration: ModelsCalibration, method: ModelsMethod,
                         confidence: float = DEFAULT_CONFIDENCE) -> AccuracyEstimate:
    """The serving model's accuracy on a batch from its agreement with the champions before it.

    ``predictions``: predicted classes on the batch, models × images, in ``calibration``'s model order.
    ``previous_agreement`` is the share agreeing with the newest earlier champion; ``previous_scaled``
    scales it by validation accuracy over validation agreement; ``aline`` and ``triplet`` use every pair
    (three models at least, else they fall back to ``previous_scaled``)."""
    batch = agreement_matrix(predictions)
    n = int(np.asarray(predictions).shape[1])
    if len(batch) != len(calibration.accuracies) or len(batch) < 2:
        raise ValueError(f"need the serving model and at least one earlier one, as calibrated "
                         f"({len(calibration.accuracies)} models), got {len(batch)}")
    scaled = batch[0, 1] * calibration.accuracies[0] / max(calibration.agreements[0][1], 1.0 / calibration.n)
    points = {"previous_agreement": batch[0, 1], "previous_scaled": scaled}
    if method == "aline":
        point = _aline(batch, calibration, n)
    elif method == "triplet" and len(batch) >= 3:
        point = _triplet(batch)
    else:
        point = points.get(method, scaled)
    point = float(np.clip(point, 0.0, 1.0))
    lower, upper = wilson_interval(n * point / 2, n / 2, confidence)
    return AccuracyEstimate(method=method, accuracy=point, lower=min(lower, point), upper=max(upper, point),
                            confidence=confidence, interval="paired_wilson", n=n)
