"""Saving and loading the classifier, wherever it was written.

A model folder holds ``model.keras`` and ``classes.json`` (and, after training, ``metrics.json`` and
``accuracy_calibration.json``: ``read_calibration``).
On AWS the training job's model arrives as ``model.tar.gz`` in the folder: ``load_model`` unpacks it.
The model takes float32 images with raw pixel values in [0, 255] (it rescales inside), and its
penultimate layer is named ``embedding`` so that monitoring can use it as a feature extractor.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tarfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftloop.errors import UserError
from driftloop.layout import SAGEMAKER_ARCHIVE
from driftloop.ml.accuracy_estimate import CALIBRATION_FILE, AccuracyCalibration
from driftloop.pipelines import TRAIN_METRICS_FILE
from driftloop.scores import TrainMetrics

MODEL_FILE = "model.keras"
CLASSES_FILE = "classes.json"
EMBEDDING_LAYER = "embedding"
# Images per compiled forward call at serve time (predictions and drift features): a whole shard.
# Measured on 10,240 images (docs/benchmarks.md, section 7.2): 1.3-1.4x the images per second of
# batches of 32, with bit-identical outputs (the model's ops are per image).
PREDICT_BATCH = 256


class ModelNotFound(FileNotFoundError):
    pass


class ModelUnreadable(UserError):
    """A model folder that is there but cannot be used as it is (a damaged file, classes that disagree)."""


# What to do about a damaged model folder.
_REDO = "train a model again (driftloop train, or the train pipeline) or put back the folder as its training wrote it"


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # tf.keras.Model
    classes: list[str]


def save_model(model: Any, classes: list[str], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / MODEL_FILE)
    (out_dir / CLASSES_FILE).write_text(json.dumps(classes))


def resolve_model_dir(model_dir: Path) -> Path:
    """The folder holding ``model.keras``: unpack SageMaker's ``model.tar.gz`` if that is what came.

    A training job writes its archive to ``<output path>/<job name>/output/model.tar.gz``, so the
    model artifact holds it one job folder down; exactly one archive may be there.
    """
    if (model_dir / MODEL_FILE).exists():
        return model_dir
    archives = sorted(model_dir.rglob(SAGEMAKER_ARCHIVE))
    if len(archives) > 1:
        raise ModelNotFound(f"{len(archives)} {SAGEMAKER_ARCHIVE} archives in {model_dir}: expected one training job's")
    if archives:
        archive = archives[0]
        target = model_dir / "unpacked"
        if not (target / MODEL_FILE).exists():
            with tarfile.open(archive) as tar:
                tar.extractall(target, filter="data")
        return target
    raise ModelNotFound(
        f"no model in {model_dir} (expected {MODEL_FILE} or {SAGEMAKER_ARCHIVE}); "
        "run the train pipeline first so that the parameter store points at a model"
    )


# Models this process loaded to serve, by content (``load_model``): a one-job serve run's steps (predict,
# drift features, explanations) read one model folder, and the local runner's runs read the same champion
# hour after hour. Two: a champion and its challenger.
_LOADED: OrderedDict[tuple[str, tuple[str, ...]], Any] = OrderedDict()
_LOADED_MAX = 2


def load_model(model_dir: Path) -> LoadedModel:
    """The model and its classes, to predict with (never to train: it may be shared, ``load_model_to_train``).

    A model file this process already loaded (the same bytes, the same classes) is not read again:
    2 of a one-job serve run's 3 loads, measured in docs/benchmarks.md section 10.
    ModelUnreadable, naming the file and what to do, for a damaged folder.
    """
    folder = resolve_model_dir(model_dir)
    classes = _read_classes(folder)
    key = (_digest(folder / MODEL_FILE), tuple(classes))
    if key not in _LOADED:
        _LOADED[key] = _read_keras(folder)
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.popitem(last=False)
    _LOADED.move_to_end(key)
    return LoadedModel(model=_LOADED[key], classes=classes)


def load_model_to_train(model_dir: Path) -> LoadedModel:
    """A private copy of the model and its classes, whose weights training may change."""
    folder = resolve_model_dir(model_dir)
    classes = _read_classes(folder)
    return LoadedModel(model=_read_keras(folder), classes=classes)


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise ModelUnreadable(f"cannot read the model {path}: {error}; {_REDO}") from error


def _read_keras(folder: Path) -> Any:
    import tensorflow as tf

    try:
        return tf.keras.models.load_model(folder / MODEL_FILE)
    except Exception as error:  # Keras raises OSError, ValueError or zipfile's errors for a damaged file
        raise ModelUnreadable(f"cannot load the model {folder / MODEL_FILE} ({type(error).__name__}: {error}): "
                              f"the file is damaged or incomplete; {_REDO}") from error


def _read_classes(folder: Path) -> list[str]:
    """``classes.json``, checked against the classes in ``metrics.json`` (when there is one).

    They must be the same names in the same order: a model read with its classes reordered predicts
    wrong names.
    """
    path = folder / CLASSES_FILE
    try:
        classes = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelUnreadable(f"cannot read the model's classes {path}: {error}; {_REDO}") from error
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        raise ModelUnreadable(f"{path} is not a list of class names: {classes!r}; {_REDO}")
    metrics = folder / TRAIN_METRICS_FILE
    if metrics.is_file():
        try:
            trained = TrainMetrics.from_json(metrics.read_bytes()).classes
        except (OSError, ValueError) as error:
            raise ModelUnreadable(f"cannot read the model's metrics {metrics}: {error}; {_REDO}") from error
        if trained != classes:
            raise ModelUnreadable(
                f"{path} names the classes {classes} but the model was trained on {trained} ({metrics}): "
                f"a model read with the wrong classes predicts wrong names; put back the {CLASSES_FILE} "
                f"its training wrote (the classes of {TRAIN_METRICS_FILE}), or {_REDO}")
    return classes


def read_calibration(model_dir: Path) -> AccuracyCalibration | None:
    """The model's accuracy-estimate calibration (written at train time); None for a model trained before it existed."""
    path = resolve_model_dir(model_dir) / CALIBRATION_FILE
    return AccuracyCalibration.read(path) if path.is_file() else None


def embedding_model(model: Any) -> Any:
    """A model that outputs the classifier's penultimate (``embedding``) layer."""
    import tensorflow as tf

    return tf.keras.Model(inputs=model.inputs, outputs=model.get_layer(EMBEDDING_LAYER).output)


def forward_pass(model: Any, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """``images -> model outputs`` as float32, in batches through one compiled (``tf.function``) call.

    Keras' ``predict``/``predict_on_batch`` pay a per-call overhead that doubled the time of the
    inference step on small batches, and ``predict`` per shard grew memory run after run
    (docs/benchmarks.md). The compiled call is traced once per loaded model: its input signature
    leaves the batch dimension open, so a short last batch reuses the trace. It compiles a
    ``partial`` of the model's call, not a lambda: TensorFlow counts traces per Python code object,
    and one lambda shared by every model a process loads (a simulation loads dozens) looked like
    retracing ("5 out of the last 10 calls ... triggered tf.function retracing").
    """
    import numpy as np
    import tensorflow as tf

    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
    call = tf.function(functools.partial(model.__call__, training=False), input_signature=signature)
    n_outputs = int(model.output_shape[-1])

    def run(images: np.ndarray) -> np.ndarray:
        parts = [np.asarray(call(tf.constant(images[i : i + batch_size], dtype=tf.float32)), dtype=np.float32)
                 for i in range(0, len(images), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, n_outputs), np.float32)

    return run
