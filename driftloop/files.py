"""Listing a user's folder without ever reading outside it.

Data sets and batches are untrusted folders. ``walk`` lists everything under a root that is a file
to read, and everything that is not read with the reason why, so that every caller (the batch and
data set import of the object store, the processing component, ``driftloop data stages``) applies
the same rules and can give every entry a manifest line:

* a regular file is read;
* a symbolic link is read only if it resolves to a file inside the root; a link that leaves the
  root (``photo.png -> /etc/passwd``) is ``outside_root``, a link to nothing (or a loop) is
  ``broken_link``, and a link to a folder is ``linked_folder`` (never followed: no file is listed
  twice, and no walk loops);
* a named pipe, socket or device is ``not_a_file`` (reading a pipe would block forever);
* a folder named like a file (``x.png/``) with no file to read in it is ``not_a_file``: it would
  otherwise vanish without a trace, as any empty folder does in an object store;
* a folder that cannot be listed, a file this process may not read and a link that cannot be
  resolved (``/proc/1/cwd/...``) are ``unreadable``.

An import into the object store copies only image candidates (``image_name_reason``): a folder of
other files (``/etc``) is refused before anything is copied.

A file name that is not valid UTF-8 is kept as Python reads it (surrogate escapes) and written
back byte for byte wherever a name is written to a file (``NAME_ENCODING``, ``NAME_ERRORS``).

Reasons read ``"<code>: <detail>"``, like the processing component's skip reasons. Only the
standard library is imported here: the object store (and so the decision Lambda) imports it.

When the object store imports a folder, what it does not import is stored beside the files as
``NOT_IMPORTED_FILE`` (a CSV of path and reason), and the processing component writes those
rows into its manifest: the import and the manifest agree on every entry.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

OUTSIDE_ROOT: Final = "outside_root"
BROKEN_LINK: Final = "broken_link"
LINKED_FOLDER: Final = "linked_folder"
NOT_A_FILE: Final = "not_a_file"
UNREADABLE: Final = "unreadable"

HIDDEN: Final = "hidden"
NOT_IMAGE: Final = "not_image"
# The file extensions decoded as images; any other file is skipped as ``not_image``.
IMAGE_EXTENSIONS: Final = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})

# How every file that holds file names (manifests, predictions.csv) is written and read: a name
# that is not valid UTF-8 survives, byte for byte, and no batch fails on it.
NAME_ENCODING: Final = "utf-8"
NAME_ERRORS: Final = "surrogateescape"

# What an import did not copy, stored beside the copied files; hidden, so no image can clash with it.
NOT_IMPORTED_FILE: Final = ".driftloop-not-imported.csv"
_NOT_IMPORTED_COLUMNS: Final = ("path", "reason")


@dataclass(frozen=True)
class Found:
    """One entry under a root: a file to read (``reason`` empty) or one that is not read, and why."""

    relative: PurePosixPath
    reason: str = ""

    @property
    def readable(self) -> bool:
        return not self.reason


def _reason(code: str, detail: str) -> str:
    return f"{code}: {detail}"


def image_name_reason(relative: PurePosixPath) -> str:
    """Why a file is not worth decoding as an image, by its path alone (hidden, another extension); "" if it is."""
    if any(part.startswith(".") for part in relative.parts):
        return _reason(HIDDEN, "hidden file or folder")
    suffix = relative.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        return _reason(NOT_IMAGE, f"{suffix or 'no extension'} is not one of {' '.join(sorted(IMAGE_EXTENSIONS))}")
    return ""


def walk(root: Path) -> list[Found]:
    """Every file under ``root`` to read and every entry that is not read, sorted by path parts.

    The root itself may be a link (the caller named it); nothing below it is followed out of it.
    Sorting by parts gives the order ``sorted(root.rglob("*"))`` gives on POSIX.
    """
    root_real = Path(os.path.realpath(root))
    found: list[Found] = []
    with os.scandir(root) as listing:  # a root that cannot be listed is the caller's error
        entries = sorted(listing, key=lambda entry: entry.name)
    _walk_entries(entries, PurePosixPath(), root_real, found)
    return sorted(found, key=lambda item: item.relative.parts)


def _walk_into(folder: Path, relative: PurePosixPath, root_real: Path, found: list[Found]) -> int:
    """Append the entries of a sub-folder; return how many readable files it holds (recursively)."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as error:
        found.append(Found(relative, _reason(UNREADABLE, f"cannot list folder: {error.strerror or error}")))
        return 0
    return _walk_entries(entries, relative, root_real, found)


def _walk_entries(entries: list[os.DirEntry[str]], relative: PurePosixPath, root_real: Path,
                  found: list[Found]) -> int:
    files = 0
    for entry in entries:
        path, rel = Path(entry.path), relative / entry.name
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError as error:  # gone since it was listed
            found.append(Found(rel, _reason(UNREADABLE, f"cannot stat: {error.strerror or error}")))
            continue
        if stat.S_ISLNK(mode):
            reason = _link_reason(path, root_real)
            found.append(Found(rel, reason))
            files += not reason
        elif stat.S_ISDIR(mode):
            inside = _walk_into(path, rel, root_real, found)
            if inside == 0 and PurePosixPath(entry.name).suffix:
                found.append(Found(rel, _reason(NOT_A_FILE, "a folder named like a file, with no file to read in it")))
            files += inside
        elif stat.S_ISREG(mode):
            reason = "" if os.access(path, os.R_OK) else _reason(UNREADABLE, "no permission to read the file")
            found.append(Found(rel, reason))
            files += not reason
        else:
            found.append(Found(rel, _reason(NOT_A_FILE, "not a regular file (a pipe, socket or device)")))
    return files


def _link_reason(link: Path, root_real: Path) -> str:
    """"" for a link to a regular file inside the root, else why it is not followed."""
    try:
        target = Path(os.path.realpath(link))
    except OSError as error:  # a link through a path this process may not resolve (/proc/1/cwd/...)
        return _reason(UNREADABLE, f"cannot resolve the symbolic link: {error.strerror or error}")
    if not target.is_relative_to(root_real):
        return _reason(OUTSIDE_ROOT, "symbolic link to a path outside the folder (not followed)")
    try:
        mode = target.stat().st_mode
    except OSError:
        return _reason(BROKEN_LINK, "symbolic link to nothing (a missing target or a loop)")
    if stat.S_ISDIR(mode):
        return _reason(LINKED_FOLDER, "symbolic link to a folder (links to folders are not followed)")
    if not stat.S_ISREG(mode):
        return _reason(NOT_A_FILE, "symbolic link to a pipe, socket or device")
    if not os.access(target, os.R_OK):
        return _reason(UNREADABLE, "no permission to read the file it links to")
    return ""


def not_imported_csv(entries: list[Found]) -> bytes:
    """The ``NOT_IMPORTED_FILE`` content for the entries an import did not copy."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(_NOT_IMPORTED_COLUMNS)
    writer.writerows((entry.relative.as_posix(), entry.reason) for entry in entries if entry.reason)
    return out.getvalue().encode(NAME_ENCODING, errors=NAME_ERRORS)


def read_not_imported(path: Path) -> list[Found]:
    """The entries an import recorded as not copied; rows that are not a clean relative path are ignored."""
    with path.open(newline="", encoding=NAME_ENCODING, errors=NAME_ERRORS) as handle:
        rows = list(csv.reader(handle))
    if not rows or tuple(rows[0]) != _NOT_IMPORTED_COLUMNS:
        return []
    entries = []
    for row in rows[1:]:
        if len(row) != 2 or not row[1]:
            continue
        relative = PurePosixPath(row[0])
        if relative.is_absolute() or not relative.parts or any(p in ("", ".", "..") for p in relative.parts):
            continue
        entries.append(Found(relative, row[1]))
    return entries
