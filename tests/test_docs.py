"""The README and docs/: short enough to read, every relative link resolves, every cited path exists.

A link resolves to a file of the repository and, when it names an anchor, to a heading of that file
(GitHub's anchors: the heading in lower case, punctuation dropped, spaces as hyphens). A path in
backticks under one of the repository's folders (``driftloop/ml/drift.py``) must exist, so a file
that moves takes its mentions with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted([README, *(REPO / "docs").glob("*.md")])
README_MAX_LINES = 250
# Generated blocks (tools/readme_results.py, tools/readme_visibility.py) and the file each lives in.
BLOCKS = {"README.md": "results", "docs/drift.md": "visibility"}
# Top-level folders whose paths the docs cite; paths with a placeholder (<x>, *, {a,b}, ...) are patterns.
CITED_ROOTS = ("driftloop", "stacks", "lambdas", "tests", "tools", "bench", "containers", "requirements", "docs")
WRITTEN_BY_RUNS = ("bench/.work/",)  # the benchmarks' scratch folder, made when they run

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def name(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", path.read_text()), re.MULTILINE):
        slug = anchor(heading)
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text()))


def test_anchors_follow_githubs_rules() -> None:
    assert anchor("The image check: `make images`") == "the-image-check-make-images"
    assert anchor("Running cost (on-demand, us-east-1, assumptions)") == "running-cost-on-demand-us-east-1-assumptions"
    assert anchor("What was verified, and where") == "what-was-verified-and-where"


def test_the_readme_is_read_in_five_minutes() -> None:
    assert len(README.read_text().splitlines()) <= README_MAX_LINES


@pytest.mark.parametrize("doc", DOCS, ids=name)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in links(doc):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        file = (doc.parent / file_part).resolve() if file_part else doc
        if not file.exists() or not file.is_relative_to(REPO):
            broken.append(f"{target}: no such file")
        elif fragment and (file.suffix != ".md" or fragment not in anchors(file)):
            broken.append(f"{target}: no heading #{fragment} in {name(file)}")
    assert not broken, f"{name(doc)}: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=name)
def test_every_cited_path_exists(doc: Path) -> None:
    missing = []
    for span in CODE_SPAN.findall(doc.read_text()):
        for token in span.split():
            token = token.strip(".,;:()")
            if not token.startswith(tuple(f"{root}/" for root in CITED_ROOTS)) or re.search(r"[<>*{}\[\]…]", token):
                continue
            if not (REPO / token).exists() and not token.startswith(WRITTEN_BY_RUNS):
                missing.append(token)
    assert not missing, f"{name(doc)} cites paths that do not exist: {missing}"


@pytest.mark.parametrize(("doc", "block"), BLOCKS.items())
def test_each_generated_block_is_where_its_generator_writes(doc: str, block: str) -> None:
    text = (REPO / doc).read_text()
    assert text.count(f"<!-- {block}:begin -->") == 1 and text.count(f"<!-- {block}:end -->") == 1
    others = [d for d in DOCS if name(d) != doc and f"<!-- {block}:begin -->" in d.read_text()]
    assert not others, f"the {block} block is also in {others}"
