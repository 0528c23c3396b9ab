"""Every command of the README's "The command line", run exactly as a user types it.

Each runs ``.venv/bin/driftloop`` (or ``python -m driftloop.components.<name>``) in a subprocess,
without the TF_* variables of the test process or the Makefile, on the small synthetic set and with
small training settings (``--settings FILE``), so the suite checks the commands and what they print,
not the model.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from driftloop.layout import SPLITS, STAGE_NAMES
from driftloop.pipelines import SERVE_PIPELINE, TRAIN_PIPELINE, Component

DRIFTLOOP = Path(sys.executable).parent / "driftloop"
# One epoch and cheap explanations: the commands' plumbing and output, not the model's quality.
FAST = {"settings": {"algorithm": {"epochs": 1}, "explainability": {"n_explain": 2, "nsamples": 8, "per_class": 1}}}
# What TensorFlow prints from C++ and Python when it reaches the console.
TF_NOISE = re.compile(r"cuda|cuDNN|cuBLAS|absl|NodeDef|oneDNN|tensorflow|retracing|^[EWI]\d{4} ", re.I | re.M)


def driftloop(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the command; its output as written (no newline translation, which would turn ``\\r`` into lines)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_")}
    done = subprocess.run([str(DRIFTLOOP), *map(str, args)], cwd=cwd, env=env, capture_output=True, timeout=600,
                          check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def lines(text: str) -> list[str]:
    """Console lines as a terminal leaves them: a progress bar's redraws (``\\r``) collapse into its last state."""
    shown = (line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    return [line for line in shown if line.strip()]


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder with the fast settings file in it."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "fast.json").write_text(json.dumps(FAST))
    return folder


@pytest.fixture(scope="module")
def data(user: Path) -> Path:
    done = driftloop("data", "make", "--out", "DATA", "--size", "small", cwd=user)
    assert done.returncode == 0, done.stderr
    assert lines(done.stdout) == [
        "wrote the synthetic small set (seed 0) to DATA: 7 stages x (train 180, val 36, test 48) images, "
        "6 classes, 0 skipped"
    ]
    assert done.stderr == ""
    return user / "DATA"


@pytest.fixture(scope="module")
def trained(user: Path, data: Path) -> subprocess.CompletedProcess[str]:
    return driftloop("train", "--data", "DATA/original", "--workdir", "W", "--settings", "fast.json", cwd=user)


def test_data_make_writes_the_seven_stages(data: Path) -> None:
    assert sorted(p.name for p in data.iterdir()) == sorted(STAGE_NAMES)
    assert len(list((data / "noisy" / "test").rglob("*.png"))) == 48


def test_data_stages_writes_the_stages_of_a_photo_folder_and_names_what_it_skipped(tmp_path: Path) -> None:
    for split in SPLITS:
        for label in ("cats", "dogs"):
            (tmp_path / "ORIG" / split / label).mkdir(parents=True)
            Image.new("RGB", (20, 16), (10, 20, 30)).save(tmp_path / "ORIG" / split / label / "photo.jpg")
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "ORIG" / "train" / "cats" / "passwd.jpg").symlink_to(tmp_path / "passwd")

    done = driftloop("data", "stages", "--src", "ORIG", "--out", "DATA", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert lines(done.stdout) == [
        "wrote the stages of ORIG to DATA: 7 stages x (train 2, val 2, test 2) images, 2 classes, 1 skipped"
    ]
    assert lines(done.stderr) == [
        "WARNING driftloop.local.data.stages: skipped 1 entry of ORIG (train/cats/passwd.jpg): every entry and its "
        "reason in DATA/manifest.csv"
    ]
    assert "outside_root" in (tmp_path / "DATA" / "manifest.csv").read_text()
    assert sorted(p.name for p in (tmp_path / "DATA" / "stage-3" / "train" / "cats").iterdir()) == ["photo.png"]


def test_verbose_shows_the_logs_on_the_console(tmp_path: Path) -> None:
    done = driftloop("data", "make", "--out", "DATA", "--size", "small", "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "INFO driftloop.local.data.synthetic: synthetic small set (seed 0) written to DATA" in done.stderr


@pytest.mark.slow
def test_train_prints_its_record_and_keeps_tensorflow_in_the_log(user: Path, trained: subprocess.CompletedProcess[str],
                                                                  ) -> None:
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr == ""
    [line] = lines(trained.stdout)
    assert re.fullmatch(r"train run train-\d{8}T\d{6}-[0-9a-f]{8} on original: val accuracy [\d.]+ -> promoted \(.*\)",
                        line)
    log = (user / "W" / "driftloop.log").read_text()
    assert "driftloop.components.algorithm INFO trained small_cnn on 180 images" in log
    assert TF_NOISE.search(log), "TensorFlow's own output belongs in the log"


@pytest.mark.slow
def test_serve_on_a_stage_test_set_runs_like_an_hourly_run(user: Path, trained: subprocess.CompletedProcess[str],
                                                          ) -> None:
    assert trained.returncode == 0, trained.stderr
    done = driftloop("serve", "--input", "DATA/stage-3/test", "--workdir", "W", "--settings", "fast.json", cwd=user)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    first = lines(done.stdout)[0]
    assert re.match(r"serve run serve-\d{8}T\d{6}-[0-9a-f]{8} on (\S+/)?data/stage-3/test: 48 images \(0 skipped\), ",
                    first), first


@pytest.mark.slow
def test_serve_on_two_local_instances_times_each_step_and_keeps_the_console_quiet(
    user: Path, trained: subprocess.CompletedProcess[str],
) -> None:
    assert trained.returncode == 0, trained.stderr
    (user / "two.json").write_text(json.dumps({**FAST, "instances": {"process": 2, "drift_features": 2, "predict": 2}}))
    done = driftloop("serve", "--input", "DATA/noisy/test", "--workdir", "W", "--settings", "two.json",
                     "--timings", "timings.json", cwd=user)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert re.match(r"serve run serve-\d{8}T\d{6}-[0-9a-f]{8} on (\S+/)?data/noisy/test: 48 images \(0 skipped\), ",
                    lines(done.stdout)[0])
    timings = json.loads((user / "timings.json").read_text())
    steps = [phase["name"] for phase in timings["phases"]]
    # Noisy drifts: the retrain's steps follow the serve run's.
    assert steps == [f"{p.name}/{step.name}" for p in (SERVE_PIPELINE, TRAIN_PIPELINE) for step in p.steps]
    assert all(phase["wall_s"] > 0 for phase in timings["phases"])
    assert timings["total"]["wall_s"] >= sum(phase["wall_s"] for phase in timings["phases"])


def test_serve_without_a_model_says_to_train_first(user: Path, data: Path) -> None:
    done = driftloop("serve", "--input", "DATA/stage-1/test", "--workdir", "EMPTY", cwd=user)
    assert done.returncode == 2
    assert "driftloop train --data DIR --workdir W" in done.stderr and "Traceback" not in done.stderr
    assert f"(the log: EMPTY{os.sep}driftloop.log)" in done.stderr


def test_a_bad_settings_file_is_a_clear_error(user: Path, data: Path) -> None:
    (user / "typo.json").write_text(json.dumps({"settings": {"algorithm": {"epoch": 3}}}))
    done = driftloop("train", "--data", "DATA/original", "--workdir", "W-typo", "--settings", "typo.json", cwd=user)
    assert done.returncode == 2
    assert "settings file typo.json" in done.stderr and "unknown setting(s) ['epoch']" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_simulate_shows_one_progress_bar_and_one_line_per_hourly_run(user: Path, data: Path) -> None:
    done = driftloop("simulate", "--data", "DATA", "--workdir", "SIM", "--settings", "fast.json", cwd=user)

    assert done.returncode == 0, done.stderr
    out = lines(done.stdout)
    assert out[0].split(" | ") == ["Time ", "Input test set", "Detector trained on", "Drift",
                                   "Retrained                  ", "Accuracy", "Estimated"]
    assert set(out[1]) == {"-", "+"}
    hours = [line.split(" | ")[0] for line in out[2:-1]]
    assert hours == [f"{hour}:05" for hour in range(11, 19)]
    assert out[-1] == "wrote SIM/simulation.json, accuracy_matrix.csv, report.html and timings.json"
    [bar] = lines(done.stderr)
    assert bar.startswith("simulation: 100%") and "11/11" in bar
    assert not TF_NOISE.search(done.stdout + done.stderr)
    assert json.loads((user / "SIM" / "simulation.json").read_text())["runs"][0]["test_set"] == "original"
    assert "driftloop.components.algorithm INFO trained small_cnn" in (user / "SIM" / "driftloop.log").read_text()


@pytest.mark.parametrize("component", list(Component))
def test_each_component_entrypoint_explains_itself(component: Component, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", f"driftloop.components.{component.value}", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m driftloop.components.{component.value}")
    modes = "{train,serve,merge}" if component is Component.DRIFT else "{train,serve}"
    assert modes in done.stdout and "--settings SETTINGS" in done.stdout
    assert "--input-" in done.stdout and "--output-" in done.stdout
