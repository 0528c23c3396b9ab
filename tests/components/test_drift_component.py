"""The drift component: KS drift on uae and classifier features, saved and reloaded.

The uae tests use small seeded stripe/square images and a rotated + blurred copy of their
distribution; the classifier-feature tests (embeddings, softmax, uncertainty, predictions) use the
project's synthetic set (original vs Noisy stage) and a tiny classifier trained on it, because
those features only mean something for a trained model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from driftloop.components import drift as drift_component
from driftloop.components.entrypoint import Invocation
from driftloop.config import DriftConfig
from driftloop.drift_report import DriftReport
from driftloop.errors import UserError
from driftloop.hosts import Hosts, shard_by_key
from driftloop.ml import drift
from driftloop.ml.model_io import save_model
from driftloop.ml.shards import load_all, write_shards
from driftloop.pipelines import DRIFT_REPORT_FILE

SIZE = 32
SHAPES = ["hstripes", "vstripes", "square"]
UAE_DIM = 16


def _image(kind: str, rng: np.random.Generator) -> np.ndarray:
    image = rng.integers(0, 60, size=(SIZE, SIZE, 3)).astype(np.float64)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    period, half = int(rng.integers(4, 7)), rng.uniform(SIZE * 0.15, SIZE * 0.3)
    centre = rng.uniform(SIZE * 0.35, SIZE * 0.65, size=2)
    masks = {
        "hstripes": rows % period < period // 2,
        "vstripes": cols % period < period // 2,
        "square": (np.abs(rows - centre[0]) < half) & (np.abs(cols - centre[1]) < half),
    }
    image[masks[kind]] = rng.integers(120, 256, size=3)
    return image


def _drifted(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Strong drift: rotate 30-60 degrees, then blur."""
    rotated = ndimage.rotate(image, float(rng.uniform(30, 60)), axes=(0, 1), reshape=False, mode="reflect")
    return ndimage.gaussian_filter(rotated, sigma=(2, 2, 0))


def _write(out: Path, n: int, seed: int, *, drifted: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        label = i % len(SHAPES)
        image = _image(SHAPES[label], rng)
        if drifted:
            image = _drifted(image, rng)
        items.append((np.clip(image, 0, 255).astype(np.uint8), label, f"{SHAPES[label]}/{i:04d}.png"))
    write_shards(out, items, shard_size=64, image_size=SIZE, classes=SHAPES)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("drift-data")
    return {
        "train": _write(root / "train", 240, seed=0),
        "clean": _write(root / "clean", 120, seed=1),
        "drifted": _write(root / "drifted", 120, seed=2, drifted=True),
        "tiny": _write(root / "tiny", 5, seed=3),
    }


def _render_stages(root: Path, wanted: list[tuple[str, str]]) -> dict[str, Path]:
    """The project's synthetic set, the given (stage, split)s, rendered straight to 64-pixel shards."""
    from PIL import Image

    from driftloop.local.data.seeding import rng_for
    from driftloop.local.data.stages import STAGES, apply_stage
    from driftloop.local.data.synthetic import CLASSES, synthetic_images

    specs = {spec.name: spec for spec in STAGES}
    rows: dict[tuple[str, str], list[tuple[np.ndarray, int, str]]] = {key: [] for key in wanted}
    for item in synthetic_images(seed=0, size="small"):
        for stage, split in wanted:
            if item.split == split:
                rng = rng_for(0, "stage", stage, split, item.label, item.name)
                image = apply_stage(item.image, specs[stage], rng).resize((64, 64), Image.Resampling.BICUBIC)
                rows[stage, split].append((np.asarray(image, np.uint8), CLASSES.index(item.label), item.name))
    for (stage, split), items in rows.items():
        write_shards(root / stage / split, items, shard_size=64, image_size=64, classes=list(CLASSES))
    return {f"{stage}/{split}": root / stage / split for stage, split in wanted}


def _tiny_classifier(shards: Path, out: Path) -> Path:
    """A small trained CNN with a Dense layer named ``embedding``, saved like the algorithm does."""
    import tensorflow as tf

    train = load_all(shards)
    size, n_classes = train.images.shape[1], int(train.labels.max()) + 1
    layers = tf.keras.layers
    init = tf.keras.initializers.GlorotUniform
    model = tf.keras.Sequential(
        [
            layers.InputLayer(input_shape=(size, size, 3)),
            layers.Rescaling(1.0 / 255.0),
            layers.Conv2D(16, 3, strides=2, activation="relu", kernel_initializer=init(seed=1)),
            layers.Conv2D(32, 3, strides=2, activation="relu", kernel_initializer=init(seed=2)),
            layers.Flatten(),
            layers.Dense(16, activation="relu", name="embedding", kernel_initializer=init(seed=3)),
            layers.Dense(n_classes, activation="softmax", kernel_initializer=init(seed=4)),
        ]
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(train.images.astype(np.float32), train.labels, epochs=5, batch_size=32, shuffle=False, verbose=0)
    save_model(model, [str(i) for i in range(n_classes)], out)
    return out


def _probabilities(model_dir: Path, shards: Path) -> np.ndarray:
    from driftloop.ml.model_io import load_model

    return load_model(model_dir).model(load_all(shards).images.astype(np.float32), training=False).numpy()


def _calibrate(model_dir: Path, val: Path) -> Path:
    """The accuracy calibration the algorithm's training writes beside its model."""
    from driftloop.ml.accuracy_estimate import CALIBRATION_FILE, calibrate

    calibrate(_probabilities(model_dir, val), load_all(val).labels).write(model_dir / CALIBRATION_FILE)
    return model_dir


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stages")
    sets = _render_stages(root, [("original", "train"), ("original", "val"), ("original", "test"), ("noisy", "test")])
    model = _calibrate(_tiny_classifier(sets["original/train"], root / "model"), sets["original/val"])
    return {**sets, "model": model}


def _train(train: Path, model: Path, out: Path, **settings: object) -> int:
    settings.setdefault("features", "uae")  # the model-independent choice; embeddings tests say so
    return drift_component.main([
        "--mode", "train", "--input-train", str(train), "--input-model", str(model),
        "--output-detector", str(out), "--settings", json.dumps(settings),
    ])


def _serve(batch: Path, detector: Path, model: Path, out: Path, **settings: object) -> DriftReport:
    """Both steps of judging a batch, as the serve pipeline runs them: features, then the merge."""
    code = drift_component.main([
        "--mode", "serve", "--input-batch", str(batch), "--input-detector", str(detector),
        "--input-model", str(model), "--output-features", str(out / "features"),
    ])
    assert code == 0
    code = drift_component.main([
        "--mode", "merge", "--input-features", str(out / "features"), "--input-detector", str(detector),
        "--output-report", str(out), "--settings", json.dumps(settings),
    ])
    assert code == 0
    return DriftReport.read(out / DRIFT_REPORT_FILE)


def _assert_consistent(report: DriftReport, n_features: int) -> None:
    assert report.n_features == n_features == len(report.distances)
    p_values = np.asarray(report.p_values)
    if report.correction == "bonferroni":  # weighted for "predictions", even otherwise
        shares = drift.alpha_shares(report.detector.features, n_features)
        assert report.statistic == pytest.approx(min(p_values / (n_features * shares)))
    else:
        assert report.statistic == min(report.p_values)
    assert report.significant == (report.statistic < report.threshold)
    if report.correction == "bonferroni":
        significant = p_values < report.p_val * drift.alpha_shares(report.detector.features, n_features)
    else:
        significant = drift.significant_features(p_values, report.p_val, "fdr")
    assert significant.any() == report.significant
    assert report.effect_size == (max(np.asarray(report.distances)[significant]) if report.significant else 0.0)
    assert report.is_drift == (report.significant and report.effect_size >= report.min_distance)
    if report.correction == "bonferroni" or not report.significant:
        assert report.threshold == pytest.approx(report.p_val / n_features)


@pytest.fixture(scope="module")
def uae_detector(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uae-detector")
    settings = {"encoding_dim": UAE_DIM, "run_id": "run-7", "trained_on": "synthetic"}
    assert _train(data["train"], out / "no-model", out, **settings) == 0
    return out


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_uae_flags_drifted_batch_only(data: dict[str, Path], tmp_path: Path, correction: str) -> None:
    no_model = tmp_path / "no-model"  # uae never needs the classifier
    assert _train(data["train"], no_model, tmp_path / "det", encoding_dim=UAE_DIM, correction=correction) == 0
    clean = _serve(data["clean"], tmp_path / "det", no_model, tmp_path / "clean")
    drifted = _serve(data["drifted"], tmp_path / "det", no_model, tmp_path / "drifted")
    assert (clean.is_drift, drifted.is_drift) == (False, True)
    for report in (clean, drifted):
        assert report.correction == correction and not report.too_small and report.batch_size == 120
        _assert_consistent(report, n_features=UAE_DIM)
    assert drifted.statistic < 1e-6 < clean.statistic


def test_a_significant_shift_below_the_effect_size_floor_is_not_drift(
    data: dict[str, Path], uae_detector: Path, tmp_path: Path
) -> None:
    no_model = tmp_path / "no-model"
    default = _serve(data["drifted"], uae_detector, no_model, tmp_path / "default")
    assert default.is_drift and default.min_distance == DriftConfig().min_distance
    floor = round(default.effect_size + 0.01, 3)
    high = _serve(data["drifted"], uae_detector, no_model, tmp_path / "high", min_distance=floor)
    assert (high.significant, high.is_drift) == (True, False)
    assert (high.statistic, high.p_values, high.effect_size) == (default.statistic, default.p_values,
                                                                  default.effect_size)
    assert high.message.startswith("no drift: ") and f"< floor {floor:.3g}" in high.message
    _assert_consistent(high, n_features=UAE_DIM)


def test_effect_size_floor_must_be_a_ks_distance() -> None:
    with pytest.raises(ValueError, match="min_distance"):
        DriftConfig(min_distance=1.5)


N_CLASSES = 6  # the synthetic set's
CLASSIFIER_FEATURES = {"embeddings": 16, "softmax": N_CLASSES, "uncertainty": 1, "predictions": 1 + N_CLASSES}


@pytest.mark.slow
@pytest.mark.parametrize(("features", "correction"), [
    *((kind, "bonferroni") for kind in CLASSIFIER_FEATURES), ("embeddings", "fdr"), ("predictions", "fdr"),
])
def test_classifier_features_flag_the_noisy_stage_only(
    stages: dict[str, Path], tmp_path: Path, features: str, correction: str
) -> None:
    model = stages["model"]
    assert _train(stages["original/train"], model, tmp_path / "det", features=features, correction=correction) == 0
    original = _serve(stages["original/test"], tmp_path / "det", model, tmp_path / "original")
    noisy = _serve(stages["noisy/test"], tmp_path / "det", model, tmp_path / "noisy")
    assert (original.is_drift, noisy.is_drift) == (False, True)
    for report in (original, noisy):
        assert report.detector.features == features and report.batch_size == 48
        _assert_consistent(report, n_features=CLASSIFIER_FEATURES[features])


@pytest.mark.slow
@pytest.mark.parametrize("features", [*CLASSIFIER_FEATURES, "uae"])
def test_the_report_estimates_the_batch_accuracy_from_the_drift_tests_forward_pass(
    stages: dict[str, Path], tmp_path: Path, features: str
) -> None:
    """Whatever the features, the estimate is the one of the classifier's own probabilities on the batch."""
    from driftloop.ml.accuracy_estimate import DEFAULT_METHOD, AccuracyCalibration, estimated_accuracy

    model = stages["model"]
    calibration = AccuracyCalibration.read(model / "accuracy_calibration.json")
    assert _train(stages["original/train"], model, tmp_path / "det", features=features, encoding_dim=UAE_DIM) == 0
    estimates = {}
    for batch in ("original/test", "noisy/test"):
        report = _serve(stages[batch], tmp_path / "det", model, tmp_path / batch)
        assert report.accuracy_estimate is not None
        estimates[batch] = report.accuracy_estimate.estimate
        expected = estimated_accuracy(_probabilities(model, stages[batch]), calibration)
        assert report.accuracy_estimate.method == DEFAULT_METHOD and report.accuracy_estimate.n == 48
        assert report.accuracy_estimate.estimate == pytest.approx(expected.estimate, abs=1 / 48)
        assert report.accuracy_estimate.validation_accuracy == calibration.accuracy
        assert report.accuracy_estimate.drop_points == pytest.approx(
            100 * (calibration.accuracy - report.accuracy_estimate.estimate))
        assert report.accuracy_estimate.lower <= report.accuracy_estimate.estimate <= report.accuracy_estimate.upper
    assert estimates["noisy/test"] < estimates["original/test"]


@pytest.mark.slow
def test_a_model_without_calibration_gives_no_estimate_and_says_why(
    stages: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    older = tmp_path / "older-model"
    shutil.copytree(stages["model"], older)
    (older / "accuracy_calibration.json").unlink()
    assert _train(stages["original/train"], older, tmp_path / "det", features="predictions") == 0
    with caplog.at_level("INFO", logger="driftloop.drift"):
        report = _serve(stages["noisy/test"], tmp_path / "det", older, tmp_path / "report")
    assert report.accuracy_estimate is None and report.is_drift
    assert "has no accuracy calibration" in caplog.text


def test_predictions_give_the_entropy_half_of_alpha() -> None:
    """Weighted Bonferroni: an entropy shift too small for alpha/7 but not for alpha/2 is drift."""
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(400, 7)).astype(np.float32)
    batch = rng.normal(size=(60, 7)).astype(np.float32)
    batch[:, 0] += 0.55  # the entropy column: a modest shift (p ~ 0.01; the others stay > 0.03)
    shares = drift.alpha_shares("predictions", 7)
    assert shares[0] == 0.5 and shares[1:] == pytest.approx([0.5 / 6] * 6) and shares.sum() == pytest.approx(1)
    ks = drift.fit(reference, p_val=0.05, correction="bonferroni")
    even, weighted = drift.score(ks, batch), drift.score(ks, batch, shares)
    assert 0.05 / 7 < even.p_values[0] < 0.05 / 2  # the case this test is about
    assert (even.is_drift, weighted.is_drift) == (False, True)
    assert weighted.statistic == pytest.approx(even.p_values[0] / 3.5) and weighted.threshold == pytest.approx(0.05 / 7)
    assert drift.score(ks, reference[:60], shares).is_drift is False


def test_unknown_feature_kind_is_a_clear_error(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(data["train"], tmp_path / "no-model", tmp_path / "det", features="pixels") == 2
    assert "bad drift settings: features must be one of" in capsys.readouterr().err
    assert not (tmp_path / "det" / drift.META_FILE).exists()


@pytest.mark.slow
def test_embeddings_refuse_another_model(stages: dict[str, Path], tmp_path: Path) -> None:
    import tensorflow as tf

    assert _train(stages["original/train"], stages["model"], tmp_path / "det", features="embeddings") == 0
    other = tf.keras.models.load_model(stages["model"] / "model.keras")
    layer = other.get_layer("embedding")
    layer.set_weights([w + 0.1 for w in layer.get_weights()])
    save_model(other, ["a"], tmp_path / "other")
    invocation = Invocation(
        mode="serve", inputs={"batch": stages["noisy/test"], "detector": tmp_path / "det", "model": tmp_path / "other"},
        outputs={"features": tmp_path / "features"},
    )
    with pytest.raises(UserError, match="same train run"):
        drift_component.run_serve(invocation)


def test_detector_json_records_identity(data: dict[str, Path], uae_detector: Path, tmp_path: Path) -> None:
    meta = json.loads((uae_detector / drift.META_FILE).read_text())
    assert meta["features"] == "uae" and meta["correction"] == "bonferroni" and meta["p_val"] == 0.05
    assert (meta["trained_on"], meta["run_id"], meta["reference_size"]) == ("synthetic", "run-7", 240)
    report = _serve(data["clean"], uae_detector, tmp_path / "no-model", tmp_path / "report")
    assert report.detector.trained_on == "synthetic" and report.detector.reference_size == 240
    assert report.detector.run_id == "run-7"


def test_reference_is_a_seeded_sample(data: dict[str, Path], tmp_path: Path) -> None:
    assert _train(data["train"], tmp_path / "no-model", tmp_path / "det", encoding_dim=8, max_reference=50) == 0
    assert json.loads((tmp_path / "det" / drift.META_FILE).read_text())["reference_size"] == 50
    first = drift.reference_indices(240, 50, seed=0)
    assert np.array_equal(first, drift.reference_indices(240, 50, seed=0))
    assert not np.array_equal(first, drift.reference_indices(240, 50, seed=1))
    assert len(np.unique(first)) == 50 and np.all(np.diff(first) > 0) and first.max() < 240


def test_encoder_weights_depend_on_seed_only() -> None:
    same = [drift.weights_fingerprint(drift.build_uae_encoder(SIZE, 8, seed=s)) for s in (3, 3, 4)]
    assert same[0] == same[1] != same[2]


def test_too_small_batch_is_not_judged(data: dict[str, Path], uae_detector: Path, tmp_path: Path) -> None:
    report = _serve(data["tiny"], uae_detector, tmp_path / "no-model", tmp_path / "report", min_batch_size=20)
    assert (report.is_drift, report.too_small, report.batch_size, report.min_batch_size) == (False, True, 5, 20)
    assert report.p_values == [] and "below min_batch_size=20" in report.message
    assert report.threshold == pytest.approx(0.05 / UAE_DIM)


def test_batch_of_another_image_size_is_refused(uae_detector: Path, tmp_path: Path) -> None:
    items = [(np.zeros((16, 16, 3), np.uint8), 0, f"{i}.png") for i in range(30)]
    write_shards(tmp_path / "batch", items, shard_size=64, image_size=16, classes=SHAPES)
    invocation = Invocation(
        mode="serve", inputs={"batch": tmp_path / "batch", "detector": uae_detector, "model": tmp_path / "none"},
        outputs={"features": tmp_path / "features"},
    )
    with pytest.raises(UserError, match="16 px but the detector was trained on 32 px"):
        drift_component.run_serve(invocation)


def test_missing_detector_says_train_first(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = drift_component.main([
        "--mode", "serve", "--input-batch", str(data["clean"]), "--input-detector", str(tmp_path / "none"),
        "--input-model", str(tmp_path / "none"), "--output-features", str(tmp_path / "features"),
    ])
    assert code == 2
    assert "run the train pipeline first" in capsys.readouterr().err
    assert not (tmp_path / "features").exists()


def test_embeddings_without_model_is_a_clear_error(data: dict[str, Path], tmp_path: Path) -> None:
    invocation = Invocation(
        mode="train", inputs={"train": data["train"], "model": tmp_path / "none"},
        outputs={"detector": tmp_path / "det"}, settings={"features": "embeddings"},
    )
    with pytest.raises(UserError, match="need the classifier"):
        drift_component.run_train(invocation)


@pytest.mark.slow
def test_fresh_process_loads_and_saves_identically(data: dict[str, Path], uae_detector: Path, tmp_path: Path) -> None:
    """A new process serves with a detector saved here (same p-values), then trains its own (same bytes)."""
    serve = ["--mode", "merge", "--input-features", str(_features(data["clean"], uae_detector, tmp_path / "f")),
             "--input-detector", str(uae_detector), "--output-report", str(tmp_path / "fresh")]
    train = ["--mode", "train", "--input-train", str(data["train"]), "--input-model", str(tmp_path / "none"),
             "--output-detector", str(tmp_path / "det"), "--settings",
             json.dumps({"features": "uae", "encoding_dim": UAE_DIM, "run_id": "run-7", "trained_on": "synthetic"})]
    cut = len(serve) + 1
    script = (
        "import sys; from driftloop.components.drift import main; "
        f"sys.exit(main(sys.argv[1:{cut}]) or main(sys.argv[{cut}:]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # the CLI must set it itself
    done = subprocess.run([sys.executable, "-c", script, *serve, *train], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    fresh = DriftReport.read(tmp_path / "fresh" / DRIFT_REPORT_FILE)
    here = _serve(data["clean"], uae_detector, tmp_path / "none", tmp_path / "here")
    assert fresh.p_values == here.p_values and fresh.distances == here.distances and len(set(here.p_values)) > 1
    theirs, ours = drift.load(tmp_path / "det"), drift.load(uae_detector)
    assert np.array_equal(theirs.ks.x_ref, ours.ks.x_ref)
    assert drift.weights_fingerprint(theirs.encoder) == drift.weights_fingerprint(ours.encoder)
    assert theirs.meta == ours.meta


def _features(batch: Path, detector: Path, out: Path, hosts: Hosts | None = None) -> Path:
    drift_component.run_serve(Invocation(mode="serve", inputs={"batch": batch, "detector": detector,
                                                               "model": out / "none"},
                                         outputs={"features": out}, hosts=hosts or Hosts()))
    return out


def _split(batch: Path, into: Path, count: int) -> list[Path]:
    """The processed folder's files dealt to ``count`` hosts by key, as ``ShardedByS3Key`` does."""
    folders = []
    for i, names in enumerate(shard_by_key([p.name for p in batch.iterdir()], count)):
        folders.append(into / f"host-{i}")
        folders[-1].mkdir(parents=True)
        for name in names:
            shutil.copy(batch / name, folders[-1] / name)
    return folders


def test_two_hosts_features_give_the_one_host_report(data: dict[str, Path], uae_detector: Path, tmp_path: Path) -> None:
    """Each host writes the features of its share of the shards; the merge judges them all at once."""
    one = _serve(data["drifted"], uae_detector, tmp_path / "none", tmp_path / "one")
    hosts = Hosts.of_job(2)
    for host, folder in zip(hosts, _split(data["drifted"], tmp_path / "split", 2), strict=True):
        _features(folder, uae_detector, tmp_path / "parts", host)
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["features-algo-1.npz", "features-algo-2.npz"]
    drift_component.run_merge(Invocation(mode="merge",
                                         inputs={"features": tmp_path / "parts", "detector": uae_detector},
                                         outputs={"report": tmp_path / "two"}))
    two = DriftReport.read(tmp_path / "two" / DRIFT_REPORT_FILE)
    assert one.is_drift and two == one


def test_merge_refuses_features_that_miss_part_of_the_batch(
    data: dict[str, Path], uae_detector: Path, tmp_path: Path
) -> None:
    first, _second = _split(data["drifted"], tmp_path / "split", 2)  # the second host's features never come
    _features(first, uae_detector, tmp_path / "parts")
    with pytest.raises(UserError, match="a part of the batch is missing"):
        drift_component.run_merge(Invocation(mode="merge", inputs={"features": tmp_path / "parts",
                                                              "detector": uae_detector},
                                        outputs={"report": tmp_path / "report"}))


def test_merge_of_a_batch_without_images_fails_the_run(uae_detector: Path, tmp_path: Path) -> None:
    """Hosts that each got no usable image wrote empty parts: the merge is where the batch is whole."""
    write_shards(tmp_path / "batch", [], shard_size=64, image_size=SIZE, classes=[])
    _features(tmp_path / "batch", uae_detector, tmp_path / "parts", Hosts.of_job(2)[0])
    with pytest.raises(UserError, match="no usable images in the batch"):
        drift_component.run_merge(Invocation(mode="merge", inputs={"features": tmp_path / "parts",
                                                              "detector": uae_detector},
                                        outputs={"report": tmp_path / "report"}))
