"""The explainability component: background + class maps (train), SHAP pictures for a batch (serve)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from driftloop.components import algorithm, explainability
from driftloop.components.entrypoint import Invocation
from driftloop.errors import UserError
from driftloop.ml.explain import expected_gradients, sample_indices
from driftloop.ml.model_io import load_model, save_model
from driftloop.ml.models import build_model
from driftloop.ml.shards import load_all

from ._images import CLASSES, write_shape_shards

SIZE = 32
SETTINGS = {"n_explain": 5, "n_background": 12, "nsamples": 16, "per_class": 2, "seed": 3}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards, an (untrained, seeded) small CNN and its predictions: SHAP needs no accuracy."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("explain")
    write_shape_shards(root / "train", n_per_class=6, seed=1, size=SIZE)
    write_shape_shards(root / "batch", n_per_class=4, seed=2, size=SIZE, labelled=False)
    tf.keras.utils.set_random_seed(0)
    save_model(build_model("small_cnn", image_size=SIZE, n_classes=len(CLASSES)), list(CLASSES), root / "model")
    algorithm.run_serve(Invocation("serve", {"data": root / "batch", "model": root / "model"},
                                   {"predictions": root / "predictions"}))
    return root


@pytest.fixture(scope="module")
def explainer(world: Path) -> Path:
    argv = ["--mode", "train", "--input-train", str(world / "train"), "--input-model", str(world / "model"),
            "--output-explainer", str(world / "explainer"), "--settings", json.dumps(SETTINGS)]
    assert explainability.main(argv) == 0
    return world / "explainer"


@pytest.fixture(scope="module")
def explanations(world: Path, explainer: Path) -> Path:
    out = world / "explanations"
    argv = ["--mode", "serve", "--input-batch", str(world / "batch"), "--input-model", str(world / "model"),
            "--input-explainer", str(explainer), "--input-predictions", str(world / "predictions"),
            "--output-explanations", str(out), "--settings", json.dumps(SETTINGS)]
    assert explainability.main(argv) == 0
    return out


def _is_png(path: Path) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and min(image.size) > 50


def test_train_keeps_a_seeded_background_and_per_class_maps(world: Path, explainer: Path) -> None:
    train = load_all(world / "train")
    with np.load(explainer / "background.npz") as background:
        expected = sample_indices(len(train), SETTINGS["n_background"], SETTINGS["seed"])
        assert np.array_equal(background["images"], train.images[expected])
    with np.load(explainer / "class_maps.npz") as maps:
        assert maps["maps"].shape == (len(CLASSES), SIZE, SIZE)
        assert list(maps["classes"]) == list(CLASSES)
        assert maps["counts"].tolist() == [SETTINGS["per_class"]] * len(CLASSES)
        assert np.all(maps["maps"] >= 0) and np.all(maps["maps"].reshape(len(CLASSES), -1).max(axis=1) > 0)
    assert _is_png(explainer / "class_maps.png")
    info = json.loads((explainer / "explainer.json").read_text())
    assert info["n_background"] == SETTINGS["n_background"] and info["settings"]["nsamples"] == SETTINGS["nsamples"]


def test_serve_explains_a_sample_for_its_predicted_class(world: Path, explanations: Path) -> None:
    predictions = {r.split(",")[0]: r.split(",")[1] for r in (world / "predictions" / "predictions.csv")
                   .read_text().splitlines()[1:]}
    with np.load(explanations / "shap_values.npz") as saved:
        values, files, predicted = saved["values"], list(saved["files"]), saved["predicted"]
    n = SETTINGS["n_explain"]
    assert values.shape == (n, SIZE, SIZE, 3) and np.all(np.isfinite(values)) and np.abs(values).sum() > 0
    assert len(set(files)) == n and set(files) <= set(predictions)
    assert [CLASSES[i] for i in predicted] == [predictions[f] for f in files]
    listing = json.loads((explanations / "explanations.json").read_text())
    assert [e["file"] for e in listing["explained"]] == files
    for entry in listing["explained"]:
        assert _is_png(explanations / entry["overlay"])
    assert _is_png(explanations / listing["grid"])
    assert listing["shap_seconds_per_image"] > 0


def test_shap_values_account_for_the_explained_output(world: Path) -> None:
    """Expected gradients: the values of an image sum to f(x) - E[f(background)] (up to sampling noise)."""
    model = load_model(world / "model").model
    train = load_all(world / "train")
    background, images = train.images[:8].astype(np.float32), train.images[8:10].astype(np.float32)
    target = np.array([0, 2])
    values = expected_gradients(model, background, images, target, nsamples=200, seed=0)
    gap = model.predict(images, verbose=0)[[0, 1], target] - model.predict(background, verbose=0)[:, target].mean(0)
    assert values.shape == images.shape
    np.testing.assert_allclose(values.reshape(2, -1).sum(axis=1), gap, atol=0.25 * np.abs(gap).max() + 1e-3)
    again = expected_gradients(model, background, images, target, nsamples=200, seed=0)
    assert np.array_equal(values, again)


def test_shap_values_are_shaps_gradient_explainer_values(world: Path) -> None:
    """The same draws and arithmetic as ``shap.GradientExplainer``: equal within float32 rounding."""
    import shap

    model = load_model(world / "model").model
    train = load_all(world / "train")
    background, images = train.images[:12].astype(np.float32), train.images[12:17].astype(np.float32)
    target = np.array([0, 3, 1, 2, 3])
    values = expected_gradients(model, background, images, target, nsamples=16, seed=7)
    state = np.random.get_state()
    try:
        reference, _ = shap.GradientExplainer(model, background, batch_size=16).shap_values(
            images, nsamples=16, ranked_outputs=target.reshape(-1, 1), output_rank_order="custom", rseed=7)
    finally:
        np.random.set_state(state)
    reference = np.asarray(reference)[..., 0]
    assert values.dtype == np.float32 and values.shape == reference.shape
    np.testing.assert_allclose(values, reference, rtol=0, atol=1e-6 * np.abs(reference).max())


def test_explaining_twice_with_one_model_traces_its_gradient_once(world: Path) -> None:
    """shap's explainer traced a gradient function per class at every call ("triggered retracing")."""
    import logging

    from driftloop.ml.explain import _gradient_function

    model = load_model(world / "model").model
    train = load_all(world / "train")
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("tensorflow").addHandler(handler)
    try:
        # Two calls, every class, different numbers of images (another batch size each time).
        expected_gradients(model, train.images[:8], train.images[8:12], np.arange(len(CLASSES)), nsamples=16, seed=0)
        expected_gradients(model, train.images[:8], train.images[14:17], np.array([3, 0, 2]), nsamples=24, seed=1)
    finally:
        logging.getLogger("tensorflow").removeHandler(handler)
    assert not [w for w in warnings if "retracing" in w]
    assert _gradient_function(model).experimental_get_tracing_count() == 1


def test_serve_without_an_explainer_says_to_train_first(world: Path, tmp_path: Path) -> None:
    inputs = {"batch": world / "batch", "model": world / "model", "explainer": tmp_path / "none",
              "predictions": world / "predictions"}
    with pytest.raises(UserError, match="run the train pipeline first"):
        explainability.run_serve(Invocation("serve", inputs, {"explanations": tmp_path / "out"}, SETTINGS))


def test_unknown_setting_is_a_clear_error(tmp_path: Path) -> None:
    inputs = {"train": tmp_path, "model": tmp_path}
    with pytest.raises(UserError, match="unknown setting"):
        explainability.run_train(Invocation("train", inputs, {"explainer": tmp_path / "out"}, {"n_samples": 3}))
