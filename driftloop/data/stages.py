"""The seven drift stages: one table of augmentations, applied with a seeded generator per image.

``make_stages`` turns any ``SRC/{train,val,test}/<class>/<image>`` folder into
``OUT/<stage>/{train,val,test}/<class>/<name>.png`` for every stage of ``STAGES``; the synthetic
set goes through the same ``write_stages`` code path.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from driftloop.components.entrypoint import ComponentError
from driftloop.data.seeding import rng_for
from driftloop.layout import SPLITS

log = logging.getLogger(__name__)

# Blur radii are given in pixels of the model's 64x64 input and scaled to each image's short
# side, so a stage blurs a 96-pixel synthetic image and a 2000-pixel photo alike.
MODEL_INPUT: Final = 64
_ALPHA_MODES: Final = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WIDE_GREYS: Final = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


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
    """What was written (images per split, the same for every stage) and what was skipped."""

    counts: Counter[str] = field(default_factory=Counter)
    classes: set[str] = field(default_factory=set)
    skipped: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        splits = ", ".join(f"{split} {self.counts[split]}" for split in SPLITS)
        return f"{len(STAGES)} stages x ({splits}) images, {len(self.classes)} classes, {len(self.skipped)} skipped"


def write_stages(images: Iterable[LabelledImage], out: Path, *, seed: int) -> StagesReport:
    """Write every image once per stage; each (stage, split, class, name) has its own generator."""
    report = StagesReport()
    for item in images:
        for spec in STAGES:
            rng = rng_for(seed, "stage", spec.name, item.split, item.label, item.name)
            folder = out / spec.name / item.split / item.label
            folder.mkdir(parents=True, exist_ok=True)
            save_png(apply_stage(item.image, spec, rng), folder / item.name)
        report.counts[item.split] += 1
        report.classes.add(item.label)
    return report


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


def _output_names(files: list[Path]) -> dict[Path, str]:
    """``photo.jpg`` -> ``photo.png``; stems that clash (``a.jpg``, ``a.png``) keep their suffix."""
    stems = Counter(path.stem for path in files)
    names: dict[Path, str] = {}
    for path in files:
        stem = path.stem if stems[path.stem] == 1 else path.name.replace(".", "_")
        names[path] = f"{stem}.png"
    return names


def folder_images(src: Path, skipped: list[Path]) -> Iterator[LabelledImage]:
    """Read ``src/{train,val,test}/<class>/<image>`` in sorted order; unreadable files go to ``skipped``."""
    missing = [split for split in SPLITS if not (src / split).is_dir()]
    if missing:
        raise ComponentError(f"{src} must hold {'/, '.join(SPLITS)}/ with one folder per class; missing {missing}")
    for split in SPLITS:
        for class_dir in sorted(p for p in (src / split).iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))
            for path, name in _output_names(files).items():
                try:
                    image = _load_rgb(path)
                except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
                    log.warning("skipping %s: not a readable image (%s)", path, error)
                    skipped.append(path)
                    continue
                yield LabelledImage(split=split, label=class_dir.name, name=name, image=image)


def make_stages(src: Path, out: Path, *, seed: int) -> StagesReport:
    """Write all seven stages of an image folder (see the module docstring for the layouts)."""
    skipped: list[Path] = []
    report = write_stages(folder_images(src, skipped), out, seed=seed)
    report.skipped.extend(skipped)
    if not any(report.counts.values()):
        raise ComponentError(f"no readable images under {src}/{{train,val,test}}/<class>/")
    log.info("stages of %s written to %s: %s", src, out, report.summary())
    return report

