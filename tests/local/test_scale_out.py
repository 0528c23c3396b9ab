"""A serve step that scales out: the local runner runs it on N worker processes, each one host with
its share of the batch, and the run's records, predictions and drift report are those of one host
(of a labelled batch, and of one with loose files beside its class folders)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from driftloop.config import ScaleOut, Settings
from driftloop.hosts import core_shares, is_part, shard_by_key
from driftloop.local.runner import HostWorkers, LocalSystem, ServeOutcome
from driftloop.pipelines import PREDICTIONS_FILE

pytestmark = pytest.mark.slow

START = datetime(2023, 2, 5, 10, 5, tzinfo=UTC)
TWO_HOSTS = ScaleOut(process=2, drift_features=2, predict=2)


def predictions(system: LocalSystem, outcome: ServeOutcome) -> tuple[list[str], list[list[str]]]:
    """The header and every row of every host's predictions file, and the files' names."""
    prefix = system.objects.key_from_uri(outcome.record.predictions)
    keys = [k for k in system.objects.list(prefix) if is_part(k.rsplit("/", 1)[1], PREDICTIONS_FILE)]
    rows = [row for key in keys for row in csv.reader(io.StringIO(system.objects.get_bytes(key).decode()))]
    return [k.rsplit("/", 1)[1] for k in keys], rows


@pytest.fixture(scope="module")
def trained(small_data: Path, fast_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> LocalSystem:
    """One model trained on the Original stage."""
    base = LocalSystem(tmp_path_factory.mktemp("trained"), settings=fast_settings)
    keys = base.import_dataset(small_data / "original", "original")
    base.train(keys["train"], keys["val"], when=START)
    return base


def serve_on_one_and_two_hosts(base: LocalSystem, batch: Path, after: timedelta, *, retrain: bool = True
                               ) -> dict[int, tuple[LocalSystem, ServeOutcome]]:
    """``batch`` served with ``base``'s model on one host and on two, each its own run."""
    results = {}
    for count, instances in ((1, ScaleOut()), (2, TWO_HOSTS)):
        system = LocalSystem(base.workdir, settings=replace(base.settings, instances=instances),
                             objects=base.objects, params=base.params)
        results[count] = system, system.serve(batch, when=START + after + timedelta(hours=count), retrain=retrain)
    return results


@pytest.fixture(scope="module")
def served(small_data: Path, trained: LocalSystem) -> dict[int, tuple[LocalSystem, ServeOutcome]]:
    """The Noisy test set served on one host and on two."""
    return serve_on_one_and_two_hosts(trained, small_data / "noisy" / "test", timedelta(0))


@pytest.fixture(scope="module")
def mixed(small_data: Path, trained: LocalSystem, tmp_path_factory: pytest.TempPathFactory
          ) -> dict[int, tuple[LocalSystem, ServeOutcome]]:
    """A labelled batch with loose files beside its class folders (one image of each class in its
    folder, another loose), served on one host and on two."""
    batch = tmp_path_factory.mktemp("mixed")
    for folder in sorted(p for p in (small_data / "original" / "test").iterdir() if p.is_dir()):
        first, second = sorted(folder.iterdir())[:2]
        (batch / folder.name).mkdir()
        shutil.copy(first, batch / folder.name / first.name)
        shutil.copy(second, batch / f"{folder.name}-loose{second.suffix}")
    # "<class>-loose" sorts just before "<class>/": dealt round-robin, the first host gets only loose files.
    files = sorted(p.relative_to(batch).as_posix() for p in batch.rglob("*") if p.is_file())
    assert all("/" not in f for f in shard_by_key(files, 2)[0]) and all("/" in f for f in shard_by_key(files, 2)[1])
    return serve_on_one_and_two_hosts(trained, batch, timedelta(days=1), retrain=False)


def test_two_hosts_write_their_own_parts(served: dict[int, tuple[LocalSystem, ServeOutcome]]) -> None:
    assert predictions(*served[1])[0] == [PREDICTIONS_FILE]
    assert predictions(*served[2])[0] == ["predictions-algo-1.csv", "predictions-algo-2.csv"]


def test_every_image_is_predicted_once_as_on_one_host(served: dict[int, tuple[LocalSystem, ServeOutcome]]) -> None:
    _, one = predictions(*served[1])
    _, two = predictions(*served[2])
    header, rows = two[0], [row for row in two if row != two[0]]
    assert len({row[0] for row in rows}) == len(rows) == served[2][1].record.n_images > 0
    assert header == one[0] and sorted(rows) == sorted(one[1:])


def test_the_drift_report_and_the_record_do_not_depend_on_the_hosts(
    served: dict[int, tuple[LocalSystem, ServeOutcome]],
) -> None:
    (_, one), (_, two) = served[1], served[2]
    assert two.report == one.report and two.report.p_values and two.report.is_drift
    assert two.evaluation is not None and one.evaluation is not None
    assert two.evaluation.confusion_matrix == one.evaluation.confusion_matrix
    assert two.evaluation.accuracy == one.evaluation.accuracy
    assert two.evaluation.loss == pytest.approx(one.evaluation.loss, rel=1e-12)
    # Each of these names its own run (the label request, its batch: the folder imported under the run id).
    skip = {"run_id", "time", "input", "drift_report", "predictions", "explanations", "label_request"}
    assert {k: v for k, v in two.record.to_dict().items() if k not in skip} == \
        {k: v for k, v in one.record.to_dict().items() if k not in skip}


def test_the_same_images_are_explained_on_two_hosts(served: dict[int, tuple[LocalSystem, ServeOutcome]]) -> None:
    def explained(system: LocalSystem, outcome: ServeOutcome) -> list[tuple[str, str]]:
        key = f"{system.objects.key_from_uri(outcome.record.explanations)}/explanations.json"
        return [(e["file"], e["predicted_class"]) for e in json.loads(system.objects.get_bytes(key))["explained"]]

    assert explained(*served[2]) == explained(*served[1]) and len(explained(*served[1])) == 8


def test_a_batch_with_loose_files_gives_the_same_predictions_and_evaluation_on_two_hosts(
    mixed: dict[int, tuple[LocalSystem, ServeOutcome]],
) -> None:
    """Loose files are predicted as unlabelled images and left out of the evaluation on any number of hosts."""
    def predicted(system: LocalSystem, outcome: ServeOutcome) -> dict[str, str]:
        return {row[0]: row[1] for row in predictions(system, outcome)[1] if row[0] != "file"}

    (_, one), (_, two) = mixed[1], mixed[2]
    assert predicted(*mixed[2]) == predicted(*mixed[1])
    assert len(predicted(*mixed[1])) == 12 and sum("/" not in f for f in predicted(*mixed[1])) == 6
    assert one.evaluation is not None and two.evaluation is not None and one.evaluation.n == 6
    assert (two.evaluation.n, two.evaluation.accuracy, two.evaluation.confusion_matrix) == \
        (one.evaluation.n, one.evaluation.accuracy, one.evaluation.confusion_matrix)
    assert two.evaluation.loss == pytest.approx(one.evaluation.loss, rel=1e-12)
    assert two.record.n_images == one.record.n_images == 12 and two.report == one.report


def test_each_local_host_runs_on_its_own_cores_in_one_worker_for_the_whole_run() -> None:
    with HostWorkers() as workers:
        seen = [workers.worker(2, i).submit(os.sched_getaffinity, 0).result() for i in (0, 1)]
        assert seen == [set(share) for share in core_shares(2)]
        first = workers.worker(2, 0).submit(os.getpid).result()
        assert workers.worker(2, 0).submit(os.getpid).result() == first != os.getpid()
