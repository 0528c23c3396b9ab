"""Labels joined to a served batch's predictions, on both backends: the labelled accuracy, the
confusion, the estimate's error, and every kind of bad row counted and listed without changing anything."""

from __future__ import annotations

import csv
import io
import json

import pytest

from driftloop import intake
from driftloop.drift_report import EstimatedAccuracy
from driftloop.intervals import wilson_interval
from driftloop.labels import (
    MAX_LISTED,
    BadLabel,
    LabelledAccuracy,
    has_labels,
    join_labels,
    labelled_accuracy,
    labelled_batches,
    read_predictions,
)
from driftloop.stores.objects import ObjectStore

PREDICTIONS_KEY = "runs/serve/r1/predictions/predictions.csv"
# image id -> (predicted class, confidence)
PREDICTED = {"cats/001.jpg": ("cat", 0.9), "cats/002.jpg": ("dog", 0.6), "dogs/003.jpg": ("dog", 0.8),
             "dogs/004.jpg": ("dog", 0.7), "dogs/005.jpg": ("cat", 0.55), "loose.jpg": ("cat", 0.51)}


def predictions_csv(predicted: dict[str, tuple[str, float]], classes: tuple[str, ...] = ("cat", "dog")) -> bytes:
    """As the algorithm component writes it (csv.writer: a comma in a name is quoted)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["file", "predicted_class", "confidence", *(f"p_{c}" for c in classes)])
    for file, (name, confidence) in predicted.items():
        rest = [f"{confidence:.6f}" if c == name else f"{(1 - confidence) / (len(classes) - 1):.6f}" for c in classes]
        writer.writerow([file, name, f"{confidence:.6f}", *rest])
    return out.getvalue().encode()


def gt_line(source_ref: str, class_name: str | None, attribute: str = "pet-kind") -> str:
    metadata = ({"class-name": class_name, "confidence": 0.9, "type": "groundtruth/image-classification",
                 "job-name": "labeling-job/pets", "human-annotated": "yes"}
                if class_name is not None else {"failure-reason": "ClientError: timed out"})
    return json.dumps({"source-ref": source_ref, attribute: 0, f"{attribute}-metadata": metadata})


def serve(objects: ObjectStore, batch_id: str = "b1") -> None:
    for image in PREDICTED:
        objects.put_bytes(f"batches/{batch_id}/{image}", b"jpeg")
    objects.put_bytes(f"batches/{batch_id}/_READY", b"")
    assert intake.claim_named_batch(objects, batch_id, "r1") is not None
    objects.put_bytes(PREDICTIONS_KEY, predictions_csv(PREDICTED))


def snapshot(objects: ObjectStore) -> dict[str, bytes]:
    return {key: objects.get_bytes(key) for key in objects.list()}


def test_every_kind_of_bad_row_is_counted_and_listed_and_nothing_else_changes(objects: ObjectStore) -> None:
    serve(objects)
    csv_rows = [
        "image,label",
        "cats/001.jpg,cat",  # 2: correct
        "cats/002.jpg,cat",  # 3: wrong (predicted dog)
        f"{objects.uri('batches/b1/dogs/003.jpg')},dog",  # 4: correct, named by URI
        "cats/001.jpg,cat",  # 5: a duplicate with the same label: counts once
        "dogs/004.jpg,dog",  # 6: conflicting with line 7
        "dogs/004.jpg,cat",  # 7
        "dogs/005.jpg,horse",  # 8: unknown class
        "nothing/here.jpg,cat",  # 9: unknown image
        f"{objects.uri('batches/b2/cats/001.jpg')},cat",  # 10: an image of another batch
        "just-one-cell",  # 11: malformed
        "a.jpg,cat,extra",  # 12: malformed
        ",cat",  # 13: malformed
    ]
    objects.put_bytes("labels/b1/team.csv", "\n".join(csv_rows).encode())
    manifest = [gt_line(objects.uri("batches/b1/loose.jpg"), "dog"),  # 1: wrong (predicted cat)
                "{not json",  # 2: malformed
                gt_line(objects.uri("batches/b1/dogs/005.jpg"), None),  # 3: a failed labelling object
                json.dumps({"pet-kind-metadata": {"class-name": "cat"}})]  # 4: no source-ref
    objects.put_bytes("labels/b1/gt/output.manifest", "\n".join(manifest).encode())
    objects.put_bytes("labels/b9/late.csv", b"x.jpg,cat\ny.jpg,dog\n")  # batch b9 was never served
    before = snapshot(objects)
    estimate = EstimatedAccuracy(method="atc_ne", estimate=0.8, lower=0.6, upper=0.9, confidence=0.95, n=6,
                                 validation_accuracy=0.9, drop_points=10.0)

    result = labelled_accuracy(objects, "b1", PREDICTIONS_KEY, estimate=estimate)
    unserved = labelled_accuracy(objects, "b9", None)

    assert snapshot(objects) == before  # no prediction, label or ledger entry changed; nothing written
    assert result.bad_counts == {"malformed": 6, "unknown_image": 2, "unknown_class": 1,
                                 "conflicting_duplicate": 2, "unserved_batch": 0}
    listed = [(bad.file.rpartition("/")[2], bad.line, bad.kind) for bad in result.bad_rows]
    assert listed == [("output.manifest", 2, "malformed"), ("output.manifest", 3, "malformed"),
                      ("output.manifest", 4, "malformed"),
                      ("team.csv", 6, "conflicting_duplicate"), ("team.csv", 7, "conflicting_duplicate"),
                      ("team.csv", 8, "unknown_class"), ("team.csv", 9, "unknown_image"),
                      ("team.csv", 10, "unknown_image"), ("team.csv", 11, "malformed"),
                      ("team.csv", 12, "malformed"), ("team.csv", 13, "malformed")]
    assert (result.n_labelled, result.n_correct, result.n_duplicates, result.n_predictions) == (4, 2, 1, 6)
    assert result.confusion == {"cat": {"cat": 1, "dog": 1}, "dog": {"dog": 1, "cat": 1}}
    assert result.accuracy == 0.5 and (result.lower, result.upper) == wilson_interval(2, 4)
    assert result.label_files == ["labels/b1/gt/output.manifest", "labels/b1/team.csv"]
    assert result.estimate == 0.8 and result.estimate_error == pytest.approx(0.3)
    assert result.estimate_in_interval is False

    assert unserved.bad_counts["unserved_batch"] == 2 and unserved.n_labelled == 0 and unserved.accuracy is None
    assert "no usable labels" in unserved.summary()
    assert type(result).from_json(result.to_json()) == result  # a contract: the record can carry it


def test_labelled_batches_and_has_labels(objects: ObjectStore) -> None:
    objects.put_bytes("labels/b1/a.csv", b"x,cat\n")
    objects.put_bytes("labels/bad name/a.csv", b"x,cat\n")
    assert labelled_batches(objects) == ["b1"]
    assert has_labels(objects, "b1") and not has_labels(objects, "b2")


def join(files: dict[str, bytes], predicted: dict[str, tuple[str, float]] = PREDICTED) -> LabelledAccuracy:
    return join_labels("b1", read_predictions(predictions_csv(predicted).decode()), list(files.items()),
                       served=True, key_from_uri=lambda uri: uri.removeprefix("s3://bucket/"))


def test_csv_header_is_optional_may_swap_columns_and_quotes_are_read() -> None:
    plain = join({"labels/b1/a.csv": b"cats/001.jpg,cat\n\n  dogs/003.jpg , dog \n"})
    swapped = join({"labels/b1/a.csv": "\ufefflabel,Image\ncat,cats/001.jpg\ndog,dogs/003.jpg\n".encode()})
    quoted = join({"labels/b1/a.csv": b'"cats/a,b.jpg",cat\n'}, {"cats/a,b.jpg": ("cat", 0.9)})
    for result in (plain, swapped):
        assert (result.n_labelled, result.n_correct, sum(result.bad_counts.values())) == (2, 2, 0)
    assert quoted.n_correct == 1


def test_ground_truth_manifest_with_any_attribute_name_and_s3_uris() -> None:
    manifest = "\n".join([gt_line("s3://bucket/batches/b1/cats/001.jpg", "cat", attribute="whatever"),
                          gt_line("s3://bucket/batches/b1/cats/002.jpg", "dog", attribute="my-job")])
    result = join({"labels/b1/out.jsonl": manifest.encode()})
    assert (result.n_labelled, result.n_correct) == (2, 2)


def test_a_file_that_is_not_utf8_is_one_malformed_entry() -> None:
    result = join({"labels/b1/a.csv": b"\xff\xfe\x00garbage", "labels/b1/b.csv": b"cats/001.jpg,cat\n"})
    assert result.bad_rows == [BadLabel("malformed", "labels/b1/a.csv", 0, result.bad_rows[0].detail)]
    assert result.n_labelled == 1


def test_bad_rows_are_all_counted_but_only_the_first_of_each_kind_listed() -> None:
    rows = "\n".join(f"missing/{i}.jpg,cat" for i in range(MAX_LISTED + 50))
    result = join({"labels/b1/a.csv": rows.encode()})
    assert result.bad_counts["unknown_image"] == MAX_LISTED + 50 and len(result.bad_rows) == MAX_LISTED


def test_predictions_need_their_header() -> None:
    with pytest.raises(ValueError, match="predictions.csv"):
        read_predictions("image,label\na,b\n")
