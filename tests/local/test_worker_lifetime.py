"""A scaled-out step's host workers die with the runner, even when it is killed with kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.faults  # the fault campaign: docs/reliability.md

REPO = Path(__file__).resolve().parents[2]

# The parent: starts one worker, prints its pid, then waits to be killed.
PARENT = """
import functools, multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from driftloop.local.runner import HostWorkers, die_with_parent

if __name__ == "__main__":
    if sys.argv[1] == "host-workers":
        pool = HostWorkers().worker(2, 0)
    else:
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=functools.partial(die_with_parent, use_prctl=False),
                                   initargs=(os.getpid(),))
    print(pool.submit(os.getpid).result(), flush=True)
    time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Running, and not a zombie left for init to reap."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["host-workers", "polling-fallback"])
def test_a_worker_dies_when_its_runner_is_killed(tmp_path: Path, how: str) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, str(script), how], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(worker), f"worker {worker} outlived its killed parent ({how})"
    finally:
        parent.kill()
