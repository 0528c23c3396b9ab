"""Processed image shards: the format between the processing component and the others.

A processed folder holds ``shard-00000.npz``, ``shard-00001.npz``, ... and ``summary.json``.
Each shard has ``images`` (uint8, N×H×W×3), ``labels`` (int64, -1 where the class is unknown),
``files`` (the source file names) and ``classes`` (the names its labels index). Readers stream one
shard at a time, so memory is bounded by the shard size, not by the number of images.

Written by a job on several hosts, the folder holds each host's part: ``shard-00000-<host>.npz``
and ``summary-<host>.json`` (``driftloop.hosts``). A shard says everything needed to read it, so
any subset of the shards (what ``ShardedByS3Key`` gives one host) can be read on its own;
``read_summary`` adds the parts up.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from driftloop.hosts import Hosts, part_files

SUMMARY_FILE = "summary.json"
SHARD_GLOB = "shard-*.npz"
UNKNOWN_LABEL = -1


@dataclass(frozen=True)
class Shard:
    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray  # int64 (N,), UNKNOWN_LABEL where unlabelled
    files: np.ndarray  # str (N,)
    classes: tuple[str, ...] = ()  # what ``labels`` index; empty for unlabelled images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @classmethod
    def empty(cls, image_size: int) -> Shard:
        """No images, of the given size."""
        return cls(np.zeros((0, image_size, image_size, 3), np.uint8), np.zeros(0, np.int64), np.zeros(0, str))


@dataclass(frozen=True)
class ShardSummary:
    classes: list[str]
    image_size: int
    n_images: int
    n_skipped: int
    n_shards: int
    labelled: bool  # some image has a label
    extra: dict[str, object] = field(default_factory=dict)


class ShardWriter:
    """Collects images and writes a shard whenever ``shard_size`` of them are buffered."""

    def __init__(
        self, out_dir: Path, shard_size: int, image_size: int, *, classes: tuple[str, ...] = (),
        hosts: Hosts | None = None,
    ) -> None:
        if shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        self.out_dir = out_dir
        self.shard_size = shard_size
        self.image_size = image_size
        self.classes = tuple(classes)
        self.hosts = hosts or Hosts()
        self._images: list[np.ndarray] = []
        self._labels: list[int] = []
        self._files: list[str] = []
        self.n_images = 0
        self.n_shards = 0
        self.labelled = False
        out_dir.mkdir(parents=True, exist_ok=True)

    def add(self, image: np.ndarray, label: int, file: str) -> None:
        expected = (self.image_size, self.image_size, 3)
        if image.shape != expected or image.dtype != np.uint8:
            raise ValueError(f"{file}: expected uint8 {expected}, got {image.dtype} {image.shape}")
        self._images.append(image)
        self._labels.append(label)
        self._files.append(file)
        self.labelled = self.labelled or bool(label != UNKNOWN_LABEL)
        if len(self._images) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._images:
            return
        path = self.out_dir / self.hosts.part_name(f"shard-{self.n_shards:05d}.npz")
        _save_npz(
            path,
            images=np.stack(self._images),
            labels=np.asarray(self._labels, dtype=np.int64),
            files=np.asarray(self._files, dtype=str),
            classes=np.asarray(self.classes, dtype=str),
        )
        self.n_images += len(self._images)
        self.n_shards += 1
        self._images, self._labels, self._files = [], [], []

    def close(self, n_skipped: int, **extra: object) -> ShardSummary:
        """Write the last shard and this part's summary (``summary.json``, or ``summary-<host>.json``)."""
        self.flush()
        classes = list(self.classes)
        summary = ShardSummary(
            classes=classes,
            image_size=self.image_size,
            n_images=self.n_images,
            n_skipped=n_skipped,
            n_shards=self.n_shards,
            labelled=self.labelled,
            extra=dict(extra),
        )
        (self.out_dir / self.hosts.part_name(SUMMARY_FILE)).write_text(
            json.dumps(asdict(summary), indent=2))
        return summary


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez``, but byte-reproducible: fixed member timestamps (np.savez stamps the time)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def write_shards(
    out_dir: Path, items: Iterable[tuple[np.ndarray, int, str]], *, shard_size: int, image_size: int,
    classes: list[str], n_skipped: int = 0,
) -> ShardSummary:
    writer = ShardWriter(out_dir, shard_size, image_size, classes=tuple(classes))
    for image, label, file in items:
        writer.add(image, label, file)
    return writer.close(n_skipped)


def summary_parts(folder: Path) -> dict[str, ShardSummary]:
    """Each host's summary in a processed folder, by file name (one, unless processing scaled out)."""
    return {path.name: ShardSummary(**json.loads(path.read_text()))
            for path in part_files(folder, SUMMARY_FILE)}


def merge_summaries(parts: Iterable[ShardSummary]) -> ShardSummary:
    """One summary of several hosts' parts of a batch: counts added up, classes united."""
    parts = list(parts)
    if len(parts) == 1:
        return parts[0]
    sizes = {p.image_size for p in parts}
    if len(sizes) != 1:
        raise ValueError(f"the parts of a processed folder have different image sizes {sorted(sizes)}")
    classes = sorted({c for p in parts for c in p.classes})
    n_images = sum(p.n_images for p in parts)
    skipped: dict[str, int] = {}
    for part in parts:
        for code, count in dict(part.extra.get("skipped_by_code", {})).items():  # type: ignore[call-overload]
            skipped[code] = skipped.get(code, 0) + int(count)
    extra: dict[str, object] = {"n_files": sum(int(p.extra.get("n_files", 0)) for p in parts),  # type: ignore[call-overload]
                                "skipped_by_code": dict(sorted(skipped.items())), "n_parts": len(parts)}
    return ShardSummary(classes=classes, image_size=sizes.pop(), n_images=n_images,
                        n_skipped=sum(p.n_skipped for p in parts), n_shards=sum(p.n_shards for p in parts),
                        labelled=any(p.labelled for p in parts), extra=extra)


def read_summary(folder: Path) -> ShardSummary:
    """The folder's summary; the parts added up when several hosts wrote it."""
    parts = summary_parts(folder)
    if not parts:
        raise FileNotFoundError(
            f"{folder} is not a processed folder (no {SUMMARY_FILE}); run the processing component first"
        )
    return merge_summaries(parts.values())


def remap_labels(labels: np.ndarray, source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """Indices into ``source`` -> indices into ``target`` by class name; -1 where unknown."""
    index = {name: i for i, name in enumerate(target)}
    table = np.array([index.get(name, UNKNOWN_LABEL) for name in source] + [UNKNOWN_LABEL], dtype=np.int64)
    # UNKNOWN_LABEL (-1) indexes the table's last entry, which is UNKNOWN_LABEL again.
    return table[labels]


def path_order(file: str) -> tuple[str, ...]:
    """The order processing writes images in: by source path, folder by folder."""
    return PurePosixPath(file).parts


def shard_files(folder: Path) -> Iterator[np.ndarray]:
    """The source file names of each shard, without loading its images."""
    for path in shard_paths(folder):
        with np.load(path, allow_pickle=False) as data:
            yield data["files"]


def shard_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob(SHARD_GLOB))


def iter_shards(folder: Path) -> Iterator[Shard]:
    """Yield the shards of a processed folder one at a time, in order."""
    for path in shard_paths(folder):
        with np.load(path, allow_pickle=False) as data:
            yield Shard(images=data["images"], labels=data["labels"], files=data["files"],
                        classes=tuple(str(c) for c in data["classes"]))


def load_all(folder: Path, limit: int | None = None) -> Shard:
    """Concatenate shards (for training and small reference sets); ``limit`` caps the count."""
    images, labels, files = [], [], []
    classes = tuple(read_summary(folder).classes)  # every part's classes: labels index these
    count = 0
    for shard in iter_shards(folder):
        take = len(shard) if limit is None else min(len(shard), limit - count)
        images.append(shard.images[:take])
        labels.append(remap_labels(shard.labels[:take], shard.classes, classes))
        files.append(shard.files[:take])
        count += take
        if limit is not None and count >= limit:
            break
    if not images:
        return Shard.empty(read_summary(folder).image_size)
    return Shard(np.concatenate(images), np.concatenate(labels), np.concatenate(files), classes)
