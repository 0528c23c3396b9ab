"""The error a user can act on: raised anywhere a run cannot go on, shown as its message alone."""

from __future__ import annotations


class UserError(Exception):
    """A run that cannot go on, with a message that says what to do. Exit code 2, no traceback."""
