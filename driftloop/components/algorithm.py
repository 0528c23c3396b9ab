"""The algorithm component: train the classifier (train mode), predict and evaluate (serve mode).

Train mode runs as a SageMaker Training job: it reads the processed ``train`` and ``val`` shards
and writes the model folder (model, ``classes.json``, ``metrics.json`` and the label-free accuracy
estimate's calibration, ``accuracy_calibration.json``). Serve mode streams the
shards of ``data`` one at a time through the model and writes ``predictions.csv`` and, when some
images are labelled, ``evaluation.json`` of those (the champion/challenger comparison reads it).

Labels in shards index the shard folder's own ``summary.classes``; they are mapped to the model's
classes by name, so a folder with the classes in another order, or a subset of them, still works.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftloop.components.entrypoint import Invocation, read_settings, run_component
from driftloop.config import TrainingConfig
from driftloop.errors import UserError
from driftloop.files import NAME_ENCODING, NAME_ERRORS
from driftloop.ml.accuracy_estimate import CALIBRATION_FILE, calibrate
from driftloop.ml.model_io import (
    PREDICT_BATCH,
    LoadedModel,
    ModelNotFound,
    forward_pass,
    load_model,
    load_model_to_train,
    resolve_model_dir,
    save_model,
)
from driftloop.ml.models import ARCHITECTURES, build_model
from driftloop.ml.shards import UNKNOWN_LABEL, Shard, ShardSummary, iter_shards, load_all, read_summary, remap_labels
from driftloop.pipelines import EVALUATION_FILE, PREDICTIONS_FILE, TRAIN_METRICS_FILE, Component
from driftloop.scores import Evaluation, TrainMetrics

log = logging.getLogger(__name__)

PREDICTION_SUMMARY_FILE = "summary.json"
# Probabilities are clipped like Keras' categorical cross-entropy does, so the loss stays finite.
_EPSILON = 1e-7
# Early stopping counts an epoch as better only if it lowers the validation loss by this much. With
# no threshold (before), 5 of the default simulation's 7 trainings ran to the 40-epoch cap: the
# validation accuracy was 100 % from about epoch 20 on while the loss kept creeping down (0.0029 to
# 0.0024 over the last 4 epochs). Measured on the default simulation (seed 0, blog size): 0.003
# stops 3 of those 5 (Original 40 -> 29 epochs twice, Stage-4 40 -> 35; 257 -> 230 epochs in all)
# with every decision and every hourly accuracy unchanged (one matrix cell moved by one image);
# 0.01 stops more (191 epochs) but its Stage-2 model misses the drift on Stage-3 (88 %, unflagged).
# From random weights Stage-2 and Noisy still reached the cap (their validation loss was still
# falling); with warm start (the default since) no training of the default simulation does: 29, 35,
# 29, 16, 29, 33 and 8 epochs, 179 in all (docs/benchmarks.md section 4).
MIN_DELTA = 0.003


def _read_processed(folder: Path, what: str) -> ShardSummary:
    try:
        return read_summary(folder)
    except FileNotFoundError as error:
        raise UserError(f"{what}: {error}") from error


def _load_labelled(folder: Path, classes: Sequence[str], what: str) -> Shard:
    """All images of a processed folder with labels as indices into ``classes``; all must be known."""
    summary = _read_processed(folder, what)
    data = load_all(folder)
    if len(data) == 0:
        raise UserError(f"{what}: {folder} holds no images; training needs a non-empty {what} set")
    labels = remap_labels(data.labels, summary.classes, classes)
    unknown = sorted({str(data.files[i]) for i in np.flatnonzero(labels == UNKNOWN_LABEL)})
    if unknown:
        raise UserError(
            f"{what}: {len(unknown)} image(s) have no label or a class the training set lacks "
            f"(training classes {list(classes)}), e.g. {unknown[:3]}"
        )
    return Shard(images=data.images, labels=labels, files=data.files)


def _config(invocation: Invocation) -> TrainingConfig:
    """The training settings, with an architecture ``driftloop.ml.models`` knows (the settings cannot import it)."""
    config = read_settings(invocation, TrainingConfig, "training")
    if config.architecture not in ARCHITECTURES:
        known = sorted(ARCHITECTURES)
        raise UserError(f"bad training settings: architecture {config.architecture!r} (known: {known})")
    return config


def _seed(config: TrainingConfig) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        # Process-wide and irreversible. Measured on 2 CPU cores: no extra CPU time for small_cnn.
        tf.config.experimental.enable_op_determinism()


def run_train(invocation: Invocation) -> dict[str, Any]:
    """Train the classifier on ``train``, early-stop on ``val`` loss (``MIN_DELTA``), write the model folder."""
    config = _config(invocation)
    classes, train, val = _training_sets(invocation)
    _seed(config)
    started = time.perf_counter()
    model, initial_weights = _initial_model(config, invocation.inputs.get("champion"), classes, train.images.shape[1])
    fitted = _fit(model, config, train, val, len(classes))
    wall_time = time.perf_counter() - started
    metrics = {
        "val_accuracy": fitted.val_accuracy,
        "val_loss": fitted.val_loss,
        "epochs": len(fitted.history["loss"]),
        "best_epoch": fitted.best_epoch,
        "wall_time_s": round(wall_time, 3),
        "n_train": len(train),
        "n_val": len(val),
        "n_params": int(model.count_params()),
        "classes": classes,
        "trained_on": config.trained_on,
        "config": config.to_dict(),
        "history": fitted.history,
        "initial_weights": initial_weights,
    }
    out = invocation.outputs["model"]
    save_model(model, classes, out)
    # Through its contract, so a writer that drifts from what champion/challenger reads fails here.
    (out / TRAIN_METRICS_FILE).write_text(TrainMetrics.from_dict(metrics).to_json(indent=2))
    _write_calibration(model, val.images.astype(np.float32), val.labels, config.batch_size, out)
    log.info(
        "trained %s on %d images from %s weights: val_accuracy %.3f, val_loss %.3f, %d epochs (best %d), %.1f s",
        config.architecture, len(train), initial_weights, fitted.val_accuracy, fitted.val_loss, metrics["epochs"],
        fitted.best_epoch, wall_time,
    )
    return metrics


def _training_sets(invocation: Invocation) -> tuple[list[str], Shard, Shard]:
    """The training classes (``train``'s) and the labelled ``train`` and ``val`` sets, as indices into them."""
    train_dir, val_dir = invocation.inputs["train"], invocation.inputs["val"]
    classes = list(_read_processed(train_dir, "train").classes)
    if len(classes) < 2:
        raise UserError(f"train: need labelled images of at least 2 classes, got classes {classes}")
    return classes, _load_labelled(train_dir, classes, "train"), _load_labelled(val_dir, classes, "val")


@dataclass(frozen=True)
class _Fitted:
    """What a fit leaves for ``metrics.json``: the per-epoch history and the best weights' validation scores."""

    history: dict[str, list[float]]
    best_epoch: int  # 1-based
    val_loss: float
    val_accuracy: float


def _fit(model: Any, config: TrainingConfig, train: Shard, val: Shard, n_classes: int) -> _Fitted:
    """Fit with early stopping on the validation loss, then score the restored best weights on ``val``."""
    import tensorflow as tf

    model.compile(
        optimizer=tf.keras.optimizers.Adam(config.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    stopper = tf.keras.callbacks.EarlyStopping(
        monitor="val_loss", min_delta=MIN_DELTA, patience=config.patience, restore_best_weights=True
    )
    x_val, y_val = val.images.astype(np.float32), tf.keras.utils.to_categorical(val.labels, n_classes)
    history = model.fit(
        train.images.astype(np.float32),
        tf.keras.utils.to_categorical(train.labels, n_classes),
        validation_data=(x_val, y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        callbacks=[stopper],
        verbose=0,
    )
    # The restored (best) weights on the validation set: what champion/challenger compares.
    val_loss, val_accuracy = model.evaluate(x_val, y_val, batch_size=config.batch_size, verbose=0)
    return _Fitted(
        history={key: [float(v) for v in values] for key, values in history.history.items()},
        best_epoch=int(stopper.best_epoch) + 1,
        val_loss=float(val_loss),
        val_accuracy=float(val_accuracy),
    )


def _write_calibration(model: Any, x_val: np.ndarray, labels: np.ndarray, batch_size: int, out: Path) -> None:
    """Calibrate the label-free accuracy estimate on the validation set, beside the model.

    Monitoring's serve mode reads it to estimate each unlabelled batch's accuracy (and the harm
    policies the drop from ``accuracy``); on SageMaker it travels inside ``model.tar.gz``.
    """
    probabilities = forward_pass(model, batch_size)(x_val)
    calibration = calibrate(probabilities, labels)
    calibration.write(out / CALIBRATION_FILE)
    log.info("accuracy estimate calibrated on %d validation images: accuracy %.3f, mean confidence %.3f",
             calibration.n, calibration.accuracy, calibration.average_confidence)


def _initial_model(config: TrainingConfig, champion_dir: Path | None, classes: list[str], image_size: int,
                   ) -> tuple[Any, str]:
    """The model to train and where its weights come from: the champion's (``warm_start``) or random.

    A champion is used only if it is the same architecture for the same classes (in the same order)
    and image size; otherwise training starts from random weights and the reason is recorded.
    """
    def fresh(why: str = "") -> tuple[Any, str]:
        model = build_model(config.architecture, image_size=image_size, n_classes=len(classes),
                            weights_path=config.weights_path)
        return model, f"random ({why})" if why else "random"

    if not config.warm_start or champion_dir is None or not champion_dir.exists():
        return fresh()
    try:
        champion = load_model_to_train(champion_dir)
    except ModelNotFound:
        return fresh("no champion model in its channel")
    model = champion.model
    if model.name != config.architecture:
        return fresh(f"the champion is a {model.name}, not a {config.architecture}")
    if champion.classes != classes:
        return fresh(f"the champion's classes {champion.classes} are not the data's {classes}")
    if tuple(model.input_shape[1:3]) != (image_size, image_size):
        return fresh(f"the champion takes {model.input_shape[1:3]} images, the data is {image_size} px")
    trained_on = _champion_trained_on(champion_dir)
    return model, f"champion (trained on {trained_on})" if trained_on else "champion"


def _champion_trained_on(champion_dir: Path) -> str:
    path = resolve_model_dir(champion_dir) / TRAIN_METRICS_FILE
    return TrainMetrics.from_json(path.read_text()).trained_on if path.exists() else ""


@dataclass
class _Evaluation:
    """Running totals over the labelled images of the streamed shards (unlabelled ones, as a flat
    batch's or loose files beside class folders, are not scored); scoring stops at the first shard
    with an image whose class the model does not know."""

    confusion: np.ndarray
    loss_sum: float = 0.0
    n: int = 0  # labelled images seen, scored or not
    reason: str = ""  # why there is no score, once there is a reason

    def add(self, shard: Shard, labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]) -> None:
        """``labels`` are the shard's mapped to the model's ``classes``: UNKNOWN_LABEL where the shard
        has no label (not scored) or where the model does not know the class (no score at all)."""
        scored = shard.labels != UNKNOWN_LABEL
        self.n += int(scored.sum())
        labels, probabilities, files = labels[scored], probabilities[scored], shard.files[scored]
        if self.reason:
            return
        unknown = labels == UNKNOWN_LABEL
        if unknown.any():
            self.reason = (
                f"{int(unknown.sum())} image(s) in a shard have a class the model does not know "
                f"(model classes {list(classes)}), e.g. {str(files[np.argmax(unknown)])}"
            )
            return
        true_p = probabilities[np.arange(len(labels)), labels]
        self.loss_sum += float(-np.log(np.clip(true_p, _EPSILON, 1.0)).sum())
        np.add.at(self.confusion, (labels, probabilities.argmax(axis=1)), 1)

    def result(self, classes: Sequence[str]) -> dict[str, Any]:
        n = self.n
        if self.reason or not n:
            return {"reason": self.reason or "no labelled images", "n": n, "classes": list(classes)}
        return {
            "accuracy": float(np.trace(self.confusion) / n),
            "loss": self.loss_sum / n,
            "n": n,
            "classes": list(classes),
            "confusion_matrix": self.confusion.tolist(),
        }


def run_serve(invocation: Invocation) -> dict[str, Any]:
    """Predict every image of ``data``; evaluate too on those that are labelled.

    ``evaluation.json`` is written when some images are labelled, and counts those only: with scores
    when every label is a class the model knows, otherwise with a ``reason`` and no scores (never a
    crash: a champion may not know a class that a new data set brings). On one of several hosts,
    ``data`` is this host's shards and each file is this host's part (``predictions-<host>.csv``,
    ``evaluation-<host>.json``); a host that got no shard writes an empty part.
    """
    _config(invocation)  # rejects bad settings; the serve batch is PREDICT_BATCH, not the training batch
    data_dir, out = invocation.inputs["data"], invocation.outputs["predictions"]
    hosts = invocation.hosts
    if not hosts.many:
        _read_processed(data_dir, "data")  # one host has the whole batch: it must be a processed folder
    try:
        loaded = load_model(invocation.inputs["model"])
    except ModelNotFound as error:
        raise UserError(str(error)) from error
    classes = loaded.classes
    evaluation = _Evaluation(np.zeros((len(classes), len(classes)), dtype=np.int64))

    out.mkdir(parents=True, exist_ok=True)
    n = 0
    # A file name that is not valid UTF-8 is written byte for byte, as in the processing's manifest.
    with (out / hosts.part_name(PREDICTIONS_FILE)).open("w", newline="", encoding=NAME_ENCODING,
                                                        errors=NAME_ERRORS) as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "predicted_class", "confidence", *(f"p_{name}" for name in classes)])
        for shard, labels, probabilities in _predicted(loaded, data_dir):
            predicted = probabilities.argmax(axis=1)
            for file, index, row in zip(shard.files, predicted, probabilities, strict=True):
                writer.writerow([str(file), classes[index], f"{row[index]:.6f}", *(f"{p:.6f}" for p in row)])
            evaluation.add(shard, labels, probabilities, classes)
            n += len(shard)

    result: dict[str, Any] = {"n": n, "classes": classes}
    if evaluation.n:
        scores = evaluation.result(classes)
        (out / hosts.part_name(EVALUATION_FILE)).write_text(Evaluation.from_dict(scores).to_json(indent=2))
        result["evaluation"] = {k: v for k, v in scores.items() if k in ("accuracy", "loss", "reason")}
    log.info("predicted %d image(s)%s; evaluation: %s", n, f" on {hosts.current}" if hosts.many else "",
             result.get("evaluation", "none (unlabelled input)"))
    (out / hosts.part_name(PREDICTION_SUMMARY_FILE)).write_text(json.dumps(result, indent=2))
    return result


def _predicted(loaded: LoadedModel, data_dir: Path) -> Iterator[tuple[Shard, np.ndarray, np.ndarray]]:
    """Each shard of ``data_dir`` with its labels as the model's class indices and its probabilities (float64)."""
    predict = forward_pass(loaded.model, PREDICT_BATCH)
    for shard in iter_shards(data_dir) if data_dir.is_dir() else ():
        labels = remap_labels(shard.labels, shard.classes, loaded.classes)
        yield shard, labels, predict(shard.images).astype(np.float64)


def evaluate(loaded: LoadedModel, data_dir: Path) -> Evaluation:
    """Accuracy and loss of a loaded model on the labelled images of a processed folder: serve mode's
    scores, no files.

    For callers that score one model on many folders (the simulation's accuracy matrix): the model
    is loaded, and its forward pass compiled, once.
    """
    _read_processed(data_dir, "data")
    classes = loaded.classes
    scores = _Evaluation(np.zeros((len(classes), len(classes)), dtype=np.int64))
    for shard, labels, probabilities in _predicted(loaded, data_dir):
        scores.add(shard, labels, probabilities, classes)
    return Evaluation.from_dict(scores.result(classes))


RUNNERS = {"train": run_train, "serve": run_serve}


def main(argv: Sequence[str] | None = None) -> int:
    return run_component(Component.ALGORITHM, RUNNERS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
