"""Joining labels to predictions grows linearly: ``driftloop.labels.join_labels`` on 10,000 to 100,000 labels.

Each size is a batch's ``predictions.csv`` (ten classes) and one label CSV (``image,label`` with a
header) that labels every image, 80 % of them as predicted. The step is what a control step does
after reading the files: parse the predictions, parse the labels, join, and build the
``LabelledAccuracy``. Its bare limit, run in the same process, interleaved: read both CSVs with the
csv module into dicts and count the matches. Linear growth shows as a flat time per label, a flat
ratio to the bare limit, and a log-log slope of time against size near 1.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.common import BenchOptions, Result, best_of, table
from driftloop.labels import LabelledAccuracy, join_labels, read_predictions
from driftloop.stores.objects import LocalObjectStore

SIZES = (10_000, 30_000, 100_000)
QUICK_SIZES = (1_000, 3_000, 10_000)
CLASSES = tuple(f"class-{i}" for i in range(10))
AGREEMENT = 0.8  # the share of labels equal to the prediction


def make_files(n: int, seed: int) -> tuple[str, bytes]:
    """A predictions.csv (text) and a label CSV (bytes) for ``n`` images."""
    rng = random.Random(seed)
    predictions, labels = io.StringIO(), io.StringIO()
    out, labelled = csv.writer(predictions), csv.writer(labels)
    out.writerow(["file", "predicted_class", "confidence", *(f"p_{c}" for c in CLASSES)])
    labelled.writerow(["image", "label"])
    for i in range(n):
        image, predicted = f"{CLASSES[i % 10]}/{i:07d}.jpg", rng.choice(CLASSES)
        out.writerow([image, predicted, "0.910000", *("0.010000" for _ in CLASSES)])
        labelled.writerow([image, predicted if rng.random() < AGREEMENT else rng.choice(CLASSES)])
    return predictions.getvalue(), labels.getvalue().encode()


def bare_join(predictions: str, labels: bytes) -> int:
    """The limit: both CSVs into dicts with the csv module, and the matches counted."""
    predicted = {row[0]: row[1] for row in csv.reader(predictions.splitlines()) if row}
    labelled = {row[0]: row[1] for row in csv.reader(labels.decode().splitlines()) if row}
    return sum(predicted.get(image) == label for image, label in labelled.items())


def join(predictions: str, labels: bytes, key_from_uri: Callable[[str], str]) -> LabelledAccuracy:
    """The step: what a control step does once it has read the two files."""
    return join_labels("bench", read_predictions(predictions), [("labels/bench/labels.csv", labels)], served=True,
                       key_from_uri=key_from_uri)


def run(options: BenchOptions) -> Result:
    sizes = QUICK_SIZES if options.quick else SIZES
    repeats = 1 if options.quick else 5
    key_from_uri = LocalObjectStore(Path(options.workdir) / "labels_join").key_from_uri  # touches no file
    rows: list[tuple[object, ...]] = []
    data: dict[str, dict[str, float]] = {}
    for n in sizes:
        predictions, labels = make_files(n, options.seed)
        step = partial(join, predictions, labels, key_from_uri)
        result = step()
        if result.n_labelled != n or result.n_correct != bare_join(predictions, labels):
            raise AssertionError(f"join and bare join disagree at n={n}: {result.n_correct} correct")
        join_s, bare_s = best_of(repeats, step, partial(bare_join, predictions, labels))
        data[str(n)] = {"join_s": round(join_s, 4), "bare_s": round(bare_s, 4), "ratio": round(join_s / bare_s, 2),
                        "join_us_per_label": round(1e6 * join_s / n, 2)}
        rows.append((f"{n:,}", 1e3 * join_s, 1e3 * bare_s, join_s / bare_s, 1e6 * join_s / n))
    small, large = data[str(sizes[0])], data[str(sizes[-1])]
    slope = math.log(large["join_s"] / small["join_s"]) / math.log(sizes[-1] / sizes[0])
    growth = {"log_log_slope": round(slope, 3),
              "per_label_time_largest_vs_smallest": round(large["join_us_per_label"] / small["join_us_per_label"], 3),
              "ratio_largest_vs_smallest": round(large["ratio"] / small["ratio"], 3)}
    tables = [table(("labels = predictions", "join ms", "bare csv→dict ms", "join / bare", "µs per label"), rows,
                    title=f"Labels join (parse both files, join, LabelledAccuracy), best of {repeats}, one process"),
              table(("growth, smallest to largest size", "value"),
                    [("log-log slope of time vs size (1 = linear)", slope),
                     ("µs per label, largest / smallest", growth["per_label_time_largest_vs_smallest"]),
                     ("join / bare, largest / smallest", growth["ratio_largest_vs_smallest"])])]
    return Result({"sizes": list(sizes), "by_size": data, "growth": growth}, tables)
