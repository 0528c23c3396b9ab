"""The algorithm component: training, batch prediction and evaluation, as its entrypoint runs them."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from driftloop.components import algorithm
from driftloop.components.entrypoint import Invocation
from driftloop.errors import UserError
from driftloop.ml.model_io import (
    CLASSES_FILE,
    MODEL_FILE,
    SAGEMAKER_ARCHIVE,
    load_model,
    load_model_to_train,
    save_model,
)
from driftloop.ml.shards import UNKNOWN_LABEL, write_shards
from driftloop.pipelines import EVALUATION_FILE, PREDICTIONS_FILE, TRAIN_METRICS_FILE

from ._images import CLASSES, write_shape_shards

FAST_TRAINING = {"epochs": "12", "batch_size": "16", "learning_rate": "0.003", "patience": "4", "seed": "7"}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_shape_shards(root / "train", n_per_class=24, seed=1)
    # val lists the classes in another order: labels must be mapped by name, not by index.
    write_shape_shards(root / "val", n_per_class=6, seed=2, classes=list(reversed(CLASSES)))
    write_shape_shards(root / "test", n_per_class=15, seed=3)
    return root


@pytest.fixture(scope="module")
def trained(shapes: Path) -> Path:
    """A model trained through the entrypoint, with SageMaker-style string hyperparameters."""
    model_dir = shapes / "model"
    config = shapes / "hyperparameters.json"
    config.write_text(json.dumps({**FAST_TRAINING, "trained_on": "shapes/train"}))
    argv = ["train", "--input-train", str(shapes / "train"), "--input-val", str(shapes / "val"),
            "--output-model", str(model_dir), "--config", str(config)]
    assert algorithm.main(argv) == 0
    return model_dir


def _serve(data: Path, model: Path, out: Path) -> dict:
    return algorithm.run_serve(Invocation("serve", {"data": data, "model": model}, {"predictions": out}))


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / PREDICTIONS_FILE).open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_training_writes_model_classes_and_metrics(trained: Path) -> None:
    metrics = json.loads((trained / TRAIN_METRICS_FILE).read_text())
    assert (trained / MODEL_FILE).exists()
    assert json.loads((trained / CLASSES_FILE).read_text()) == list(CLASSES) == metrics["classes"]
    assert (metrics["n_train"], metrics["n_val"]) == (96, 24)
    assert 1 <= metrics["best_epoch"] <= metrics["epochs"] <= 12
    assert metrics["trained_on"] == "shapes/train"
    assert metrics["config"]["learning_rate"] == pytest.approx(0.003)
    # The saved model is the restored best epoch: the last that lowered the val loss by MIN_DELTA.
    history = metrics["history"]["val_loss"]
    assert metrics["val_loss"] == pytest.approx(history[metrics["best_epoch"] - 1], rel=1e-4)
    assert metrics["val_loss"] - algorithm.MIN_DELTA <= min(history) <= metrics["val_loss"]
    assert metrics["val_accuracy"] > 0.9
    assert 10_000 < metrics["n_params"] < 300_000  # CPU-sized
    model = load_model(trained).model
    assert model.get_layer("embedding").output.shape[-1] > 0


@pytest.mark.slow
def test_training_calibrates_the_accuracy_estimate_on_the_validation_set(trained: Path, shapes: Path) -> None:
    from driftloop.ml.accuracy_estimate import CALIBRATION_FILE, AccuracyCalibration, estimate
    from driftloop.ml.shards import load_all

    metrics = json.loads((trained / TRAIN_METRICS_FILE).read_text())
    calibration = AccuracyCalibration.read(trained / CALIBRATION_FILE)
    assert (calibration.n, calibration.n_classes) == (metrics["n_val"], len(CLASSES))
    assert calibration.accuracy == pytest.approx(metrics["val_accuracy"])
    # On the very images it was calibrated on, ATC's fraction above the threshold is the accuracy.
    val = load_all(shapes / "val")
    probabilities = load_model(trained).model(val.images.astype(np.float32), training=False).numpy()
    assert estimate(probabilities, calibration).accuracy == pytest.approx(calibration.accuracy, abs=1 / calibration.n)


def stopping_point(val_losses: list[float], min_delta: float, patience: int) -> tuple[int, int]:
    """(best epoch, last epoch) by the rule: an epoch counts as better only if it lowers the best loss by min_delta."""
    best, best_epoch = math.inf, 0
    for epoch, loss in enumerate(val_losses, start=1):
        if loss < best - min_delta:
            best, best_epoch = loss, epoch
        elif epoch - best_epoch >= patience:
            return best_epoch, epoch
    return best_epoch, len(val_losses)


@pytest.mark.slow
def test_early_stopping_stops_once_the_val_loss_no_longer_falls_by_min_delta(shapes: Path, tmp_path: Path) -> None:
    """A cap far beyond convergence is not reached: training stops ``patience`` epochs after the last real gain."""
    settings = {**FAST_TRAINING, "epochs": "80", "patience": "3"}
    metrics = algorithm.run_train(Invocation("train", {"train": shapes / "train", "val": shapes / "val"},
                                             {"model": tmp_path / "model"}, settings))
    history = metrics["history"]["val_loss"]
    assert metrics["epochs"] < 80
    assert stopping_point(history, algorithm.MIN_DELTA, 3) == (metrics["best_epoch"], metrics["epochs"])
    assert metrics["val_loss"] == pytest.approx(history[metrics["best_epoch"] - 1], rel=1e-4)


@pytest.mark.slow
def test_trained_model_beats_90_percent_on_its_test_set(trained: Path, shapes: Path, tmp_path: Path) -> None:
    result = _serve(shapes / "test", trained, tmp_path)
    evaluation = json.loads((tmp_path / EVALUATION_FILE).read_text())
    assert evaluation["n"] == result["n"] == 60
    assert evaluation["accuracy"] > 0.9
    assert np.asarray(evaluation["confusion_matrix"]).sum() == 60


@pytest.mark.slow
def test_predictions_have_one_row_per_image_and_probabilities_sum_to_one(
    trained: Path, shapes: Path, tmp_path: Path
) -> None:
    _serve(shapes / "test", trained, tmp_path)
    rows = _rows(tmp_path)
    assert len(rows) == 60 and len({r["file"] for r in rows}) == 60
    assert list(rows[0]) == ["file", "predicted_class", "confidence", *(f"p_{c}" for c in CLASSES)]
    for row in rows:
        probabilities = [float(row[f"p_{c}"]) for c in CLASSES]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert row["predicted_class"] == CLASSES[int(np.argmax(probabilities))]
        assert float(row["confidence"]) == max(probabilities)


@pytest.mark.slow
def test_same_seed_gives_same_weights_and_metrics(shapes: Path, tmp_path: Path) -> None:
    settings = {**FAST_TRAINING, "epochs": 2}
    runs = []
    for name in ("a", "b"):
        inputs = {"train": shapes / "train", "val": shapes / "val"}
        metrics = algorithm.run_train(Invocation("train", inputs, {"model": tmp_path / name}, settings))
        runs.append((metrics, load_model(tmp_path / name).model.get_weights()))
    (first, first_weights), (second, second_weights) = runs
    assert first["val_loss"] == second["val_loss"] and first["history"] == second["history"]
    assert all(np.array_equal(a, b) for a, b in zip(first_weights, second_weights, strict=True))


@pytest.mark.slow
def test_warm_start_fine_tunes_the_champion(trained: Path, shapes: Path, tmp_path: Path) -> None:
    """One epoch at a tiny learning rate keeps the champion's accuracy; from random weights it is chance."""
    inputs = {"train": shapes / "train", "val": shapes / "val", "champion": trained}
    settings = {**FAST_TRAINING, "epochs": 1, "learning_rate": 1e-6, "trained_on": "shapes/again"}
    warm = algorithm.run_train(Invocation("train", inputs, {"model": tmp_path / "warm"},
                                          {**settings, "warm_start": True}))
    cold = algorithm.run_train(Invocation("train", inputs, {"model": tmp_path / "cold"},
                                          {**settings, "warm_start": "false"}))  # as SageMaker passes it
    champion = json.loads((trained / TRAIN_METRICS_FILE).read_text())
    assert warm["initial_weights"] == "champion (trained on shapes/train)"
    assert warm["val_accuracy"] == pytest.approx(champion["val_accuracy"], abs=0.05) and warm["val_accuracy"] > 0.9
    assert cold["initial_weights"] == "random" and cold["val_accuracy"] < 0.6
    # The champion's own folder is left as it was.
    assert json.loads((trained / TRAIN_METRICS_FILE).read_text()) == champion


def test_a_model_file_is_read_once_to_serve_and_afresh_to_train(hand_model: Path, tmp_path: Path) -> None:
    """The steps of a one-job serve run share one loaded model; a retrain gets its own copy to change."""
    copy = tmp_path / "copy"
    shutil.copytree(hand_model, copy)
    served = load_model(hand_model).model
    assert load_model(copy).model is served  # the same bytes and classes, wherever they lie
    assert load_model_to_train(hand_model).model is not served
    retrained = load_model_to_train(copy).model
    retrained.get_layer("embedding").set_weights([np.eye(3, dtype=np.float32), np.zeros(3, np.float32)])
    save_model(retrained, HAND_CLASSES, copy)
    assert load_model(copy).model is not served  # a new model file is read
    assert load_model(hand_model).model.get_layer("embedding").get_weights()[0][0, 0] == SCALE


@pytest.mark.slow
def test_warm_start_without_a_usable_champion_starts_from_random_weights_and_says_why(
    trained: Path, shapes: Path, tmp_path: Path
) -> None:
    settings = {**FAST_TRAINING, "epochs": 1, "warm_start": True}
    first = algorithm.run_train(Invocation("train", {"train": shapes / "train", "val": shapes / "val"},
                                           {"model": tmp_path / "first"}, settings))
    assert first["initial_weights"] == "random"
    # A champion of other classes (three of the four) cannot start a four-class model.
    three = [c for c in CLASSES if c != "ring"]
    write_shape_shards(tmp_path / "train3", n_per_class=4, seed=5, kinds=three)
    write_shape_shards(tmp_path / "val3", n_per_class=2, seed=6, kinds=three)
    algorithm.run_train(Invocation("train", {"train": tmp_path / "train3", "val": tmp_path / "val3"},
                                   {"model": tmp_path / "three"}, {**FAST_TRAINING, "epochs": 1}))
    other = algorithm.run_train(Invocation("train", {"train": shapes / "train", "val": shapes / "val",
                                                     "champion": tmp_path / "three"},
                                           {"model": tmp_path / "other"}, settings))
    assert other["initial_weights"].startswith("random (the champion's classes")
    empty = algorithm.run_train(Invocation("train", {"train": shapes / "train", "val": shapes / "val",
                                                     "champion": tmp_path / "nothing-here"},
                                           {"model": tmp_path / "empty"}, settings))
    assert empty["initial_weights"] == "random"


# --- evaluation on a model whose outputs are known by hand --------------------------------------

HAND_CLASSES = ["red", "green", "blue"]
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
SCALE = 5.0  # logit of the image's colour channel: p(colour) = e^5 / (e^5 + 2)


@pytest.fixture(scope="module")
def hand_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Softmax over SCALE * mean colour: a pure-colour image gets its colour with p = e^5/(e^5+2)."""
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(4, 4, 3), dtype="float32")
    x = tf.keras.layers.Rescaling(1.0 / 255.0)(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(3, activation="linear", name="embedding")(x)
    outputs = tf.keras.layers.Softmax()(x)
    model = tf.keras.Model(inputs, outputs)
    model.get_layer("embedding").set_weights([np.eye(3, dtype=np.float32) * SCALE, np.zeros(3, np.float32)])
    folder = tmp_path_factory.mktemp("hand") / "model"
    save_model(model, HAND_CLASSES, folder)
    return folder


def _colour_shards(out: Path, pairs: list[tuple[str, str | None]], classes: list[str]) -> Path:
    """One 4x4 image of colour per pair; label = the paired class name (None: unlabelled)."""
    items = [
        (np.full((4, 4, 3), COLOURS[colour], np.uint8), classes.index(label) if label else UNKNOWN_LABEL, f"{i}.png")
        for i, (colour, label) in enumerate(pairs)
    ]
    write_shards(out, items, shard_size=3, image_size=4, classes=classes)
    return out


# Two right (red as red, green as green), two wrong (blue labelled red, red labelled green).
PAIRS: list[tuple[str, str | None]] = [("red", "red"), ("green", "green"), ("blue", "red"), ("red", "green")]


@pytest.mark.parametrize(
    "shard_classes",
    [HAND_CLASSES, ["blue", "red", "green"], ["green", "red"]],
    ids=["same-order", "permuted", "subset"],
)
def test_evaluation_matches_a_hand_computation(hand_model: Path, tmp_path: Path, shard_classes: list[str]) -> None:
    data = _colour_shards(tmp_path / "data", PAIRS, shard_classes)
    _serve(data, hand_model, tmp_path / "out")
    evaluation = json.loads((tmp_path / "out" / EVALUATION_FILE).read_text())
    right = math.exp(SCALE) / (math.exp(SCALE) + 2)
    wrong = 1 / (math.exp(SCALE) + 2)
    assert evaluation["classes"] == HAND_CLASSES and evaluation["n"] == 4
    assert evaluation["accuracy"] == pytest.approx(0.5)
    assert evaluation["loss"] == pytest.approx(-(2 * math.log(right) + 2 * math.log(wrong)) / 4, rel=1e-5)
    # rows: true red, green, blue; columns: predicted red, green, blue
    assert evaluation["confusion_matrix"] == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert [r["predicted_class"] for r in _rows(tmp_path / "out")] == ["red", "green", "blue", "red"]


def test_unknown_class_names_skip_evaluation_with_a_reason(hand_model: Path, tmp_path: Path) -> None:
    data = _colour_shards(tmp_path / "data", [("red", "red"), ("blue", "purple"), ("green", None)], ["red", "purple"])
    result = _serve(data, hand_model, tmp_path / "out")
    evaluation = json.loads((tmp_path / "out" / EVALUATION_FILE).read_text())
    assert evaluation["accuracy"] is None and "1 image(s) in a shard have a class the model does not know" in \
        evaluation["reason"]
    assert evaluation["n"] == 2  # the labelled images; the unlabelled one is no reason
    assert result["evaluation"]["reason"] == evaluation["reason"]
    assert len(_rows(tmp_path / "out")) == 3


def test_unlabelled_images_beside_labelled_ones_are_predicted_and_not_scored(hand_model: Path, tmp_path: Path) -> None:
    """Loose files of a labelled batch: the labelled images score exactly as they do alone."""
    alone = _colour_shards(tmp_path / "alone", PAIRS, HAND_CLASSES)
    mixed = _colour_shards(tmp_path / "mixed", [("blue", None), *PAIRS[:2], ("green", None), *PAIRS[2:]], HAND_CLASSES)
    result = _serve(mixed, hand_model, tmp_path / "mixed-out")
    _serve(alone, hand_model, tmp_path / "alone-out")
    scores = {name: json.loads((tmp_path / f"{name}-out" / EVALUATION_FILE).read_text()) for name in ("alone", "mixed")}
    assert scores["mixed"] == {**scores["alone"], "loss": pytest.approx(scores["alone"]["loss"], rel=1e-12)}
    assert scores["mixed"]["n"] == 4 and result["n"] == len(_rows(tmp_path / "mixed-out")) == 6
    assert [r["predicted_class"] for r in _rows(tmp_path / "mixed-out")] == ["blue", "red", "green", "green", "blue",
                                                                              "red"]
    loaded = load_model(hand_model)
    assert algorithm.evaluate(loaded, mixed).confusion_matrix == algorithm.evaluate(loaded, alone).confusion_matrix


def test_unlabelled_input_gets_predictions_and_no_evaluation(hand_model: Path, tmp_path: Path) -> None:
    data = _colour_shards(tmp_path / "data", [("red", None), ("green", None), ("blue", None)], [])
    result = _serve(data, hand_model, tmp_path / "out")
    assert not (tmp_path / "out" / EVALUATION_FILE).exists()
    assert result["n"] == 3 and "evaluation" not in result
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n"] == 3


def test_a_file_name_that_is_not_utf8_is_predicted_and_written_byte_for_byte(hand_model: Path, tmp_path: Path) -> None:
    """One such name must not fail the batch: predictions.csv keeps its bytes, and its readers read it back."""
    from driftloop.components.explainability import _read_predictions
    from driftloop.files import NAME_ENCODING, NAME_ERRORS
    from driftloop.labels import read_predictions

    name = os.fsdecode(b"caf\xe9.png")  # as Python lists it: "caf\udce9.png"
    items = [(np.full((4, 4, 3), COLOURS["red"], np.uint8), UNKNOWN_LABEL, name),
             (np.full((4, 4, 3), COLOURS["blue"], np.uint8), UNKNOWN_LABEL, "ok.png")]
    write_shards(tmp_path / "data", items, shard_size=3, image_size=4, classes=[])
    assert _serve(tmp_path / "data", hand_model, tmp_path / "out")["n"] == 2
    written = (tmp_path / "out" / PREDICTIONS_FILE).read_bytes()
    assert b"\ncaf\xe9.png,red," in written
    assert _read_predictions(tmp_path / "out")[name][0] == "red"
    assert read_predictions(written.decode(NAME_ENCODING, NAME_ERRORS)).predicted == {name: "red", "ok.png": "blue"}


def test_sagemaker_model_archive_is_accepted(hand_model: Path, tmp_path: Path) -> None:
    archived = tmp_path / "model"
    archived.mkdir()
    with tarfile.open(archived / SAGEMAKER_ARCHIVE, "w:gz") as tar:
        for name in (MODEL_FILE, CLASSES_FILE):
            tar.add(hand_model / name, arcname=name)
    data = _colour_shards(tmp_path / "data", PAIRS, HAND_CLASSES)
    _serve(data, archived, tmp_path / "out")
    assert json.loads((tmp_path / "out" / EVALUATION_FILE).read_text())["accuracy"] == pytest.approx(0.5)


def test_missing_model_says_to_train_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _colour_shards(tmp_path / "data", PAIRS, HAND_CLASSES)
    argv = ["--mode", "serve", "--input-data", str(data), "--input-model", str(tmp_path / "none"),
            "--output-predictions", str(tmp_path / "out")]
    assert algorithm.main(argv) == 2
    assert "run the train pipeline first" in capsys.readouterr().err


def test_empty_training_set_is_an_error(tmp_path: Path) -> None:
    write_shards(tmp_path / "train", [], shard_size=4, image_size=8, classes=["a", "b"])
    write_shape_shards(tmp_path / "val", n_per_class=1, seed=0, size=8, kinds=["hstripes", "vstripes"],
                       classes=["a", "b"])
    inputs = {"train": tmp_path / "train", "val": tmp_path / "val"}
    with pytest.raises(UserError, match="holds no images"):
        algorithm.run_train(Invocation("train", inputs, {"model": tmp_path / "model"}))


def test_validation_class_unknown_to_training_is_an_error(tmp_path: Path) -> None:
    write_shape_shards(tmp_path / "train", n_per_class=2, seed=0, size=8, kinds=["hstripes", "vstripes"])
    write_shape_shards(tmp_path / "val", n_per_class=1, seed=0, size=8, kinds=["hstripes", "ring"])
    inputs = {"train": tmp_path / "train", "val": tmp_path / "val"}
    with pytest.raises(UserError, match="class the training set lacks"):
        algorithm.run_train(Invocation("train", inputs, {"model": tmp_path / "model"}))


def test_serve_runs_as_a_module_in_a_subprocess(hand_model: Path, tmp_path: Path) -> None:
    data = _colour_shards(tmp_path / "data", PAIRS, HAND_CLASSES)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "driftloop.components.algorithm", "--mode", "serve",
               "--input-data", str(data), "--input-model", str(hand_model), "--output-predictions", str(out),
               "--settings", json.dumps({"batch_size": 2})]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert len(_rows(out)) == 4
    assert json.loads((out / EVALUATION_FILE).read_text())["accuracy"] == pytest.approx(0.5)


@pytest.mark.parametrize("settings", [{"architecture": "resnet"}, {"epoch": 3}, {"batch_size": 0}])
def test_bad_settings_are_clear_errors(hand_model: Path, tmp_path: Path, settings: dict) -> None:
    data = _colour_shards(tmp_path / "data", PAIRS, HAND_CLASSES)
    inputs = {"data": data, "model": hand_model}
    with pytest.raises(UserError, match="bad training settings"):
        algorithm.run_serve(Invocation("serve", inputs, {"predictions": tmp_path / "out"}, settings))
