"""Object store: artifacts and data under '/'-separated keys (a local folder, or one S3 bucket).

Keys follow ``driftloop.layout``. Both implementations accept the same keys and reject the same
ones (absolute, '..', '.', empty parts, backslashes), so a key that works locally works on AWS.
A prefix passed to ``list``/``download_dir`` is a folder: ``data/stage-1`` does not match
``data/stage-10/...``.
"""

from __future__ import annotations

import builtins
import errno
import logging
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final

from botocore.exceptions import ClientError

from driftloop.errors import UserError
from driftloop.files import NOT_IMPORTED_FILE, Found, not_imported_csv, walk

# Local writes go to a hidden temp file first; no valid key can start with this, so list() can skip them.
_TEMP_PREFIX: Final = ".partial-"

log = logging.getLogger(__name__)


class ObjectNotFound(LookupError):
    """No object under the key (the message names it)."""


@dataclass(frozen=True)
class ListedObject:
    """A key and when its object was last written (S3's LastModified; locally the file's mtime), in UTC."""

    key: str
    modified: datetime


def check_key(key: str) -> None:
    parts = key.split("/")
    if (
        not key
        or "\\" in key
        or any(part in ("", ".", "..") for part in parts)
        or any(part.startswith(_TEMP_PREFIX) for part in parts)
    ):
        raise ValueError(f"object key must be a relative 'a/b/c' path without '.', '..' or empty parts: {key!r}")


def _is_key(key: str) -> bool:
    try:
        check_key(key)
    except ValueError:
        return False
    return True


def _folder(prefix: str) -> str:
    """'' (everything) or a checked folder prefix ending in '/'."""
    prefix = prefix.strip("/")
    if not prefix:
        return ""
    check_key(prefix)
    return prefix + "/"


# A reason not to copy a file of an imported folder, by its relative path ("": copy it).
Screen = Callable[[PurePosixPath], str]


class NothingToImport(UserError):
    """An imported folder that holds no file to import (the message says what it holds)."""


def files_to_upload(local_dir: Path, prefix: str, screen: Screen | None = None) -> tuple[list[PurePosixPath],
                                                                                        list[Found]]:
    """What ``upload_dir`` copies from ``local_dir`` to ``prefix``, and what it does not with why."""
    folder = _folder(prefix)
    files: list[PurePosixPath] = []
    refused: list[Found] = []
    for item in walk(local_dir):
        if item.relative == PurePosixPath(NOT_IMPORTED_FILE):
            continue  # the store's own record of an earlier import
        reason = item.reason or (screen(item.relative) if screen is not None else "")
        if not reason and not _is_key(folder + item.relative.as_posix()):
            reason = ("bad_name: a name no object key may have (a backslash, or the store's temporary prefix "
                      f"{_TEMP_PREFIX!r})")
        if reason:
            refused.append(Found(item.relative, reason))
        else:
            files.append(item.relative)
    return files, refused


class ObjectStore(ABC):
    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only if no object has the key; True if this call created it.

        Of two writers racing for one key exactly one wins, on both backends (S3's conditional
        write, ``If-None-Match: *``; locally a hard link, which fails where the name exists): what
        claims and leases are built on.
        """

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def copy(self, source: str, target: str) -> None:
        """Put the object at ``source`` also at ``target``, without passing its bytes through this process."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def get_file(self, key: str, path: Path) -> None:
        """Write the object to ``path`` (parents created); a failed download leaves no file behind."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key under the folder ``prefix`` (recursive), sorted."""

    @abstractmethod
    def list_modified(self, prefix: str = "") -> builtins.list[ListedObject]:
        """``list`` with each object's write time: what orders objects by age (e.g. batch markers)."""

    @abstractmethod
    def list_folders(self, prefix: str = "") -> builtins.list[str]:
        """Names of the folders directly under ``prefix`` that hold at least one object, sorted.

        One level only (S3's ``Delimiter='/'``), so finding the batches under ``batches/`` costs
        one request per thousand batches, not one per thousand images. (On S3 an empty "folder"
        object made in the console also counts; its folder simply holds nothing else.)
        """

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def uri(self, key: str) -> str: ...

    @abstractmethod
    def key_from_uri(self, uri: str) -> str:
        """The inverse of ``uri``; ValueError for a URI outside this store."""

    def upload_dir(self, local_dir: Path, prefix: str, *, screen: Screen | None = None) -> int:
        """Put every file under ``local_dir`` at ``prefix/<relative path>``; returns the file count.

        Nothing outside ``local_dir`` is read (``driftloop.files.walk``): links that leave it,
        broken links, links to folders, special files and unreadable files are not copied, nor files
        whose names cannot be keys, and neither can an empty folder named like a file be; those are
        listed in ``prefix/NOT_IMPORTED_FILE``, which the processing component turns into manifest lines.

        ``screen`` (an import of a user's folder, e.g. ``driftloop.files.image_name_reason``) gives a
        reason not to copy a file by its path; a folder with no file it lets through is refused
        (``NothingToImport``) before anything is copied.
        """
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise NotADirectoryError(f"cannot upload {local_dir}: not a directory")
        folder = _folder(prefix)
        files, refused = files_to_upload(local_dir, prefix, screen)
        if screen is not None and not files:
            first = f"; e.g. {refused[0].relative}: {refused[0].reason}" if refused else ""
            raise NothingToImport(f"no images in {local_dir}, nothing was copied: of its {len(refused)} entr"
                                  f"{'y' if len(refused) == 1 else 'ies'} none is an image file this process may "
                                  f"read{first}")
        for relative in files:
            self.put_file(folder + relative.as_posix(), local_dir / relative)
        if refused:
            self.put_bytes(folder + NOT_IMPORTED_FILE, not_imported_csv(refused))
            log.warning("%s: %d entr%s not imported (e.g. links out of the folder, broken links), first %s: %s",
                        local_dir, len(refused), "y" if len(refused) == 1 else "ies", refused[0].relative,
                        refused[0].reason)
        return len(files)

    def download_dir(self, prefix: str, local_dir: Path) -> int:
        """Get every object under ``prefix`` into ``local_dir``; returns the file count (0: nothing there)."""
        folder = _folder(prefix)
        keys = self.list(folder)
        for key in keys:
            relative = key[len(folder) :]
            check_key(relative)  # a hostile key must not write outside local_dir
            self.get_file(key, Path(local_dir, *relative.split("/")))
        return len(keys)


class StoreFull(UserError):
    """The disk under the local object store is full: said with the object and what to do, nothing half-written."""


def _said_when_full(path: Path, error: OSError) -> OSError | StoreFull:
    if error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return error
    return StoreFull(f"object store: no space left on the disk writing {path}: free space on the disk that holds "
                     "it (or use a work folder on another disk), then run again; nothing half-written was kept")


def _make_folder(path: Path) -> None:
    """The folder of ``path``, made where missing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _said_when_full(path, error) from error


def _write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write into a temp file beside ``path``, then rename: readers never see half a file."""
    _make_folder(path)
    try:
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
    except OSError as error:
        raise _said_when_full(path, error) from error
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(temp, path)
    except OSError as error:
        Path(temp).unlink(missing_ok=True)
        raise _said_when_full(path, error) from error
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class LocalObjectStore(ObjectStore):
    """A folder. Its URIs are references relative to the folder: the key itself (``runs/train/…``).

    Records point into the store by these, so a workdir can be moved or copied and served from.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root.joinpath(*key.split("/"))

    def _existing(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key} in {self.root}")
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        _write_atomically(self._path(key), lambda out: out.write(data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        _make_folder(path)
        temp = path.parent / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            temp.write_bytes(data)
            os.link(temp, path)  # atomic, and refused where the name exists
        except FileExistsError:
            return False
        except OSError as error:
            raise _said_when_full(path, error) from error
        finally:
            temp.unlink(missing_ok=True)
        return True

    def get_bytes(self, key: str) -> bytes:
        return self._existing(key).read_bytes()

    def copy(self, source: str, target: str) -> None:
        self.get_file(source, self._path(target))  # a hard link where it can (objects never change in place)

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as src:
            _write_atomically(self._path(key), lambda out: shutil.copyfileobj(src, out))

    def get_file(self, key: str, path: Path) -> None:
        """The object at ``path``: a hard link to it where the file system allows, else a copy.

        A link is safe to hand out because an object is never changed in place (a put writes a new
        file and renames it over the old one, so the link keeps the old bytes), and it spares the
        local runner a copy of every image of a batch for each step and host. Whoever gets the file
        must only read it, as every component does with its inputs.
        """
        source, path = self._existing(key), Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.parent / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            os.link(source, temp)
        except OSError:  # another file system, or one without hard links
            with open(source, "rb") as src:
                _write_atomically(path, lambda out: shutil.copyfileobj(src, out))
            return
        os.replace(temp, path)

    def list(self, prefix: str = "") -> list[str]:
        folder = _folder(prefix)
        base = self.root.joinpath(*folder.split("/")[:-1]) if folder else self.root
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(_TEMP_PREFIX)
        )

    def list_modified(self, prefix: str = "") -> builtins.list[ListedObject]:
        return [ListedObject(key, datetime.fromtimestamp(self._path(key).stat().st_mtime, UTC))
                for key in self.list(prefix)]

    def list_folders(self, prefix: str = "") -> builtins.list[str]:
        folder = _folder(prefix)
        base = self.root.joinpath(*folder.split("/")[:-1]) if folder else self.root
        if not base.is_dir():
            return []
        return sorted(
            child.name for child in base.iterdir()
            if child.is_dir() and not child.name.startswith(_TEMP_PREFIX)
            and any(p.is_file() and not p.name.startswith(_TEMP_PREFIX) for p in child.rglob("*"))
        )

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def uri(self, key: str) -> str:
        check_key(key)
        return key

    def key_from_uri(self, uri: str) -> str:
        if "://" in uri:
            raise ValueError(f"{uri} is not in the local object store {self.root} (its URIs are store-relative keys)")
        check_key(uri)
        return uri


class S3ObjectStore(ObjectStore):
    """One S3 bucket; files go through boto3's managed transfers (multipart, streamed to disk)."""

    def __init__(self, bucket: str, client: Any = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("s3", config=Config(retries={"mode": "standard"}))
        self.bucket = bucket
        self.client = client

    def _missing(self, key: str) -> ObjectNotFound:
        return ObjectNotFound(f"no object {key} in s3://{self.bucket}")

    def put_bytes(self, key: str, data: bytes) -> None:
        check_key(key)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        check_key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as error:
            # 412: the key exists; 409: a conditional write to the same key is in flight (S3 says retry,
            # but the other writer will win or has won).
            if _code(error) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise
        return True

    def get_bytes(self, key: str) -> bytes:
        check_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _code(error) in ("NoSuchKey", "404"):
                raise self._missing(key) from error
            raise
        return bytes(response["Body"].read())

    def put_file(self, key: str, path: Path) -> None:
        check_key(key)
        self.client.upload_file(str(path), self.bucket, key)

    def copy(self, source: str, target: str) -> None:
        check_key(source)
        check_key(target)
        try:
            self.client.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source})
        except ClientError as error:
            if _code(error) in ("NoSuchKey", "404"):
                raise self._missing(source) from error
            raise

    def get_file(self, key: str, path: Path) -> None:
        check_key(key)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Downloads into a temp file beside ``path`` and renames it, like LocalObjectStore.
            self.client.download_file(self.bucket, key, str(path))
        except ClientError as error:
            if _code(error) in ("NoSuchKey", "404"):
                raise self._missing(key) from error
            raise

    def list(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=_folder(prefix))
        # Keys ending in '/' are the S3 console's empty "folder" markers, not objects.
        keys = (obj["Key"] for page in pages for obj in page.get("Contents", []))
        return sorted(key for key in keys if not key.endswith("/"))

    def list_modified(self, prefix: str = "") -> builtins.list[ListedObject]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=_folder(prefix))
        listed = (ListedObject(obj["Key"], obj["LastModified"].astimezone(UTC))
                  for page in pages for obj in page.get("Contents", []))
        return sorted((item for item in listed if not item.key.endswith("/")), key=lambda item: item.key)

    def list_folders(self, prefix: str = "") -> builtins.list[str]:
        folder = _folder(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder, Delimiter="/")
        prefixes = (common["Prefix"] for page in pages for common in page.get("CommonPrefixes", []))
        return sorted(name for name in (p[len(folder):].rstrip("/") for p in prefixes) if name)

    def exists(self, key: str) -> bool:
        check_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _code(error) in ("NoSuchKey", "404"):
                return False
            raise
        return True

    def uri(self, key: str) -> str:
        check_key(key)
        return f"s3://{self.bucket}/{key}"

    def key_from_uri(self, uri: str) -> str:
        base = f"s3://{self.bucket}/"
        if not uri.startswith(base):
            raise ValueError(f"{uri} is not in the bucket s3://{self.bucket}")
        key = uri[len(base) :]
        check_key(key)
        return key


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
