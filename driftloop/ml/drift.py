"""Drift features and the Kolmogorov-Smirnov detector: build, fit, save, load, score.

The detector is alibi-detect's ``KSDrift`` fitted on *features*, not on images
(``preprocess_fn=None``): features are computed shard by shard with a Keras model, so a serve
batch of any size needs memory for one shard of images plus an ``n x n_features`` float matrix.
A batch drifts when a feature's test is significant *and* its KS distance reaches the effect-size
floor (``effect_size``, ``DriftConfig.min_distance``). The feature model depends on the kind:

* ``uae``: an untrained, seeded convolutional encoder (alibi-detect's UAE pattern: Conv2D stack,
  Flatten, Dense) that is independent of the classifier; it is saved beside the detector;
* ``embeddings``: the classifier's penultimate ``embedding`` layer;
* ``softmax``: the classifier's class probabilities ("black-box shift detection");
* ``uncertainty``: the entropy of the classifier's class probabilities, one feature: the test of
  alibi-detect's ``ClassifierUncertaintyDrift`` (KS on prediction entropy), on streamed features.
  It fires when the model grows unsure, which is when accuracy falls (docs/benchmarks.md);
* ``predictions``: the entropy followed by the class probabilities. Under Bonferroni the entropy
  gets half of the family-wise α and the probabilities share the other half (a weighted
  Bonferroni test, still family-wise α): the entropy catches an unsure model, the probabilities a
  model that is confidently wrong (a shifted class mix), which the entropy alone misses.

For the three classifier kinds the serve step takes the model from the same train record, and a
weight fingerprint guards against pairing the wrong one. A detector folder holds ``ks/``
(alibi-detect's ``save_detector``), ``encoder.keras`` (uae only) and ``detector.json``
(``DetectorMeta``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftloop.config import FeatureKind
from driftloop.ml.model_io import PREDICT_BATCH, embedding_model, forward_pass
from driftloop.ml.shards import iter_shards

KS_DIR = "ks"
ENCODER_FILE = "encoder.keras"
META_FILE = "detector.json"
# Feature kinds computed by the classifier itself (the rest bring their own encoder).
CLASSIFIER_FEATURES: tuple[FeatureKind, ...] = ("embeddings", "softmax", "uncertainty", "predictions")
ENTROPY_FLOOR = 1e-12  # p log p at p = 0 is taken as 0 via log(max(p, floor))
ENTROPY_SHARE = 0.5  # of α, for the entropy feature of ``predictions`` (Bonferroni only)


class DetectorNotFound(FileNotFoundError):
    pass


@dataclass(frozen=True)
class DetectorMeta:
    """What a saved detector is, and what it needs at serve time."""

    features: str
    correction: str
    p_val: float
    trained_on: str
    reference_size: int
    n_features: int
    image_size: int
    seed: int
    run_id: str = ""
    encoding_dim: int = 0  # uae only
    # sha256 of the embedding model's weights (embeddings only): serve refuses another model.
    model_fingerprint: str = ""
    alibi_detect_version: str = ""


def alpha_shares(kind: str, n_features: int) -> np.ndarray:
    """How a Bonferroni test splits α among the features: evenly, except for ``predictions``."""
    if kind == "predictions" and n_features > 1:
        rest = (1.0 - ENTROPY_SHARE) / (n_features - 1)
        return np.array([ENTROPY_SHARE, *([rest] * (n_features - 1))])
    return np.full(n_features, 1.0 / n_features)


@dataclass(frozen=True)
class DriftScore:
    """One KS test of a batch against the reference, summarised the way ``DriftReport`` needs."""

    is_drift: bool
    p_values: np.ndarray
    distances: np.ndarray
    threshold: float
    statistic: float  # the smallest p-value (weighted as ``score`` says): drift when below ``threshold``
    # Per feature: did its own test pass under the correction? ``is_drift == significant.any()``.
    significant: np.ndarray
    weighted: bool = False  # judged by an uneven Bonferroni split of α (``alpha_shares``)


@dataclass(frozen=True)
class LoadedDetector:
    ks: Any  # alibi_detect.cd.KSDrift
    meta: DetectorMeta
    encoder: Any  # tf.keras.Model for uae, None for the classifier kinds (the classifier supplies it)


def build_uae_encoder(image_size: int, encoding_dim: int, seed: int) -> Any:
    """An untrained conv encoder: random projections that still keep spatial structure.

    Seeded initialisers (not the global seed) make the weights a function of ``seed`` alone. The
    channel widths are smaller than alibi-detect's CIFAR example (64/128/512) to keep a 1000-image
    batch at 64 px to under two CPU-seconds; it takes raw [0, 255] pixels like the classifier.
    """
    import tensorflow as tf

    layers = tf.keras.layers

    def init(offset: int) -> Any:
        return tf.keras.initializers.GlorotUniform(seed=seed * 100 + offset)

    return tf.keras.Sequential(
        [
            layers.InputLayer(input_shape=(image_size, image_size, 3)),
            layers.Rescaling(1.0 / 255.0),
            layers.Conv2D(32, 4, strides=2, padding="same", activation="relu", kernel_initializer=init(1)),
            layers.Conv2D(64, 4, strides=2, padding="same", activation="relu", kernel_initializer=init(2)),
            layers.Conv2D(128, 4, strides=2, padding="same", activation="relu", kernel_initializer=init(3)),
            layers.Flatten(),
            layers.Dense(encoding_dim, kernel_initializer=init(4)),
        ],
        name="uae_encoder",
    )


def classifier_features(classifier: Any, kind: str) -> Any:
    """The Keras model mapping images to ``kind``'s features, built on the classifier (not saved)."""
    import tensorflow as tf

    if kind == "embeddings":
        return embedding_model(classifier)
    if kind == "softmax":
        return classifier
    if kind in ("uncertainty", "predictions"):
        entropy = tf.keras.layers.Lambda(
            lambda p: -tf.reduce_sum(p * tf.math.log(tf.maximum(p, ENTROPY_FLOOR)), axis=-1, keepdims=True),
            name="entropy",
        )(classifier.output)
        if kind == "predictions":
            entropy = tf.keras.layers.Concatenate(name="entropy_and_probabilities")([entropy, classifier.output])
        return tf.keras.Model(inputs=classifier.inputs, outputs=entropy)
    raise ValueError(f"{kind!r} is not a classifier feature kind (those are {CLASSIFIER_FEATURES})")


def weights_fingerprint(model: Any) -> str:
    """sha256 over a model's weights: the same model gives the same value whatever file it came in."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        array = np.ascontiguousarray(weight)
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def reference_indices(n_images: int, max_reference: int, seed: int) -> np.ndarray:
    """A seeded, sorted sample of at most ``max_reference`` positions out of ``n_images``."""
    if n_images <= max_reference:
        return np.arange(n_images)
    return np.sort(np.random.default_rng(seed).choice(n_images, size=max_reference, replace=False))


def iter_images(folder: Path, keep: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Float32 image batches, one per shard, optionally only the global positions in ``keep``."""
    offset = 0
    for shard in iter_shards(folder):
        images = shard.images
        if keep is not None:
            local = keep[(keep >= offset) & (keep < offset + len(shard))] - offset
            offset += len(shard)
            images = images[local]
        if len(images):
            yield images.astype(np.float32)


def extract_features(model: Any, batches: Iterator[np.ndarray]) -> np.ndarray:
    """Run the feature model batch by batch; only the (small) feature matrix is kept."""
    run = forward_pass(model, PREDICT_BATCH)
    parts = [run(batch) for batch in batches]
    return np.concatenate(parts) if parts else np.zeros((0, int(model.output_shape[-1])), np.float32)


def fit(features: np.ndarray, p_val: float, correction: str) -> Any:
    from alibi_detect.cd import KSDrift

    return KSDrift(features, p_val=p_val, correction=correction, x_ref_preprocessed=True)


def score(ks: Any, features: np.ndarray, shares: np.ndarray | None = None) -> DriftScore:
    """KS-test the batch's features; the threshold is the one the smallest p-value is judged by.

    Bonferroni: ``p_val / n_features``, as alibi-detect reports it; with uneven ``shares``
    (``alpha_shares``) feature i is judged by ``p_val * shares[i]`` instead, and the statistic is
    the smallest p-value rescaled to the even threshold, ``min(p_i / (n * shares[i]))``. FDR
    (Benjamini-Hochberg, even shares only): alibi-detect reports the largest passing ``q * k / n``
    on drift, and the whole array of ``q * k / n`` otherwise; we keep a scalar by taking its first
    entry ``q / n`` then. Always ``is_drift == (statistic < threshold)``.
    """
    result = ks.predict(features, drift_type="batch", return_p_val=True, return_distance=True)["data"]
    p_values = np.asarray(result["p_val"], dtype=np.float64)
    distances = np.asarray(result["distance"], dtype=np.float64)
    n = len(p_values)
    if shares is not None and ks.correction == "bonferroni" and not np.allclose(shares, 1.0 / n):
        weighted = p_values / (n * np.asarray(shares, dtype=np.float64))
        threshold = ks.p_val / n
        return DriftScore(bool((weighted < threshold).any()), p_values, distances, threshold,
                          statistic=float(weighted.min()), significant=weighted < threshold, weighted=True)
    threshold = float(np.atleast_1d(np.asarray(result["threshold"], dtype=np.float64))[0])
    return DriftScore(bool(result["is_drift"]), p_values, distances, threshold, statistic=float(p_values.min()),
                      significant=significant_features(p_values, ks.p_val, ks.correction))


def significant_features(p_values: np.ndarray, p_val: float, correction: str) -> np.ndarray:
    """Which features' tests pass under ``correction`` (even shares), by alibi-detect's own comparisons.

    Bonferroni: ``p < p_val / n``. FDR (Benjamini-Hochberg): every feature whose p-value is at most
    the largest sorted p-value that lies below its ``q * k / n``; ``any()`` is alibi-detect's verdict.
    """
    n = len(p_values)
    if correction == "bonferroni":
        return np.asarray(p_values < p_val / n)
    ranked = np.sort(p_values)
    below = np.flatnonzero(ranked < p_val * np.arange(1, n + 1) / n)
    if not len(below):
        return np.zeros(n, dtype=bool)
    return np.asarray(p_values <= ranked[below.max()])


@dataclass(frozen=True)
class EffectSize:
    """The effect-size floor's part of a verdict: a batch drifts only if a feature shifted significantly
    *and* by at least ``min_distance`` (its KS distance, the largest gap between the two CDFs).

    At large n a KS test calls a shift of a percent significant; the distance says how much of the
    batch moved, whatever n is, so the floor keeps harmless shifts from starting retrains.
    """

    significant: bool  # the KS test's verdict alone
    effect_size: float  # the largest KS distance among the significant features (0 if none)
    min_distance: float  # the floor

    @property
    def is_drift(self) -> bool:
        return self.significant and self.effect_size >= self.min_distance


def effect_size(result: DriftScore, min_distance: float) -> EffectSize:
    """Hold a KS result against the effect-size floor (see ``EffectSize``)."""
    mask = result.significant
    largest = float(result.distances[mask].max()) if mask.any() else 0.0
    return EffectSize(significant=result.is_drift, effect_size=largest, min_distance=min_distance)


def save(out_dir: Path, ks: Any, meta: DetectorMeta, encoder: Any | None) -> None:
    from alibi_detect.saving import save_detector

    out_dir.mkdir(parents=True, exist_ok=True)
    save_detector(ks, out_dir / KS_DIR)
    if encoder is not None:
        encoder.save(out_dir / ENCODER_FILE)
    (out_dir / META_FILE).write_text(json.dumps(asdict(meta), indent=2))


def load(detector_dir: Path, *, with_test: bool = True) -> LoadedDetector:
    """The saved detector; ``with_test=False`` skips alibi-detect's KS test (``ks`` None): the
    feature step needs only the meta data and the encoder."""
    meta_path = detector_dir / META_FILE
    if not meta_path.exists():
        raise DetectorNotFound(f"no drift detector in {detector_dir} (expected {META_FILE})")
    meta = DetectorMeta(**json.loads(meta_path.read_text()))
    encoder = None
    if meta.features == "uae":
        import tensorflow as tf

        encoder = tf.keras.models.load_model(detector_dir / ENCODER_FILE)
    if not with_test:
        return LoadedDetector(ks=None, meta=meta, encoder=encoder)
    from alibi_detect.saving import load_detector

    return LoadedDetector(ks=load_detector(detector_dir / KS_DIR), meta=meta, encoder=encoder)
