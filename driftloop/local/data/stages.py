"""The seven drift stages: one table of augmentations, applied with a seeded generator per image.

``make_stages`` turns any ``SRC/{train,val,test}/<class>/<image>`` folder into
``OUT/<stage>/{train,val,test}/<class>/<name>.png`` for every stage of ``STAGES``; the synthetic
set goes through the same ``write_image_stages`` code path. Nothing outside ``SRC`` is read (links
that leave it are not followed, see ``driftloop.files``), and every entry of ``SRC`` that is
not written gets a line with its reason in ``OUT/manifest.csv``.

Each image has its own generator (keyed by seed, stage, split, class and name), so images are
independent: large sets are written by a pool of one process per core, with the same bytes as
one process.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Final, TypeVar

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from driftloop.components.processing import available_cores
from driftloop.errors import UserError
from driftloop.files import walk
from driftloop.layout import SPLITS
from driftloop.local.data.seeding import rng_for

log = logging.getLogger(__name__)

# Blur radii are given in pixels of the model's 64x64 input and scaled to each image's short
# side, so a stage blurs a 96-pixel synthetic image and a 2000-pixel photo alike.
MODEL_INPUT: Final = 64
_ALPHA_MODES: Final = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WIDE_GREYS: Final = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
# Below this many images one process is as fast: a spawned worker takes ~0.3 s to start, an image
# (seven stages) ~10 ms to write.
PARALLEL_MIN_IMAGES: Final = 64
MANIFEST_FILE: Final = "manifest.csv"
MANIFEST_COLUMNS: Final = ("file", "class", "status", "reason")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class StageSpec:
    """How one stage alters every image; each random draw is uniform in its range."""

    name: str
    description: str
    hflip: float = 0.0  # probability of a left-right flip
    vflip: float = 0.0  # probability of an upside-down flip
    rotation: float = 0.0  # degrees, drawn from [-rotation, +rotation]; corners filled by reflection
    blur: tuple[float, float] = (0.0, 0.0)  # Gaussian sigma range, in pixels at 64x64
    noise: float = 0.0  # std of added Gaussian noise (0-255 scale), in grains of one pixel at 64x64

    def __post_init__(self) -> None:
        if not (0.0 <= self.hflip <= 1.0 and 0.0 <= self.vflip <= 1.0):
            raise ValueError(f"{self.name}: flip probabilities must be in [0, 1]")
        if self.rotation < 0 or self.noise < 0 or not 0.0 <= self.blur[0] <= self.blur[1]:
            raise ValueError(f"{self.name}: rotation, noise and blur must be non-negative ranges")


STAGES: Final[tuple[StageSpec, ...]] = (
    StageSpec("original", "the images as given (converted to RGB PNG)"),
    StageSpec("stage-1", "random flip", hflip=0.5, vflip=0.5),
    StageSpec("stage-2", "random rotation", rotation=30.0),
    StageSpec("stage-3", "random rotation and flip", hflip=0.5, vflip=0.5, rotation=45.0),
    StageSpec("stage-4", "blur and a very small rotation", rotation=5.0, blur=(0.7, 1.1)),
    StageSpec("stage-5", "blur and rotation", rotation=45.0, blur=(0.7, 1.1)),
    StageSpec(
        "noisy",
        "strong blur, any rotation, flip and pixel noise",
        hflip=0.5,
        vflip=0.5,
        rotation=180.0,
        blur=(1.6, 2.2),
        noise=12.0,
    ),
)


def stages_markdown() -> str:
    """The stage table as Markdown, for the README."""

    def pct(p: float) -> str:
        return f"{p:.0%}" if p else "–"

    header = ("Stage", "What changes", "Left-right flip", "Upside-down flip", "Rotation", "Blur σ (px at 64×64)",
              "Pixel noise σ")
    rows = [_row(header), _row(("---",) * len(header))]
    for spec in STAGES:
        rotation = f"±{spec.rotation:g}°" if spec.rotation else "–"
        blur = f"{spec.blur[0]:g}–{spec.blur[1]:g}" if spec.blur[1] else "–"
        noise = f"{spec.noise:g} / 255" if spec.noise else "–"
        rows.append(_row((spec.name, spec.description, pct(spec.hflip), pct(spec.vflip), rotation, blur, noise)))
    return "\n".join(rows) + "\n"


def _row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"


def rotate_reflect(image: Image.Image, degrees: float) -> Image.Image:
    """Rotate about the centre, same size, filling the corners with the mirrored image, not black.

    Black corners would mark a rotated image by themselves; mirrored content keeps the drift in
    the object's orientation.
    """
    if degrees == 0.0:
        return image.copy()
    width, height = image.size
    pad = max(width, height) // 2 + 2  # covers the rotated frame for any angle
    padded = Image.fromarray(np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), mode="symmetric"))
    # Output pixel (x, y) samples the padded image at the point rotated about the centre
    # (PIL's convention: positive degrees turn the picture counter-clockwise).
    angle = np.deg2rad(degrees)
    cos, sin = float(np.cos(angle)), float(np.sin(angle))
    cx, cy = width / 2, height / 2
    matrix = (cos, -sin, cx + pad - cos * cx + sin * cy, sin, cos, cy + pad - sin * cx - cos * cy)
    return padded.transform((width, height), Image.Transform.AFFINE, matrix, resample=Image.Resampling.BICUBIC)


def blur(image: Image.Image, sigma_at_model_input: float) -> Image.Image:
    if sigma_at_model_input <= 0.0:
        return image.copy()
    scale = min(image.size) / MODEL_INPUT
    return image.filter(ImageFilter.GaussianBlur(radius=sigma_at_model_input * scale))


def add_noise(image: Image.Image, std: float, rng: np.random.Generator) -> Image.Image:
    """Gaussian noise in grains of about one model-input pixel, so downscaling doesn't average it away."""
    pixels = np.asarray(image, dtype=np.float64)
    height, width = pixels.shape[:2]
    grain = max(1, int(min(width, height) / MODEL_INPUT))
    noise = rng.normal(0.0, std, size=(-(-height // grain), -(-width // grain), 3))
    noise = np.repeat(np.repeat(noise, grain, axis=0), grain, axis=1)[:height, :width]
    return Image.fromarray(np.clip(np.rint(pixels + noise), 0, 255).astype(np.uint8), "RGB")


def apply_stage(image: Image.Image, spec: StageSpec, rng: np.random.Generator) -> Image.Image:
    """Flip, rotate, blur, add noise: always the same draws in the same order, so runs repeat."""
    hflip, vflip = rng.random(2)
    degrees = rng.uniform(-spec.rotation, spec.rotation)
    sigma = rng.uniform(*spec.blur)
    if hflip < spec.hflip:
        image = ImageOps.mirror(image)
    if vflip < spec.vflip:
        image = ImageOps.flip(image)
    if spec.rotation:
        image = rotate_reflect(image, degrees)
    if spec.blur[1]:
        image = blur(image, sigma)
    if spec.noise:
        image = add_noise(image, spec.noise, rng)
    return image


def save_png(image: Image.Image, path: Path) -> None:
    """Fixed encoder settings and no metadata (no text chunks, no time): same pixels, same bytes."""
    bare = Image.frombytes(image.mode, image.size, image.tobytes())  # drops info: ICC profile, EXIF, ...
    bare.save(path, format="PNG", compress_level=1, optimize=False)


@dataclass(frozen=True)
class LabelledImage:
    split: str
    label: str
    name: str  # output file name, ending in .png
    image: Image.Image  # RGB


@dataclass
class StagesReport:
    """What was written (images per split, the same for every stage) and what was skipped, and why."""

    counts: Counter[str] = field(default_factory=Counter)
    classes: set[str] = field(default_factory=set)
    skipped: dict[Path, str] = field(default_factory=dict)  # source path -> reason

    def add(self, split: str, label: str) -> None:
        self.counts[split] += 1
        self.classes.add(label)

    def summary(self) -> str:
        splits = ", ".join(f"{split} {self.counts[split]}" for split in SPLITS)
        return f"{len(STAGES)} stages x ({splits}) images, {len(self.classes)} classes, {len(self.skipped)} skipped"


def write_image_stages(item: LabelledImage, out: Path, *, seed: int) -> None:
    """Write one image once per stage; each (stage, split, class, name) has its own generator."""
    for spec in STAGES:
        rng = rng_for(seed, "stage", spec.name, item.split, item.label, item.name)
        folder = out / spec.name / item.split / item.label
        folder.mkdir(parents=True, exist_ok=True)
        save_png(apply_stage(item.image, spec, rng), folder / item.name)


def write_stages(images: Iterable[LabelledImage], out: Path, *, seed: int) -> StagesReport:
    """Write every image once per stage, in this process."""
    report = StagesReport()
    for item in images:
        write_image_stages(item, out, seed=seed)
        report.add(item.split, item.label)
    return report


def map_in_order(task: Callable[[T], R], items: Sequence[T], *, workers: int | None = None) -> list[R]:
    """``[task(item) for item in items]``, on a pool of one process per core when there are many items.

    ``task`` must be picklable (a module-level function or a ``partial`` of one). The pool is
    spawned, not forked: the caller may already run TensorFlow's threads.
    """
    if workers is None:
        workers = 1 if len(items) < PARALLEL_MIN_IMAGES else available_cores()
    if workers <= 1:
        return [task(item) for item in items]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return pool.map(task, items, chunksize=max(1, len(items) // (8 * workers)))


def _load_rgb(path: Path) -> Image.Image:
    """Decode fully (so a truncated file fails here), upright per EXIF, transparency on white."""
    with Image.open(path) as opened:
        opened.load()
        image = ImageOps.exif_transpose(opened) or opened
        if image.mode in _WIDE_GREYS:  # Pillow's own conversion would clip 16-bit grey to white
            grey = np.clip(np.rint(np.asarray(image, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
            image = Image.fromarray(grey, "L")
        if image.mode in _ALPHA_MODES or "transparency" in image.info:
            rgba = image.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
        return image.convert("RGB")


def _output_names(files: list[PurePosixPath]) -> dict[PurePosixPath, str]:
    """``photo.jpg`` -> ``photo.png``; stems that clash (``a.jpg``, ``a.png``) keep their suffix."""
    stems = Counter(path.stem for path in files)
    names: dict[PurePosixPath, str] = {}
    for path in files:
        stem = path.stem if stems[path.stem] == 1 else path.name.replace(".", "_")
        names[path] = f"{stem}.png"
    return names


@dataclass(frozen=True)
class SourceImage:
    """A file of ``SRC`` to read: its path relative to ``SRC``, its split, class and output name."""

    relative: PurePosixPath
    split: str
    label: str
    name: str


def source_entries(src: Path) -> tuple[list[SourceImage], dict[PurePosixPath, str]]:
    """The files of ``src/{train,val,test}/<class>/`` to read, and every other entry with its reason.

    Only ``<split>/<class>/<file>`` is read; the rest of ``src`` is listed, never read: anything
    ``driftloop.files.walk`` refuses (links that leave ``src``, broken links, links to
    folders, special files), hidden entries, files outside a split's class folders, and files in
    sub-folders of a class folder.
    """
    splits = [split for split in SPLITS if (src / split).is_dir() and not (src / split).is_symlink()]
    missing = [split for split in SPLITS if split not in splits]
    if missing:
        raise UserError(
            f"{src} must hold {'/, '.join(SPLITS)}/ with one folder per class (links to folders are not "
            f"followed); missing {missing}"
        )
    skipped: dict[PurePosixPath, str] = {}
    candidates: dict[tuple[str, str], list[PurePosixPath]] = {}
    for found in walk(src):
        parts = found.relative.parts
        if found.reason:
            skipped[found.relative] = found.reason
        elif any(part.startswith(".") for part in parts):
            skipped[found.relative] = "hidden: hidden file or folder"
        elif parts[0] not in SPLITS or len(parts) == 1:
            skipped[found.relative] = f"not_in_split: not inside one of {'/, '.join(SPLITS)}/"
        elif len(parts) == 2:
            skipped[found.relative] = "no_class_folder: file is not inside a class folder"
        elif len(parts) > 3:
            skipped[found.relative] = "nested_folder: in a sub-folder of a class folder (only <split>/<class>/<file>)"
        else:
            candidates.setdefault((parts[0], parts[1]), []).append(found.relative)
    images = [
        SourceImage(relative, split, label, name)
        for split in SPLITS
        for (in_split, label), files in sorted(candidates.items())
        if in_split == split
        for relative, name in _output_names(files).items()
    ]
    return images, skipped


def _write_source(item: SourceImage, *, src: Path, out: Path, seed: int) -> str:
    """Read one source file and write its seven stages; "" or why it could not be read."""
    try:
        image = _load_rgb(src / item.relative)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return f"unreadable: not a readable image ({type(error).__name__}: {error})"
    write_image_stages(LabelledImage(item.split, item.label, item.name, image), out, seed=seed)
    return ""


def make_stages(src: Path, out: Path, *, seed: int, workers: int | None = None) -> StagesReport:
    """Write all seven stages of an image folder and ``OUT/manifest.csv`` (see the module docstring)."""
    images, refused = source_entries(src)
    results = map_in_order(partial(_write_source, src=src, out=out, seed=seed), images, workers=workers)
    report = StagesReport()
    reasons: dict[PurePosixPath, tuple[str, str]] = {path: ("", reason) for path, reason in refused.items()}
    for item, reason in zip(images, results, strict=True):
        reasons[item.relative] = (item.label, reason)
        if reason:
            log.info("skipping %s: %s", src / item.relative, reason)
        else:
            report.add(item.split, item.label)
    report.skipped.update({src / path: reason for path, (_, reason) in sorted(reasons.items()) if reason})
    if not any(report.counts.values()):
        raise UserError(f"no readable images under {src}/{{train,val,test}}/<class>/")
    out.mkdir(parents=True, exist_ok=True)
    with (out / MANIFEST_FILE).open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        manifest = csv.writer(handle)
        manifest.writerow(MANIFEST_COLUMNS)
        for path, (label, reason) in sorted(reasons.items(), key=lambda row: row[0].parts):
            manifest.writerow((path.as_posix(), label, "skipped" if reason else "ok", reason))
    if report.skipped:
        first = ", ".join(str(path.relative_to(src)) for path in list(report.skipped)[:3])
        log.warning("skipped %d entr%s of %s (%s%s): every entry and its reason in %s", len(report.skipped),
                    "y" if len(report.skipped) == 1 else "ies", src, first, ", …" if len(report.skipped) > 3 else "",
                    out / MANIFEST_FILE)
    log.info("stages of %s written to %s: %s", src, out, report.summary())
    return report
