"""Turn one image file into a fixed-size RGB array, or say exactly why it cannot be used.

Inputs are untrusted user folders, so nothing here raises for a bad file: ``decode_file`` returns
a ``Decoded`` that holds either the pixels or a skip reason (``"<code>: <detail>"``), and the
caller records it. Decisions, applied to every image the same way:

* **Pixel budget first.** Width × height is read from the header and checked against
  ``max_pixels`` before any pixel is decoded (Pillow's own ``DecompressionBombError`` is caught
  too), so a decompression bomb costs a header read, not gigabytes.
* **Colour.** Everything becomes 8-bit RGB. Transparency (RGBA, LA, PA, or a palette/grey
  image with a transparent colour) is composited on white: the colour under fully transparent
  pixels is arbitrary (often black) and product-style photos have white backgrounds. 16-bit
  and 32-bit integer greys (``I;16*``, ``I``) are scaled from 0..65535 to 0..255 (Pillow's own
  conversion would clip them to white); CMYK, palette, grey and the rest use Pillow's
  conversion. Embedded ICC profiles are ignored. Multi-frame files use their first frame.
* **Orientation.** The EXIF orientation tag is applied, so a phone photo is upright.
* **Geometry.** Centre-crop to a square, then resize to ``image_size`` (bicubic): aspect ratio
  is kept, at the cost of the edges of non-square images. JPEGs are decoded at a reduced DCT
  scale (``Image.draft``: 1/2, 1/4 or 1/8, inside the decoder) while the image stays at least
  ``DRAFT_GAP`` times the target, which is much faster for photos (docs/benchmarks.md: speed and
  the difference from decoding every pixel).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps

from driftloop.files import HIDDEN, NOT_IMAGE, UNREADABLE, image_name_reason

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WIDE_INTEGER_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_WHITE = (255, 255, 255, 255)
# JPEG draft mode: the decoder may scale by 1/2, 1/4 or 1/8 while the image stays at least this many
# times the target; the bicubic resize does the rest (Pillow's ``thumbnail`` calls it ``reducing_gap``).
DRAFT_GAP = 2


class SkipCode(StrEnum):
    """Why a file was not used; the first word of every skip reason."""

    HIDDEN = HIDDEN
    NOT_IMAGE = NOT_IMAGE
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    UNREADABLE = UNREADABLE
    NO_CLASS_FOLDER = "no_class_folder"


def skip_reason(code: SkipCode, detail: str) -> str:
    return f"{code}: {detail}"


def skip_code(reason: str) -> str:
    """The code of a reason made by ``skip_reason`` (for counting skips by kind)."""
    return reason.split(":", 1)[0]


@dataclass(frozen=True)
class Decoded:
    """Either ``image`` (uint8, size × size × 3) or a non-empty ``reason`` it was skipped."""

    image: np.ndarray | None
    reason: str = ""


def screen_name(relative: Path) -> str:
    """A skip reason from the path alone (hidden, wrong extension), or ``""`` if worth decoding."""
    return image_name_reason(PurePosixPath(relative))


def decode_file(path: Path, image_size: int, max_pixels: int, *, draft_gap: int | None = DRAFT_GAP) -> Decoded:
    """Decode ``path`` into a square RGB array (see the module docstring for the rules).

    ``draft_gap`` None decodes every pixel (the reference the draft mode is measured against).
    """
    try:
        if path.stat().st_size == 0:
            return Decoded(None, skip_reason(SkipCode.EMPTY, "zero-byte file"))
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                detail = f"{width}x{height} = {width * height} pixels > max_pixels {max_pixels}"
                return Decoded(None, skip_reason(SkipCode.TOO_LARGE, detail))
            if draft_gap is not None:
                image.draft("RGB", (image_size * draft_gap, image_size * draft_gap))
            ImageOps.exif_transpose(image, in_place=True)
            square = centre_square(to_rgb(image)).resize((image_size, image_size), Image.Resampling.BICUBIC)
            pixels = np.asarray(square, dtype=np.uint8)
    except Image.DecompressionBombError as error:
        return Decoded(None, skip_reason(SkipCode.TOO_LARGE, str(error)))
    # Pillow's decoders signal bad data with many types (OSError, SyntaxError, ValueError,
    # EOFError, struct.error, ...); one bad file must never stop the run.
    except Exception as error:
        return Decoded(None, skip_reason(SkipCode.UNREADABLE, f"{type(error).__name__}: {error}"))
    return Decoded(pixels)


def centre_square(image: Image.Image) -> Image.Image:
    """The largest centred square; cropped before resizing so no pixel outside it bleeds in."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB with transparency composited on white and wide greys scaled, not clipped."""
    if image.mode in _WIDE_INTEGER_MODES:
        wide = np.asarray(image).astype(np.int64).clip(0, 65535)
        return Image.fromarray(((wide + 128) // 257).astype(np.uint8), mode="L").convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return image.convert("RGB")
