"""Generated sections of a Markdown file, between a begin and an end marker."""

from __future__ import annotations


def replace_section(text: str, section: str, begin: str, end: str) -> str:
    """``text`` with the part from ``begin`` to ``end`` (markers included) replaced by ``section``."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"the file has no {begin} ... {end} section to replace")
    return text[:start] + section + text[stop + len(end):]
