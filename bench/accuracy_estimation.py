"""Label-free accuracy estimation and harm-aware retrain policies, over several data seeds.

For every data seed, every stage's model (the algorithm component's train runner on that stage's
processed train and validation sets, default ``TrainingConfig``, as the simulation trains a
retrained model) is served batches drawn from every stage's held-out images. For each batch the
estimators of ``driftloop.ml.accuracy_estimate`` (calibrated on the model's validation set, as the
train pipeline would) give an accuracy and an interval; the labels give the truth. From the same
batches: the monitoring component's drift verdict (default ``DriftConfig``: ``predictions``
features, Bonferroni, α = 0.05, the effect-size floor ``min_distance``, reference = the model's
training images), the retrain policies ``drift``, ``harm`` (estimated drop from the validation
accuracy ≥ X), ``drift_and_harm`` and ``drift_or_harm``, and whether the default estimate lay inside
its calibration's validity domain (``accuracy_estimate.class_mix_domain``) at several α.

Held-out pools: a stage's test set holds only 42 images, so each data seed gets a pool of fresh
images per stage made by the stage generator (``write_tiled_stages``, the code ``make_dataset``
runs, with seeds no data set uses) and batches are drawn from it with replacement. A second, disjoint
pool of the model's own stage serves as a large calibration set, to tell the error the 34-image
validation set costs from the error of the method itself.

Cost: the only TensorFlow work is one training per (seed, stage) and one forward pass per pool
image and model (``drift.extract_features`` with the ``predictions`` feature model: entropy and
class probabilities, exactly the monitoring component's features); every batch is then numpy on
those outputs. The drift verdict uses ``bench.drift_quality.MemoKS`` (alibi-detect's KS p-values,
memoised, bit-identical) and is checked against ``driftloop.ml.drift.score`` on the first batch of
every cell.

Caching: models and their outputs are cached under the bench work folder keyed by their parameters
and a hash of the code that makes them (data generation, processing, training, model I/O, the
drift features), not of all of ``driftloop/``: other modules change often and do not change a
trained model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench import fixtures
from bench.common import REPO_ROOT, BenchOptions, Result, table
from driftloop.config import DriftConfig, ProcessingConfig, TrainingConfig
from driftloop.layout import STAGE_NAMES

# The code a cached model and its outputs come from (paths under driftloop/).
MODEL_CODE = ("local/data", "files.py", "components/algorithm.py", "components/processing.py", "ml/models.py",
              "ml/model_io.py", "ml/shards.py", "ml/images.py", "ml/drift.py")
FIXTURE_VERSION = 1
SEEDS = (0, 1, 2)
BATCH_SIZES = (42, 200)
N_BATCHES = 200
TEST_TILES = 2  # synthetic seeds per held-out test pool: 2 × 484 images per stage at blog size
HARM_THRESHOLDS = (0.05, 0.10, 0.15)
# The estimate's validity domain at the default α (accuracy_estimate.DOMAIN_ALPHA) and two wider
# ones, for the default method: how often a marked and an unmarked estimate is this far off (issue 24).
DOMAIN_ALPHAS = (0.05, 0.10, 0.20)
FAR_OFF = (0.10, 0.20)
HARMFUL_DROP = 0.10  # a batch this far below the model's own-stage accuracy must be acted on (issue 14)
HARMLESS_DROP = 0.05  # a retrain on a batch less than this far below is needless
CONFIDENCE = 0.95
# Pool seeds: HELD_OUT_SEED + POOL_STRIDE * data seed + offset, far from every data set's seed.
POOL_STRIDE = 10
CALIBRATION_OFFSET = 5


def _code_hash() -> str:
    digest = hashlib.sha256()
    package = REPO_ROOT / "driftloop"
    for part in MODEL_CODE:
        target = package / part
        for path in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cached(folder: Path, params: dict[str, Any], make: Callable[[Path], object]) -> Path:
    """``fixtures.cached`` with the narrower code hash (see the module docstring)."""
    return fixtures.cached(folder, params, make, code=f"{_code_hash()}-v{FIXTURE_VERSION}")


def _run(component: str, mode: str, inputs: dict[str, Path], outputs: dict[str, Path],
         settings: dict[str, Any]) -> Any:
    """A component's in-process runner (its module's ``RUNNERS``), as the local runner calls it."""
    import importlib

    from driftloop.components.entrypoint import Invocation

    for folder in outputs.values():
        folder.mkdir(parents=True, exist_ok=True)
    runners = importlib.import_module(f"driftloop.components.{component}").RUNNERS
    invocation = Invocation(mode=mode, inputs=inputs, outputs=outputs, settings=dict(settings))  # type: ignore[arg-type]
    return runners[mode](invocation)


def _data(workdir: Path, seed: int, size: str) -> Path:
    def make(folder: Path) -> None:
        from driftloop.local.data.synthetic import make_dataset

        make_dataset(folder, seed=seed, size=size)

    return _cached(workdir / f"acc-data-{size}-s{seed}", {"seed": seed, "size": size}, make)


def _pool(workdir: Path, name: str, seeds: Sequence[int], size: str) -> Path:
    """Fresh images of every stage, processed: ``<pool>/<stage>`` (labelled shards)."""
    params = {"seeds": list(seeds), "size": size, "processing": ProcessingConfig().to_dict()}

    def make(folder: Path) -> None:
        images = folder / "images"
        fixtures.write_tiled_stages(images, seeds, size, split="test", stage_seed=seeds[0])
        for stage in STAGE_NAMES:
            _run("processing", "serve", {"batch": images / stage / "test"}, {"batch": folder / stage},
                 ProcessingConfig().to_dict())
        shutil.rmtree(images)

    return _cached(workdir / name, params, make)


def _val_sets(workdir: Path, seed: int, size: str, data: Path) -> Path:
    """Every stage's validation images, processed as a batch: ``<folder>/<stage>`` (labelled shards).

    The loop's earlier models are scored on the serving model's validation set (the agreement
    estimators calibrate on it), so every model is run on every stage's validation images."""
    params = {"seed": seed, "size": size, "processing": ProcessingConfig().to_dict()}

    def make(folder: Path) -> None:
        for stage in STAGE_NAMES:
            _run("processing", "serve", {"batch": data / stage / "val"}, {"batch": folder / stage},
                 ProcessingConfig().to_dict())

    return _cached(workdir / f"acc-val-{size}-s{seed}", params, make)


@dataclass(frozen=True)
class ModelOutputs:
    """One model's ``predictions`` features (entropy, then class probabilities) and labels per image set."""

    stage: str
    seed: int
    val_accuracy: float
    training: dict[str, Any]
    features: dict[str, np.ndarray]  # "reference", "val", "calibration", "test/<stage>", "val/<stage>"
    labels: dict[str, np.ndarray]
    # The same for a second copy trained alike from another seed (the ``agreement`` method).
    second: dict[str, np.ndarray] | None = None

    def probabilities(self, key: str) -> np.ndarray:
        return self.features[key][:, 1:]


def _labels(shards: Path, classes: list[str]) -> np.ndarray:
    from driftloop.components.algorithm import remap_labels
    from driftloop.ml.shards import iter_shards, read_summary

    source = read_summary(shards).classes
    return np.concatenate([remap_labels(s.labels, source, classes) for s in iter_shards(shards)])


def _feature_settings() -> dict[str, Any]:
    """The drift settings a model's cached outputs depend on: the features and the reference sample
    (the test's settings are applied per batch, so changing them must not retrain 42 models)."""
    config = DriftConfig()
    return {"features": config.features, "max_reference": config.max_reference, "seed": config.seed}


def _model_outputs(workdir: Path, seed: int, size: str, stage: str, training: TrainingConfig,
                   data: Path, pools: tuple[Path, Path, Path]) -> ModelOutputs:
    test_pool, calibration_pool, val_sets = pools
    params = {"seed": seed, "size": size, "stage": stage, "training": training.to_dict(),
              "processing": ProcessingConfig().to_dict(), "drift": _feature_settings(),
              "test_pool": test_pool.name, "calibration_pool": calibration_pool.name, "val_sets": val_sets.name}

    def make(folder: Path) -> None:
        from driftloop.ml import drift
        from driftloop.ml.model_io import load_model

        shards = folder / "shards"
        _run("processing", "train", {"train": data / stage / "train", "val": data / stage / "val"},
             {"train": shards / "train", "val": shards / "val"}, ProcessingConfig().to_dict())
        started = time.perf_counter()
        _run("algorithm", "train", {"train": shards / "train", "val": shards / "val"}, {"model": folder / "model"},
             {**training.to_dict(), "trained_on": stage})
        print(f"  trained seed {seed} {stage} in {time.perf_counter() - started:.0f} s", flush=True)
        loaded = load_model(folder / "model")
        model = drift.classifier_features(loaded.model, "predictions")
        config = DriftConfig()
        n_train = len(_labels(shards / "train", loaded.classes))
        keep = drift.reference_indices(n_train, config.max_reference, config.seed)
        sets = {"reference": (shards / "train", keep), "val": (shards / "val", None),
                "calibration": (calibration_pool / stage, None),
                **{f"test/{s}": (test_pool / s, None) for s in STAGE_NAMES},
                **{f"val/{s}": (val_sets / s, None) for s in STAGE_NAMES}}
        arrays: dict[str, np.ndarray] = {}
        for key, (source, subset) in sets.items():
            arrays[f"features:{key}"] = drift.extract_features(model, drift.iter_images(source, subset))
            labels = _labels(source, loaded.classes)
            arrays[f"labels:{key}"] = labels if subset is None else labels[subset]
        np.savez(folder / "outputs.npz", **arrays)  # type: ignore[arg-type]
        shutil.rmtree(shards)

    suffix = "" if training.seed == TrainingConfig().seed else f"-t{training.seed}"
    folder = _cached(workdir / f"acc-model-{size}-s{seed}-{stage}-e{training.epochs}{suffix}", params, make)
    metrics = json.loads((folder / "model" / "metrics.json").read_text())
    with np.load(folder / "outputs.npz") as npz:
        features = {k.split(":", 1)[1]: npz[k] for k in npz.files if k.startswith("features:")}
        labels = {k.split(":", 1)[1]: npz[k] for k in npz.files if k.startswith("labels:")}
    return ModelOutputs(stage=stage, seed=seed, val_accuracy=float(metrics["val_accuracy"]),
                        training={"epochs": metrics["epochs"], "best_epoch": metrics["best_epoch"],
                                  "wall_time_s": metrics["wall_time_s"], "n_val": metrics["n_val"]},
                        features=features, labels=labels)


def prepare(options: BenchOptions) -> tuple[list[ModelOutputs], dict[str, Any]]:
    """Every (seed, stage) model's outputs on its reference, validation, calibration and test images."""
    quick = options.quick
    size = "small" if quick else "blog"
    seeds = (options.seed,) if quick else tuple(options.seed + s for s in SEEDS)
    training = TrainingConfig(epochs=4, patience=2) if quick else TrainingConfig()
    tiles = 1 if quick else TEST_TILES
    second_training = dataclasses.replace(training, seed=training.seed + 1)
    outputs = []
    for seed in seeds:
        base = fixtures.HELD_OUT_SEED + POOL_STRIDE * seed
        data = _data(options.workdir, seed, size)
        test_pool = _pool(options.workdir, f"acc-pool-{size}-s{seed}-test", [base + i for i in range(tiles)], size)
        calibration_pool = _pool(options.workdir, f"acc-pool-{size}-s{seed}-calibration",
                                 [base + CALIBRATION_OFFSET], size)
        pools = (test_pool, calibration_pool, _val_sets(options.workdir, seed, size, data))
        for stage in STAGE_NAMES:
            first = _model_outputs(options.workdir, seed, size, stage, training, data, pools)
            second = _model_outputs(options.workdir, seed, size, stage, second_training, data, pools)
            for key, labels in first.labels.items():
                if key != "reference" and not np.array_equal(labels, second.labels[key]):
                    raise RuntimeError(f"the two copies saw {key} in different orders")
            training_info = {**first.training, "second_copy_wall_time_s": second.training["wall_time_s"],
                             "second_copy_val_accuracy": second.val_accuracy}
            outputs.append(dataclasses.replace(first, second=second.features, training=training_info))
    setup = {"size": size, "seeds": list(seeds), "training": training.to_dict(),
             "second_copy_training_seed": second_training.seed, "test_pool_tiles": tiles}
    return outputs, setup


CALIBRATIONS = ("val", "large")  # the model's validation set (as train time has it); a large own-stage pool


@dataclass(frozen=True)
class Policy:
    """A retrain rule on one batch: ``drift``, or ``harm``, ``drift_and_harm``, ``drift_or_harm`` (method, X)."""

    kind: str
    method: str = ""
    points: float = 0.0

    @property
    def name(self) -> str:
        return self.kind if self.kind == "drift" else f"{self.kind}({self.method}, {100 * self.points:.0f})"

    def fires(self, drift: bool, drop: dict[str, float]) -> bool:
        if self.kind == "drift":
            return drift
        harm = drop[self.method] >= self.points - 1e-12
        return {"harm": harm, "drift_and_harm": harm and drift, "drift_or_harm": harm or drift}[self.kind]


def all_methods() -> tuple[str, ...]:
    """The single-model methods, ``agreement`` (two copies) and the loop's-own-models methods."""
    from driftloop.ml.accuracy_estimate import AGREEMENT, METHODS, MODELS_METHODS

    return (*METHODS, AGREEMENT, *MODELS_METHODS, SWITCHED)


# A candidate for "use it where it is better": the default estimate inside its validity domain, the
# loop's-models estimate outside it (where the default is most often far off).
SWITCH_TO = "triplet"
SWITCHED = f"atc_ne_else_{SWITCH_TO}"


def _outside_domain(batch: np.ndarray, calibration: Any) -> bool:
    from driftloop.ml.accuracy_estimate import class_mix_domain

    found = class_mix_domain(batch, calibration)
    if found is None:
        raise RuntimeError("the calibration has no class mix: it predates the validity domain")
    return found[0] > found[1]


# The champions before a stage's model, as the loop holds them after retraining on each stage in the
# stream's order: the previous stages' models, newest first (Original's are Noisy, Stage-5, Stage-4:
# the cycle's second round; the first Original model has none and keeps the single-model estimate).
EARLIER_CHAMPIONS = 3


@dataclass(frozen=True)
class Family:
    """The serving model and the champions before it: predicted classes per test set, and their calibration."""

    predictions: dict[str, np.ndarray]  # test set -> models × pool images
    calibration: Any  # accuracy_estimate.ModelsCalibration on the serving model's validation set


def _family(o: ModelOutputs, by_stage: dict[tuple[int, str], ModelOutputs]) -> Family:
    from driftloop.ml.accuracy_estimate import ModelsCalibration

    k = STAGE_NAMES.index(o.stage)
    members = [o, *(by_stage[(o.seed, STAGE_NAMES[(k - d) % len(STAGE_NAMES)])]
                    for d in range(1, EARLIER_CHAMPIONS + 1))]
    val = f"val/{o.stage}"
    for member in members:
        if not np.array_equal(member.labels[val], o.labels[val]):
            raise RuntimeError(f"{member.stage}'s model saw {val} in another order")
    calibration = ModelsCalibration.fit(np.stack([m.probabilities(val).argmax(axis=1) for m in members]),
                                        o.labels[val])
    return Family({s: np.stack([m.probabilities(f"test/{s}").argmax(axis=1) for m in members])
                   for s in STAGE_NAMES}, calibration)


def policies() -> list[Policy]:
    found = [Policy("drift")]
    for kind in ("harm", "drift_and_harm", "drift_or_harm"):
        found += [Policy(kind, method, points) for method in all_methods() for points in HARM_THRESHOLDS]
    return found


def _estimates(probabilities: np.ndarray, second: np.ndarray, calibration: Any,
               family: tuple[np.ndarray, Any], outside: bool) -> dict[str, Any]:
    """Every method's estimate of one batch (``agreement`` and the models' methods ignore the
    calibration: theirs is the models' own, ``family``'s second part; ``outside``: the batch's class mix
    is outside the validation calibration's domain, which picks ``SWITCHED``'s estimate)."""
    from driftloop.ml import accuracy_estimate as ae

    predictions, models = family
    found: dict[str, Any] = {**ae.estimate_all(probabilities, calibration),
                             ae.AGREEMENT: ae.estimate_agreement(probabilities, second),
                             **{m: ae.estimate_with_models(predictions, models, m) for m in ae.MODELS_METHODS}}
    return {**found, SWITCHED: found[SWITCH_TO] if outside else found[ae.DEFAULT_METHOD]}


def _drift_checker(reference: np.ndarray) -> tuple[Any, Any, np.ndarray]:
    from bench.drift_quality import MemoKS
    from driftloop.ml import drift

    config = DriftConfig()
    shares = drift.alpha_shares(config.features, reference.shape[1])
    return MemoKS(reference), drift.fit(reference, config.p_val, config.correction), shares


def _cell(outputs: ModelOutputs, stage: str, calibrations: dict[str, Any], own_accuracy: float,
          checker: tuple[Any, Any, np.ndarray], family: Family, batch_sizes: Sequence[int], n_batches: int,
          policy_list: list[Policy]) -> dict[str, Any]:
    """Every batch of one (model, test stage) cell: estimation errors, coverage, drift and policy verdicts,
    and whether the default estimate lay inside its calibration's domain."""
    from driftloop.ml import accuracy_estimate as ae
    from driftloop.ml import drift
    from driftloop.ml.accuracy_estimate import DEFAULT_METHOD, METHODS

    memo, ks, shares = checker
    config = DriftConfig()
    key = f"test/{stage}"
    features, labels = outputs.features[key], outputs.labels[key]
    probabilities = features[:, 1:]
    if outputs.second is None:
        raise ValueError("the agreement method needs the second copy's outputs")
    second = outputs.second[key][:, 1:]
    correct = probabilities.argmax(axis=1) == labels
    members = family.predictions[stage]
    pool_outside = _outside_domain(probabilities, calibrations["val"])
    pool = {c: {m: e.accuracy for m, e in _estimates(probabilities, second, cal, (members, family.calibration),
                                                      pool_outside).items()}
            for c, cal in calibrations.items()}
    methods = all_methods()
    cell: dict[str, Any] = {
        "model": outputs.stage, "seed": outputs.seed, "test_set": stage, "pool_images": len(labels),
        "pool_accuracy": float(correct.mean()), "own_accuracy": own_accuracy,
        "val_accuracy": calibrations["val"].accuracy,
        "pool_estimate": pool, "by_batch_size": {},
    }
    stage_index, model_index = STAGE_NAMES.index(stage), STAGE_NAMES.index(outputs.stage)
    for b in batch_sizes:
        rng = np.random.default_rng([outputs.seed, model_index, stage_index, b])
        draws = rng.integers(0, len(labels), size=(n_batches, b))
        errors: dict[str, dict[str, list[float]]] = {c: {m: [] for m in methods} for c in calibrations}
        covered: dict[str, dict[str, int]] = {c: dict.fromkeys(methods, 0) for c in calibrations}
        widths: dict[str, dict[str, list[float]]] = {c: {m: [] for m in methods} for c in calibrations}
        counts = {p.name: {"harmful": 0, "harmful_missed": 0, "harmless": 0, "needless": 0, "flagged": 0}
                  for p in policy_list}
        domain = _empty_domain_tally([str(a) for a in DOMAIN_ALPHAS])
        marks = _empty_domain_tally([name for name, *_ in mark_names()])
        n_drift = 0
        truths = []
        for i, indices in enumerate(draws):
            truth = float(correct[indices].mean())
            truths.append(truth)
            p_values, distances = memo.test(features[indices])
            significant = p_values < config.p_val * shares
            effect = float(distances[significant].max()) if significant.any() else 0.0
            is_drift = bool(significant.any()) and effect >= config.min_distance
            if i == 0:  # the detector itself agrees, bit for bit, and so does its effect-size floor
                score = drift.score(ks, features[indices], shares)
                verdict = drift.effect_size(score, config.min_distance)
                if not np.array_equal(p_values, score.p_values.astype(np.float32)) or verdict.is_drift != is_drift:
                    raise RuntimeError(f"memoised KS disagrees with drift.score on {outputs.stage} x {stage}")
            n_drift += is_drift
            drop: dict[str, float] = {}
            outside = _outside_domain(probabilities[indices], calibrations["val"])
            with_val = _estimates(probabilities[indices], second[indices], calibrations["val"],
                                  (members[:, indices], family.calibration), outside)
            shared = {m: e for m, e in with_val.items() if m not in METHODS}
            for c, calibration in calibrations.items():
                found = with_val if c == "val" else {**ae.estimate_all(probabilities[indices], calibration), **shared}
                for m, result in found.items():
                    errors[c][m].append(result.accuracy - truth)
                    covered[c][m] += result.lower <= truth <= result.upper
                    widths[c][m].append(result.upper - result.lower)
                    if c == "val":
                        drop[m] = calibration.accuracy - result.accuracy
            _tally_domain(domain, probabilities[indices], calibrations["val"], errors["val"][DEFAULT_METHOD][-1])
            _tally_marks(marks, outside, {m: truth + errors["val"][m][-1] for m in methods}, truth)
            true_drop = own_accuracy - truth
            for policy in policy_list:
                fired = policy.fires(is_drift, drop)
                row = counts[policy.name]
                row["flagged"] += fired
                if true_drop >= HARMFUL_DROP - 1e-12:
                    row["harmful"] += 1
                    row["harmful_missed"] += not fired
                elif true_drop < HARMLESS_DROP - 1e-12:
                    row["harmless"] += 1
                    row["needless"] += fired
        cell["by_batch_size"][str(b)] = {
            "n_batches": n_batches, "mean_true_accuracy": float(np.mean(truths)),
            "drift_rate": n_drift / n_batches,
            "mae": {c: {m: float(np.mean(np.abs(e))) for m, e in per.items()} for c, per in errors.items()},
            "bias": {c: {m: float(np.mean(e)) for m, e in per.items()} for c, per in errors.items()},
            "coverage": {c: {m: n / n_batches for m, n in per.items()} for c, per in covered.items()},
            "width": {c: {m: float(np.mean(w)) for m, w in per.items()} for c, per in widths.items()},
            "policies": counts, "domain": domain, "marks": marks,
        }
    return cell


def _empty_domain_tally(names: Sequence[str]) -> dict[str, dict[str, dict[str, int]]]:
    far = {f"off_{100 * f:.0f}": 0 for f in FAR_OFF}
    return {name: {side: {"n": 0, **far} for side in ("marked", "unmarked")} for name in names}


def _tally_domain(tally: dict[str, dict[str, dict[str, int]]], batch: np.ndarray, calibration: Any,
                  error: float) -> None:
    """Count one batch's default estimate as marked (outside the domain) or not, per α, and how far off it is."""
    from driftloop.ml.accuracy_estimate import class_mix_domain

    for alpha in DOMAIN_ALPHAS:
        found = class_mix_domain(batch, calibration, alpha)
        if found is None:
            raise RuntimeError("the calibration has no class mix: it predates the validity domain")
        distance, limit = found
        side = tally[str(alpha)]["marked" if distance > limit else "unmarked"]
        side["n"] += 1
        for far in FAR_OFF:
            side[f"off_{100 * far:.0f}"] += abs(error) > far


GAPS = (0.10, 0.20)  # a second mark: the default estimate and a models' estimate this far apart


Mark = tuple[str, str, tuple[str, str], float]


def mark_names() -> tuple[Mark, ...]:
    """(name, estimator, the two estimates compared, gap) of every mark the benchmark tallies beyond the
    class mix: an estimate is marked when the class mix is outside the domain (α ``DOMAIN_ALPHA``) or when
    the two estimates lie at least the gap apart (a gap of 0: the class mix alone)."""
    from driftloop.ml.accuracy_estimate import DEFAULT_METHOD, MODELS_METHODS

    found: list[Mark] = [(f"{SWITCHED}: class mix", SWITCHED, (SWITCHED, SWITCHED), 0.0)]
    found += [(f"{SWITCHED}: class mix or {100 * gap:.0f} points between {DEFAULT_METHOD} and {SWITCH_TO}",
               SWITCHED, (DEFAULT_METHOD, SWITCH_TO), gap) for gap in GAPS]
    for m in MODELS_METHODS:
        found.append((f"{m}: class mix", m, (m, m), 0.0))
        for gap in GAPS:
            label = f"class mix or {100 * gap:.0f} points"
            found.append((f"{m}: {label} from {DEFAULT_METHOD}", m, (m, DEFAULT_METHOD), gap))
            found.append((f"{DEFAULT_METHOD}: {label} from {m}", DEFAULT_METHOD, (DEFAULT_METHOD, m), gap))
    return tuple(found)


def _tally_marks(tally: dict[str, dict[str, dict[str, int]]], mix_marked: bool, estimates: dict[str, float],
                 truth: float) -> None:
    """Count one batch under every extra mark: marked or not, and how far off the marked estimator is."""
    for name, estimator, (first, second), gap in mark_names():
        apart = abs(estimates[first] - estimates[second])
        marked = mix_marked or (gap > 0 and apart >= gap - 1e-12)
        side = tally[name]["marked" if marked else "unmarked"]
        side["n"] += 1
        for far in FAR_OFF:
            side[f"off_{100 * far:.0f}"] += abs(estimates[estimator] - truth) > far


def _summaries(cells: list[dict[str, Any]], batch_sizes: Sequence[int], policy_list: list[Policy]) -> dict[str, Any]:
    from driftloop.ml.accuracy_estimate import METHODS

    estimation = []
    for c in CALIBRATIONS:
        for m in all_methods():
            if m not in METHODS and c != CALIBRATIONS[0]:
                continue  # calibrated on their own (or not at all): one row
            row: dict[str, Any] = {"calibration": c, "method": m}
            own = [x for x in cells if x["model"] == x["test_set"]]
            shifted = [x for x in cells if x["model"] != x["test_set"]]
            row["pool_mae"] = float(np.mean([abs(x["pool_estimate"][c][m] - x["pool_accuracy"]) for x in cells]))
            for b in batch_sizes:
                k = str(b)
                row[f"mae_{b}"] = float(np.mean([x["by_batch_size"][k]["mae"][c][m] for x in cells]))
                row[f"mae_own_{b}"] = float(np.mean([x["by_batch_size"][k]["mae"][c][m] for x in own]))
                row[f"mae_shifted_{b}"] = float(np.mean([x["by_batch_size"][k]["mae"][c][m] for x in shifted]))
                row[f"bias_{b}"] = float(np.mean([x["by_batch_size"][k]["bias"][c][m] for x in cells]))
                row[f"coverage_{b}"] = float(np.mean([x["by_batch_size"][k]["coverage"][c][m] for x in cells]))
                row[f"coverage_own_{b}"] = float(np.mean([x["by_batch_size"][k]["coverage"][c][m] for x in own]))
                row[f"width_{b}"] = float(np.mean([x["by_batch_size"][k]["width"][c][m] for x in cells]))
            estimation.append(row)
    policy_rows = []
    original = [x for x in cells if x["model"] == x["test_set"] == STAGE_NAMES[0]]
    for b in batch_sizes:
        for policy in policy_list:
            totals = {key: sum(x["by_batch_size"][str(b)]["policies"][policy.name][key] for x in cells)
                      for key in ("harmful", "harmful_missed", "harmless", "needless", "flagged")}
            n_batches = sum(x["by_batch_size"][str(b)]["n_batches"] for x in cells)
            policy_rows.append({
                "batch_size": b, "policy": policy.name, "kind": policy.kind, "method": policy.method,
                "points": policy.points, **totals,
                # The decided criterion's second half: retrains on Original under the Original model.
                "original_flagged": sum(x["by_batch_size"][str(b)]["policies"][policy.name]["flagged"]
                                        for x in original),
                "original_batches": sum(x["by_batch_size"][str(b)]["n_batches"] for x in original),
                "missed_rate": totals["harmful_missed"] / max(totals["harmful"], 1),
                "needless_rate": totals["needless"] / max(totals["harmless"], 1),
                "retrains_per_cycle": len(STAGE_NAMES) * totals["flagged"] / n_batches,
            })
    marks = [(name, name) for name, *_ in mark_names()]
    return {"estimation": estimation, "policies": policy_rows, "domain": _domain_summary(cells, batch_sizes),
            "marks": _domain_summary(cells, batch_sizes, "marks", marks)}


def _domain_summary(cells: list[dict[str, Any]], batch_sizes: Sequence[int], field: str = "domain",
                    keys: Sequence[tuple[str, Any]] = ()) -> list[dict[str, Any]]:
    """Per mark (by default each α of the class mix) and batch size: the share of estimates marked, and
    how often a marked and an unmarked one is far off. ``keys``: (the tally's key, the row's label)."""
    rows = []
    labelled = keys or [(str(a), a) for a in DOMAIN_ALPHAS]
    for b in batch_sizes:
        for key, label in labelled:
            sides = {side: {k: sum(x["by_batch_size"][str(b)][field][key][side][k] for x in cells)
                            for k in cells[0]["by_batch_size"][str(b)][field][key][side]}
                     for side in ("marked", "unmarked")}
            row: dict[str, Any] = {"batch_size": b, "alpha" if field == "domain" else "mark": label, **sides,
                                   "marked_share": sides["marked"]["n"] / max(sides["marked"]["n"]
                                                                             + sides["unmarked"]["n"], 1)}
            for side in sides:
                for far in FAR_OFF:
                    off = f"off_{100 * far:.0f}"
                    row[f"{side}_{off}_rate"] = sides[side][off] / max(sides[side]["n"], 1)
            rows.append(row)
    return rows


# Policies whose counts the JSON keeps per cell (totals cover every policy): the drift rule and the
# harm rules of the best single-model method and of agreement.
CELL_POLICY_METHODS = ("atc_ne", "agreement", "previous_agreement", "previous_scaled", "aline", "triplet",
                       SWITCHED)


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _per_cell(cells: list[dict[str, Any]], batch_sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Per (model, test set): every seed's accuracies, and errors, coverage and policy counts over the seeds."""
    out = []
    for model in STAGE_NAMES:
        for stage in STAGE_NAMES:
            mine = [x for x in cells if x["model"] == model and x["test_set"] == stage]
            row: dict[str, Any] = {
                "model": model, "test_set": stage, "seeds": [x["seed"] for x in mine],
                "pool_accuracy": [x["pool_accuracy"] for x in mine], "own_accuracy": [x["own_accuracy"] for x in mine],
                "val_accuracy": [x["val_accuracy"] for x in mine],
                "pool_estimate": [x["pool_estimate"]["val"] for x in mine], "by_batch_size": {},
            }
            for b in batch_sizes:
                parts = [x["by_batch_size"][str(b)] for x in mine]

                def mean(field: str, calibration: str, parts: list[dict[str, Any]] = parts) -> dict[str, float]:
                    return {m: float(np.mean([p[field][calibration][m] for p in parts]))
                            for m in parts[0][field][calibration]}

                policy_names = [name for name in parts[0]["policies"]
                                if name == "drift" or any(f"({m}," in name for m in CELL_POLICY_METHODS)]
                row["by_batch_size"][str(b)] = {
                    "n_batches": sum(p["n_batches"] for p in parts),
                    "drift_rate": float(np.mean([p["drift_rate"] for p in parts])),
                    "mae": mean("mae", "val"), "mae_large_calibration": mean("mae", "large"),
                    "bias": mean("bias", "val"), "coverage": mean("coverage", "val"), "width": mean("width", "val"),
                    "policies": {name: {k: sum(p["policies"][name][k] for p in parts)
                                        for k in parts[0]["policies"][name]} for name in policy_names},
                    **{field: {a: {side: {k: sum(p[field][a][side][k] for p in parts) for k in counts}
                                   for side, counts in sides.items()} for a, sides in parts[0][field].items()}
                       for field in ("domain", "marks")},
                }
            out.append(_round(row))
    return out


def _recommend(summary: dict[str, Any], batch_sizes: Sequence[int]) -> dict[str, Any]:
    """From the numbers: the single-model method (no second copy to train) and the method overall with
    the smallest error at the largest batch (val calibration), and the policies with the fewest missed
    harmful plus needless batches at the smallest batch size (the hourly 42)."""
    from driftloop.ml.accuracy_estimate import METHODS

    val = [r for r in summary["estimation"] if r["calibration"] == "val"]
    largest, smallest = max(batch_sizes), min(batch_sizes)
    single = min((r for r in val if r["method"] in METHODS), key=lambda r: r[f"mae_{largest}"])
    overall = min(val, key=lambda r: r[f"mae_{largest}"])
    ranked = sorted((r for r in summary["policies"] if r["batch_size"] == smallest),
                    key=lambda r: (r["missed_rate"] + r["needless_rate"], r["missed_rate"]))
    # The criterion: act on every batch >= HARMFUL_DROP below; the fewest misses, then the fewest needless.
    fewest_missed = min((r for r in summary["policies"] if r["batch_size"] == smallest),
                        key=lambda r: (r["missed_rate"], r["needless_rate"]))
    return {"method": single["method"], "method_mae": {b: single[f"mae_{b}"] for b in batch_sizes},
            f"policy_fewest_missed_batch_{smallest}": {
                k: fewest_missed[k] for k in ("policy", "missed_rate", "needless_rate", "retrains_per_cycle")},
            "method_overall": overall["method"], "method_overall_mae": {b: overall[f"mae_{b}"] for b in batch_sizes},
            f"policy_ranking_batch_{smallest}": [
                {k: r[k] for k in ("policy", "missed_rate", "needless_rate", "retrains_per_cycle")}
                for r in ranked[:8]]}


def _cost(outputs: ModelOutputs, models: list[dict[str, Any]]) -> dict[str, Any]:
    """What estimation costs at serve time (numpy, best of 5 per batch size) and agreement at train time."""
    from bench.common import best_of
    from driftloop.ml import accuracy_estimate as ae

    calibration = ae.calibrate(outputs.probabilities("val"), outputs.labels["val"])
    probabilities = outputs.probabilities(f"test/{outputs.stage}")
    second = outputs.second[f"test/{outputs.stage}"][:, 1:] if outputs.second is not None else probabilities
    per_batch: dict[str, Any] = {}
    for b in (*BATCH_SIZES, len(probabilities)):
        batch, other = probabilities[:b], second[:b]
        timings = best_of(5, *(partial(ae.estimate, batch, calibration, m) for m in ae.METHODS),
                          partial(ae.estimate_agreement, batch, other))
        names = (*ae.METHODS, ae.AGREEMENT)
        per_batch[str(len(batch))] = {m: round(1000 * t, 3) for m, t in zip(names, timings, strict=True)}
    first_s = [m["wall_time_s"] for m in models]
    second_s = [m["second_copy_wall_time_s"] for m in models]
    return {"estimate_ms": per_batch, "training_s_first_copy": float(np.sum(first_s)),
            "training_s_second_copy": float(np.sum(second_s)), "trainings": len(models)}


def _model_cells(job: tuple[ModelOutputs, Family, int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One model's seven cells, and what the JSON says of the model (a process pool's task)."""
    from driftloop.ml import accuracy_estimate as ae

    o, family, n_batches = job
    calibrations = {"val": ae.calibrate(o.probabilities("val"), o.labels["val"]),
                    "large": ae.calibrate(o.probabilities("calibration"), o.labels["calibration"])}
    if abs(calibrations["val"].accuracy - o.val_accuracy) > 1e-6:
        raise RuntimeError(f"validation accuracy {calibrations['val'].accuracy} differs from the "
                           f"component's {o.val_accuracy}")
    own = o.probabilities(f"test/{o.stage}")
    own_accuracy = float(np.mean(own.argmax(axis=1) == o.labels[f"test/{o.stage}"]))
    checker = _drift_checker(o.features["reference"])
    started = time.perf_counter()
    cells = [_cell(o, stage, calibrations, own_accuracy, checker, family, BATCH_SIZES, n_batches, policies())
             for stage in STAGE_NAMES]
    print(f"  seed {o.seed} {o.stage}: {time.perf_counter() - started:.0f} s", flush=True)
    return ({"seed": o.seed, "model": o.stage, "val_accuracy": o.val_accuracy, "own_accuracy": own_accuracy,
             "calibration": {c: cal.to_dict() for c, cal in calibrations.items()}, **o.training}, cells)


def run(options: BenchOptions) -> Result:
    from driftloop.components.processing import available_cores
    from driftloop.local.data.stages import map_in_order
    from driftloop.ml import accuracy_estimate as ae

    outputs, setup = prepare(options)
    by_stage = {(o.seed, o.stage): o for o in outputs}
    n_batches = 20 if options.quick else N_BATCHES
    policy_list = policies()
    # Every model's cells are independent numpy work: one process per core (the batches' draws are
    # seeded per cell, so the figures do not depend on the pool).
    done = map_in_order(_model_cells, [(o, _family(o, by_stage), n_batches) for o in outputs],
                        workers=1 if options.quick else available_cores())
    models = [model for model, _ in done]
    cells = [cell for _, found in done for cell in found]
    summary = _summaries(cells, BATCH_SIZES, policy_list)
    summary["cost"] = _cost(outputs[0], models)
    data = {"setup": {**setup, "batch_sizes": list(BATCH_SIZES), "n_batches": n_batches,
                      "harm_thresholds": list(HARM_THRESHOLDS), "harmful_drop": HARMFUL_DROP,
                      "harmless_drop": HARMLESS_DROP, "interval_confidence": ae.DEFAULT_CONFIDENCE,
                      "earlier_champions": EARLIER_CHAMPIONS, "switched_method": SWITCHED,
                      "drift": DriftConfig().to_dict(), "calibrations": list(CALIBRATIONS)},
            "models": models, "cells": _per_cell(cells, BATCH_SIZES), "summary": summary,
            "recommended": _recommend(summary, BATCH_SIZES),
            "anchor": {"atc_cifar10_mae_points": 3.87, "average_confidence_cifar10_mae_points": 11.9,
                       "goal_mae_points_at_200": 5.0}}
    return Result(data, _tables(data))


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _domain_table(rows: list[dict[str, Any]], marks: bool = False) -> str:
    label = "mark" if marks else "alpha"
    body = [(r["batch_size"], r[label], f"{r['marked_share']:.2f}",
             *(f"{r[f'{side}_off_{100 * far:.0f}_rate']:.2f} ({r[side][f'off_{100 * far:.0f}']} / {r[side]['n']})"
               for side in ("marked", "unmarked") for far in FAR_OFF))
            for r in rows]
    header = ("batch", "estimate: mark" if marks else "α", "marked",
              *(f"{side}: > {100 * far:.0f} points off" for side in ("marked", "unmarked") for far in FAR_OFF))
    title = ("Marks beyond the class mix: an estimate marked when the class mix is outside (α 0.05) or when it "
             "and another estimate lie the gap apart" if marks else
             "Validity domain of the default estimate (class mix against validation's): how often a marked "
             "(outside) and an unmarked estimate is far off the true batch accuracy")
    return table(header, body, title)


def _tables(data: dict[str, Any]) -> list[str]:
    sizes = data["setup"]["batch_sizes"]
    rows = [(r["calibration"], r["method"], _pct(r["pool_mae"]),
             *(_pct(r[f"mae_{b}"]) for b in sizes), *(_pct(r[f"mae_own_{b}"]) for b in sizes),
             *(_pct(r[f"mae_shifted_{b}"]) for b in sizes), *(_pct(r[f"bias_{b}"]) for b in sizes),
             *(f"{r[f'coverage_{b}']:.2f} ({_pct(r[f'width_{b}'])})" for b in sizes),
             *(f"{r[f'coverage_own_{b}']:.2f}" for b in sizes))
            for r in data["summary"]["estimation"]]
    header = ("calibration", "method", "MAE pool", *(f"MAE {b}" for b in sizes), *(f"MAE own {b}" for b in sizes),
              *(f"MAE shifted {b}" for b in sizes), *(f"bias {b}" for b in sizes),
              *(f"coverage (width) {b}" for b in sizes), *(f"coverage own {b}" for b in sizes))
    tables = [table(header, rows, "Estimation error (points) against the true batch accuracy, every model × stage "
                                  "cell and seed; coverage of the 95 % interval")]
    policy_rows = [(r["batch_size"], r["policy"], f"{r['harmful_missed']} / {r['harmful']}", f"{r['missed_rate']:.2f}",
                    f"{r['needless']} / {r['harmless']}", f"{r['needless_rate']:.2f}", f"{r['retrains_per_cycle']:.2f}",
                    f"{r['original_flagged']} / {r['original_batches']}")
                   for r in data["summary"]["policies"]]
    tables.append(table(("batch", "policy", "harmful missed", "missed rate", "needless retrains", "needless rate",
                         "retrains per 7 batches", "Original model on Original: retrains"), policy_rows,
                        f"Retrain policies: harmful = true drop ≥ {100 * HARMFUL_DROP:.0f} points below the model's "
                        f"own-stage accuracy, needless = flagged at a drop < {100 * HARMLESS_DROP:.0f}"))
    tables.append(_domain_table(data["summary"]["domain"]))
    tables.append(_domain_table(data["summary"]["marks"], marks=True))
    cells = data["cells"]
    for method in dict.fromkeys((data["recommended"]["method"], data["recommended"]["method_overall"])):
        for b in sizes:
            grid = []
            for model in STAGE_NAMES:
                row: list[object] = [model]
                for stage in STAGE_NAMES:
                    x = next(c for c in cells if c["model"] == model and c["test_set"] == stage)
                    acc = float(np.mean(x["pool_accuracy"]))
                    row.append(f"{_pct(acc)} / {_pct(x['by_batch_size'][str(b)]['mae'][method])}")
                grid.append(row)
            tables.append(table(("model \\ test set", *STAGE_NAMES), grid,
                                f"Per cell, mean over seeds: true accuracy (%) / MAE of {method} (points), batch {b}"))
    return tables
