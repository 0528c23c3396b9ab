"""JPEG draft mode in ``decode_file``: used only when the photo is much larger than the target, and
within a stated tolerance of decoding every pixel, for the pixels and for a trained model's predictions.

Tolerances, from ``python -m bench jpeg`` (600 photo-like JPEGs, default model; docs/benchmarks.md):
mean pixel difference 1.9 per image (p95 5.4, max 11, on 0-255), 99.8 % the same predicted class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.photos import photo, photos
from driftloop.config import ProcessingConfig
from driftloop.local.data.seeding import rng_for
from driftloop.local.data.synthetic import CLASSES, render
from driftloop.ml.images import DRAFT_GAP, centre_square, decode_file
from driftloop.ml.model_io import forward_pass

SIZE = ProcessingConfig().image_size
MAX_PIXELS = ProcessingConfig().max_pixels
MAX_IMAGE_MAE = 12.0  # per image, 0-255 scale
MAX_MEAN_MAE = 3.0
MIN_SAME_CLASS = 0.95


def _jpeg(path: Path, image: Image.Image, **save: object) -> Path:
    image.save(path, format="JPEG", quality=90, **save)
    return path


def _pixels(path: Path, draft_gap: int | None = DRAFT_GAP) -> np.ndarray:
    decoded = decode_file(path, SIZE, MAX_PIXELS, draft_gap=draft_gap)
    assert decoded.image is not None, decoded.reason
    return decoded.image


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """48 photo-like JPEGs (300-800 px, quality 75-95), 8 of each class."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for item in photos(seed=7, stop=48):
        paths.append(folder / item.name)
        paths[-1].write_bytes(item.data)
    return paths


def test_a_photo_near_the_target_size_is_decoded_in_full(tmp_path: Path) -> None:
    # Under DRAFT_GAP x 2 times the target on its short side, no DCT scaling is possible.
    small = photo("ring", rng_for(0, "draft", "small")).resize((SIZE * DRAFT_GAP * 2 - 1, SIZE * DRAFT_GAP * 2 + 40))
    path = _jpeg(tmp_path / "small.jpg", small)
    assert np.array_equal(_pixels(path), _pixels(path, draft_gap=None))


def test_a_large_photo_is_decoded_in_draft_mode_close_to_full(batch: list[Path]) -> None:
    differences = [np.abs(_pixels(p).astype(np.int16) - _pixels(p, draft_gap=None)).mean() for p in batch]
    assert min(differences) > 0  # draft mode really ran: not one photo decoded bit for bit alike
    assert max(differences) <= MAX_IMAGE_MAE and np.mean(differences) <= MAX_MEAN_MAE


def test_draft_mode_keeps_the_exif_orientation_and_the_pixel_budget(tmp_path: Path) -> None:
    upright = photo("triangle", rng_for(0, "draft", "exif"))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": the stored pixels are the upright image turned 90 CCW
    path = _jpeg(tmp_path / "turned.jpg", upright.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())
    reference = _jpeg(tmp_path / "upright.jpg", upright)
    assert np.abs(_pixels(path).astype(np.int16) - _pixels(reference)).mean() <= MAX_IMAGE_MAE
    width, height = upright.size
    refused = decode_file(path, SIZE, max_pixels=width * height - 1)
    assert refused.image is None and refused.reason.startswith("too_large")  # judged by the header, not the draft


def _trained_classifier() -> object:
    """A small CNN trained on the synthetic renders (the photos are those renders, enlarged and grainy)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images, labels = [], []
    for index in range(360):
        label = index % len(CLASSES)
        render_rng = rng_for(0, "draft-train", str(index))
        square = centre_square(Image.fromarray(render(CLASSES[label], render_rng), "RGB"))
        images.append(np.asarray(square.resize((SIZE, SIZE), Image.Resampling.BICUBIC)))
        labels.append(label)
    order = rng.permutation(len(images))
    x, y = np.stack(images)[order].astype(np.float32), np.array(labels)[order]
    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    model = tf.keras.Sequential([
        layers.InputLayer(input_shape=(SIZE, SIZE, 3)), layers.Rescaling(1.0 / 255.0),
        layers.Conv2D(16, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
        layers.GlobalAveragePooling2D(), layers.Dense(len(CLASSES), activation="softmax"),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    return model


@pytest.mark.slow
def test_predictions_on_draft_decoded_photos_match_full_decoding(batch: list[Path]) -> None:
    predict = forward_pass(_trained_classifier(), 64)
    draft = predict(np.stack([_pixels(p) for p in batch]).astype(np.float32))
    full = predict(np.stack([_pixels(p, draft_gap=None) for p in batch]).astype(np.float32))
    labels = np.array([CLASSES.index(p.name.split("-")[1]) for p in batch])
    assert np.mean(full.argmax(1) == labels) >= 0.5  # a model that sees the classes, or agreement means nothing
    assert np.mean(draft.argmax(1) == full.argmax(1)) >= MIN_SAME_CLASS
