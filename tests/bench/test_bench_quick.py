"""Smoke test of the benchmark command: ``python -m bench --quick serve`` runs and writes its JSON.

A measurement, not a test of speed: nothing here asserts a time or a ratio's size.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_serve_benchmark_writes_its_json(tmp_path: Path) -> None:
    out, work = tmp_path / "results", tmp_path / "work"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "serve", "--out", str(out), "--workdir", str(work)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Serve throughput" in done.stdout

    document = json.loads((out / "serve-quick.json").read_text())
    assert document["benchmark"] == "serve" and document["quick"] is True
    assert len(document["load_average"]["start"]) == 3 and len(document["load_average"]["end"]) == 3
    assert document["machine"]["cores_available"] >= 1

    results = document["results"]
    assert results["n_images"] == 128
    assert set(results["ratios"]) == {
        "processing", "processing_pool2", "inference", "inference_vs_streamed_predict",
        "inference_vs_predict_on_batch", "streamed_predict_vs_predict", "compiled_vs_predict", "processing+inference",
    }
    assert all(math.isfinite(r) and r > 0 for r in results["ratios"].values())
    assert all(t > 0 for t in results["times_s"].values())
    # The processing step's profile shows decoding (waited for on the main thread; it runs on decode
    # threads, which cProfile does not see); the shards it wrote hold every image.
    processing_profile = results["profile_top"]["processing"]["driftloop_cumulative"]
    assert any("_decode_in_order" in row["function"] for row in processing_profile)
    summary = json.loads((work / "serve" / "shards" / "summary.json").read_text())
    assert summary["n_images"] == 128 and summary["n_skipped"] == 0
