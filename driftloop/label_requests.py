"""Label requests: for a drifted batch without labels, a Ground Truth input manifest of a sample worth labelling.

The manifest (``label-requests/<id>/manifest.jsonl``) is what a SageMaker Ground Truth labelling
job takes as input: one ``{"source-ref": "<uri of the image>"}`` a line (the store's URI:
``s3://...`` on AWS, the key locally). Labels for it come back under ``labels/<id>/``
(``driftloop.labels``), in Ground Truth's output manifest or as a CSV.

The sample, deterministic so a re-run writes the same manifest: ``size`` images at most (all of a
smaller batch). First the ``least_confident_share`` of them with the lowest top-class confidence
(ties by id): where the model is most likely wrong and a label teaches it most. Then the rest
stratified by predicted class: classes in turn (sorted by name), equal shares as far as each class
has images, and within a class a pseudo-random but fixed order (sha256 of batch id and image id),
so a rare predicted class is still measured and no folder or file-name order biases the draw.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Final

from driftloop.contracts import Contract
from driftloop.labels import Predictions
from driftloop.layout import batch_prefix, label_request_manifest
from driftloop.stores.objects import ObjectStore

DEFAULT_SIZE: Final = 100
DEFAULT_LEAST_CONFIDENT_SHARE: Final = 0.5


@dataclass(frozen=True)
class LabelRequest(Contract):
    """What a label request wrote, for the notification: where the manifest is and what it lists."""

    batch_id: str
    manifest: str  # the key
    manifest_uri: str
    n_images: int
    n_least_confident: int
    n_stratified: int
    by_class: dict[str, int]  # predicted class -> images of it in the request


def _stratified(batch_id: str, predictions: Predictions, exclude: set[str], count: int) -> list[str]:
    """``count`` images by predicted class in turn, each class in a fixed pseudo-random order."""

    def draw_order(image: str) -> str:
        return hashlib.sha256(f"{batch_id}/{image}".encode()).hexdigest()

    by_class: dict[str, list[str]] = {}
    for image, predicted in predictions.predicted.items():
        if image not in exclude:
            by_class.setdefault(predicted, []).append(image)
    queues = [sorted(images, key=draw_order) for _, images in sorted(by_class.items())]
    chosen: list[str] = []
    depth = 0
    while len(chosen) < count and any(depth < len(queue) for queue in queues):
        chosen += [queue[depth] for queue in queues if depth < len(queue)][: count - len(chosen)]
        depth += 1
    return chosen


def choose_for_labelling(batch_id: str, predictions: Predictions, *, size: int = DEFAULT_SIZE,
                         least_confident_share: float = DEFAULT_LEAST_CONFIDENT_SHARE) -> tuple[list[str], list[str]]:
    """The sample (see the module docstring): the least confident image ids, then the stratified ones."""
    if size < 0 or not 0 <= least_confident_share <= 1:
        raise ValueError(f"need size >= 0 and 0 <= least_confident_share <= 1, got {size}, {least_confident_share}")
    n = min(size, len(predictions.predicted))
    by_confidence = sorted(predictions.confidence.items(), key=lambda item: (item[1], item[0]))
    least = [image for image, _ in by_confidence[: round(n * least_confident_share)]]
    return least, _stratified(batch_id, predictions, set(least), n - len(least))


def write_label_request(objects: ObjectStore, batch_id: str, predictions: Predictions, *, size: int = DEFAULT_SIZE,
                        least_confident_share: float = DEFAULT_LEAST_CONFIDENT_SHARE) -> LabelRequest | None:
    """Write the batch's Ground Truth input manifest; None (nothing written) when the batch has no predictions.

    The caller decides when (the batch drifted and ``driftloop.labels.has_labels`` is False); a
    second call for the same batch and predictions rewrites the same manifest.
    """
    least, stratified = choose_for_labelling(batch_id, predictions, size=size,
                                             least_confident_share=least_confident_share)
    chosen = least + stratified
    if not chosen:
        return None
    prefix = batch_prefix(batch_id)
    lines = "".join(json.dumps({"source-ref": objects.uri(f"{prefix}/{image}")}) + "\n" for image in chosen)
    key = label_request_manifest(batch_id)
    objects.put_bytes(key, lines.encode())
    by_class: dict[str, int] = {}
    for image in chosen:
        by_class[predictions.predicted[image]] = by_class.get(predictions.predicted[image], 0) + 1
    return LabelRequest(batch_id=batch_id, manifest=key, manifest_uri=objects.uri(key), n_images=len(chosen),
                        n_least_confident=len(least), n_stratified=len(stratified), by_class=by_class)
