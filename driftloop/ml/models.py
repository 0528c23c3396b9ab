"""CNN architectures for the classifier.

Every model takes float32 images with raw pixel values in [0, 255] and rescales inside, so that
callers (serving, drift monitoring, SHAP) never need to know an architecture's preprocessing. The
penultimate layer is named ``embedding`` (``driftloop.ml.model_io.EMBEDDING_LAYER``): monitoring uses
it as a feature extractor. No augmentation layers: the simulation must show drift hurting the
original model, and augmentation would teach it the very transformations the stages apply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from driftloop.ml.model_io import EMBEDDING_LAYER

EMBEDDING_UNITS = 64


def _small_cnn(image_size: int, n_classes: int, weights_path: str) -> Any:
    """Three conv blocks and global pooling: ~28k parameters, trains in seconds on 2 CPU cores.

    Measured on the blog-size synthetic set: filters (16, 32, 64) reached the same test accuracy as
    (32, 64, 128) for less than half the CPU time.
    """
    import tensorflow as tf

    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(EMBEDDING_UNITS, activation="relu", name=EMBEDDING_LAYER)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    model = tf.keras.Model(inputs, outputs, name="small_cnn")
    if weights_path:
        model.load_weights(weights_path)
    return model


def _mobilenet_v2(image_size: int, n_classes: int, weights_path: str) -> Any:
    """MobileNetV2 features (ImageNet weights only if ``weights_path`` names them: no downloads)."""
    import tensorflow as tf

    layers = tf.keras.layers
    base = tf.keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3), include_top=False, weights=None, pooling="avg"
    )
    if weights_path:
        base.load_weights(weights_path)
    inputs = tf.keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)  # MobileNetV2 expects [-1, 1]
    x = base(x)
    x = layers.Dense(EMBEDDING_UNITS, activation="relu", name=EMBEDDING_LAYER)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return tf.keras.Model(inputs, outputs, name="mobilenet_v2")


ARCHITECTURES: dict[str, Callable[[int, int, str], Any]] = {
    "small_cnn": _small_cnn,
    "mobilenet_v2": _mobilenet_v2,
}


def build_model(architecture: str, *, image_size: int, n_classes: int, weights_path: str = "") -> Any:
    """An uncompiled ``tf.keras.Model`` of the named architecture."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
    return ARCHITECTURES[architecture](image_size, n_classes, weights_path)
