"""The monitoring component: learn a drift reference (train) and judge a batch against it (serve).

``python -m driftloop.components.monitoring --mode train|serve`` (channels in
``driftloop.pipelines.COMPONENT_IO``). Train writes the detector folder (see ``driftloop.drift``);
serve writes ``drift_report.json`` (``driftloop.drift_report.DriftReport``). The detector's own
features, correction and p-value rule at serve time; of the serve settings only
``min_batch_size`` applies there. From the same forward pass, serve also estimates the batch's
accuracy without labels (``driftloop.accuracy_estimate``, with the calibration the model was
trained with) and puts it in the report.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop import drift
from driftloop.components.entrypoint import ComponentError, Invocation, run_component
from driftloop.config import DriftConfig
from driftloop.drift_report import DetectorIdentity, DriftReport, EstimatedAccuracy
from driftloop.model_io import ModelNotFound, load_model, read_calibration
from driftloop.pipelines import DRIFT_REPORT_FILE, Component
from driftloop.shards import ShardSummary, read_summary

if TYPE_CHECKING:
    import numpy as np

    from driftloop.accuracy_estimate import AccuracyCalibration

log = logging.getLogger("driftloop.monitoring")


def _config(invocation: Invocation) -> DriftConfig:
    try:
        return DriftConfig.from_mapping(invocation.settings)
    except (TypeError, ValueError) as error:
        raise ComponentError(f"bad drift settings: {error}") from error


def _summary(folder: Path) -> ShardSummary:
    try:
        return read_summary(folder)
    except FileNotFoundError as error:
        raise ComponentError(str(error)) from error


def _classifier(model_dir: Path, needed_by: str) -> Any:
    try:
        return load_model(model_dir).model
    except ModelNotFound as error:
        raise ComponentError(f"{needed_by} the classifier: {error}") from error


def _classifier_features(model_dir: Path, kind: str) -> Any:
    return drift.classifier_features(_classifier(model_dir, f"features {kind!r} need"), kind)


def run_train(invocation: Invocation) -> drift.DetectorMeta:
    """Fit KSDrift on features of a seeded sample of the training images and save it."""
    config = _config(invocation)
    if config.max_reference < 1:
        raise ComponentError(f"max_reference must be at least 1, got {config.max_reference}")
    train_dir = invocation.inputs["train"]
    summary = _summary(train_dir)
    keep = drift.reference_indices(summary.n_images, config.max_reference, config.seed)
    if not len(keep):
        raise ComponentError(f"{train_dir} holds no images: there is nothing to learn a drift reference from")

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


def _load_detector(detector_dir: Path) -> drift.LoadedDetector:
    try:
        return drift.load(detector_dir)
    except drift.DetectorNotFound as error:
        raise ComponentError(f"{error}; run the train pipeline first to learn a drift reference") from error


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
            raise ComponentError(
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
        raise ComponentError(f"the model's accuracy calibration in {model_dir} is unreadable: {error}") from error
    if calibration is None:
        log.info("no accuracy estimate: the model in %s has no accuracy calibration (trained before estimates "
                 "existed); retrain it to get one", model_dir)
    return calibration


def _accuracy_estimate(probabilities: np.ndarray | None, calibration: AccuracyCalibration | None,
                       ) -> EstimatedAccuracy | None:
    if probabilities is None or calibration is None or not len(probabilities):
        return None
    from driftloop.accuracy_estimate import estimated_accuracy

    found = estimated_accuracy(probabilities, calibration)
    log.info("accuracy without labels: %s", found.summary())
    return found


def run_serve(invocation: Invocation) -> DriftReport:
    """Write the batch's drift report; a batch below ``min_batch_size`` is reported, not judged."""
    config = _config(invocation)
    detector = _load_detector(invocation.inputs["detector"])
    meta = detector.meta
    batch_dir = invocation.inputs["batch"]
    summary = _summary(batch_dir)
    if summary.image_size != meta.image_size:
        raise ComponentError(
            f"batch images are {summary.image_size} px but the detector was trained on {meta.image_size} px; "
            "process the batch with the same image_size as the training data"
        )
    identity = DetectorIdentity(
        features=meta.features, trained_on=meta.trained_on, reference_size=meta.reference_size, run_id=meta.run_id
    )
    common: dict[str, Any] = dict(
        correction=meta.correction, p_val=meta.p_val, min_batch_size=config.min_batch_size, detector=identity,
        # The serve record reports skipped images, and the record step reads only the drift report.
        n_skipped=summary.n_skipped,
    )
    if summary.n_images < config.min_batch_size:
        report = DriftReport(
            is_drift=False, too_small=True, threshold=meta.p_val / meta.n_features, statistic=1.0,
            p_values=[], distances=[], batch_size=summary.n_images, **common,
            message=f"batch of {summary.n_images} images is below min_batch_size={config.min_batch_size}: "
            "no drift test was run",
        )
    else:
        calibration = _calibration(invocation.inputs["model"])
        forward = _serve_forward(detector, invocation.inputs["model"], with_probabilities=calibration is not None)
        features, probabilities = forward.split(drift.extract_features(forward.model, drift.iter_images(batch_dir)))
        result = drift.score(detector.ks, features, drift.alpha_shares(meta.features, meta.n_features))
        verdict = "drift" if result.is_drift else "no drift"
        weighted = "weighted " if result.weighted else ""
        relation = "<" if result.is_drift else ">="
        report = DriftReport(
            is_drift=result.is_drift, too_small=False, threshold=result.threshold, statistic=result.statistic,
            p_values=result.p_values.tolist(), distances=result.distances.tolist(), batch_size=len(features),
            accuracy_estimate=_accuracy_estimate(probabilities, calibration), **common,
            message=f"{verdict}: smallest {weighted}p-value {result.statistic:.3g} {relation} threshold "
            f"{result.threshold:.3g} ({meta.correction}, {meta.n_features} {meta.features} features, "
            f"{len(features)} images)",
        )
    report.write(invocation.outputs["report"] / DRIFT_REPORT_FILE)
    log.info("%s", report.message)
    return report


RUNNERS = {"train": run_train, "serve": run_serve}


def main(argv: Sequence[str] | None = None) -> int:
    return run_component(Component.MONITORING, RUNNERS, argv)


if __name__ == "__main__":
    sys.exit(main())
