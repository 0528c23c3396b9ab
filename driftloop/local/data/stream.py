"""A production stream for the production simulation: images no train or validation split holds.

Stage ``k`` of the stream has its own ``per_stage`` base images (drawn from the synthetic generator
under the split name ``production``, so none of them is in any stage's train, val or test split), each
through stage ``k``'s augmentation only. Written as ``OUT/<stage>/<class>/<name>.png``, classes
balanced and interleaved so that any run of consecutive images holds every class.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

from driftloop.layout import STAGE_NAMES
from driftloop.local.data.seeding import rng_for
from driftloop.local.data.stages import STAGES, apply_stage, map_in_order, save_png
from driftloop.local.data.synthetic import CLASSES, plan, synthetic_image

STREAM_SPLIT: Final = "production"


@dataclass(frozen=True)
class StreamImage:
    """One image of the stream: its stage, its class (the truth a labeller would give) and its file."""

    stage: str
    label: str
    name: str

    def path(self, root: Path) -> Path:
        return root / self.stage / self.label / self.name


def stream_plan(per_stage: int) -> list[StreamImage]:
    """Every image of the stream, stage by stage, classes interleaved (image ``i`` has class ``i mod 6``)."""
    return [
        StreamImage(stage, CLASSES[index % len(CLASSES)], f"{stage}-{index:05d}.png")
        for stage in STAGE_NAMES
        for index in range(per_stage)
    ]


def _write_staged(stage: str, split: str, label: str, name: str, path: Path, seed: int) -> None:
    """One synthetic image through one stage, with the generators ``write_image_stages`` keys: the same bytes."""
    base = synthetic_image(split, label, name, seed=seed).image
    spec = next(spec for spec in STAGES if spec.name == stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(apply_stage(base, spec, rng_for(seed, "stage", spec.name, split, label, name)), path)


def _write_one(item: StreamImage, *, out: Path, seed: int) -> None:
    _write_staged(item.stage, STREAM_SPLIT, item.label, item.name, item.path(out), seed)


def _write_first(planned: tuple[str, str, str], *, out: Path, seed: int) -> None:
    split, label, name = planned
    _write_staged(STAGE_NAMES[0], split, label, name, out / STAGE_NAMES[0] / split / label / name, seed)


def make_first_data_set(out: Path, *, seed: int, size: str, workers: int | None = None) -> Path:
    """Only the first stage's train and validation sets, as ``make_dataset`` writes them (the same bytes):
    all the production simulation's first model needs, and all of the stages it may see."""
    wanted = [item for item in plan(size) if item[0] in ("train", "val")]
    map_in_order(partial(_write_first, out=out, seed=seed), wanted, workers=workers)
    return out / STAGE_NAMES[0]


def make_stream(out: Path, *, seed: int, per_stage: int, workers: int | None = None) -> list[StreamImage]:
    """Write the stream under ``out`` (same bytes in one process or many) and return its plan."""
    planned = stream_plan(per_stage)
    map_in_order(partial(_write_one, out=out, seed=seed), planned, workers=workers)
    return planned
