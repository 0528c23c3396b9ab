"""Listing a user's folder: what is read, what is not, and why; nothing outside the folder is followed."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from driftloop.files import Found, image_name_reason, not_imported_csv, read_not_imported, walk

pytestmark = pytest.mark.faults  # the fault campaign: docs/reliability.md


def reasons(root: Path) -> dict[str, str]:
    return {found.relative.as_posix(): found.reason for found in walk(root)}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the folder standing for /etc/passwd."""
    secret = tmp_path / "etc" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    return secret


def test_regular_files_are_read_in_sorted_path_order(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    for name in ("b/2.png", "a.png", "b/1.png", "a/z.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    assert reasons(root) == {"a.png": "", "a/z.png": "", "b/1.png": "", "b/2.png": ""}
    assert [f.relative for f in walk(root)] == [p.relative_to(root) for p in sorted(root.rglob("*")) if p.is_file()]


def test_a_link_out_of_the_folder_is_not_followed(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "batch"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "passwd.png").symlink_to(outside)
    (root / "relative.png").symlink_to(Path("..") / "etc" / "passwd")
    found = reasons(root)
    assert found["cats/passwd.png"].startswith("outside_root: ")
    assert found["relative.png"].startswith("outside_root: ")


def test_a_link_to_a_file_inside_the_folder_is_read(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "a.png").write_bytes(b"x")
    (root / "also-a.png").symlink_to(Path("cats") / "a.png")
    assert reasons(root) == {"also-a.png": "", "cats/a.png": ""}


def test_broken_links_loops_and_links_to_folders_get_reasons(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.png").write_bytes(b"x")
    (root / "dangling.png").symlink_to(root / "missing.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    (root / "again").symlink_to(root / "real")
    found = reasons(root)
    assert found["dangling.png"].startswith("broken_link: ")
    assert found["loop.png"].startswith("broken_link: ")
    assert found["again"].startswith("linked_folder: ")
    assert "again/a.png" not in found and found["real/a.png"] == ""


def test_a_folder_named_like_an_image_gets_a_line_only_when_there_is_nothing_in_it(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    (root / "cats" / "x.png").mkdir(parents=True)
    (root / "empty-class").mkdir()
    (root / "full.png").mkdir()
    (root / "full.png" / "inner.png").write_bytes(b"x")
    found = reasons(root)
    assert found["cats/x.png"].startswith("not_a_file: ")
    assert found["full.png/inner.png"] == "" and "full.png" not in found
    assert "empty-class" not in found  # an empty class folder is structure, not an entry


def test_a_named_pipe_is_not_opened(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    root.mkdir()
    os.mkfifo(root / "pipe.png")  # opening it to read would block forever
    assert reasons(root)["pipe.png"].startswith("not_a_file: ")


def test_the_not_imported_record_round_trips_and_ignores_paths_that_leave_the_folder(tmp_path: Path) -> None:
    entries = [Found(PurePosixPath("cats/passwd.png"), "outside_root: link"), Found(PurePosixPath("a.png"))]
    path = tmp_path / "record.csv"
    path.write_bytes(not_imported_csv(entries))
    assert read_not_imported(path) == [entries[0]]
    path.write_text("path,reason\n../evil.png,outside_root: x\n/abs.png,outside_root: x\nok.png,\n")
    assert read_not_imported(path) == []


def test_a_link_that_cannot_be_resolved_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    try:
        os.readlink("/proc/1/cwd")
    except PermissionError:
        pass
    else:
        pytest.skip("this process may resolve /proc/1/cwd")
    root = tmp_path / "batch"
    root.mkdir()
    (root / "a.png").write_bytes(b"x")
    (root / "host.png").symlink_to("/proc/1/cwd/etc/hostname")
    assert reasons(root) == {"a.png": "",
                             "host.png": "unreadable: cannot resolve the symbolic link: Permission denied"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root may read any file")
def test_a_file_this_process_may_not_read_is_unreadable(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    root.mkdir()
    (root / "shadow.png").write_bytes(b"x")
    (root / "shadow.png").chmod(0)
    (root / "link.png").symlink_to(root / "shadow.png")
    assert reasons(root) == {"link.png": "unreadable: no permission to read the file it links to",
                             "shadow.png": "unreadable: no permission to read the file"}


def test_an_image_candidate_is_a_visible_file_with_an_image_extension() -> None:
    assert image_name_reason(PurePosixPath("cats/a.JPG")) == ""
    assert image_name_reason(PurePosixPath("cats/.a.png")) == "hidden: hidden file or folder"
    assert image_name_reason(PurePosixPath("shadow")).startswith("not_image: no extension is not one of .bmp")
