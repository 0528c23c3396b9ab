"""The console is for people: results and driftloop's warnings on it, everything else in a log file."""

from __future__ import annotations

import io
import logging
import os
import sys
from pathlib import Path
from typing import Final

LOG_FILE: Final = "driftloop.log"


def make_workdir(workdir: Path) -> Path:
    """``workdir``, made if missing; UserError, saying what to do, if it is a file or cannot be written."""
    from driftloop.errors import UserError

    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"the work folder {workdir} is a file, not a folder: give --workdir a folder "
                        "(it is made if missing)")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot make the work folder {workdir} ({error.strerror}): give --workdir a folder "
                        "you can write to") from error
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise UserError(f"the work folder {workdir} is read-only: give --workdir a folder you can write to, "
                        "or make this one writable")
    return workdir


class _ConsoleHandler(logging.Handler):
    """Log lines on the console through tqdm, so that they never tear the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise
            self.handleError(record)


def _driftloop_or_error(record: logging.LogRecord) -> bool:
    """Quiet console: driftloop's own warnings, and errors from anywhere."""
    return record.levelno >= logging.ERROR or record.name == "driftloop" or record.name.startswith("driftloop.")


def route_output(log_file: Path | None, *, verbose: int, fresh: bool = False) -> None:
    """Console for results and driftloop's warnings; ``log_file`` for everything else.

    TensorFlow writes from C++ straight to file descriptor 2 (the CUDA factory and ``NodeDef`` lines
    come before its logging is even set up), so with a log file descriptor 2 itself is pointed at
    it, and Python's ``sys.stderr`` at a copy of the console. Processes started from here (the
    decoding and data-generation pools) inherit the log. Must run before TensorFlow is imported.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        stream = log_file.open("w" if fresh else "a", buffering=1, encoding="utf-8", errors="backslashreplace")
        sys.stdout.flush()
        sys.stderr.flush()
        console = os.dup(2)
        os.dup2(stream.fileno(), 2)
        sys.stderr = io.TextIOWrapper(os.fdopen(console, "wb", buffering=0), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        to_file = logging.StreamHandler(stream)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(to_file)
    to_console = _ConsoleHandler(logging.INFO if verbose else logging.WARNING)
    to_console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        to_console.addFilter(_driftloop_or_error)
    root.addHandler(to_console)
    logging.captureWarnings(True)  # Python warnings (Keras, alibi-detect, …) become log records
