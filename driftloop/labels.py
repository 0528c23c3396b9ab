"""Labels that come back for a served batch, joined to its predictions: the batch's labelled accuracy.

People label a sample of a batch days after it was served, so labels arrive under their own prefix,
``labels/<batch id>/<file>`` (any number of files, any time later), and each join reads all of them.
Two formats, told apart by the file's extension (``.csv``; ``.manifest``, ``.jsonl``, ``.json``) or
else by its first character (``{``: a manifest):

- CSV, one label per line: ``image,label``. The header is optional: a first line that reads
  ``image,label`` (or ``label,image``, any case) is one, and sets the column order. A label never
  spans lines (each line is parsed on its own, so one bad line is one bad row). Blank lines are
  skipped. UTF-8, with or without a byte-order mark.
- A SageMaker Ground Truth image-classification output manifest: JSON lines with ``source-ref``
  and, for the label attribute whose name the labelling job chose, ``"<attr>-metadata":
  {"class-name": ...}`` (docs.aws.amazon.com/sagemaker/latest/dg/sms-data-output.html). The
  attribute is found as the one ``-metadata`` object that has a ``class-name``.

An image is named by its id, its key within the batch (``cats/001.jpg``, what ``predictions.csv``'s
``file`` column holds), or by the store's URI of the image (``s3://<bucket>/batches/<id>/cats/001.jpg``;
locally the key ``batches/<id>/cats/001.jpg``), which Ground Truth's ``source-ref`` always is.

Bad rows are counted by kind and listed (file and line; at most ``MAX_LISTED`` of each kind, the
counts are complete); they never stop the join and never change a prediction. An image labelled
twice with one label counts once; with two different labels it is left out, and each of its rows
is a ``conflicting_duplicate``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from driftloop.contracts import Contract
from driftloop.drift_report import EstimatedAccuracy
from driftloop.files import NAME_ENCODING, NAME_ERRORS
from driftloop.intake import is_served
from driftloop.intervals import wilson_interval
from driftloop.layout import LABELS, batch_id_problem, batch_prefix, labels_prefix
from driftloop.stores.objects import ObjectStore

BadKind = Literal["malformed", "unknown_image", "unknown_class", "conflicting_duplicate", "unserved_batch"]
BAD_KINDS: Final[tuple[str, ...]] = get_args(BadKind)
MAX_LISTED: Final = 100  # bad rows listed per kind; a file of garbage must not make a huge record
MANIFEST_SUFFIXES: Final = (".manifest", ".jsonl", ".json")
_HEADERS: Final[dict[tuple[str, ...], tuple[int, int]]] = {("image", "label"): (0, 1), ("label", "image"): (1, 0)}


@dataclass(frozen=True)
class BadLabel(Contract):
    """One label row that was not used, and why."""

    kind: BadKind
    file: str  # the label file's key
    line: int  # 1-based; 0 for the whole file (e.g. not UTF-8)
    detail: str


@dataclass(frozen=True)
class LabelledAccuracy(Contract):
    """A batch's accuracy measured on the labels that came back for it, and the estimate's real error.

    ``accuracy`` and its Wilson interval are None while no label could be used. ``confusion`` is
    true class -> predicted class -> count. ``estimate_error`` is the label-free estimate minus the
    labelled accuracy (a fraction; positive: the estimate was too high).
    """

    batch_id: str
    label_files: list[str]
    n_predictions: int
    n_labelled: int
    n_correct: int
    accuracy: float | None
    lower: float | None
    upper: float | None
    confidence: float
    confusion: dict[str, dict[str, int]]
    n_duplicates: int  # rows that repeat an image's label (each image counts once)
    bad_counts: dict[str, int]  # every kind in BAD_KINDS, zeros included
    bad_rows: list[BadLabel]
    estimate: float | None = None
    estimate_error: float | None = None
    estimate_in_interval: bool | None = None  # the labelled accuracy lies in the estimate's interval

    def summary(self) -> str:
        """``labelled 91.0% [84.0, 95.2] on 100 images (3 bad rows)``: for logs and the status."""
        bad = sum(self.bad_counts.values())
        if self.accuracy is None or self.lower is None or self.upper is None:
            return f"batch {self.batch_id}: no usable labels ({bad} bad rows)"
        error = "" if self.estimate_error is None else f", estimate off by {100 * self.estimate_error:+.1f} points"
        return (f"batch {self.batch_id}: labelled {100 * self.accuracy:.1f}% [{100 * self.lower:.1f}, "
                f"{100 * self.upper:.1f}] on {self.n_labelled} images ({bad} bad rows{error})")


@dataclass(frozen=True)
class Predictions:
    """A batch's ``predictions.csv``: the model's classes and each image's predicted class and confidence."""

    classes: tuple[str, ...]
    predicted: dict[str, str]  # image id -> predicted class
    confidence: dict[str, float]


def read_predictions(text: str) -> Predictions:
    """Parse ``predictions.csv`` (``file, predicted_class, confidence, p_<class>...``, as the algorithm writes it)."""
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or header[:3] != ["file", "predicted_class", "confidence"]:
        raise ValueError(f"not a predictions.csv header: {header}")
    classes = tuple(name[len("p_"):] for name in header[3:])
    predicted: dict[str, str] = {}
    confidence: dict[str, float] = {}
    for row in reader:
        if row:
            predicted[row[0]] = row[1]
            confidence[row[0]] = float(row[2])
    return Predictions(classes=classes, predicted=predicted, confidence=confidence)


@dataclass
class _Tally:
    """Bad rows by kind: every one counted, the first ``MAX_LISTED`` of each kind listed."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BAD_KINDS, 0))
    listed: list[BadLabel] = field(default_factory=list)

    def add(self, bad: BadLabel) -> None:
        self.counts[bad.kind] += 1
        if self.counts[bad.kind] <= MAX_LISTED:
            self.listed.append(bad)


Row = tuple[int, str, str]  # line, image reference, label


def _csv_rows(key: str, text: str) -> Iterator[Row | BadLabel]:
    columns = (0, 1)
    seen_content = False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            # Without quotes a CSV line is its cells split on commas; csv only for the quoted rest.
            cells = line.split(",") if '"' not in line else next(csv.reader((line,)))
        except csv.Error as error:
            yield BadLabel("malformed", key, number, f"not CSV: {error}")
            continue
        cells = [cell.strip() for cell in cells]
        if not seen_content and (order := _HEADERS.get(tuple(cell.lower() for cell in cells))):
            columns, seen_content = order, True
            continue
        seen_content = True
        if len(cells) != 2 or not all(cells):
            yield BadLabel("malformed", key, number, f"expected two non-empty cells image,label: {line[:200]!r}")
            continue
        yield number, cells[columns[0]], cells[columns[1]]


def _class_name(record: Mapping[str, object]) -> str | None:
    """The ``class-name`` of the one label attribute's metadata; None when there is none or several."""
    names = {value["class-name"] for name, value in record.items()
             if name.endswith("-metadata") and isinstance(value, dict) and isinstance(value.get("class-name"), str)}
    return names.pop() if len(names) == 1 else None


def _manifest_rows(key: str, text: str) -> Iterator[Row | BadLabel]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield BadLabel("malformed", key, number, f"not JSON: {error}")
            continue
        source = record.get("source-ref") if isinstance(record, dict) else None
        if not isinstance(source, str) or not source:
            yield BadLabel("malformed", key, number, "no source-ref")
        elif (label := _class_name(record)) is None:
            yield BadLabel("malformed", key, number, "no single '<attribute>-metadata' with a class-name "
                                                     "(a failed labelling object, or a multi-label job)")
        else:
            yield number, source, label


def label_rows(key: str, data: bytes) -> Iterator[Row | BadLabel]:
    """The rows of one label file, CSV or Ground Truth manifest (see the module docstring)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        yield BadLabel("malformed", key, 0, f"not UTF-8: {error}")
        return
    lower = key.lower()
    manifest = lower.endswith(MANIFEST_SUFFIXES) or (not lower.endswith(".csv") and text.lstrip().startswith("{"))
    yield from (_manifest_rows if manifest else _csv_rows)(key, text)


def image_resolver(batch_id: str, ids: Mapping[str, object], key_from_uri: Callable[[str], str]
                   ) -> Callable[[str], str | None]:
    """``reference -> image id``: an id of the batch as it is, or a URI of an image under the batch's prefix."""
    prefix = batch_prefix(batch_id) + "/"

    def resolve(reference: str) -> str | None:
        if reference in ids:
            return reference
        try:
            key = key_from_uri(reference)
        except ValueError:
            return None
        return key[len(prefix):] if key.startswith(prefix) else None

    return resolve


Labelled = tuple[str, str, int]  # label, file, line
Gathered = tuple[dict[str, Labelled], dict[str, list[Labelled]]]  # each image's first row, its later rows


def _collect(batch_id: str, predictions: Predictions, files: Sequence[tuple[str, bytes]], served: bool,
             key_from_uri: Callable[[str], str], tally: _Tally) -> Gathered:
    """Every good row's label by image id: the first row of each image, and any later rows of it."""
    resolve = image_resolver(batch_id, predictions.predicted, key_from_uri)
    classes = set(predictions.classes)
    first: dict[str, Labelled] = {}
    again: dict[str, list[Labelled]] = {}
    for key, data in files:
        for row in label_rows(key, data):
            if isinstance(row, BadLabel):
                tally.add(row)
                continue
            line, reference, label = row
            if not served:
                tally.add(BadLabel("unserved_batch", key, line, f"batch {batch_id} was never served"))
            elif (image := resolve(reference)) is None:
                tally.add(BadLabel("unknown_image", key, line, f"{reference!r} is not an image of batch {batch_id}"))
            elif label not in classes:
                tally.add(BadLabel("unknown_class", key, line, f"{label!r} is not one of the model's classes"))
            elif image in first:
                again.setdefault(image, []).append((label, key, line))
            else:
                first[image] = (label, key, line)
    return first, again


def _settle(first: dict[str, Labelled], again: dict[str, list[Labelled]], tally: _Tally) -> tuple[dict[str, str], int]:
    """One label an image: repeats of one label count once, and an image with two labels is left out."""
    labels = {image: row[0] for image, row in first.items()}
    duplicates = 0
    for image, rows in again.items():
        every = [first[image], *rows]
        if len({label for label, _, _ in every}) == 1:
            duplicates += len(rows)
            continue
        del labels[image]
        seen = sorted({label for label, _, _ in every})
        for label, key, line in every:
            tally.add(BadLabel("conflicting_duplicate", key, line, f"{image!r} is labelled {seen}; here {label!r}"))
    return labels, duplicates


def join_labels(batch_id: str, predictions: Predictions, files: Sequence[tuple[str, bytes]], *, served: bool,
                key_from_uri: Callable[[str], str], estimate: EstimatedAccuracy | None = None,
                confidence: float = 0.95) -> LabelledAccuracy:
    """Join label files (key, bytes) to a batch's predictions: the labelled accuracy, confusion and bad rows.

    Pure (no store): both backends' control steps and the benchmark call it. ``served`` False makes
    every well-formed row an ``unserved_batch`` row (there are no predictions to join them to).
    """
    tally = _Tally()
    first, again = _collect(batch_id, predictions, files, served, key_from_uri, tally)
    labels, duplicates = _settle(first, again, tally)
    return _measured(batch_id, predictions, files, labels, duplicates, tally, estimate, confidence)


def usable_labels(batch_id: str, predictions: Predictions, files: Sequence[tuple[str, bytes]],
                  key_from_uri: Callable[[str], str]) -> dict[str, str]:
    """Image id -> label for every image of a served batch that the join counts (what a retrain trains on)."""
    tally = _Tally()
    return _settle(*_collect(batch_id, predictions, files, True, key_from_uri, tally), tally)[0]


def _measured(batch_id: str, predictions: Predictions, files: Sequence[tuple[str, bytes]], labels: dict[str, str],
              duplicates: int, tally: _Tally, estimate: EstimatedAccuracy | None, confidence: float
              ) -> LabelledAccuracy:
    confusion: dict[str, dict[str, int]] = {}
    correct = 0
    for image, label in labels.items():
        predicted = predictions.predicted[image]
        row = confusion.setdefault(label, {})
        row[predicted] = row.get(predicted, 0) + 1
        correct += label == predicted
    n = len(labels)
    accuracy, lower, upper = (None, None, None) if n == 0 else (correct / n, *wilson_interval(correct, n, confidence))
    error = None if estimate is None or accuracy is None else estimate.estimate - accuracy
    covered = None if estimate is None or accuracy is None else estimate.lower <= accuracy <= estimate.upper
    return LabelledAccuracy(
        batch_id=batch_id, label_files=[key for key, _ in files], n_predictions=len(predictions.predicted),
        n_labelled=n, n_correct=correct, accuracy=accuracy, lower=lower, upper=upper, confidence=confidence,
        confusion=confusion, n_duplicates=duplicates, bad_counts=tally.counts,
        bad_rows=sorted(tally.listed, key=lambda bad: (bad.file, bad.line, bad.kind)),
        estimate=None if estimate is None else estimate.estimate, estimate_error=error, estimate_in_interval=covered)


def label_files(objects: ObjectStore, batch_id: str) -> list[str]:
    """Keys of every label file that came back for the batch, sorted."""
    return objects.list(labels_prefix(batch_id))


def has_labels(objects: ObjectStore, batch_id: str) -> bool:
    return bool(label_files(objects, batch_id))


def labelled_batches(objects: ObjectStore) -> list[str]:
    """Ids of the batches with label files (folders under ``labels/`` that are not batch ids are left out)."""
    return [name for name in objects.list_folders(LABELS) if batch_id_problem(name) is None]


def labelled_accuracy(objects: ObjectStore, batch_id: str, predictions_key: str | None, *,
                      estimate: EstimatedAccuracy | None = None, confidence: float = 0.95) -> LabelledAccuracy:
    """Join every label file of ``labels/<batch id>/`` to the batch's predictions (``predictions_key``).

    A batch the ledger never served has no predictions: its labels are all ``unserved_batch`` rows
    and ``predictions_key`` is not read (it may be None).
    """
    served = is_served(objects, batch_id)
    if served and predictions_key is None:
        raise ValueError(f"batch {batch_id} was served: its predictions.csv key is needed for the join")
    predictions = (read_predictions(objects.get_bytes(predictions_key).decode(NAME_ENCODING, NAME_ERRORS))
                   if served and predictions_key
                   else Predictions(classes=(), predicted={}, confidence={}))
    files = [(key, objects.get_bytes(key)) for key in label_files(objects, batch_id)]
    return join_labels(batch_id, predictions, files, served=served, key_from_uri=objects.key_from_uri,
                       estimate=estimate, confidence=confidence)
