"""The production simulation: batches arrive hourly from a drifting stream, labels come back later.

The first model is trained on the Original stage's train and validation sets; from then on the loop
sees only the stream (``driftloop.local.data.stream``): ``hours_per_stage`` batches of
``batch_size`` new images per stage, Original, Stage-1, ..., Noisy, each uploaded as
``batches/<id>/`` with its ``_READY`` marker, and each hour's run is a scheduled one (it serves the
oldest complete batch not yet served). ``label_delay_hours`` after a batch is served, a person's
labels for ``label_fraction`` of its images come back under ``labels/<id>/`` (a CSV one hour, a
Ground Truth output manifest the next). The loop never sees a stage's own train or validation split.

The simulation knows every image's class, so each hour shows the batch's true accuracy beside
what the loop knew then: the estimate, drift, the labelled accuracy once labels arrived, the
labels it asked for, and its retrains.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from tqdm import tqdm

from driftloop import intake, production
from driftloop.config import Settings
from driftloop.drift_report import UNRELIABLE
from driftloop.layout import READY_MARKER, STAGE_NAMES, batch_prefix, data_prefix, labelled_entry, labels_prefix
from driftloop.local.data.stream import StreamImage, make_first_data_set, make_stream
from driftloop.local.runner import LocalSystem, ServeOutcome, numbered_run_ids
from driftloop.local.simulation import SIMULATION_START

log = logging.getLogger(__name__)

RESULT_FILE: Final = "production.json"


@dataclass(frozen=True)
class ProductionOptions:
    workdir: Path
    data: Path | None = None  # a stages folder for the first model (default: the synthetic set)
    seed: int = 0
    size: str = "blog"
    hours_per_stage: int = 3
    batch_size: int = 60
    label_fraction: float = 0.5
    label_delay_hours: int = 1
    settings: Settings = field(default_factory=Settings)
    progress: bool = True


@dataclass(frozen=True)
class HourRow:
    """One hour: the batch served, what the loop knew and did, and the truth the simulation knows."""

    hour: int
    time: str
    stage: str
    batch: str
    model_run_id: str
    accuracy: float  # true accuracy of the batch's predictions
    estimate: float | None
    drift: bool
    labels_arrived: list[str]  # batches whose labels came back before this hour's run
    labelled: dict[str, float | None]  # batch -> its labelled accuracy, for the labels that arrived
    label_request_images: int
    retrained: bool
    promoted: bool | None
    retrain_batches: list[str]  # the labelled batches the retrain trained on
    reason: str
    # The estimate lies outside its calibration's domain: shown as unreliable, not as a number.
    estimate_outside_domain: bool = False


@dataclass
class ProductionResult:
    rows: list[HourRow]
    checks: dict[str, bool]
    served: dict[str, int]  # batch -> times served
    workdir: Path

    def to_json(self) -> dict[str, Any]:
        return {"rows": [asdict(r) for r in self.rows], "checks": self.checks, "served": self.served}


def batch_id(hour: int) -> str:
    return f"batch-{hour:03d}"


def _upload_batch(system: LocalSystem, images: Sequence[StreamImage], stream: Path, hour: int) -> None:
    """The batch's images, then its marker: complete from the moment the marker is there."""
    prefix = batch_prefix(batch_id(hour))
    for image in images:
        system.objects.put_file(f"{prefix}/{image.name}", image.path(stream))
    system.objects.put_bytes(f"{prefix}/{READY_MARKER}", b"")


def _labelled_part(images: Sequence[StreamImage], fraction: float) -> list[StreamImage]:
    """The images a person labelled: a fixed share, chosen by a hash of the name (not by class or order)."""
    def rank(image: StreamImage) -> str:
        return hashlib.sha256(image.name.encode()).hexdigest()

    return sorted(images, key=rank)[: round(fraction * len(images))]


def _label_file(system: LocalSystem, images: Sequence[StreamImage], hour: int) -> tuple[str, bytes]:
    """Labels as a labelling tool writes them: a CSV on even hours, a Ground Truth output manifest on odd ones."""
    if hour % 2 == 0:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["image", "label"])
        writer.writerows([image.name, image.label] for image in images)
        return "labels.csv", out.getvalue().encode()
    prefix = batch_prefix(batch_id(hour))
    lines = [json.dumps({"source-ref": system.objects.uri(f"{prefix}/{image.name}"), "class": 0,
                         "class-metadata": {"class-name": image.label, "confidence": 1.0, "human-annotated": "yes",
                                            "type": "groundtruth/image-classification"}})
             for image in images]
    return "output.manifest", ("\n".join(lines) + "\n").encode()


def _true_accuracy(system: LocalSystem, outcome: ServeOutcome, images: Sequence[StreamImage]) -> float:
    predicted = production.read_batch_predictions(system.objects, outcome.record.predictions).predicted
    truth = {image.name: image.label for image in images}
    return sum(predicted.get(name) == label for name, label in truth.items()) / len(truth)


@dataclass
class _Stream:
    """The stream's batches, by hour, and the hours whose labels are still to come."""

    folder: Path
    batches: list[list[StreamImage]]
    pending: dict[int, int] = field(default_factory=dict)  # hour served -> hour its labels arrive


def _make_stream(options: ProductionOptions) -> _Stream:
    folder = options.workdir / "stream"
    shutil.rmtree(folder, ignore_errors=True)
    planned = make_stream(folder, seed=options.seed, per_stage=options.hours_per_stage * options.batch_size)
    per_stage = options.hours_per_stage * options.batch_size
    batches = [planned[start:start + options.batch_size]
               for stage in range(len(STAGE_NAMES))
               for start in range(stage * per_stage, (stage + 1) * per_stage, options.batch_size)]
    return _Stream(folder, batches)


def _labels_due(system: LocalSystem, stream: _Stream, hour: int, options: ProductionOptions) -> list[str]:
    arrived = []
    for served, due in sorted(stream.pending.items()):
        if due <= hour:
            name, data = _label_file(system, _labelled_part(stream.batches[served], options.label_fraction), served)
            system.objects.put_bytes(f"{labels_prefix(batch_id(served))}/{name}", data)
            arrived.append(batch_id(served))
            del stream.pending[served]
    return arrived


def _labelled(system: LocalSystem, batches: list[str]) -> dict[str, float | None]:
    """The labelled accuracy the run joined for each batch whose labels arrived (None: not joined)."""
    result: dict[str, float | None] = {}
    for name in batches:
        try:
            joined = production.JoinedBatch.from_json(system.objects.get_bytes(labelled_entry(name)))
            result[name] = joined.labelled.accuracy
        except LookupError:
            result[name] = None
    return result


def _row(hour: int, when: datetime, outcome: ServeOutcome, accuracy: float, arrived: list[str],
         labelled: dict[str, float | None], system: LocalSystem, options: ProductionOptions) -> HourRow:
    retrain = outcome.retrain
    lineage = (production.Lineage.from_json(system.objects.get_bytes(system.objects.key_from_uri(retrain.lineage)))
               if retrain is not None and retrain.lineage else None)
    estimate = outcome.record.accuracy_estimate
    return HourRow(
        hour=hour, time=when.strftime("%d %H:%M"), stage=STAGE_NAMES[hour // options.hours_per_stage],
        batch=batch_id(hour), model_run_id=outcome.record.model_run_id, accuracy=round(accuracy, 6),
        estimate=None if estimate is None else round(estimate.estimate, 6),
        estimate_outside_domain=estimate is not None and estimate.outside_domain, drift=outcome.record.is_drift,
        labels_arrived=arrived, labelled=labelled, label_request_images=outcome.record.label_request_images,
        retrained=retrain is not None, promoted=None if retrain is None else retrain.promoted,
        retrain_batches=[] if lineage is None else lineage.batches, reason=outcome.decision.reason,
    )


TIMELINE_HEADER: Final = ("Time", "Stage", "Batch", "Accuracy", "Estimated", "Drift", "Labels back (accuracy)",
                          "Asked", "Retrained")


def timeline_line(row: HourRow) -> str:
    labelled = ", ".join(f"{name[-3:]}: {'-' if acc is None else f'{100 * acc:.0f}%'}"
                         for name, acc in row.labelled.items()) or "-"
    retrain = ("-" if not row.retrained else
               f"on {len(row.retrain_batches)} labelled batches ({'promoted' if row.promoted else 'kept champion'})")
    estimate = "-" if row.estimate is None else f"{100 * row.estimate:.1f}%"
    estimate = UNRELIABLE if row.estimate_outside_domain else estimate
    cells = (row.time, row.stage, row.batch, f"{100 * row.accuracy:.1f}%", estimate, "TRUE" if row.drift else "false",
             labelled, str(row.label_request_images or "-"), retrain)
    widths = (8, 8, 9, 8, len(UNRELIABLE), 5, 26, 5, 0)
    return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def _hour(system: LocalSystem, stream: _Stream, hour: int, options: ProductionOptions) -> HourRow:
    when = SIMULATION_START + timedelta(hours=hour + 1)
    _upload_batch(system, stream.batches[hour], stream.folder, hour)
    arrived = _labels_due(system, stream, hour, options)
    outcome = system.serve_next(when=when)
    if outcome is None:
        raise RuntimeError(f"hour {hour}: the scheduled run found nothing to serve, but {batch_id(hour)} is complete")
    stream.pending[hour] = hour + options.label_delay_hours
    accuracy = _true_accuracy(system, outcome, stream.batches[hour])
    return _row(hour, when, outcome, accuracy, arrived, _labelled(system, arrived), system, options)


def _checks(rows: list[HourRow], served: dict[str, int], system: LocalSystem, options: ProductionOptions
            ) -> dict[str, bool]:
    """What the run must show (the issue's criterion), each as a named check."""
    first_stage = [r for r in rows if r.stage == STAGE_NAMES[0]]
    labelled_batches = {name for r in rows for name in r.labels_arrived}
    joined = {j.batch_id for j in production.joined_batches(system.objects)}
    retrains = [r for r in rows if r.retrained and r.promoted]
    return {
        "every batch served exactly once": len(served) == len(rows) and set(served.values()) == {1},
        "labels joined for every labelled batch": labelled_batches <= joined,
        "no retrain on the first stage": not any(r.retrained for r in first_stage),
        "a retrain on labelled production images": any(r.retrain_batches for r in retrains),
        "accuracy higher after a retrain than before it": any(_recovered(rows, r) for r in retrains),
    }


def _recovered(rows: list[HourRow], retrain: HourRow) -> bool:
    """The batches of the retrain's stage served after it score higher than those served before it."""
    before = [r.accuracy for r in rows if r.stage == retrain.stage and r.hour <= retrain.hour]
    after = [r.accuracy for r in rows if r.stage == retrain.stage and r.hour > retrain.hour]
    return bool(before and after) and sum(after) / len(after) > sum(before) / len(before)


def simulate_production(options: ProductionOptions) -> ProductionResult:
    """Run the production simulation; the console shows a progress bar and one line per hour."""
    n_hours = len(STAGE_NAMES) * options.hours_per_stage
    bar = tqdm(total=n_hours + 2, desc="production", unit="step", disable=not options.progress)
    system, stream = _prepare(options, bar)
    tqdm.write(" | ".join(TIMELINE_HEADER))
    rows = []
    for hour in range(n_hours):
        bar.set_postfix_str(f"hour {hour} ({STAGE_NAMES[hour // options.hours_per_stage]})")
        rows.append(_hour(system, stream, hour, options))
        tqdm.write(timeline_line(rows[-1]))
        log.info("%s: %s", rows[-1].batch, rows[-1].reason)
        bar.update()
    bar.close()
    served = {name: len(intake.serves_of(system.objects, name)) for name in intake.served_batches(system.objects)}
    result = ProductionResult(rows=rows, checks=_checks(rows, served, system, options), served=served,
                              workdir=options.workdir)
    (options.workdir / RESULT_FILE).write_text(json.dumps(result.to_json(), indent=2))
    for check, holds in result.checks.items():
        tqdm.write(f"{'ok  ' if holds else 'FAIL'} {check}")
    print(f"wrote {options.workdir / RESULT_FILE}")
    return result


def _prepare(options: ProductionOptions, bar: tqdm) -> tuple[LocalSystem, _Stream]:
    """The first model (the first stage's train and validation sets) and the stream; each run starts from scratch."""
    bar.set_postfix_str("data")
    first = options.data / STAGE_NAMES[0] if options.data is not None else _first_data_set(options)
    stream = _make_stream(options)
    state = options.workdir / "state"
    shutil.rmtree(state, ignore_errors=True)
    system = LocalSystem(state, settings=options.settings, run_ids=numbered_run_ids())  # reproducible results
    system.import_dataset(first, STAGE_NAMES[0])
    bar.update()
    bar.set_postfix_str("first model")
    system.train(data_prefix(STAGE_NAMES[0], "train"), data_prefix(STAGE_NAMES[0], "val"), when=SIMULATION_START)
    bar.update()
    return system, stream


def _first_data_set(options: ProductionOptions) -> Path:
    folder = options.workdir / "data"
    shutil.rmtree(folder, ignore_errors=True)
    return make_first_data_set(folder, seed=options.seed, size=options.size)
