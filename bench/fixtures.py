"""Data sets, models and processed folders the benchmarks measure, made through the real code paths.

Everything is seeded and cached under the bench work folder with a marker holding the parameters
it was made with, so a second run (or a second benchmark in the same run) reuses it. Bigger and
held-out sets are tilings of the synthetic generator with other seeds: ``synthetic_images`` for
the originals and ``write_stages`` for the seven stages, exactly what ``make_dataset`` runs.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import source_hash
from driftloop.components.entrypoint import Invocation
from driftloop.components.processing import available_cores
from driftloop.config import DriftConfig, ProcessingConfig, TrainingConfig
from driftloop.local.data.seeding import rng_for
from driftloop.local.data.stages import LabelledImage, write_stages
from driftloop.local.data.synthetic import CLASSES, render, synthetic_images
from driftloop.pipelines import Component

MARKER = ".bench.json"
# Bump when what a fixture holds changes, so caches from older bench code are remade (a change
# to driftloop's own source remakes them too: the data, models and detectors come from it).
FIXTURE_VERSION = 3
# Seeds of the held-out pools: far from the simulation's seeds, so no image repeats.
HELD_OUT_SEED = 1000


def cached(folder: Path, params: dict[str, Any], make: Callable[[Path], object], *, code: str | None = None) -> Path:
    """``folder`` made by ``make`` once per set of ``params``; anything else there is replaced.

    ``code`` is the hash of the code the folder depends on (default: all of driftloop's source).
    The marker sits beside the folder, not in it: inside, it would be one more (hidden) input file.
    """
    marker = folder.with_name(folder.name + MARKER)
    params = {**params, "version": FIXTURE_VERSION, "driftloop": code or source_hash()}
    if marker.exists() and json.loads(marker.read_text()) == params:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    marker.unlink(missing_ok=True)
    folder.mkdir(parents=True)
    make(folder)
    marker.write_text(json.dumps(params))
    return folder


def run_component(component: Component, mode: str, inputs: dict[str, Path], outputs: dict[str, Path],
                  settings: dict[str, Any] | None = None) -> Any:
    """A component's in-process runner, as the local runner calls it."""
    from driftloop.local.runner import component_runner

    for folder in outputs.values():
        folder.mkdir(parents=True, exist_ok=True)
    invocation = Invocation(mode=mode, inputs=inputs, outputs=outputs, settings=dict(settings or {}))  # type: ignore[arg-type]
    return component_runner(component, mode)(invocation)


def tiled_images(seeds: Sequence[int], size: str, *, split: str | None = None) -> Iterator[LabelledImage]:
    """Synthetic originals from several seeds; names carry the seed so tiles never clash.

    ``split`` relabels every image into one split (a held-out pool uses train, val and test alike).
    """
    for seed in seeds:
        for item in synthetic_images(seed=seed, size=size):
            name = f"s{seed}-{item.split}-{item.name}"
            yield LabelledImage(split=split or item.split, label=item.label, name=name, image=item.image)


def _write_tiles(args: tuple[Path, tuple[int, ...], str, str | None, int]) -> None:
    out, seeds, size, split, stage_seed = args
    write_stages(tiled_images(seeds, size, split=split), out, seed=stage_seed)


def write_tiled_stages(out: Path, seeds: Sequence[int], size: str, *, split: str | None, stage_seed: int) -> None:
    """All seven stages of the tiled originals, one seed per task on every core (same bytes as serial)."""
    tasks = [(out, (seed,), size, split, stage_seed) for seed in seeds]
    if len(tasks) == 1 or available_cores() == 1:
        for task in tasks:
            _write_tiles(task)
        return
    with multiprocessing.get_context("spawn").Pool(min(available_cores(), len(tasks))) as pool:
        pool.map(_write_tiles, tasks)


def dataset(workdir: Path, seed: int, size: str, scale: int = 1) -> Path:
    """The simulation's data: ``make_dataset``'s layout; ``scale`` > 1 tiles ``scale`` seeds."""
    params = {"seed": seed, "size": size, "scale": scale}
    name = f"data-{size}-x{scale}-s{seed}"

    def make(folder: Path) -> None:
        if scale == 1:
            from driftloop.local.data.synthetic import make_dataset

            make_dataset(folder, seed=seed, size=size)
        else:
            write_tiled_stages(folder, [seed + i for i in range(scale)], size, split=None, stage_seed=seed)

    return cached(workdir / name, params, make)


def held_out_pool(workdir: Path, seed: int, size: str, n_seeds: int) -> Path:
    """Fresh images in every stage (``<stage>/test/<class>/``): never seen by the model or reference."""
    seeds = [HELD_OUT_SEED + seed + i for i in range(n_seeds)]
    params = {"seeds": seeds, "size": size}

    def make(folder: Path) -> None:
        write_tiled_stages(folder, seeds, size, split="test", stage_seed=HELD_OUT_SEED + seed)

    return cached(workdir / f"held-out-{size}-x{n_seeds}-s{seed}", params, make)


def interleaved_originals(seed: int, count: int, start: int = 0) -> Iterator[LabelledImage]:
    """Synthetic originals ``start..count`` of the seed's sequence, classes in turn (any prefix is class-balanced)."""
    for index in range(start, count):
        label = CLASSES[index % len(CLASSES)]
        name = f"s{seed}-{label}-{index // len(CLASSES):05d}.png"
        pixels = render(label, rng_for(seed, "bench", label, name))
        yield LabelledImage(split="test", label=label, name=name, image=Image.fromarray(pixels, "RGB"))


def originals(workdir: Path, seed: int, count: int, distinct: int = 484) -> Path:
    """``count`` image files in class folders: ``distinct`` renders, then hard links to reach the count.

    Decoding a linked file costs what decoding the original does, so large throughput and memory
    runs need not render (or store) every image. The renders use a seed no data set uses.
    """
    params = {"seed": seed, "count": count, "distinct": distinct}

    def make(folder: Path) -> None:
        files: list[Path] = []
        for item in interleaved_originals(HELD_OUT_SEED + 500 + seed, min(count, distinct)):
            path = folder / item.label / item.name
            path.parent.mkdir(exist_ok=True)
            item.image.save(path, format="PNG", compress_level=1)
            files.append(path)
        for index in range(len(files), count):
            source = files[index % len(files)]
            target = source.parent / f"copy{index:06d}-{source.name}"
            try:
                os.link(source, target)
            except OSError:  # a file system without hard links
                shutil.copyfile(source, target)

    return cached(workdir / f"images-{count}-s{seed}", params, make)


def fingerprint(folder: Path) -> str:
    """Names, sizes and times of every file below ``folder``: changes when its content is remade."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        info = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def processed(folder: Path, out: Path, mode: str = "serve") -> Path:
    """The processing component's output for ``folder`` (train mode: ``folder`` holds train/ and val/)."""
    params = {"source": str(folder), "files": fingerprint(folder), "mode": mode, "config": ProcessingConfig().to_dict()}

    def make(target: Path) -> None:
        if mode == "serve":
            run_component(Component.PROCESSING, "serve", {"batch": folder}, {"batch": target},
                          ProcessingConfig().to_dict())
        else:
            run_component(Component.PROCESSING, "train", {"train": folder / "train", "val": folder / "val"},
                          {"train": target / "train", "val": target / "val"}, ProcessingConfig().to_dict())

    return cached(out, params, make)


def untrained_model(workdir: Path, seed: int) -> Path:
    """The default architecture, saved untrained: inference costs the same whatever the weights."""
    params = {"seed": seed, "architecture": TrainingConfig().architecture, "classes": list(CLASSES)}

    def make(folder: Path) -> None:
        import tensorflow as tf

        from driftloop.ml.model_io import save_model
        from driftloop.ml.models import build_model

        tf.keras.utils.set_random_seed(seed)
        model = build_model(TrainingConfig().architecture, image_size=ProcessingConfig().image_size,
                            n_classes=len(CLASSES))
        save_model(model, list(CLASSES), folder)

    return cached(workdir / f"model-untrained-s{seed}", params, make)


def original_shards(workdir: Path, data: Path) -> Path:
    """``data/original``'s train and val sets through the processing component (train mode)."""
    return processed(data / "original", workdir / f"{data.name}-original-shards", mode="train")


def trained_model(workdir: Path, data: Path, config: TrainingConfig) -> Path:
    """The algorithm component's model trained on ``data/original`` (train + val)."""
    shards = original_shards(workdir, data)
    params = {"data": str(data), "shards": fingerprint(shards), "config": config.to_dict()}

    def make(folder: Path) -> None:
        run_component(Component.ALGORITHM, "train", {"train": shards / "train", "val": shards / "val"},
                      {"model": folder}, config.to_dict())

    return cached(workdir / f"{data.name}-model-e{config.epochs}", params, make)


def detector(workdir: Path, train_shards: Path, model: Path, config: DriftConfig) -> Path:
    """The monitoring component's detector (train mode) for ``config``."""
    params = {"train": fingerprint(train_shards), "model": fingerprint(model), "config": config.to_dict()}

    def make(folder: Path) -> None:
        run_component(Component.DRIFT, "train", {"train": train_shards, "model": model},
                      {"detector": folder}, config.to_dict())

    name = f"detector-{config.features}-{config.correction}-{model.name}"
    return cached(workdir / name, params, make)
