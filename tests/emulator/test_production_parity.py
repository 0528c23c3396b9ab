"""Production mode, one loop on two backends: uploaded batches served once, labels that come back late,
and a retrain on them, with the same records on the local runner and the emulated AWS deployment.

Deployed with ``simulation=false``: every serve run here is started as the schedule starts it, with
``{}``, so the serve state machine's claim step picks the batch (locally ``LocalSystem.serve_next``).

1. train on Original;
2. batch A (Original's test images, ``batches/A/`` + ``_READY``) is served: no drift;
3. batch B (Noisy's test images) is served: drift, no labels yet, so a label request;
4. a scheduled run with no new batch: nothing to serve, no SageMaker job;
5. labels come back for A (a CSV) and B (a Ground Truth output manifest);
6. batch C (Noisy's validation images) is served: the run joins A's and B's labels, and the retrain
   it starts trains on ``data/retrain-<run id>/``, whose lineage names A and B and their label files.

After each step the records (``train/latest``, ``train/last-attempt``, ``serve/latest``) and the
objects the control steps wrote (ledger entries, joins, lineage, run records) are equal on both
backends, field by field, but for what ``support.parity`` maps (store root, times, retrain ids).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.deployed_system import DeployedSystem
from support.parity import Backends, serve_next_on_both, train_both

from driftloop.config import Settings
from driftloop.layout import batch_marker, labelled_entry, run_record_key, served_entry
from driftloop.local.runner import LocalSystem

from .conftest import TEST_CONTEXT

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

# Every step on one instance (one job a run). The decision: drift or measured harm, on few labels,
# so that the small data set's batches (48, 48 and 36 images) are enough to judge and to retrain on.
DECISION: dict[str, Any] = {"production_rule": "drift_or_measured_harm", "min_labelled_to_judge": 10,
                            "min_new_labels": 40, "label_request_size": 20}
DEPLOYMENT_CONTEXT: dict[str, Any] = {
    "driftloop": {
        "simulation": False,
        "settings": {**TEST_CONTEXT["driftloop"]["settings"], "algorithm": {"epochs": 15, "patience": 4}},
        "decision": DECISION,
    }
}

START = datetime(2023, 2, 5, 10, 5, tzinfo=UTC)
BATCHES = {"A": ("original", "test"), "B": ("noisy", "test"), "C": ("noisy", "val")}
LABEL_FILES = {"A": "labels/A/labels.csv", "B": "labels/B/output.manifest"}


def upload_batch(backends: Backends, small_data: Path, batch_id: str) -> list[str]:
    """The batch's images (class folders kept) then its marker, on both backends; returns the image ids."""
    stage, split = BATCHES[batch_id]
    folder = small_data / stage / split
    backends.local.objects.upload_dir(folder, f"batches/{batch_id}")
    backends.aws.upload_folder(folder, f"batches/{batch_id}")
    for put in (lambda key: backends.local.objects.put_bytes(key, b""),
                lambda key: backends.aws.client("s3").put_object(Bucket=backends.aws.bucket, Key=key, Body=b"")):
        put(batch_marker(batch_id))
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def put_labels(backends: Backends, images: dict[str, list[str]]) -> None:
    """A's labels as a CSV, B's as a Ground Truth image-classification output manifest (each backend's
    manifest names its own images' URIs); the label of an image is its class folder."""
    csv = "image,label\n" + "".join(f"{image},{image.split('/')[0]}\n" for image in images["A"])

    def manifest(uri: Any) -> str:
        lines = (json.dumps({"source-ref": uri(f"batches/B/{image}"), "kind": 0,
                             "kind-metadata": {"class-name": image.split("/")[0], "confidence": 0.9,
                                               "type": "groundtruth/image-classification", "human-annotated": "yes"}})
                 for image in images["B"])
        return "\n".join(lines) + "\n"

    s3 = backends.aws.client("s3")
    for batch_id, local_body, aws_body in (("A", csv, csv),
                                           ("B", manifest(backends.local.objects.uri), manifest(backends.aws.uri))):
        backends.local.objects.put_bytes(LABEL_FILES[batch_id], local_body.encode())
        s3.put_object(Bucket=backends.aws.bucket, Key=LABEL_FILES[batch_id], Body=aws_body.encode())


@pytest.fixture(scope="module")
def backends(
    deployed: DeployedSystem, small_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backends]:
    context = DEPLOYMENT_CONTEXT["driftloop"]
    local = LocalSystem(tmp_path_factory.mktemp("local"),
                        settings=Settings.from_overrides(context["settings"], context["decision"], {}))
    local.import_dataset(small_data / "original", "original")
    deployed.upload_folder(small_data / "original", "data/original")
    yield Backends(local=local, aws=deployed)


@pytest.fixture(scope="module")
def images(backends: Backends, small_data: Path) -> dict[str, list[str]]:
    """Each batch's image ids: A is uploaded first; B is added when it is uploaded."""
    return {"A": upload_batch(backends, small_data, "A")}


@pytest.fixture(scope="module")
def served_a(backends: Backends, images: dict[str, list[str]]) -> dict[str, Any]:
    train_both(backends, {"train_data": "data/original/train", "val_data": "data/original/val"}, START)
    backends.assert_same_records()
    outcome = serve_next_on_both(backends, START + timedelta(hours=1))
    records = backends.assert_same_records()
    backends.assert_same_objects(served_entry("A"), run_record_key("serve", outcome.record.run_id))
    return records


@pytest.fixture(scope="module")
def served_b(backends: Backends, small_data: Path, images: dict[str, list[str]], served_a: dict[str, Any]
             ) -> dict[str, Any]:
    images["B"] = upload_batch(backends, small_data, "B")
    outcome = serve_next_on_both(backends, START + timedelta(hours=2))
    records = backends.assert_same_records()
    backends.assert_same_objects(served_entry("B"), run_record_key("serve", outcome.record.run_id))
    return records


@pytest.fixture(scope="module")
def nothing_to_serve(backends: Backends, served_b: dict[str, Any]) -> dict[str, Any]:
    """A scheduled run after A and B: on AWS it ends at the claim; returns its output and the jobs it started."""
    assert backends.local.serve_next(when=START + timedelta(hours=3)) is None
    jobs = len(backends.aws.emulation.jobs)
    description = backends.aws.wait(backends.aws.start(backends.aws.serve_machine, "serve-nothing-new", {}))
    assert description["status"] == "SUCCEEDED", description
    return {"output": json.loads(description["output"]), "jobs": len(backends.aws.emulation.jobs) - jobs}


@pytest.fixture(scope="module")
def retrained(backends: Backends, small_data: Path, images: dict[str, list[str]],
              nothing_to_serve: dict[str, Any]) -> dict[str, Any]:
    put_labels(backends, images)
    upload_batch(backends, small_data, "C")
    outcome = serve_next_on_both(backends, START + timedelta(hours=4))
    records = backends.assert_same_records()
    serve = records["serve/latest"]
    assert serve["retrain"], serve["retrain_reason"]
    lineage = f"data/retrain-{serve['run_id']}/lineage.json"
    attempt = records["train/last-attempt"]
    objects = backends.assert_same_objects(
        labelled_entry("A"), labelled_entry("B"), lineage, served_entry("C"),
        run_record_key("serve", outcome.record.run_id), run_record_key("train", attempt["run_id"]))
    return {"records": records, "objects": objects, "lineage": lineage}


def test_a_scheduled_run_serves_the_oldest_complete_batch_alike(served_a: dict[str, Any]) -> None:
    record = served_a["serve/latest"]
    assert record["input"] == "batches/A" and record["stage"] is None
    assert record["n_images"] == 48 and record["model_run_id"] == served_a["train/latest"]["run_id"]


def test_a_drifting_batch_without_labels_asks_for_labels_alike(served_b: dict[str, Any]) -> None:
    record = served_b["serve/latest"]
    assert (record["input"], record["is_drift"], record["retrain"]) == ("batches/B", True, False)
    assert "waiting for labels: 0 of 40" in record["retrain_reason"]
    assert record["label_request"] == "label-requests/B/manifest.jsonl"
    assert record["label_request_images"] == DECISION["label_request_size"]


def test_a_scheduled_run_with_no_new_batch_starts_no_job(nothing_to_serve: dict[str, Any]) -> None:
    assert nothing_to_serve["jobs"] == 0
    assert nothing_to_serve["output"]["batch"] is None
    assert nothing_to_serve["output"]["summary"].startswith("nothing to serve")


def test_labels_of_both_formats_are_joined_alike(retrained: dict[str, Any]) -> None:
    for batch_id, n_images in (("A", 48), ("B", 48)):
        joined = retrained["objects"][labelled_entry(batch_id)]
        labelled = joined["labelled"]
        assert labelled["label_files"] == [LABEL_FILES[batch_id]]
        assert (labelled["n_labelled"], sum(labelled["bad_counts"].values())) == (n_images, 0)
        assert labelled["accuracy"] is not None


def test_the_retrain_trains_on_the_labelled_batches_and_names_them_alike(retrained: dict[str, Any]) -> None:
    serve = retrained["records"]["serve/latest"]
    lineage = retrained["objects"][retrained["lineage"]]
    assert lineage["data_sets"] == ["data/original/train"]
    assert lineage["batches"] == ["A", "B"] and lineage["label_files"] == sorted(LABEL_FILES.values())
    assert lineage["n_labelled_train"] + lineage["n_labelled_val"] == 96
    attempt = retrained["records"]["train/last-attempt"]
    assert attempt["run_id"] == serve["retrain_run_id"]
    assert attempt["train_data"] == f"data/retrain-{serve['run_id']}/train"
    assert attempt["lineage"] == retrained["lineage"]
