"""``driftloop status``: a work folder's records and a deployment's (moto's CloudFormation and SSM).

The records are written as the runs write them (``TrainRecord``/``ServeRecord`` put into the
parameter store), so no model is trained; the command runs as a user types it, in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from driftloop.drift_report import EstimatedAccuracy
from driftloop.errors import UserError
from driftloop.layout import ParameterNames
from driftloop.local.status import (
    DEFAULT_STACK,
    Hints,
    StatusError,
    aws_source,
    local_source,
    read_status,
    status_lines,
)
from driftloop.records import NO_RECORD, ServeRecord, TrainRecord
from driftloop.stores.params import ParameterStore, SqliteParameterStore, SsmParameterStore

DRIFTLOOP = Path(sys.executable).parent / "driftloop"
REPO_ROOT = Path(__file__).resolve().parents[2]
STACK = "DlStatusTest"
AWS_NAMES = ParameterNames("/dl-status")


def train(run_id: str, *, stage: str, accuracy: float, champion: float | None, promoted: bool,
          champion_run_id: str | None) -> TrainRecord:
    hour = run_id[-6:-4]
    reason = ("no current model: the first model is promoted" if champion is None
              else f"challenger {accuracy:.3f} {'>=' if promoted else '<'} champion {champion:.3f} on the new "
                   f"validation set{'' if promoted else ': kept champion'}")
    return TrainRecord(
        run_id=run_id, time=f"2026-12-01T{hour}:05:00+00:00", train_data=f"data/{stage}/train",
        val_data=f"data/{stage}/val", stage=stage, model=f"runs/train/{run_id}/model",
        detector=f"runs/train/{run_id}/detector", explainer=f"runs/train/{run_id}/explainer",
        val_accuracy=accuracy, val_loss=0.5, champion_val_accuracy=champion, promoted=promoted, reason=reason,
        champion_run_id=champion_run_id,
    )


def estimated(right: int, lower: float, upper: float) -> EstimatedAccuracy:
    return EstimatedAccuracy(method="atc_ne", estimate=right / 42, lower=lower, upper=upper, confidence=0.95, n=42,
                             validation_accuracy=1.0, drop_points=100 * (1 - right / 42))


def serve(hour: int, stage: str | None, *, drift: bool, statistic: float, retrain_run_id: str | None = None,
          reason: str | None = None, n_images: int = 42, n_skipped: int = 0,
          estimate: EstimatedAccuracy | None = None) -> ServeRecord:
    run_id = f"serve-20261201T{hour:02d}0500"
    batch = f"data/{stage}/test" if stage else f"batches/{run_id}"
    return ServeRecord(
        run_id=run_id, time=f"2026-12-01T{hour:02d}:05:00+00:00", input=batch, stage=stage,
        model_run_id="train-20261201T100500", reference_trained_on="data/original/train",
        drift_report=f"runs/serve/{run_id}/drift_report", predictions=f"runs/serve/{run_id}/predictions",
        explanations=f"runs/serve/{run_id}/explanations", is_drift=drift, statistic=statistic, threshold=0.0071,
        n_images=n_images, n_skipped=n_skipped, retrain=retrain_run_id is not None,
        retrain_reason=reason or (f"drift on {stage}: smallest p-value {statistic:.3g} < threshold 0.0071" if drift
                                  else f"no drift: smallest p-value {statistic:.3g} >= threshold 0.0071"),
        retrain_run_id=retrain_run_id, runs_since_retrain=None, accuracy_estimate=estimate,
    )


FIRST = train("train-20261201T100500", stage="original", accuracy=0.972, champion=None, promoted=True,
              champion_run_id=None)
KEPT = train("train-20261201T150500", stage="stage-4", accuracy=0.611, champion=0.944, promoted=False,
             champion_run_id=FIRST.run_id)
SERVED = [
    serve(11, "original", drift=False, statistic=0.41),
    serve(12, "stage-1", drift=False, statistic=0.043, estimate=estimated(40, 0.8512, 0.9897)),
    serve(13, "stage-2", drift=True, statistic=0.0049, reason="drift, but in cool-down: 0 run(s) since the last "
                                                              "retrain, policy waits 1"),
    serve(14, None, drift=True, statistic=2e-5, n_images=40, n_skipped=2,
          reason="drift, but the batch is not a stage's data set (data/<stage>/test), so there is no matching "
                 "train and validation data: upload it and start the train pipeline"),
    serve(15, "stage-4", drift=True, statistic=5.5e-08, retrain_run_id=KEPT.run_id,
          estimate=estimated(30, 0.5806, 0.8341)),
    serve(16, "stage-5", drift=False, statistic=0.2, n_images=12,
          reason="batch of 12 images is below the minimum of 20: too small to judge"),
]
# What `driftloop status` prints after the records above (the first line says where they are).
EXPECTED = [
    "current model: train-20261201T100500 on original, val accuracy 0.972, trained 2026-12-01 10:05",
    "last train attempt: train-20261201T150500 on stage-4, 2026-12-01 15:05: NOT promoted, kept the champion "
    "(challenger 0.611 < champion 0.944 of train-20261201T100500 on the new validation set)",
    "last 5 serve runs (oldest first):",
    "  2026-12-01 12:05  stage-1    42 images (0 skipped)  drift: no  (0.043 >= 0.0071)  est. 95.2% [85.1, 99.0]  "
    "-> no retrain (no drift: smallest p-value 0.043 >= threshold 0.0071)",
    "  2026-12-01 13:05  stage-2    42 images (0 skipped)  drift: YES (0.0049 < 0.0071)  "
    "-> no retrain (drift, but in cool-down: 0 run(s) since the last retrain, policy waits 1)",
    "  2026-12-01 14:05  batches/serve-20261201T140500   40 images (2 skipped)  drift: YES (2e-05 < 0.0071)  "
    "-> no retrain (drift, but the batch is not a stage's data set (data/<stage>/test), so there is no matching "
    "train and validation data: upload it and start the train pipeline)",
    "  2026-12-01 15:05  stage-4    42 images (0 skipped)  drift: YES (5.5e-08 < 0.0071)  est. 71.4% [58.1, 83.4]  "
    "-> retrain: train-20261201T150500",
    "  2026-12-01 16:05  stage-5    12 images (0 skipped)  drift: no  (0.2 >= 0.0071)  "
    "-> no retrain (batch of 12 images is below the minimum of 20: too small to judge)",
]


def write_loop(params: ParameterStore, names: ParameterNames) -> None:
    """The records of a train run, six serve runs and a retrain that was not promoted, in their order."""
    params.put(names.train_last_attempt, FIRST.to_json())
    params.put(names.train_latest, FIRST.to_json())
    for record in SERVED:
        if record.retrain_run_id == KEPT.run_id:
            params.put(names.train_last_attempt, KEPT.to_json())
        params.put(names.serve_latest, record.to_json())


def driftloop(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DRIFTLOOP), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "W"
    write_loop(SqliteParameterStore(folder / "parameters.sqlite"), ParameterNames())
    return folder


# ------------------------------------------------------------------------------------------ local
def test_status_of_a_work_folder_shows_the_model_the_last_attempt_and_the_last_serve_runs(workdir: Path) -> None:
    assert read_status(local_source(workdir)) == [f"work folder {workdir}", *EXPECTED]


def test_the_serve_history_is_cut_to_the_runs_asked_for_and_the_sentinel_skipped(tmp_path: Path) -> None:
    params, names = SqliteParameterStore(tmp_path / "p.sqlite"), ParameterNames()
    params.put(names.serve_latest, NO_RECORD)  # as a deployment's parameter starts
    write_loop(params, names)
    hints = Hints(train="T", serve="S", approve="A {run_id}")
    assert status_lines(params, names, hints, runs=2) == [*EXPECTED[:2], "last 2 serve runs (oldest first):",
                                                          *EXPECTED[-2:]]
    assert status_lines(params, names, hints, runs=20)[2] == "last 6 serve runs (oldest first):"
    assert status_lines(params, names, hints, runs=0) == EXPECTED[:2]


def test_a_retrain_started_by_a_harm_rule_names_the_rule() -> None:
    from dataclasses import replace

    from driftloop.local.status import serve_line

    record = replace(serve(17, "noisy", drift=False, statistic=0.3, retrain_run_id="train-20261201T170500",
                           estimate=estimated(20, 0.3403, 0.6597)), rule_fired="harm")
    assert serve_line(record) == ("  2026-12-01 17:05  noisy      42 images (0 skipped)  drift: no  (0.3 >= 0.0071)  "
                                  "est. 47.6% [34.0, 66.0]  -> retrain (harm): train-20261201T170500")


def test_a_promoted_first_model_and_no_serve_run_yet_say_what_to_run_next(tmp_path: Path) -> None:
    params, names = SqliteParameterStore(tmp_path / "W" / "parameters.sqlite"), ParameterNames()
    assert params.get_optional(names.train_latest) is None  # the store exists (as after a failed first run), empty
    hints = local_source(tmp_path / "W").hints
    assert status_lines(params, names, hints) == [
        f"no train run has finished yet: run `driftloop train --data DIR --workdir {tmp_path / 'W'}` first"
    ]
    params.put(names.train_last_attempt, FIRST.to_json())
    params.put(names.train_latest, FIRST.to_json())
    assert status_lines(params, names, hints) == [
        EXPECTED[0],
        "last train attempt: train-20261201T100500 (the current model) on original, 2026-12-01 10:05: promoted "
        "(no current model: the first model is promoted)",
        f"no serve run has finished yet: run `driftloop serve --input DIR --workdir {tmp_path / 'W'}` first",
    ]


def test_driftloop_status_as_a_user_types_it(workdir: Path) -> None:
    done = driftloop("status", "--workdir", "W", cwd=workdir.parent)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["work folder W", *EXPECTED]
    assert sorted(p.name for p in workdir.iterdir()) == ["parameters.sqlite"]  # it only reads: no log written

    done = driftloop("status", "--workdir", "W", "--runs", "1", cwd=workdir.parent)
    assert done.stdout.splitlines() == ["work folder W", *EXPECTED[:2], "last 1 serve run (oldest first):",
                                        EXPECTED[-1]]


def test_a_simulations_work_folder_is_read_through_its_state_folder(tmp_path: Path) -> None:
    write_loop(SqliteParameterStore(tmp_path / "runs" / "state" / "parameters.sqlite"), ParameterNames())
    done = driftloop("status", "--workdir", "runs", "--runs", "1", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["work folder runs/state", *EXPECTED[:2], "last 1 serve run (oldest first):",
                                        EXPECTED[-1]]


def test_driftloop_status_of_a_folder_without_state_is_a_clear_error_and_makes_no_folder(tmp_path: Path) -> None:
    done = driftloop("status", "--workdir", "typo", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == ("driftloop: no driftloop state in typo (typo/parameters.sqlite does not exist): "
                           "run `driftloop train --data DIR --workdir typo` first\n")
    assert not (tmp_path / "typo").exists()
    done = driftloop("status", "--workdir", "typo", "--stack", "X", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "driftloop: --stack and --region go with --aws\n")


def test_the_default_stack_is_the_deployments_default() -> None:
    sys.path.insert(0, str(REPO_ROOT))
    try:
        from stacks.config import DeploymentConfig
    finally:
        sys.path.remove(str(REPO_ROOT))
    assert DeploymentConfig.stack_name == DEFAULT_STACK


# -------------------------------------------------------------------------------------------- AWS
def template() -> str:
    """A minimal driftloop-like stack: the record parameters at their sentinel, and the outputs status reads."""
    resources = {
        f"Record{i}": {"Type": "AWS::SSM::Parameter",
                       "Properties": {"Name": name, "Type": "String", "Value": NO_RECORD}}
        for i, name in enumerate((AWS_NAMES.train_latest, AWS_NAMES.train_last_attempt, AWS_NAMES.serve_latest))
    }
    outputs = {"ParameterPrefix": {"Value": AWS_NAMES.prefix}, "BucketName": {"Value": "dl-status-bucket"}}
    return json.dumps({"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources, "Outputs": outputs})


@pytest.fixture
def stack(moto_env: Any, moto_reset: Any) -> SsmParameterStore:
    moto_env.client("cloudformation").create_stack(StackName=STACK, TemplateBody=template())
    return SsmParameterStore(moto_env.client("ssm"))


@pytest.mark.emulator
def test_status_of_a_deployment_reads_the_stacks_parameters(stack: SsmParameterStore) -> None:
    where = f"stack {STACK} (us-east-1): parameters /dl-status/…, bucket dl-status-bucket"
    assert read_status(aws_source(STACK)) == [
        where, "no train run has finished yet: start the train pipeline first (the stack's TrainStateMachineArn; "
               "README, \"Train\")"]
    write_loop(stack, AWS_NAMES)
    assert read_status(aws_source(STACK, "us-east-1")) == [where, *EXPECTED]


@pytest.mark.emulator
def test_driftloop_status_aws_as_a_user_types_it(stack: SsmParameterStore, moto_env: Any, tmp_path: Path) -> None:
    write_loop(stack, AWS_NAMES)
    done = driftloop("status", "--aws", "--stack", STACK, "--runs", "2", cwd=tmp_path, env=dict(os.environ))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[1:] == [*EXPECTED[:2], "last 2 serve runs (oldest first):", *EXPECTED[-2:]]

    done = driftloop("status", "--aws", cwd=tmp_path, env=dict(os.environ))  # the default stack: not deployed here
    assert done.returncode == 2
    assert done.stderr == ("driftloop: no stack Driftloop in us-east-1: deploy it (npx cdk deploy) or name it with "
                           "--stack NAME (and --region R)\n")


@pytest.mark.emulator
def test_no_stack_and_a_stack_without_the_output_are_clear_errors(moto_env: Any, moto_reset: Any) -> None:
    with pytest.raises(StatusError, match="no stack Nope in us-east-1"):
        aws_source("Nope")
    body = json.dumps({"Resources": {"P": {"Type": "AWS::SSM::Parameter",
                                           "Properties": {"Name": "/other/p", "Type": "String", "Value": "1"}}}})
    moto_env.client("cloudformation").create_stack(StackName="Other", TemplateBody=body)
    with pytest.raises(StatusError, match="stack Other has no ParameterPrefix output"):
        aws_source("Other")


def test_no_credentials_is_a_clear_error(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true",
               AWS_ENDPOINT_URL="http://127.0.0.1:9")  # nothing leaves the machine
    done = driftloop("status", "--aws", cwd=tmp_path, env=env)
    assert (done.returncode, done.stderr) == (
        2, "driftloop: no AWS region: pass --region R or set AWS_DEFAULT_REGION\n")
    for region in (["--region", "eu-west-1"], []):  # AWS_REGION counts too, as in the other AWS SDKs
        done = driftloop("status", "--aws", *region, cwd=tmp_path, env={**env, "AWS_REGION": "us-east-1"})
        assert done.returncode == 2
        assert done.stderr.startswith("driftloop: no AWS credentials found"), done.stderr


def test_a_damaged_old_serve_record_does_not_hide_the_newer_runs(workdir: Path) -> None:
    params, names = SqliteParameterStore(workdir / "parameters.sqlite"), ParameterNames()
    params.put(names.serve_latest, "{garbage")  # an old version that is not a record
    params.put(names.serve_latest, SERVED[-1].to_json())
    assert read_status(local_source(workdir), runs=1)[-1] == EXPECTED[-1]
    with pytest.raises(UserError, match=r"^version 7 of parameter /driftloop/serve/latest in SQLite file .* is not "
                                        r"a ServeRecord .*: a run of the serve pipeline writes a new version"):
        read_status(local_source(workdir), runs=2)


def test_status_only_reads_a_parameter_file_even_an_empty_one(tmp_path: Path) -> None:
    (tmp_path / "W").mkdir()
    empty = tmp_path / "W" / "parameters.sqlite"
    empty.touch()
    assert read_status(local_source(tmp_path / "W")) == [
        f"work folder {tmp_path / 'W'}",
        f"no train run has finished yet: run `driftloop train --data DIR --workdir {tmp_path / 'W'}` first"]
    assert empty.stat().st_size == 0 and sorted(p.name for p in empty.parent.iterdir()) == ["parameters.sqlite"]
