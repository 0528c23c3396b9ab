"""Where a run's time goes: wall and CPU seconds per phase, as the run itself measures them.

CPU seconds are the process's own (every thread) plus those of its finished child processes (the
data generation's pool), so a phase that keeps both cores busy shows about twice its wall time.
The numbers change from run to run: they go to their own file (``timings.json``), never into the
results a run must reproduce byte for byte.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children, user and system."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass(frozen=True)
class Timing:
    name: str
    wall_s: float
    cpu_s: float
    # The run a pipeline step belongs to; "" for a phase of the whole job.
    within: str = ""
    # What the phase's block noted while it ran (e.g. the run ids of a serve run and its retrain).
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class Stopwatch:
    """Collects ``Timing`` records; ``phase`` measures a block."""

    records: list[Timing] = field(default_factory=list)
    started_wall: float = field(default_factory=time.perf_counter)
    started_cpu: float = field(default_factory=cpu_seconds)

    @contextmanager
    def phase(self, name: str, within: str = "") -> Iterator[dict[str, str]]:
        """Time the block; what it puts in the yielded dict is kept as the phase's ``notes``."""
        wall, cpu, notes = time.perf_counter(), cpu_seconds(), dict[str, str]()
        try:
            yield notes
        finally:
            self.records.append(Timing(name, round(time.perf_counter() - wall, 3), round(cpu_seconds() - cpu, 3),
                                       within, notes))

    def to_json(self) -> dict[str, Any]:
        return {
            "total": {"wall_s": round(time.perf_counter() - self.started_wall, 3),
                      "cpu_s": round(cpu_seconds() - self.started_cpu, 3)},
            "cores": os.cpu_count(),
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "phases": [asdict(r) for r in self.records],
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2))
