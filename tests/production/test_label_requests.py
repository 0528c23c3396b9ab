"""Label requests: the Ground Truth input manifest of a drifted batch, its sampling rule, and that the
labels Ground Truth sends back for it join to the batch (both backends)."""

from __future__ import annotations

import json

import pytest

from driftloop import intake
from driftloop.label_requests import choose_for_labelling, write_label_request
from driftloop.labels import Predictions, labelled_accuracy
from driftloop.layout import label_request_manifest
from driftloop.stores.objects import ObjectStore

# 7 predicted cat, 2 dog, 1 bird; confidences make c6, d1, c5 the least confident.
CONFIDENCE = {"c0.jpg": 0.99, "c1.jpg": 0.95, "c2.jpg": 0.9, "c3.jpg": 0.85, "c4.jpg": 0.8, "c5.jpg": 0.52,
              "c6.jpg": 0.4, "dogs/d0.jpg": 0.9, "dogs/d1.jpg": 0.45, "birds/b0.jpg": 0.97}
PREDICTIONS = Predictions(
    classes=("bird", "cat", "dog"),
    predicted={image: "cat" if image.startswith("c") else "dog" if "/d" in image else "bird" for image in CONFIDENCE},
    confidence=CONFIDENCE,
)


def test_the_least_confident_first_then_each_predicted_class_in_turn() -> None:
    least, stratified = choose_for_labelling("b1", PREDICTIONS, size=6, least_confident_share=0.5)
    assert least == ["c6.jpg", "dogs/d1.jpg", "c5.jpg"]
    # One of each predicted class (bird, cat, dog in turn), from the images not chosen yet.
    assert [PREDICTIONS.predicted[image] for image in stratified] == ["bird", "cat", "dog"]
    assert stratified[0] == "birds/b0.jpg" and stratified[2] == "dogs/d0.jpg" and stratified[1] not in least
    assert choose_for_labelling("b1", PREDICTIONS, size=6, least_confident_share=0.5) == (least, stratified)


def test_a_class_that_runs_out_leaves_its_turns_to_the_others_and_a_small_batch_is_taken_whole() -> None:
    _, stratified = choose_for_labelling("b1", PREDICTIONS, size=7, least_confident_share=0)
    counts = {name: [PREDICTIONS.predicted[i] for i in stratified].count(name) for name in ("bird", "cat", "dog")}
    assert counts == {"bird": 1, "cat": 4, "dog": 2}
    least, rest = choose_for_labelling("b1", PREDICTIONS, size=1000)
    assert sorted(least + rest) == sorted(CONFIDENCE) and len(least) == 5


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        choose_for_labelling("b1", PREDICTIONS, size=5, least_confident_share=1.5)
    with pytest.raises(ValueError):
        choose_for_labelling("b1", PREDICTIONS, size=-1)


def test_the_manifest_lists_store_uris_and_its_ground_truth_answer_joins(objects: ObjectStore) -> None:
    request = write_label_request(objects, "b1", PREDICTIONS, size=4)
    assert request is not None
    assert (request.manifest, request.n_images, request.n_least_confident, request.n_stratified) == (
        label_request_manifest("b1"), 4, 2, 2)
    assert request.manifest_uri == objects.uri(request.manifest) and sum(request.by_class.values()) == 4
    lines = [json.loads(line) for line in objects.get_bytes(request.manifest).decode().splitlines()]
    assert all(set(line) == {"source-ref"} for line in lines)
    keys = [objects.key_from_uri(line["source-ref"]) for line in lines]
    assert all(key.removeprefix("batches/b1/") in CONFIDENCE for key in keys) and len(set(keys)) == 4

    # Ground Truth answers with the same lines plus the label attribute; the join takes them all.
    for image in CONFIDENCE:
        objects.put_bytes(f"batches/b1/{image}", b"jpeg")
    intake.claim_named_batch(objects, "b1", "r1")
    header = "file,predicted_class,confidence,p_bird,p_cat,p_dog\n"
    objects.put_bytes("runs/serve/r1/predictions/predictions.csv", (header + "".join(
        f"{image},{PREDICTIONS.predicted[image]},{c},0,0,0\n" for image, c in CONFIDENCE.items())).encode())
    answered = [{**line, "kind": 1, "kind-metadata": {"class-name": "cat"}} for line in lines]
    objects.put_bytes("labels/b1/output.manifest", "\n".join(json.dumps(line) for line in answered).encode())
    result = labelled_accuracy(objects, "b1", "runs/serve/r1/predictions/predictions.csv")
    assert result.n_labelled == 4 and sum(result.bad_counts.values()) == 0


def test_a_batch_without_predictions_gets_no_request(objects: ObjectStore) -> None:
    assert write_label_request(objects, "b1", Predictions(classes=("cat",), predicted={}, confidence={})) is None
    assert objects.list() == []
