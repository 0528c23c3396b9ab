"""The processing component: raw image folders in, shards + manifest out (train and serve modes).

Train mode reads ``train`` and ``val`` laid out as ``<folder>/<class>/<image>``; the classes are
train's sorted class folders, and val may only use those (its labels index the same list).
Serve mode reads ``batch``: flat images (unlabelled), or ``<class>/<image>`` folders (labelled,
as the simulation's test sets are; classes are the batch's own sorted folder names and consumers
map them by name). Files are walked in sorted path order, so the output is deterministic.

Every input entry gets one ``manifest.csv`` row (file, class, status ok|skipped, reason); a bad
file is recorded and skipped (rules in ``driftloop.ml.images``), never fatal. Nothing outside the
input folder is read: links that leave it, broken links, links to folders, special files and
folders named like files are skipped with their reason (``driftloop.files``). A file's label
comes from its own path only: inside a class folder it has that class; directly under the top of
the folder (a "loose" file) it has none, and is skipped as ``no_class_folder`` in train mode
(training needs labels) but served unlabelled in serve mode, like the images of a flat batch. A
folder with no usable image at all is a ``UserError`` (exit 2). Images stream through in
windows, so memory is bounded by the shard size, not the folder. Decoding runs on one thread per
core (Pillow releases the GIL in its decoders and resampling: 1.25x one thread on 2 cores for
small PNGs, no start-up cost); large inputs go to a process pool instead. Either way results
come back in input order, giving the same shards as one thread.

Serve mode on several hosts (``driftloop.hosts``): each host gets part of the batch's files
(``ShardedByS3Key``) and writes its own part of the output (``shard-00000-<host>.npz``,
``summary-<host>.json``, ``manifest-<host>.csv``). A host whose part holds no usable image (or
no file) writes an empty part instead of failing: whether the *batch* has any is known only
when the parts come together, and the drift step that merges them fails the run then. As a
file's label depends on its path alone, not on the files beside it, every image is labelled (or
not) the same whichever host gets it.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path, PurePosixPath

from driftloop.components.entrypoint import Invocation, read_settings, run_component
from driftloop.config import ProcessingConfig
from driftloop.errors import UserError
from driftloop.files import NAME_ENCODING, NAME_ERRORS, NOT_IMPORTED_FILE, read_not_imported, walk
from driftloop.hosts import Hosts, is_part, own_cores
from driftloop.layout import READY_MARKER
from driftloop.ml.images import Decoded, SkipCode, decode_file, screen_name, skip_code, skip_reason
from driftloop.ml.shards import SHARD_GLOB, SUMMARY_FILE, UNKNOWN_LABEL, ShardSummary, ShardWriter
from driftloop.pipelines import MANIFEST_FILE, Component

log = logging.getLogger("driftloop.processing")

MANIFEST_COLUMNS = ("file", "class", "status", "reason")
# Decoding costs about 25 ms of CPU per MB of input (plus ~1 ms a file) and each spawned worker
# about 0.5 s to start: below this many input bytes (~3 s of decoding) one process is as fast.
PARALLEL_MIN_BYTES = 128 * 2**20
# Images decoded per round trip to the pool; with the shard buffer this bounds memory.
MIN_WINDOW = 128

# Starts decoding a list of paths and returns the call that waits for its results, in order.
Decoder = Callable[[list[Path]], Callable[[], list[Decoded]]]


@dataclass(frozen=True)
class Entry:
    """One input file: where it is, its label, and a skip reason known before decoding."""

    relative: Path
    class_name: str
    label: int
    reason: str


def class_folders(folder: Path) -> list[str]:
    """Sorted names of the visible sub-folders: the classes of a labelled folder.

    Links to folders are not classes (they are never followed, see ``driftloop.files``), nor
    is a folder named like a file with nothing to read in it (it gets a manifest line instead).
    """
    refused = {found.relative.parts[0] for found in walk(folder) if len(found.relative.parts) == 1 and found.reason}
    return sorted(
        p.name for p in folder.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and p.name not in refused
    )


def list_entries(folder: Path, classes: Sequence[str] | None, *, needs_labels: bool = True) -> Iterator[Entry]:
    """Every entry under ``folder`` in sorted order; ``classes`` None means a flat, unlabelled folder.

    With ``classes``, a file in a class folder is labelled with it and a loose file (directly under
    ``folder``) is unlabelled: skipped as ``no_class_folder`` if ``needs_labels``, else kept.

    Entries are ``driftloop.files.walk``'s: files to decode and, with their reason, links that
    leave the folder, broken links, special files and folders named like files. When the folder is
    an object-store import, the entries the import did not copy (``NOT_IMPORTED_FILE``) are listed
    too, so the manifest has a line for every entry of the folder the user gave. A batch's top-level
    ``_READY`` marker is left out.
    """
    index = {name: i for i, name in enumerate(classes or ())}
    # A production batch's completion marker is the store's, not an image of the batch.
    found = [item for item in walk(folder) if item.relative != PurePosixPath(READY_MARKER)]
    record = PurePosixPath(NOT_IMPORTED_FILE)
    if any(item.relative == record and item.readable for item in found):
        found = [item for item in found if item.relative != record] + read_not_imported(folder / record)
        found.sort(key=lambda item: item.relative.parts)
    for item in found:
        relative = Path(item.relative)
        reason = item.reason or screen_name(relative)
        class_name, label = "", UNKNOWN_LABEL
        if classes is not None and not reason:
            if len(relative.parts) > 1:
                class_name = relative.parts[0]
                label = index[class_name]
            elif needs_labels:
                reason = skip_reason(SkipCode.NO_CLASS_FOLDER, "file is not inside a class folder")
        yield Entry(relative, class_name, label, reason)


def _decode_in_order(
    entries: Sequence[Entry], folder: Path, decode: Decoder, window: int
) -> Iterator[tuple[Entry, Decoded]]:
    """Each entry with its result, in input order. The next window decodes while the caller writes
    this one's images (so the decoders never wait for the shard writer); at most two windows of
    decoded images are in flight."""
    pending = iter(entries)

    def start() -> tuple[list[Entry], Callable[[], list[Decoded]]]:
        part = list(islice(pending, window))
        return part, decode([folder / e.relative for e in part if not e.reason])

    part, results = start()
    while part:
        following = start()
        decoded = iter(results())
        for entry in part:
            yield entry, Decoded(None, entry.reason) if entry.reason else next(decoded)
        part, results = following


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # gone since it was listed: decoding will record it
        return 0


def available_cores() -> int:
    """How many CPU cores this process may run on (``driftloop.hosts.own_cores``)."""
    return len(own_cores())


def _worker_count(paths: Sequence[Path]) -> int:
    """Processes to decode with: one (threads only) unless the input is large enough to pay for a pool."""
    return 1 if sum(_size(p) for p in paths) < PARALLEL_MIN_BYTES else available_cores()


@contextmanager
def _decoder(config: ProcessingConfig, workers: int) -> Iterator[Decoder]:
    """Decode a list of paths in order: on a thread per core in this process, or in a pool of ``workers``."""
    decode = partial(decode_file, image_size=config.image_size, max_pixels=config.max_pixels)
    if workers <= 1:
        with ThreadPoolExecutor(available_cores(), thread_name_prefix="decode") as threads:

            def on_threads(paths: list[Path]) -> Callable[[], list[Decoded]]:
                futures = [threads.submit(decode, path) for path in paths]
                return lambda: [future.result() for future in futures]

            yield on_threads
        return
    # spawn, not fork: the caller (tests, the local runner) may already run TensorFlow's threads.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield lambda paths: pool.map_async(decode, paths).get


def _clear_outputs(out_dir: Path, hosts: Hosts) -> None:
    """Remove this component's files from an earlier run into the same folder (a re-run); on one of
    several hosts only this host's, since the others write theirs into the same folder meanwhile."""
    if hosts.many:
        stale = [*out_dir.glob(hosts.part_name(SHARD_GLOB)), out_dir / hosts.part_name(SUMMARY_FILE),
                 out_dir / hosts.part_name(MANIFEST_FILE)]
    else:
        stale = [*out_dir.glob(SHARD_GLOB), *(p for p in out_dir.iterdir()
                                              if is_part(p.name, SUMMARY_FILE) or is_part(p.name, MANIFEST_FILE))]
    for path in stale:
        path.unlink(missing_ok=True)


def process_folder(
    folder: Path, out_dir: Path, config: ProcessingConfig, classes: Sequence[str] | None,
    *, workers: int | None = None, hosts: Hosts | None = None, needs_labels: bool = True,
) -> ShardSummary:
    """Write shards, ``summary.json`` and ``manifest.csv`` for one input folder.

    ``classes`` is the label list (None for a flat, unlabelled folder); without ``needs_labels``,
    loose files beside the class folders are kept unlabelled (``list_entries``); ``workers`` None picks
    one process for small inputs and all available cores for large ones. On one of several
    ``hosts`` the folder is this host's part of the batch, and an empty part is no error.
    """
    hosts = hosts or Hosts()
    entries = list(list_entries(folder, classes, needs_labels=needs_labels)) if folder.is_dir() else []
    if workers is None:
        workers = _worker_count([folder / e.relative for e in entries if not e.reason])
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out_dir, hosts)
    writer = ShardWriter(out_dir, config.shard_size, config.image_size, classes=tuple(classes or ()), hosts=hosts)
    skipped: Counter[str] = Counter()
    per_class: Counter[str] = Counter()
    manifest_path = out_dir / hosts.part_name(MANIFEST_FILE)
    # A file name that is not valid UTF-8 is still written, byte for byte.
    with (
        manifest_path.open("w", newline="", encoding=NAME_ENCODING, errors=NAME_ERRORS) as handle,
        _decoder(config, workers) as decode,
    ):
        manifest = csv.writer(handle)
        manifest.writerow(MANIFEST_COLUMNS)
        for entry, result in _decode_in_order(entries, folder, decode, max(config.shard_size, MIN_WINDOW)):
            file = entry.relative.as_posix()
            if result.image is None:
                skipped[skip_code(result.reason)] += 1
                manifest.writerow((file, entry.class_name, "skipped", result.reason))
            else:
                writer.add(result.image, entry.label, file)
                per_class[entry.class_name] += 1
                manifest.writerow((file, entry.class_name, "ok", ""))
    n_ok = sum(per_class.values())
    if n_ok == 0 and not hosts.many:
        raise UserError(nothing_usable(str(folder), len(entries), skipped, str(manifest_path)))
    extra: dict[str, object] = {"n_files": len(entries), "skipped_by_code": dict(sorted(skipped.items()))}
    if classes is not None:
        extra["images_per_class"] = {name: per_class[name] for name in classes}
        empty = [name for name in classes if not per_class[name]]
        if empty:
            log.warning("%s: no usable images for class(es) %s", folder, empty)
    summary = writer.close(n_skipped=sum(skipped.values()), **extra)
    log.info(
        "processed %s%s: %d images in %d shards, %d skipped %s (%d worker(s))",
        folder, f" (part {hosts.current})" if hosts.many else "", summary.n_images, summary.n_shards,
        summary.n_skipped, dict(skipped), workers,
    )
    return summary


def nothing_usable(folder: str, n_files: int, skipped: Mapping[str, int], manifest: str) -> str:
    """Why a batch gives nothing to serve: no file, or every file skipped (the drift merge says it too)."""
    if n_files == 0:
        return f"no usable images in {folder}: it holds no files"
    kinds = ", ".join(f"{code}: {count}" for code, count in sorted(skipped.items()))
    return f"no usable images in {folder}: all {n_files} file(s) were skipped ({kinds}); reasons per file in {manifest}"


def _input(invocation: Invocation, channel: str) -> Path:
    folder = invocation.inputs[channel]
    if not folder.is_dir():
        raise UserError(f"input folder for channel {channel!r} does not exist: {folder}")
    return folder


def run_train(invocation: Invocation) -> dict[str, ShardSummary]:
    """Process train and val with train's classes."""
    config = read_settings(invocation, ProcessingConfig, "processing")
    train, val = _input(invocation, "train"), _input(invocation, "val")
    classes = class_folders(train)
    if not classes:
        raise UserError(f"train folder {train} has no class folders; expected {train}/<class>/<image>")
    unknown = sorted(set(class_folders(val)) - set(classes))
    if unknown:
        raise UserError(f"val folder {val} has class folder(s) {unknown} that train does not have ({classes})")
    return {
        "train": process_folder(train, invocation.outputs["train"], config, classes),
        "val": process_folder(val, invocation.outputs["val"], config, classes),
    }


def run_serve(invocation: Invocation) -> dict[str, ShardSummary]:
    """Process one batch (or this host's part of it): images in class folders labelled, the others
    (a flat batch's, loose files beside class folders) unlabelled."""
    config = read_settings(invocation, ProcessingConfig, "processing")
    hosts = invocation.hosts
    batch = invocation.inputs["batch"] if hosts.many else _input(invocation, "batch")
    classes = (class_folders(batch) if batch.is_dir() else []) or None
    return {"batch": process_folder(batch, invocation.outputs["batch"], config, classes, hosts=hosts,
                                    needs_labels=False)}


RUNNERS = {"train": run_train, "serve": run_serve}


def main(argv: Sequence[str] | None = None) -> int:
    return run_component(Component.PROCESSING, RUNNERS, argv)


if __name__ == "__main__":
    sys.exit(main())
