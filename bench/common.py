"""What every benchmark shares: the machine's description, timing, tables and the JSON result file.

The machine is shared and its load changes by the minute, so benchmarks report ratios measured in
one process (a step against its bare limit, interleaved, best of a few repeats) and record the load
average before and after, rather than trusting absolute seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_WORKDIR = Path(__file__).resolve().parent / ".work"


@dataclass(frozen=True)
class BenchOptions:
    """What a benchmark run is asked for: full or quick, where to cache data, the seed."""

    quick: bool
    workdir: Path
    seed: int = 0


@dataclass
class Result:
    """One benchmark's findings: ``data`` goes to JSON as is, ``tables`` are printed and documented."""

    data: dict[str, Any]
    tables: list[str] = field(default_factory=list)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_gb() -> float:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0.0
    return round(pages / 2**30, 1)


def source_hash() -> str:
    """sha256 over the driftloop package's source: which code a result (or a cached fixture) came from."""
    digest = hashlib.sha256()
    package = REPO_ROOT / "driftloop"
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def code_version() -> dict[str, Any]:
    """The commit, whether driftloop/ differs from it, and the hash of what actually ran."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"),
            "driftloop_uncommitted": bool(git("status", "--porcelain", "driftloop")),
            "driftloop_sha256": source_hash()}


def machine() -> dict[str, Any]:
    """Enough to tell two result files' machines apart."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores_available": cores,
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": {name: _package_version(name) for name in
                     ("tensorflow", "tf-keras", "alibi-detect", "numpy", "pillow", "scipy", "aws-cdk-lib")},
    }


def best_of(repeats: int, *functions: Callable[[], object]) -> list[float]:
    """Best wall time of each function over ``repeats`` rounds, run interleaved.

    Interleaving gives every function the same share of the machine's changing load; the best
    round is the least disturbed one.
    """
    best = [float("inf")] * len(functions)
    for _ in range(repeats):
        for i, function in enumerate(functions):
            started = time.perf_counter()
            function()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def table(header: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """A Markdown table (readable in a terminal too); floats keep three significant decimals."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, options: BenchOptions, result: Result, started: float, load_start: list[float],
                 out: Path) -> Path:
    """Write ``<out>/<name>.json`` (``<name>-quick.json`` in quick mode) with the run's context."""
    document = {
        "benchmark": name,
        "quick": options.quick,
        "seed": options.seed,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "load_average": {"start": load_start, "end": load_average()},
        "machine": machine(),
        "code": code_version(),
        "results": result.data,
        "tables": result.tables,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}{'-quick' if options.quick else ''}.json"
    path.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: object) -> object:
    """numpy scalars and arrays, paths: everything else is a bug worth a TypeError."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass(frozen=True)
class Measured:
    """A command's wall time and memory, read from /proc while it runs.

    ``process_peak_rss_mb`` is the largest VmHWM (a process's own peak RSS) of any process in the
    tree; ``tree_peak_rss_mb`` is the largest sum of VmRSS over the tree at one sample: what the
    machine had to hold at once. (``ru_maxrss`` of a child is no use here: Linux carries the
    parent's peak over ``exec``, and the benchmark process itself holds TensorFlow.)
    """

    wall_s: float
    process_peak_rss_mb: float
    tree_peak_rss_mb: float
    log: Path


SAMPLE_S = 0.05


def proc_status_kb(pid: int | str, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field in KiB (VmRSS, VmHWM); 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """``pid`` and all its living descendants."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def run_measured(command: Sequence[str], log: Path, *, cwd: Path = REPO_ROOT,
                 env: dict[str, str] | None = None, cores: Sequence[int] | None = None) -> Measured:
    """Run ``command`` to completion with its output in ``log``, sampling its memory; raise if it fails.

    ``cores``: the only CPU cores the command (and every process it starts) may run on.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    tree_peak_kb = 0
    process_peaks: dict[int, int] = {}
    done = threading.Event()
    started = time.perf_counter()
    with log.open("wb") as handle:
        process = subprocess.Popen(list(command), cwd=cwd, env={**os.environ, **(env or {})},
                                   stdout=handle, stderr=subprocess.STDOUT,
                                   preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)

        def sample() -> None:
            nonlocal tree_peak_kb
            while not done.wait(SAMPLE_S):
                pids = _tree(process.pid)
                tree_peak_kb = max(tree_peak_kb, sum(proc_status_kb(p, "VmRSS") for p in pids))
                for p in pids:
                    process_peaks[p] = max(process_peaks.get(p, 0), proc_status_kb(p, "VmHWM"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        returncode = process.wait()
        done.set()
        sampler.join()
    if returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(command)} exited {returncode}; log {log}:\n{tail}")
    return Measured(wall_s=round(time.perf_counter() - started, 2),
                    process_peak_rss_mb=round(max(process_peaks.values(), default=0) / 1024, 1),
                    tree_peak_rss_mb=round(tree_peak_kb / 1024, 1), log=log)


def last_json_line(path: Path) -> dict[str, Any]:
    """The JSON object a worker prints as its last line (after whatever TensorFlow logged)."""
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise ValueError(f"no JSON result line in {path}")
