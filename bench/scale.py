"""Serve at scale: 100,000 photo-like JPEGs through the serve steps, each against its bare limit.

The serve steps (processing, monitoring, predict, explainability on the default ``n_explain``) run
in a fresh process (``bench.worker serve-step --step all``), through the components' in-process
runners in pipeline order, as the local runner calls them; the local store's copying of the batch
in and out (SageMaker's S3 transfer on AWS) is left out. The images are ``bench.photos`` JPEGs
(300–800 px, quality 75–95): 2,000 distinct files plus hard links (a linked file decodes at the
cost of its original), cached in the bench work folder.

In the same run, the bare limits:

* decoding: a bare Pillow loop (open, JPEG draft at the component's gap, RGB, centre crop, bicubic
  resize; no validation, manifest or shards) over the same files in two processes, one per core;
* the forward pass: one ``tf.function`` over the model (or the drift feature model) at a fixed batch
  shape, on images already in memory, at the fastest of a few batch sizes; its images per second,
  measured on 20,000 images, stand for the same count as the step.

Ratio = bare time / step time (1.0: the step runs at its limit). Memory: peak RSS of the worker
(and of its process tree, decode pool included) at 100,000 vs 10,000 images. CPU time: user + system
of the worker and its children, per image at the margin (100,000 minus 10,000, so imports and model
loads count as a job's start-up), from which the cost per million images on SageMaker is worked out
on paper (``PRICES``: assumed, on-demand, us-east-1, as the README's cost table).
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import fixtures
from bench.common import BenchOptions, Result, last_json_line, run_measured, table
from bench.jpeg_decode import PHOTO_SEED, photo_folder
from driftloop.config import DriftConfig, ExplainConfig, ProcessingConfig, TrainingConfig
from driftloop.pipelines import Component

GOALS = {"step_vs_limit": 0.9, "memory_100k_vs_10k": 1.1}
DISTINCT = 2000
BATCH_SIZES = (64, 256)
FORWARD_IMAGES = 20_000
# Assumed on-demand prices (us-east-1; the README's cost table), per instance-hour, and the vCPUs
# a job uses; a job also bills its start-up (~5 minutes with the image pull, the README's figure).
PRICES = {"ml.m5.large": {"usd_per_hour": 0.115, "vcpus": 2}}
JOB_OVERHEAD_MIN = 5
SERVE_JOBS = 4
HOURLY_RUN_USD = 0.04  # the README's "one hourly serve run" of the default 42 images


def _bare_decode(files: list[Path]) -> int:
    """The decode limit: what ``decode_file`` does to a good JPEG, nothing else."""
    from PIL import Image

    from driftloop.ml.images import DRAFT_GAP, centre_square

    size = ProcessingConfig().image_size
    for path in files:
        with Image.open(path) as image:
            image.draft("RGB", (size * DRAFT_GAP, size * DRAFT_GAP))
            np.asarray(centre_square(image.convert("RGB")).resize((size, size), Image.Resampling.BICUBIC))
    return len(files)


def bare_decode_two_cores(files: list[Path]) -> float:
    """Seconds for two processes to decode ``files`` between them (pool start-up not counted)."""
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_bare_decode, [files[:2], files[2:4]])  # both workers up and warm
        started = time.perf_counter()
        pool.map(_bare_decode, [files[0::2], files[1::2]])
        return time.perf_counter() - started


def bare_forward_rate(model: Any, images: np.ndarray) -> dict[str, float]:
    """Images per second of a compiled forward pass at each fixed batch shape (best of 2)."""
    import tensorflow as tf

    rates = {}
    for batch in BATCH_SIZES:
        call = tf.function(model.__call__, input_signature=[tf.TensorSpec([batch, *images.shape[1:]], tf.float32)])
        usable = len(images) // batch * batch
        call(tf.constant(images[:batch]))  # trace outside the timing
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            for start in range(0, usable, batch):
                call(tf.constant(images[start:start + batch])).numpy()
            best = min(best, time.perf_counter() - started)
        rates[str(batch)] = usable / best
    return rates


def _serve(options: BenchOptions, images: Path, model: Path, detector: Path, explainer: Path,
           count: int) -> dict[str, Any]:
    out = options.workdir / "scale" / str(count)
    command = [sys.executable, "-m", "bench.worker", "serve-step", "--step", "all", "--images", str(images),
               "--model", str(model), "--detector", str(detector), "--explainer", str(explainer), "--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    measured = run_measured(command, options.workdir / "scale" / "logs" / f"{count}.log")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = last_json_line(measured.log)
    return {"images": count, "wall_s": measured.wall_s, "step_s": line["step_s"],
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
            "main_peak_rss_mb": line["peak_rss_mb"], "tree_peak_rss_mb": measured.tree_peak_rss_mb,
            "shards": out / "shards"}


def cost_per_million(cpu_s_per_image: float, instance: str = "ml.m5.large") -> dict[str, Any]:
    """On paper: the measured CPU time spread over an instance's vCPUs, plus each job's start-up."""
    price = PRICES[instance]
    compute_hours = cpu_s_per_image * 1e6 / 3600 / price["vcpus"]
    overhead_hours = SERVE_JOBS * JOB_OVERHEAD_MIN / 60
    return {"instance": instance, "usd_per_hour": price["usd_per_hour"], "compute_hours": round(compute_hours, 2),
            "usd_compute": round(compute_hours * price["usd_per_hour"], 3),
            "usd_with_job_overhead": round((compute_hours + overhead_hours) * price["usd_per_hour"], 3)}


def run(options: BenchOptions) -> Result:
    import tensorflow as tf

    from driftloop.ml import drift
    from driftloop.ml.model_io import load_model
    from driftloop.ml.shards import iter_shards

    counts = (1000, 4000) if options.quick else (10_000, 100_000)
    distinct = 400 if options.quick else DISTINCT
    training = TrainingConfig(epochs=4, patience=2) if options.quick else TrainingConfig()
    data = fixtures.dataset(options.workdir, options.seed, "small" if options.quick else "blog")
    model = fixtures.trained_model(options.workdir, data, training)
    train_shards = fixtures.original_shards(options.workdir, data) / "train"
    detector = fixtures.detector(options.workdir, train_shards, model, DriftConfig(seed=options.seed))
    explainer = fixtures.cached(options.workdir / f"explainer-{model.name}", {"model": fixtures.fingerprint(model)},
                                lambda folder: fixtures.run_component(
                                    Component.EXPLAINABILITY, "train", {"train": train_shards, "model": model},
                                    {"explainer": folder}, {}))

    runs = {}
    for count in counts:
        folder = photo_folder(options.workdir, PHOTO_SEED + options.seed, count, distinct)
        runs[count] = _serve(options, folder, model, detector, explainer, count)
    large = counts[-1]
    files = sorted(photo_folder(options.workdir, PHOTO_SEED + options.seed, large, distinct).rglob("*.jpg"))
    bare_decode_s = bare_decode_two_cores(files)

    tf.keras.utils.set_random_seed(options.seed)
    classifier = load_model(model).model
    features = drift.classifier_features(classifier, DriftConfig().features)
    in_memory = []
    for shard in iter_shards(runs[large]["shards"]):
        in_memory.append(shard.images)
        if sum(len(part) for part in in_memory) >= FORWARD_IMAGES:
            break
    sample = np.concatenate(in_memory)[:FORWARD_IMAGES].astype(np.float32)
    forward = {"predict": bare_forward_rate(classifier, sample), "monitoring": bare_forward_rate(features, sample)}
    limit_s = {"processing": bare_decode_s,
               "inference": large / max(forward["predict"].values()),
               "monitoring": large / max(forward["monitoring"].values())}
    step_s = runs[large]["step_s"]
    ratios = {step: limit_s[step] / step_s[step] for step in limit_s}
    serve_steps = ("processing", "monitoring", "inference")
    end_to_end = sum(step_s.values())
    # Marginal CPU per image (the imports and model loads of a job are its start-up, costed apart).
    cpu_per_image = (runs[large]["cpu_s"] - runs[counts[0]]["cpu_s"]) / (large - counts[0])
    data_out = {
        "counts": list(counts), "distinct_files": distinct, "n_explain": ExplainConfig().n_explain,
        "runs": {str(c): {k: v for k, v in r.items() if k != "shards"} for c, r in runs.items()},
        "bare": {"decode_two_processes_s": bare_decode_s, "forward_images_per_s": forward},
        "limit_s": limit_s, "ratios": ratios, "goals": GOALS,
        "images_per_s": {**{step: large / step_s[step] for step in step_s}, "end_to_end": large / end_to_end,
                         "limits_end_to_end": large / sum(limit_s.values())},
        "memory_ratio": {"main": runs[large]["main_peak_rss_mb"] / runs[counts[0]]["main_peak_rss_mb"],
                         "tree": runs[large]["tree_peak_rss_mb"] / runs[counts[0]]["tree_peak_rss_mb"]},
        "cpu_s_per_image": cpu_per_image,
        "cost_per_million": cost_per_million(cpu_per_image),
        "hourly_default_run_usd": HOURLY_RUN_USD,
    }
    rows: list[tuple[object, ...]] = [
        (step, round(step_s[step], 1), round(limit_s[step], 1), large / step_s[step], ratios[step],
         GOALS["step_vs_limit"]) for step in serve_steps]
    rows.append(("explainability", round(step_s["explainability"], 1), "-", "-", "-", "-"))
    rows.append(("all steps", round(end_to_end, 1), round(sum(limit_s.values()), 1), large / end_to_end,
                 sum(limit_s.values()) / (end_to_end - step_s["explainability"]), "-"))
    memory_rows = [(c, r["wall_s"], r["cpu_s"], r["main_peak_rss_mb"], r["tree_peak_rss_mb"]) for c, r in runs.items()]
    cost = data_out["cost_per_million"]
    tables = [
        table(("step", "step s", "bare limit s", "images/s", "ratio", "goal"), rows,
              f"Serve steps on {large:,} photo-like JPEGs ({distinct:,} distinct), one fresh process"),
        table(("images", "wall s", "CPU s", "main peak MB", "tree peak MB"), memory_rows,
              f"Memory: {large:,} vs {counts[0]:,} images: main {data_out['memory_ratio']['main']:.3f}x, "
              f"tree {data_out['memory_ratio']['tree']:.3f}x (goal < {GOALS['memory_100k_vs_10k']})"),
        table(("CPU s / image", "instance", "$/h (assumed)", "instance-hours / 1M", "$ / 1M images",
               "$ / 1M with 4 job start-ups", "$ one hourly default run"),
              [(round(cpu_per_image * 1000, 2) / 1000, cost["instance"], cost["usd_per_hour"], cost["compute_hours"],
                cost["usd_compute"], cost["usd_with_job_overhead"], HOURLY_RUN_USD)],
              "Cost per million images on SageMaker, on paper"),
    ]
    return Result(data_out, tables)
