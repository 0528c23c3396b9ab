"""``driftloop models``, ``approve`` and ``reject`` on a work folder, run as a user types them.

The train runs are written as ``record_train`` writes them (their jobs' outputs stood in for), so
no model is trained; the commands run in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.train_runs import recorded_train_run

from driftloop.local.runner import LocalSystem

DRIFTLOOP = Path(sys.executable).parent / "driftloop"


def driftloop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DRIFTLOOP), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_models_lists_the_versions_status_shows_the_pending_one_and_approve_and_reject_act(tmp_path: Path) -> None:
    stores = LocalSystem(tmp_path / "W").stores
    recorded_train_run(stores, "train-10", 10, 0.8, stage="original", champion=0.8, approval="automatic")
    recorded_train_run(stores, "train-11", 11, 0.9, stage="original", champion=0.8, approval="manual")
    recorded_train_run(stores, "train-12", 12, 0.95, stage="original", champion=0.8, approval="manual")

    status = driftloop("status", "--workdir", "W", "--runs", "0", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[2:] == [
        "last train attempt: train-12 on original, 2026-12-01 12:00: PENDING APPROVAL, the current model serves "
        "until then (challenger 0.950 >= champion 0.800 of train-10 on the new validation set)",
        "  approve it: `driftloop approve train-12 --workdir W`, or reject it: "
        "`driftloop reject train-12 --workdir W --reason TEXT`",
    ]

    refused = driftloop("approve", "train-11", "--workdir", "W", cwd=tmp_path)
    assert refused.returncode == 2
    assert "v2 of train run train-11 is older than v3 of train run train-12 (PendingManualApproval)" in refused.stderr

    rejected = driftloop("reject", "train-12", "--workdir", "W", "--reason", "labels were wrong", cwd=tmp_path)
    assert rejected.returncode == 0, rejected.stderr
    assert rejected.stdout == ("v3 train-12: Rejected, val accuracy 0.950, champion 0.800 (labels were wrong)\n")
    approved = driftloop("approve", "train-11", "--workdir", "W", cwd=tmp_path)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith("train run train-11 on original: val accuracy 0.900, champion 0.800 -> promoted")

    models = driftloop("models", "--workdir", "W", cwd=tmp_path)
    assert models.returncode == 0, models.stderr
    assert models.stdout.splitlines() == [
        f"model package group driftloop in SQLite file {Path('W') / 'parameters.sqlite'}:",
        "    v1 train-10: Approved, val accuracy 0.800 (no current model: the first model is promoted)",
        "  * v2 train-11: Approved, val accuracy 0.900, champion 0.800 (approved by hand)",
        "    v3 train-12: Rejected, val accuracy 0.950, champion 0.800 (labels were wrong)",
        "(* serves)",
    ]
    assert not (tmp_path / "W" / "driftloop.log").read_text().count("driftloop models")
