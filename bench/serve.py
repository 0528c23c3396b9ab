"""Serve throughput: each serve step against its bare limit, on the same images and model, in one process.

* processing step (component, serve mode) vs a bare Pillow open + convert + resize loop over the
  same files; also the component's process pool forced on (2 workers) to show what it buys here;
* inference step (algorithm component, serve mode, reading shards) vs bare ``model.predict`` on
  the same images already in memory, same batch size (and a bare ``predict_on_batch`` loop);
* both steps back to back vs both bare loops back to back;
* a cProfile of the two steps: where the time beyond the bare loops goes.

Ratios are bare time / step time (1.0 = the step runs at the bare limit).
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bench import fixtures
from bench.common import BenchOptions, Result, best_of, table
from driftloop.config import ProcessingConfig, TrainingConfig
from driftloop.pipelines import Component

GOALS = {"processing": 0.9, "inference": 0.9, "processing+inference": 0.8}


def bare_decode(files: list[Path], image_size: int) -> list[np.ndarray]:
    """The limit for processing: open, convert, resize (bicubic, as the component does), nothing else."""
    from PIL import Image

    out = []
    for path in files:
        with Image.open(path) as image:
            resized = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BICUBIC)
            out.append(np.asarray(resized, dtype=np.uint8))
    return out


def _profile(function: Any, top: int) -> dict[str, list[dict[str, Any]]]:
    """One profiled run: the top functions by own time, and driftloop's own functions by cumulative time."""
    profiler = cProfile.Profile()
    profiler.runcall(function)
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(filename).name}:{line}({name})", "file": filename, "calls": calls,
                     "tottime_s": round(tottime, 4), "cumtime_s": round(cumtime, 4)})
    total = sum(r["tottime_s"] for r in rows)
    for row in rows:
        row["share"] = round(row["tottime_s"] / total, 4) if total else 0.0
        row["cum_share"] = round(row["cumtime_s"] / total, 4) if total else 0.0
    own = sorted(rows, key=lambda r: r["tottime_s"], reverse=True)[:top]
    ours = sorted((r for r in rows if f"{os.sep}driftloop{os.sep}" in r["file"]),
                  key=lambda r: r["cumtime_s"], reverse=True)[:top]
    return {"own": own, "driftloop_cumulative": ours}


def run(options: BenchOptions) -> Result:
    import tensorflow as tf

    from driftloop.ml.model_io import load_model

    n_images = 128 if options.quick else 2000
    repeats = 1 if options.quick else 3
    config = ProcessingConfig()
    batch_size = TrainingConfig().batch_size
    work = options.workdir / "serve"
    images = fixtures.originals(options.workdir, options.seed, n_images)
    files = sorted(p for p in images.rglob("*.png"))
    model_dir = fixtures.untrained_model(options.workdir, options.seed)
    shards, predictions = work / "shards", work / "predictions"

    def processing_step() -> None:
        fixtures.run_component(Component.PROCESSING, "serve", {"batch": images}, {"batch": shards},
                               config.to_dict())

    def processing_pool() -> None:
        from driftloop.components.processing import class_folders, process_folder

        process_folder(images, work / "shards-pool", config, class_folders(images), workers=2)

    def inference_step() -> None:
        fixtures.run_component(Component.ALGORITHM, "serve", {"data": shards, "model": model_dir},
                               {"predictions": predictions}, {})

    processing_step()  # the shards the inference step reads, and a warm page cache for everyone
    tf.keras.utils.set_random_seed(options.seed)
    model = load_model(model_dir).model
    from driftloop.ml.shards import iter_shards, load_all

    in_memory = load_all(shards).images.astype(np.float32)
    model.predict(in_memory[:batch_size], batch_size=batch_size, verbose=0)  # trace once, outside the timing

    def bare_predict() -> None:
        model.predict(in_memory, batch_size=batch_size, verbose=0)

    def bare_streamed_predict() -> None:
        for shard in iter_shards(shards):
            model.predict(shard.images.astype(np.float32), batch_size=batch_size, verbose=0)

    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    forward(in_memory[:batch_size])  # trace once, outside the timing

    def bare_compiled() -> None:
        for start in range(0, len(in_memory), batch_size):
            forward(in_memory[start:start + batch_size]).numpy()

    def bare_predict_on_batch() -> None:
        for start in range(0, len(in_memory), batch_size):
            model.predict_on_batch(in_memory[start:start + batch_size])

    def bare_both() -> None:
        decoded = np.stack(bare_decode(files, config.image_size)).astype(np.float32)
        model.predict(decoded, batch_size=batch_size, verbose=0)

    def steps_both() -> None:
        processing_step()
        inference_step()

    times = dict(zip(
        ("processing", "bare_decode", "processing_pool2", "inference", "bare_predict", "bare_streamed_predict",
         "bare_predict_on_batch", "bare_compiled", "processing+inference", "bare_both"),
        best_of(repeats, processing_step, lambda: bare_decode(files, config.image_size), processing_pool,
                inference_step, bare_predict, bare_streamed_predict, bare_predict_on_batch, bare_compiled, steps_both,
                bare_both),
        strict=True,
    ))
    ratios = {
        "processing": times["bare_decode"] / times["processing"],
        "processing_pool2": times["bare_decode"] / times["processing_pool2"],
        "inference": times["bare_predict"] / times["inference"],
        "inference_vs_streamed_predict": times["bare_streamed_predict"] / times["inference"],
        "inference_vs_predict_on_batch": times["bare_predict_on_batch"] / times["inference"],
        "streamed_predict_vs_predict": times["bare_predict"] / times["bare_streamed_predict"],
        "compiled_vs_predict": times["bare_predict"] / times["bare_compiled"],
        "processing+inference": times["bare_both"] / times["processing+inference"],
    }
    profile = {
        "processing": _profile(processing_step, 12),
        "inference": _profile(inference_step, 12),
    }
    shutil.rmtree(work / "shards-pool", ignore_errors=True)
    data = {
        "n_images": len(files),
        "image_bytes": sum(p.stat().st_size for p in files),
        "batch_size": batch_size,
        "repeats": repeats,
        "times_s": {k: round(v, 4) for k, v in times.items()},
        "images_per_s": {k: round(len(files) / v, 1) for k, v in times.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "goals": GOALS,
        "profile_top": profile,
    }
    rows = [
        ("processing step (1 process)", "bare Pillow open+convert+resize", times["processing"], times["bare_decode"],
         ratios["processing"], GOALS["processing"]),
        ("processing step, pool of 2 forced", "bare Pillow loop (1 process)", times["processing_pool2"],
         times["bare_decode"], ratios["processing_pool2"], "> 1 with 2 free cores"),
        ("inference step (shards on disk)", "bare model.predict (in memory)", times["inference"],
         times["bare_predict"], ratios["inference"], GOALS["inference"]),
        ("inference step (shards on disk)", "bare model.predict per shard, streamed from disk", times["inference"],
         times["bare_streamed_predict"], ratios["inference_vs_streamed_predict"], "-"),
        ("inference step (shards on disk)", "bare predict_on_batch loop (in memory)", times["inference"],
         times["bare_predict_on_batch"], ratios["inference_vs_predict_on_batch"], "-"),
        ("bare tf.function forward pass, batches of 32", "bare model.predict (in memory)", times["bare_compiled"],
         times["bare_predict"], ratios["compiled_vs_predict"], "-"),
        ("processing + inference", "both bare loops back to back", times["processing+inference"],
         times["bare_both"], ratios["processing+inference"], GOALS["processing+inference"]),
    ]
    tables = [table(("step", "bare limit", "step s", "bare s", "ratio", "goal"), rows,
                    f"Serve throughput, {len(files)} images, batch {batch_size}, best of {repeats}")]
    for step, views in profile.items():
        tables.append(table(("function", "calls", "own s", "share of step"),
                            [(r["function"], r["calls"], r["tottime_s"], r["share"]) for r in views["own"][:8]],
                            f"Profile of the {step} step: own time, top 8"))
        tables.append(table(("driftloop function", "calls", "cumulative s", "share of step"),
                            [(r["function"], r["calls"], r["cumtime_s"], r["cum_share"])
                             for r in views["driftloop_cumulative"][:8]],
                            f"Profile of the {step} step: driftloop functions, cumulative time, top 8"))
    return Result(data, tables)
