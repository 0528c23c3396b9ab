"""The monitoring component: learn a drift reference (train) and judge a batch against it.

``python -m driftloop.components.drift --mode train|serve|merge`` (channels in
``driftloop.pipelines.COMPONENT_IO``). Train writes the detector folder (see ``driftloop.ml.drift``).
Judging a batch takes two steps, so that the costly part scales out: serve computes the drift
features of its shards (on each of several hosts, of that host's shards: ``features-<host>.npz``),
merge runs one KS test over every host's features and writes ``drift_report.json``
(``driftloop.drift_report.DriftReport``). The KS test does not depend on the order of the rows,
and a row does not depend on which batch it was computed in, so the report is the same on any
number of hosts. The detector's own features, correction and p-value rule; of the settings only
``min_batch_size`` and the effect-size floor
``min_distance`` apply at merge. From the same forward pass as the features, serve also keeps the
class probabilities, and merge estimates the batch's accuracy without labels from all of them
(``driftloop.ml.accuracy_estimate``, with the calibration the model was trained with) and puts it in
the report.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from driftloop.components.entrypoint import Invocation, read_settings, run_component
from driftloop.components.processing import nothing_usable
from driftloop.config import DriftConfig
from driftloop.drift_report import DetectorIdentity, DriftReport, EstimatedAccuracy
from driftloop.errors import UserError
from driftloop.hosts import part_files
from driftloop.ml import drift
from driftloop.ml.accuracy_estimate import AccuracyCalibration, estimated_accuracy
from driftloop.ml.model_io import ModelNotFound, load_model, read_calibration
from driftloop.ml.shards import (
    Shard,
    ShardSummary,
    iter_shards,
    merge_summaries,
    path_order,
    read_summary,
    summary_parts,
)
from driftloop.pipelines import DRIFT_REPORT_FILE, MANIFEST_FILE, Component

log = logging.getLogger("driftloop.drift")


def _summary(folder: Path) -> ShardSummary:
    try:
        return read_summary(folder)
    except FileNotFoundError as error:
        raise UserError(str(error)) from error


def _classifier(model_dir: Path, needed_by: str) -> Any:
    try:
        return load_model(model_dir).model
    except ModelNotFound as error:
        raise UserError(f"{needed_by} the classifier: {error}") from error


def _classifier_features(model_dir: Path, kind: str) -> Any:
    return drift.classifier_features(_classifier(model_dir, f"features {kind!r} need"), kind)


def run_train(invocation: Invocation) -> drift.DetectorMeta:
    """Fit KSDrift on features of a seeded sample of the training images and save it."""
    config = read_settings(invocation, DriftConfig, "drift")
    if config.max_reference < 1:
        raise UserError(f"max_reference must be at least 1, got {config.max_reference}")
    train_dir = invocation.inputs["train"]
    summary = _summary(train_dir)
    keep = drift.reference_indices(summary.n_images, config.max_reference, config.seed)
    if not len(keep):
        raise UserError(f"{train_dir} holds no images: there is nothing to learn a drift reference from")

    encoder = None
    fingerprint = ""
    if config.features == "uae":
        encoder = drift.build_uae_encoder(summary.image_size, config.encoding_dim, config.seed)
        feature_model = encoder
    else:
        feature_model = _classifier_features(invocation.inputs["model"], config.features)
        fingerprint = drift.weights_fingerprint(feature_model)
    n_features = int(feature_model.output_shape[-1])
    features = drift.extract_features(feature_model, drift.iter_images(train_dir, keep))

    meta = drift.DetectorMeta(
        features=config.features,
        correction=config.correction,
        p_val=config.p_val,
        trained_on=config.trained_on or str(train_dir),
        reference_size=len(features),
        n_features=n_features,
        image_size=summary.image_size,
        seed=config.seed,
        run_id=config.run_id,
        encoding_dim=config.encoding_dim if config.features == "uae" else 0,
        model_fingerprint=fingerprint,
        alibi_detect_version=version("alibi-detect"),
    )
    drift.save(invocation.outputs["detector"], drift.fit(features, config.p_val, config.correction), meta, encoder)
    log.info("drift reference: %d images, %d %s features, %s", len(features), n_features, config.features,
             config.correction)
    return meta


def _load_detector(detector_dir: Path, *, with_test: bool = True) -> drift.LoadedDetector:
    try:
        return drift.load(detector_dir, with_test=with_test)
    except drift.DetectorNotFound as error:
        raise UserError(f"{error}; run the train pipeline first to learn a drift reference") from error


@dataclass(frozen=True)
class _ServeForward:
    """The one model a serve batch goes through: drift features, then the class probabilities unless among them."""

    model: Any  # images -> [drift features | class probabilities]
    n_features: int  # the leading columns that the drift test reads
    probabilities: slice | None  # the columns of the class probabilities; None: not computed

    def split(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        features = outputs[:, : self.n_features]
        return features, None if self.probabilities is None else outputs[:, self.probabilities]


def _serve_forward(detector: drift.LoadedDetector, model_dir: Path, with_probabilities: bool) -> _ServeForward:
    """The detector's feature model, checked against the model it came from, extended by the classifier's output.

    Where the features hold the probabilities (``softmax``; ``predictions``, after the entropy: see
    ``drift.classifier_features``) they are read from those columns; otherwise the classifier's
    output is appended to the same graph, so the batch still goes through one forward pass.
    """
    kind = detector.meta.features
    if detector.encoder is not None:
        feature_model = detector.encoder
        classifier = _classifier(model_dir, "the accuracy estimate needs") if with_probabilities else None
    else:
        classifier = _classifier(model_dir, f"features {kind!r} need")
        feature_model = drift.classifier_features(classifier, kind)
        if drift.weights_fingerprint(feature_model) != detector.meta.model_fingerprint:
            raise UserError(
                f"the model in {model_dir} is not the one the drift detector's reference {kind} came from; "
                "serve with the model and detector of the same train run"
            )
    n_features = int(feature_model.output_shape[-1])
    if not with_probabilities or classifier is None:
        return _ServeForward(feature_model, n_features, None)
    if kind == "softmax":
        return _ServeForward(feature_model, n_features, slice(0, n_features))
    if kind == "predictions":
        return _ServeForward(feature_model, n_features, slice(1, n_features))
    import tensorflow as tf

    concatenate = tf.keras.layers.Concatenate(name="features_and_probabilities")
    if detector.encoder is not None:  # a separate model: both called on one input
        inputs = tf.keras.Input(feature_model.input_shape[1:])
        combined = tf.keras.Model(inputs, concatenate([feature_model(inputs), classifier(inputs)]))
    else:  # the features are a layer of the classifier's own graph
        combined = tf.keras.Model(feature_model.inputs, concatenate([feature_model.output, classifier.output]))
    return _ServeForward(combined, n_features, slice(n_features, None))


def _calibration(model_dir: Path) -> AccuracyCalibration | None:
    """The model's accuracy-estimate calibration; None, with a log line, for a model trained without one."""
    try:
        calibration = read_calibration(model_dir)
    except ModelNotFound:
        calibration = None  # uae needs no classifier for drift; the estimate does
    except ValueError as error:
        raise UserError(f"the model's accuracy calibration in {model_dir} is unreadable: {error}") from error
    if calibration is None:
        log.info("no accuracy estimate: the model in %s has no accuracy calibration (trained before estimates "
                 "existed); retrain it to get one", model_dir)
    return calibration


def _accuracy_estimate(probabilities: np.ndarray | None, calibration: AccuracyCalibration | None,
                       ) -> EstimatedAccuracy | None:
    if probabilities is None or calibration is None or not len(probabilities):
        return None
    found = estimated_accuracy(probabilities, calibration)
    log.info("accuracy without labels: %s", found.summary())
    return found


FEATURES_FILE = "features.npz"  # one per host (``driftloop.hosts``)


def run_serve(invocation: Invocation) -> int:
    """Write the drift features of this host's shards, with the processing summaries it was given.

    Every summary part goes to exactly one host (``ShardedByS3Key``), so the merge adds up the
    batch's counts from the summaries the feature parts carry; returns the number of images.
    """
    detector = _load_detector(invocation.inputs["detector"], with_test=False)
    meta = detector.meta
    batch_dir = invocation.inputs["batch"]
    if not invocation.hosts.many:
        _summary(batch_dir)  # one host has the whole batch: it must be a processed folder
    files: list[str] = []

    def images(shards: Iterator[Shard]) -> Iterator[np.ndarray]:
        for shard in shards:
            if shard.images.shape[1] != meta.image_size:
                raise UserError(
                    f"batch images are {shard.images.shape[1]} px but the detector was trained on "
                    f"{meta.image_size} px; process the batch with the same image_size as the training data"
                )
            files.extend(str(f) for f in shard.files)
            yield shard.images.astype(np.float32)

    shards = iter_shards(batch_dir) if batch_dir.is_dir() else iter(())
    first = next(shards, None)
    estimate_inputs: dict[str, np.ndarray] = {}
    if first is None:  # a host that got no shard: an empty part
        features = np.zeros((0, meta.n_features), np.float32)
    else:
        calibration = _calibration(invocation.inputs["model"])
        forward = _serve_forward(detector, invocation.inputs["model"], with_probabilities=calibration is not None)
        features, probabilities = forward.split(
            drift.extract_features(forward.model, images(itertools.chain([first], shards)))
        )
        if probabilities is not None and calibration is not None:  # what the merge estimates the accuracy from
            estimate_inputs = {"probabilities": probabilities, "calibration": np.asarray(calibration.to_json())}
    summaries = {name: asdict(summary) for name, summary in summary_parts(batch_dir).items()}
    out = invocation.outputs["features"]
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / invocation.hosts.part_name(FEATURES_FILE), features=features, files=np.asarray(files, dtype=str),
             summaries=np.asarray(json.dumps(summaries, sort_keys=True)), **estimate_inputs)
    log.info("drift features of %d image(s)%s", len(files),
             f" on {invocation.hosts.current}" if invocation.hosts.many else "")
    return len(files)


@dataclass(frozen=True)
class _BatchFeatures:
    """Every host's part of a batch, rows in the images' path order."""

    features: np.ndarray
    files: list[str]
    summary: ShardSummary
    # The class probabilities of the same rows and the model's calibration, for the accuracy
    # estimate; None when any host had none (a model trained without a calibration).
    probabilities: np.ndarray | None
    calibration: AccuracyCalibration | None


def _read_features(folder: Path) -> _BatchFeatures:
    """Every host's features and the batch's summary; refuses an image counted twice or a missing part."""
    paths = part_files(folder, FEATURES_FILE)
    if not paths:
        raise UserError(f"no {FEATURES_FILE} in {folder}: run the monitoring component (serve) first")
    parts: list[np.ndarray] = []
    probability_parts: list[np.ndarray] = []  # of the parts that have rows, in the same order
    every_part_has_probabilities = True
    calibration_json = ""
    files: list[str] = []
    summaries: dict[str, Any] = {}
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            parts.append(data["features"])
            files.extend(str(f) for f in data["files"])
            summaries.update(json.loads(str(data["summaries"])))
            if not len(data["features"]):
                continue
            if "probabilities" in data:
                probability_parts.append(data["probabilities"])
                calibration_json = str(data["calibration"])
            else:  # rows without probabilities: no estimate for the batch
                every_part_has_probabilities = False
    twice = len(files) - len(set(files))
    if twice:
        raise UserError(f"{twice} image(s) appear in more than one host's features: the batch was not "
                             "sharded (each object to one host)")
    if not summaries:
        raise UserError(f"the features in {folder} name no processing summary: run processing first")
    summary = merge_summaries(ShardSummary(**summaries[name]) for name in sorted(summaries))
    if summary.n_images != len(files):
        raise UserError(f"the batch's processing summaries count {summary.n_images} images, its features "
                             f"{len(files)}: a part of the batch is missing")
    order = sorted(range(len(files)), key=lambda i: path_order(files[i]))
    calibration = (AccuracyCalibration.from_json(calibration_json)
                   if every_part_has_probabilities and calibration_json else None)
    return _BatchFeatures(
        features=np.concatenate(parts)[order], files=[files[i] for i in order], summary=summary,
        probabilities=np.concatenate(probability_parts)[order] if calibration is not None else None,
        calibration=calibration,
    )


def run_merge(invocation: Invocation) -> DriftReport:
    """Write the batch's drift report; a batch below ``min_batch_size`` is reported, not judged."""
    config = read_settings(invocation, DriftConfig, "drift")
    detector = _load_detector(invocation.inputs["detector"])
    batch = _read_features(invocation.inputs["features"])
    summary = batch.summary
    if summary.n_images == 0:
        raise UserError(nothing_usable("the batch", int(summary.extra.get("n_files", 0)),  # type: ignore[call-overload]
                                            dict(summary.extra.get("skipped_by_code", {})),  # type: ignore[call-overload]
                                            f"each host's {MANIFEST_FILE}"))
    report = judge(detector, batch.features, summary, config)
    if not report.too_small:
        report = replace(report, accuracy_estimate=_accuracy_estimate(batch.probabilities, batch.calibration))
    report.write(invocation.outputs["report"] / DRIFT_REPORT_FILE)
    log.info("%s", report.message)
    return report


def judge(
    detector: drift.LoadedDetector, features: np.ndarray, summary: ShardSummary, config: DriftConfig
) -> DriftReport:
    """The drift report of a batch's features against the detector's reference."""
    meta = detector.meta
    identity = DetectorIdentity(
        features=meta.features, trained_on=meta.trained_on, reference_size=meta.reference_size, run_id=meta.run_id
    )
    common: dict[str, Any] = dict(
        correction=meta.correction, p_val=meta.p_val, min_batch_size=config.min_batch_size, detector=identity,
        # The serve record reports skipped images, and the record step reads only the drift report.
        n_skipped=summary.n_skipped, min_distance=config.min_distance,
    )
    if summary.n_images < config.min_batch_size:
        return DriftReport(
            is_drift=False, too_small=True, threshold=meta.p_val / meta.n_features, statistic=1.0,
            p_values=[], distances=[], significant=False, effect_size=0.0, batch_size=summary.n_images, **common,
            message=f"batch of {summary.n_images} images is below min_batch_size={config.min_batch_size}: "
            "no drift test was run",
        )
    result = drift.score(detector.ks, features, drift.alpha_shares(meta.features, meta.n_features))
    return _judged(result, drift.effect_size(result, config.min_distance), meta, len(features), common)


def _judged(result: drift.DriftScore, effect: drift.EffectSize, meta: drift.DetectorMeta, n_images: int,
            common: dict[str, Any]) -> DriftReport:
    """The report of a judged batch: drift only when significant and at least the effect-size floor."""
    report = DriftReport(
        is_drift=effect.is_drift, too_small=False, threshold=result.threshold, statistic=result.statistic,
        p_values=result.p_values.tolist(), distances=result.distances.tolist(), significant=effect.significant,
        effect_size=effect.effect_size, batch_size=n_images, **common,
    )
    verdict = "drift" if report.is_drift else "no drift"
    correction = f"{meta.correction}{', weighted' if result.weighted else ''}"
    return replace(report, message=f"{verdict}: {report.verdict()} ({correction}, {meta.n_features} "
                                   f"{meta.features} features, {n_images} images)")


RUNNERS = {"train": run_train, "serve": run_serve, "merge": run_merge}


def main(argv: Sequence[str] | None = None) -> int:
    return run_component(Component.DRIFT, RUNNERS, argv)


if __name__ == "__main__":
    sys.exit(main())
