"""The monitoring component: learn a drift reference (train) and judge a batch against it (serve).

``python -m driftloop.components.monitoring --mode train|serve`` (channels in
``driftloop.pipelines.COMPONENT_IO``). Train writes the detector folder (see ``driftloop.drift``);
serve writes ``drift_report.json`` (``driftloop.drift_report.DriftReport``). The detector's own
features, correction and p-value rule at serve time; of the serve settings only
``min_batch_size`` and the effect-size floor ``min_distance`` apply there.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from driftloop import drift
from driftloop.components.entrypoint import ComponentError, Invocation, run_component
from driftloop.config import DriftConfig
from driftloop.drift_report import DetectorIdentity, DriftReport
from driftloop.model_io import ModelNotFound, load_model
from driftloop.pipelines import DRIFT_REPORT_FILE, Component
from driftloop.shards import ShardSummary, read_summary

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


def _classifier_features(model_dir: Path, kind: str) -> Any:
    try:
        return drift.classifier_features(load_model(model_dir).model, kind)
    except ModelNotFound as error:
        raise ComponentError(f"features {kind!r} need the classifier: {error}") from error


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


def _serve_feature_model(detector: drift.LoadedDetector, model_dir: Path) -> Any:
    if detector.encoder is not None:
        return detector.encoder
    model = _classifier_features(model_dir, detector.meta.features)
    if drift.weights_fingerprint(model) != detector.meta.model_fingerprint:
        raise ComponentError(
            f"the model in {model_dir} is not the one the drift detector's reference {detector.meta.features} "
            "came from; "
            "serve with the model and detector of the same train run"
        )
    return model


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
        n_skipped=summary.n_skipped, min_distance=config.min_distance,
    )
    if summary.n_images < config.min_batch_size:
        report = DriftReport(
            is_drift=False, too_small=True, threshold=meta.p_val / meta.n_features, statistic=1.0,
            p_values=[], distances=[], significant=False, effect_size=0.0, batch_size=summary.n_images, **common,
            message=f"batch of {summary.n_images} images is below min_batch_size={config.min_batch_size}: "
            "no drift test was run",
        )
    else:
        model = _serve_feature_model(detector, invocation.inputs["model"])
        features = drift.extract_features(model, drift.iter_images(batch_dir))
        result = drift.score(detector.ks, features, drift.alpha_shares(meta.features, meta.n_features))
        report = _judged(result, drift.effect_size(result, config.min_distance), meta, len(features), common)
    report.write(invocation.outputs["report"] / DRIFT_REPORT_FILE)
    log.info("%s", report.message)
    return report


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


RUNNERS = {"train": run_train, "serve": run_serve}


def main(argv: Sequence[str] | None = None) -> int:
    return run_component(Component.MONITORING, RUNNERS, argv)


if __name__ == "__main__":
    sys.exit(main())
