"""The dependency locks and the image definition agree with each other and with what they promise.

Fast and offline: no resolver and no container engine (``make images`` builds and runs the images).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from driftloop.pipelines import Component

REPO = Path(__file__).resolve().parents[1]
for folder in (REPO, REPO / "tests"):  # stacks/ lives at the repository root, support/ in tests/
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from support.job_runner import ContainerImage  # noqa: E402

from stacks.images import BUILD_CONTEXT_ALLOW, DOCKERFILE  # noqa: E402

REQUIREMENTS = REPO / "requirements"
# Only in the dev lock: what the tests, the CDK app, the lint and the emulator need.
DEV_ONLY = {"aws-cdk-lib", "cdk-nag", "constructs", "jsii", "moto", "pytest", "mypy", "ruff", "cfn-lint", "uv", "boto3"}
DEV_ONLY |= {"shap"}  # no job imports it; the tests compare driftloop.ml.explain against it
# What the runtime lock replaces or leaves out (requirements/runtime-overrides.txt says why).
LEFT_OUT_OF_RUNTIME = {"tensorflow", "opencv-python", "libclang", "tensorflow-io-gcs-filesystem"}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """package -> (version, hashes) of a lock file; every entry must be ``name==version`` with hashes."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=\S)", (REQUIREMENTS / name).read_text()):
        lines = [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
        if not lines:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)(\s*;[^\\]*)?\s*\\?", lines[0])
        assert match, f"{name}: not an exact pin: {lines[0]!r}"
        hashes = [h for line in lines[1:] for h in re.findall(r"--hash=sha256:([0-9a-f]{64})", line)]
        assert hashes, f"{name}: {lines[0]} has no hashes"
        entries[_name(match.group(1))] = (match.group(3), hashes)
    return entries


def top_level(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REQUIREMENTS / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?==(\S+)", line)
            assert match, f"{name}: top-level requirements are exact pins: {line!r}"
            pins[_name(match.group(1))] = match.group(3)
    return pins


def test_every_locked_package_is_pinned_with_hashes() -> None:
    assert len(lock("runtime.txt")) > 50 and len(lock("dev.txt")) > len(lock("runtime.txt"))


@pytest.mark.parametrize(("source", "locked"), [("runtime.in", "runtime.txt"), ("dev.in", "dev.txt")])
def test_each_lock_holds_its_top_level_pins(source: str, locked: str) -> None:
    entries = lock(locked)
    for package, version in top_level(source).items():
        assert entries.get(package, ("missing",))[0] == version, f"{locked} is stale for {package}: run `make lock`"


def test_the_runtime_lock_is_only_what_the_jobs_need() -> None:
    runtime = set(lock("runtime.txt"))
    assert runtime & (DEV_ONLY | LEFT_OUT_OF_RUNTIME) == set()
    assert "tensorflow-cpu" in runtime


def test_dev_runs_the_runtime_lock_at_the_same_versions() -> None:
    runtime, dev = lock("runtime.txt"), lock("dev.txt")
    for package, (version, _) in runtime.items():
        counterpart = "tensorflow" if package == "tensorflow-cpu" else package
        assert dev.get(counterpart, ("missing",))[0] == version, f"{package}: dev.txt differs from runtime.txt"


def test_the_top_level_requirements_are_the_dev_lock() -> None:
    """`pip install --require-hashes -r requirements.txt` (what a CDK user types, and `make install` runs)
    installs exactly the hashed dev lock: the file holds nothing but comments and that include."""
    lines = [line.split("#", 1)[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line] == ["-r requirements/dev.txt"]
    install = re.search(r"^\t.*pip install .*--require-hashes -r (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert install and install.group(1) == "requirements.txt"


def test_requires_python_admits_no_interpreter_without_tarfile_filters() -> None:
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    lower = re.search(r">=\s*([\d.]+)", requires)
    assert lower and tuple(int(p) for p in lower.group(1).split(".")) >= (3, 11, 4), requires
    assert sys.version_info >= (3, 11, 4)


def test_the_dockerfile_pins_its_base_and_names_one_target_per_component() -> None:
    text = (REPO / DOCKERFILE).read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base.group(1))
    targets = set(re.findall(r"^FROM runtime AS (\S+)$", text, re.MULTILINE))
    assert targets == {c.value for c in Component}
    assert "requirements/runtime.txt" in text and "dev.txt" not in text
    for component in Component:
        image = ContainerImage.from_dockerfile(REPO / DOCKERFILE, target=component.value)
        assert image.entrypoint == ("python", "-m", f"driftloop.components.{component.value}")
        env = image.environment
        assert env["TF_USE_LEGACY_KERAS"] == "1" and env["TF_CPP_MIN_LOG_LEVEL"] == "3"
        assert env["TF_ENABLE_ONEDNN_OPTS"] == "1"  # the kernels configure_process() chooses outside the images
        assert env["NUMBA_CACHE_DIR"].startswith("/tmp/") and env["MPLCONFIGDIR"].startswith("/tmp/")


def test_dockerignore_allows_what_the_cdk_asset_allows() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    assert {line[1:] for line in lines if line.startswith("!")} == set(BUILD_CONTEXT_ALLOW)
