"""`make images`: build the four component images, then run the train and serve chain inside them
exactly as SageMaker would run the jobs of the synthesized state machines.

1. **Engine.** docker if its daemon answers, else podman (installed with apt-get if missing). podman
   runs as root with runc and raised nofile/nproc limits, from a ``containers.conf`` written into the
   work folder for this run (``CONTAINERS_CONF``); the machine's configuration is not touched.
2. **Base image.** ``--base-image`` (e.g. the Dockerfile's default, ``python:3.11.x-slim-bookworm``,
   where Docker Hub is reachable) or, by default, an offline stand-in: ``debootstrap --variant=minbase
   bookworm`` from the Debian mirror, the shared libraries CPython needs, and a copy of the CPython that
   runs this check (>= 3.11.4, without its site-packages) under ``/usr/local``; imported once and reused.
3. **Build.** ``containers/Dockerfile``, one ``--target`` per component, ``BASE_IMAGE`` as build
   argument. pip inside the build gets this machine's pip configuration and CA bundle as build
   secrets (mounted for the install step only). Each image's unpacked size must be <= 2 GB.
4. **Chain.** ``app.py`` is synthesized twice: with ``cdk.json``'s settings (every step on one
   instance: each run is one whole-pipeline job) and with ``instances.process = 2`` (the serve
   pipeline as a job a step). Every SageMaker task of the train and serve state machines is read from
   the template (image asset, ``ContainerEntrypoint``/``ContainerArguments``, environment, inputs and
   outputs with their container paths) and run in its image with ``--network none``, a memory limit, a
   read-only root and a non-root user; S3 is a folder per JSONPath of the state (``$.plan.uri.model``
   ...), jobs run in data order, one container a job (a step on N instances runs once, as one host).
   The chain, one job a run: train on the original data, serve the original and the noisy test sets,
   retrain on the noisy data (with the first model as champion); then both serve runs again a job a
   step, which must give the same drift reports and predictions. Then two failing jobs (the one-job
   serve run and a per-step job) must exit non-zero and leave their message in
   ``/opt/ml/output/message``. No job log may carry CUDA/cuDNN lines.

Exits 0 when everything holds, 1 with a message saying what failed otherwise; a summary (timings,
sizes, drift results) goes to ``<workdir>/image_check.json``.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from driftloop.pipelines import BATCH_START_FIELD, DRIFT_REPORT_FILE, PIPELINES, PREDICTIONS_FILE, Component
from tools.cfn_template import resolve

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = "containers/Dockerfile"
IMAGE_PREFIX = "localhost/driftloop"
SIZE_LIMIT = 2 * 1000**3  # bytes, unpacked
MEMORY_LIMIT = "4g"  # half of an ml.m5.large
JOB_TIMEOUT_S = 1800
DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Shared libraries the images' wheels expect from the OS (python:slim has them too).
EXTRA_DEBIAN_PACKAGES = ("libstdc++6", "libgcc-s1", "libgomp1", "ca-certificates")
CONTAINERS_CONF = """\
# Written by tools/image_check.py for this run only (CONTAINERS_CONF). crun refuses this machine
# kind's mixed cgroup set-up; podman's default ulimits exceed its hard limits.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""
# Log lines that must not appear in any job log (TensorFlow probing for a GPU).
GPU_NOISE = re.compile(r"cuda|cudnn|cufft|cublas|cuinit|TF-TRT", re.IGNORECASE)
# Where SageMaker reads a failed job's message (the channels' paths are driftloop.pipelines').
SAGEMAKER_OUTPUT = PurePosixPath("/opt/ml/output")
CONTAINER_UID = "1000:1000"
# The settings on top of cdk.json's that render the serve pipeline as a job a step (a step on N > 1).
PER_STEP_INSTANCES = {"process": 2}
class CheckFailed(Exception):
    """What failed, said plainly; the check exits 1 with this message."""


def log(message: str) -> None:
    print(f"[images {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, what: str = "", **kwargs: Any) -> str:
    """Run a command; on failure raise ``CheckFailed`` with the end of its output."""
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise CheckFailed(f"{what or shlex.join(argv[:3])} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


# ------------------------------------------------------------------------------------------ engine
def apt_install(packages: Iterable[str]) -> None:
    """Install Debian packages that are missing (this machine kind: Debian 12, root)."""
    missing = [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    if os.geteuid() != 0:
        raise CheckFailed(f"needs the Debian packages {', '.join(missing)}: install them or run as root")
    log(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env, what="apt-get update")
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env, what="apt-get install")


@dataclass
class Engine:
    program: str  # docker or podman
    env: dict[str, str]

    def __call__(self, *args: str, what: str = "", **kwargs: Any) -> str:
        return run([self.program, *args], env=self.env, what=what or f"{self.program} {args[0]}", **kwargs)

    def has_image(self, tag: str) -> bool:
        done = subprocess.run([self.program, "image", "inspect", tag], env=self.env, capture_output=True)
        return done.returncode == 0

    def size(self, tag: str) -> int:
        return int(self("image", "inspect", "--format", "{{.Size}}", tag).strip())


def find_engine(workdir: Path, wanted: str | None) -> Engine:
    if wanted in (None, "docker") and shutil.which("docker"):
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        if subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0:
            return Engine("docker", env)
        if wanted == "docker":
            raise CheckFailed("docker is installed but its daemon does not answer (`docker info`)")
    if not shutil.which("podman") or not shutil.which("runc"):
        apt_install(["podman", "runc"])
    conf = workdir / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return Engine("podman", {**os.environ, "CONTAINERS_CONF": str(conf)})


# ------------------------------------------------------------------------------- stand-in base image
def python_version(prefix: Path) -> str:
    return run([str(prefix / "bin" / "python3"), "-c", "import platform; print(platform.python_version())"]).strip()


def debian_packages_for(binaries: Iterable[Path]) -> set[str]:
    """The Debian packages that hold the shared libraries these binaries load (through ldd and dpkg)."""
    libraries: set[str] = set()
    for binary in binaries:
        for line in run(["ldd", str(binary)]).splitlines():
            match = re.search(r"=> (/\S+)", line)
            if match and "/.pyenv/" not in match.group(1) and not match.group(1).startswith(str(binary.parents[1])):
                libraries.add(os.path.realpath(match.group(1)))
    packages: set[str] = set()
    for library in sorted(libraries):
        for candidate in (library, library.replace("/usr/lib/", "/lib/", 1)):
            done = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if done.returncode == 0:
                packages.add(done.stdout.split(":", 1)[0])
                break
        else:
            raise CheckFailed(f"{library}: no Debian package holds it, so the stand-in base cannot get it")
    return packages


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (deb.debian.org if none is configured)."""
    for source in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = source.read_text() if source.is_file() else ""
        for match in re.finditer(r"(?:URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s", text, re.MULTILINE):
            return match.group(1)
    return DEFAULT_MIRROR


def standin_base(engine: Engine, workdir: Path, *, rebuild: bool) -> str:
    """An offline base image: Debian minbase plus this check's CPython under /usr/local."""
    prefix = Path(sys.base_prefix)
    version = python_version(prefix)
    parts = tuple(int(p) for p in version.split(".")[:3])
    if not (3, 11, 4) <= parts < (3, 12):
        raise CheckFailed(f"the stand-in base needs CPython >= 3.11.4, < 3.12 (tarfile filters); {prefix} is {version}")
    tag = f"{IMAGE_PREFIX}-standin-base:{DEBIAN_SUITE}-python{version}"
    if engine.has_image(tag) and not rebuild:
        log(f"stand-in base {tag}: reusing it (--rebuild-base makes it again)")
        return tag
    apt_install(["debootstrap", "binutils"])
    binaries = [prefix / "bin" / f"python{version.rsplit('.', 1)[0]}"]
    binaries += sorted((prefix / "lib").glob("python3.*/lib-dynload/*.so"))
    packages = sorted(debian_packages_for(binaries) | set(EXTRA_DEBIAN_PACKAGES))
    rootfs = workdir / "standin-rootfs"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    mirror = debian_mirror()
    log(f"stand-in base: debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror} with {len(packages)} packages")
    run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", DEBIAN_SUITE, str(rootfs), mirror],
        what="debootstrap",
    )
    local = rootfs / "usr" / "local"
    skip = shutil.ignore_patterns(
        *("site-packages", "test", "tests", "idlelib", "tkinter", "turtledemo", "__pycache__"),
        *("config-3.*", "*.a", "pkgconfig"),  # what only C extension builds need
    )
    for part in ("bin", "lib"):
        shutil.copytree(prefix / part, local / part, symlinks=True, dirs_exist_ok=True, ignore=skip)
    (local / "lib" / f"python{version.rsplit('.', 1)[0]}" / "site-packages").mkdir(exist_ok=True)
    for script in (local / "bin").iterdir():  # pyenv's console scripts point at pyenv's path
        if script.name.startswith(("pip", "idle", "pydoc", "2to3", "python3-config")):
            script.unlink()
    # python:slim's binaries carry no debug information; pyenv's do (libpython alone: 23 MB).
    objects = [local / "bin" / binaries[0].name, *(local / "lib").glob("libpython3*.so*")]
    objects += [p for p in (local / "lib").glob("python3.*/lib-dynload/*.so")]
    run(["strip", "--strip-debug", *(str(o) for o in objects if o.is_file() and not o.is_symlink())], what="strip")
    if not (local / "bin" / "python").exists():
        (local / "bin" / "python").symlink_to("python3")
    run(["chroot", str(rootfs), "/sbin/ldconfig"], what="ldconfig in the stand-in")  # libpython from /usr/local/lib
    run(["chroot", str(rootfs), "/usr/local/bin/python3", "-m", "ensurepip", "--default-pip"], what="ensurepip")
    for clutter in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/info"):
        shutil.rmtree(rootfs / clutter, ignore_errors=True)
    archive = workdir / "standin-rootfs.tar"
    run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(archive), "."], what="tar of the stand-in")
    shutil.rmtree(rootfs)
    engine(
        "import",
        "--change", "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change", "ENV LANG=C.UTF-8",
        "--change", 'CMD ["python3"]',
        str(archive), tag,
        what="import of the stand-in base",
    )  # fmt: skip
    archive.unlink()
    log(f"stand-in base {tag}: {engine.size(tag) / 1e6:.0f} MB")
    return tag


# ----------------------------------------------------------------------------------------- building
def build_secrets(workdir: Path) -> list[str]:
    """This machine's pip configuration (index, proxy, timeout) and CA bundle as build secrets."""
    done = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    settings: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.rpartition(".")[2]
        value = value.strip().strip("'\"")
        if name in ("index-url", "extra-index-url"):  # only what a container can reach
            value = " ".join(url for url in value.split() if url.startswith(("http://", "https://")))
        if name in ("index-url", "extra-index-url", "trusted-host", "proxy", "timeout", "default-timeout") and value:
            settings[name] = value
    cert = os.environ.get("PIP_CERT") or next(
        (line.partition("=")[2].strip().strip("'\"") for line in done.stdout.splitlines() if ".cert=" in line), ""
    )
    secrets: list[str] = []
    if cert and Path(cert).is_file():
        settings["cert"] = "/run/secrets/ca"
        secrets += ["--secret", f"id=ca,src={cert}"]
    if settings:
        conf = configparser.ConfigParser()
        conf["global"] = settings
        path = workdir / "build-pip.conf"
        with path.open("w") as handle:
            conf.write(handle)
        secrets += ["--secret", f"id=pip.conf,src={path}"]
    return secrets


def image_tag(component: str) -> str:
    return f"{IMAGE_PREFIX}-{component}:check"


def build_images(engine: Engine, base_image: str, workdir: Path, *, no_cache: bool) -> float:
    secrets = build_secrets(workdir)
    started = time.monotonic()
    for number, component in enumerate(Component):
        log(f"building {image_tag(component)} (target {component})")
        engine(
            "build", "-f", str(REPO / DOCKERFILE), "--target", component,
            "--build-arg", f"BASE_IMAGE={base_image}", *secrets,
            *(["--no-cache"] if no_cache and number == 0 else []),  # the later ones share its layers
            "-t", image_tag(component), str(REPO),
            what=f"build of the {component} image",
        )  # fmt: skip
    return time.monotonic() - started


# --------------------------------------------------------------------------- the synthesized template
@dataclass(frozen=True)
class Channel:
    container_path: PurePosixPath
    artifact: str  # the artifact whose S3 URI the state gives (``$.plan.uri.<artifact>``)


@dataclass(frozen=True)
class Job:
    pipeline: str
    state: str
    component: str
    entrypoint: tuple[str, ...] | None
    arguments: tuple[str, ...]
    inputs: tuple[Channel, ...]
    outputs: tuple[Channel, ...]
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.pipeline}-{self.state}"


def synthesize(outdir: Path, instances: Mapping[str, int] | None = None) -> Path:
    """``app.py`` with cdk.json's context, and these instance counts when given."""
    if outdir.exists():
        shutil.rmtree(outdir)
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    if instances is not None:
        context["driftloop"] = {**context.get("driftloop", {}), "instances": dict(instances)}
    env = {
        **os.environ,
        "CDK_OUTDIR": str(outdir),
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_DEFAULT_ACCOUNT": "123456789012",
        "CDK_DEFAULT_REGION": "us-east-1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    run([sys.executable, "app.py"], env=env, cwd=REPO, what="synthesis of app.py", timeout=900)
    return outdir


def image_components(outdir: Path) -> dict[str, str]:
    """Image tag (the asset hash) -> the Dockerfile target it builds, from the asset manifests."""
    found: dict[str, str] = {}
    for manifest in outdir.glob("*.assets.json"):
        for asset in json.loads(manifest.read_text()).get("dockerImages", {}).values():
            target = asset["source"].get("dockerBuildTarget")
            if asset["source"].get("dockerFile") != DOCKERFILE or target not in tuple(Component):
                raise CheckFailed(f"image asset {asset['source']} is not a target of {DOCKERFILE}")
            for destination in asset["destinations"].values():
                found[destination["imageTag"]] = target
    return found


def _artifact(item: Mapping[str, Any], what: str) -> str:
    path = item.get("S3Uri.$") or item.get("S3OutputPath.$")
    if not isinstance(path, str) or not re.fullmatch(r"\$(\.[A-Za-z_][A-Za-z0-9_]*)+", path):
        raise CheckFailed(f"{what}: its S3 URI is not a plain JSONPath of the state ({item}); teach the check")
    return path.rsplit(".", 1)[1]


def _job(pipeline: str, state: str, spec: Mapping[str, Any], components: Mapping[str, str]) -> Job:
    params = spec["Parameters"]
    what = f"{pipeline} state {state}"
    if not spec["Resource"].endswith("createProcessingJob.sync"):
        raise CheckFailed(f"{what}: unknown SageMaker integration {spec['Resource']}; teach the check")
    app = params["AppSpecification"]
    inputs = tuple(
        Channel(PurePosixPath(i["S3Input"]["LocalPath"]), _artifact(i["S3Input"], what))
        for i in params.get("ProcessingInputs", [])
    )
    outputs = tuple(
        Channel(PurePosixPath(o["S3Output"]["LocalPath"]), _artifact(o["S3Output"], what))
        for o in params.get("ProcessingOutputConfig", {}).get("Outputs", [])
    )
    tag = app["ImageUri"].rpartition(":")[2]
    if tag not in components:
        raise CheckFailed(f"{what}: image {app['ImageUri']} is not one of the template's image assets")
    return Job(
        pipeline=pipeline, state=state, component=components[tag],
        entrypoint=tuple(app["ContainerEntrypoint"]) if "ContainerEntrypoint" in app else None,
        arguments=tuple(app.get("ContainerArguments", ())), inputs=inputs, outputs=outputs,
        environment={str(k): str(v) for k, v in params.get("Environment", {}).items()},
    )  # fmt: skip


def _walk(states: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for name, spec in states.items():
        yield name, spec
        for branch in spec.get("Branches", []):
            yield from _walk(branch["States"])
        if "ItemProcessor" in spec:
            yield from _walk(spec["ItemProcessor"]["States"])


def read_pipelines(outdir: Path) -> dict[str, list[Job]]:
    """Pipeline name ("train", "serve") -> its SageMaker jobs, read from the synthesized templates."""
    components = image_components(outdir)
    jobs: dict[str, list[Job]] = {}
    for template_file in sorted(outdir.glob("*.template.json")):
        for resource in json.loads(template_file.read_text())["Resources"].values():
            if resource["Type"] != "AWS::StepFunctions::StateMachine":
                continue
            try:
                definition = json.loads(resolve(resource["Properties"]["DefinitionString"]))
            except ValueError as error:
                raise CheckFailed(f"a state machine definition cannot be read: {error}") from error
            found = [(n, s) for n, s in _walk(definition["States"]) if ":::sagemaker:" in str(s.get("Resource", ""))]
            if not found:
                continue
            tags = [t for _, s in found for t in s["Parameters"].get("Tags", [])]
            pipelines = {t["Value"] for t in tags if t["Key"] == "driftloop:pipeline"}
            if len(pipelines) != 1:
                raise CheckFailed(f"a state machine's SageMaker jobs name no single pipeline tag: {pipelines}")
            pipeline = pipelines.pop()
            jobs[pipeline] = [_job(pipeline, n, s, components) for n, s in found]
    if set(jobs) != {"train", "serve"}:
        raise CheckFailed(f"expected a train and a serve state machine with SageMaker jobs, found {sorted(jobs)}")
    return jobs


@dataclass(frozen=True)
class Inputs:
    """Where a run's inputs come from, as its plan step resolves them (``driftloop.pipelines``)."""

    external: dict[str, str]  # artifact -> the start field that names it (raw images)
    resolved: dict[str, str]  # artifact -> the field of the current train record that holds it
    run_settings: dict[str, dict[str, str]]  # step -> {setting: the run fact it takes}
    # artifact -> the artifacts its step needs to run at all (``Step.only_if``; e.g. a champion)
    only_if: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, pipeline: str) -> Inputs:
        definition = PIPELINES[pipeline]  # type: ignore[index]
        return cls(
            external=dict(definition.external),
            resolved=dict(definition.resolved),
            run_settings={step.name: dict(step.run_settings) for step in definition.steps},
            only_if={a: step.only_if for step in definition.steps if step.only_if for a in step.output_artifacts()},
        )

    def not_written(self, sources: Iterable[str]) -> set[str]:
        """The artifacts no step of a run with these sources writes: their step needs what the run lacks."""
        return {a for a, needs in self.only_if.items() if not set(needs) <= set(sources)}

    def environment(self, job: Job, facts: Mapping[str, str]) -> dict[str, str]:
        """The job's environment as Step Functions renders it from the run's plan."""
        rendered: dict[str, str] = {}
        for name, value in job.environment.items():
            if not name.endswith(".$"):
                rendered[name] = value
                continue
            rendered[name[:-2]] = json.dumps(self._rendered(job, name, value, facts), separators=(",", ":"))
        return rendered


    def _rendered(self, job: Job, name: str, value: str, facts: Mapping[str, str]) -> Mapping[str, str]:
        """What ``States.JsonToString`` of a path in the plan gives: the run's facts (the whole-pipeline
        job's), or one step's settings made from them as the plan makes them."""
        if value == "States.JsonToString($.plan.facts)":
            return facts
        match = re.fullmatch(r"States\.JsonToString\(\$\.plan\.settings\.(\w+)\)", value)
        if not match or match.group(1) not in self.run_settings:
            raise CheckFailed(f"{job.name}: cannot render its environment {name}: {value}; teach the check")
        return {key: facts[fact] for key, fact in self.run_settings[match.group(1)].items()}


# ------------------------------------------------------------------------------------------- running
@dataclass
class JobResult:
    name: str
    component: str
    seconds: float


def container_run(
    engine: Engine,
    job: Job,
    mounts: Sequence[tuple[Path, PurePosixPath, bool]],
    log_path: Path,
    environment: Mapping[str, str],
) -> tuple[int, float]:
    argv = [
        "run", "--rm", "--network", "none", "--memory", MEMORY_LIMIT, "--memory-swap", MEMORY_LIMIT,
        "--read-only", "--tmpfs", "/tmp:rw,exec,mode=1777", "--user", CONTAINER_UID,
    ]  # fmt: skip
    for host, container, read_only in mounts:
        argv += ["-v", f"{host}:{container}:{'ro' if read_only else 'rw'}"]
    for name, value in environment.items():
        argv += ["-e", f"{name}={value}"]
    if job.entrypoint is not None:
        argv += ["--entrypoint", json.dumps(list(job.entrypoint))]
    argv += [image_tag(job.component), *job.arguments]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("w") as handle:
        handle.write(f"{engine.program} {shlex.join(argv)}\n")
        handle.flush()
        try:
            done = subprocess.run(
                [engine.program, *argv], env=engine.env, stdout=handle, stderr=subprocess.STDOUT, timeout=JOB_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as error:
            raise CheckFailed(f"{job.name}: still running after {JOB_TIMEOUT_S} s") from error
    return done.returncode, time.monotonic() - started


def writable(path: Path) -> Path:
    """Open to the container's user (not root), like SageMaker's channel folders are to root."""
    path.mkdir(parents=True, exist_ok=True)
    for item in [path, *path.rglob("*")]:
        item.chmod(0o777 if item.is_dir() else 0o666)
    return path


def job_mounts(job: Job, scratch: Path, sources: Mapping[str, Path]) -> list[tuple[Path, PurePosixPath, bool]]:
    """SageMaker's /opt/ml for a job: each input a writable copy of its S3 prefix, empty outputs."""
    if scratch.exists():
        shutil.rmtree(scratch)
    mounts: list[tuple[Path, PurePosixPath, bool]] = []
    for channel in job.inputs:
        local = scratch / "in" / channel.container_path.name
        shutil.copytree(sources[channel.artifact], local)
        mounts.append((writable(local), channel.container_path, False))
    for channel in job.outputs:
        mounts.append((writable(scratch / "out" / channel.container_path.name), channel.container_path, False))
    mounts.append((writable(scratch / "output"), SAGEMAKER_OUTPUT, False))
    return mounts


def run_job(
    engine: Engine, job: Job, store: Path, sources: Mapping[str, Path], workdir: Path, environment: Mapping[str, str],
    *, not_written: Iterable[str] = (),
) -> JobResult:
    """Run one job as SageMaker would; its outputs are "uploaded" to the run's store (an empty one
    uploads nothing: allowed only for the ``not_written`` artifacts, whose step the run skips)."""
    scratch = workdir / "jobs" / job.name
    for channel in job.inputs:
        folder = sources.get(channel.artifact)
        if folder is None or not folder.is_dir() or not any(folder.rglob("*")):
            raise CheckFailed(f"{job.name}: input {channel.container_path} ({channel.artifact}) has no objects")
    mounts = job_mounts(job, scratch, sources)
    log_path = workdir / "logs" / f"{job.name}.log"
    code, seconds = container_run(engine, job, mounts, log_path, environment)
    if code != 0:
        reason = _failure_reason(scratch / "output")
        tail = " | ".join(log_path.read_text().strip().splitlines()[-6:])
        raise CheckFailed(f"{job.name} ({job.component}) exited {code}: {reason or tail}\n  log: {log_path}")
    for channel in job.outputs:
        local = scratch / "out" / channel.container_path.name
        if not any(local.iterdir()):
            if channel.artifact in not_written:
                continue
            raise CheckFailed(f"{job.name}: wrote nothing to {channel.container_path}")
        shutil.copytree(local, store / channel.artifact)
    noise = [line for line in log_path.read_text().splitlines()[1:] if GPU_NOISE.search(line)]
    if noise:
        raise CheckFailed(f"{job.name}: the job log has GPU probing lines, e.g. {noise[0]!r}\n  log: {log_path}")
    log(f"  {job.name:<40} {job.component:<15} {seconds:6.1f} s")
    return JobResult(job.name, job.component, seconds)


def _failure_reason(output: Path) -> str:
    for name in ("failure", "message"):
        if (output / name).is_file():
            return f"/opt/ml/output/{name}: {(output / name).read_text()}"
    return ""


def in_data_order(jobs: Sequence[Job], available: Iterable[str]) -> list[Job]:
    """Jobs ordered so that each runs after the jobs that write its inputs."""
    ordered: list[Job] = []
    pending = list(jobs)
    have = set(available)
    while pending:
        ready = [job for job in pending if all(c.artifact in have for c in job.inputs)]
        if not ready:
            missing = {c.artifact for job in pending for c in job.inputs} - have
            raise CheckFailed(f"no job writes {sorted(missing)} (needed by {[j.state for j in pending]})")
        for job in ready:
            ordered.append(job)
            pending.remove(job)
            have.update(c.artifact for c in job.outputs)
    return ordered


def runnable_jobs(jobs: Sequence[Job], sources: Iterable[str]) -> tuple[list[Job], list[str]]:
    """The jobs a run with these sources executes, and the states it skips.

    A job runs when a source or another job provides every input. A step with an optional channel
    is two jobs that write the same artifacts (with and without the channel); the state machine's
    Choice takes the one with every channel when the run has their artifacts, and so does this.
    """
    have = set(sources)
    produced = {c.artifact for job in jobs for c in job.outputs}
    possible = [job for job in jobs if all(c.artifact in have or c.artifact in produced for c in job.inputs)]
    chosen: dict[tuple[str, ...], Job] = {}
    for job in possible:
        writes = tuple(c.artifact for c in job.outputs)
        if writes not in chosen or len(job.inputs) > len(chosen[writes].inputs):
            chosen[writes] = job
    runnable = [job for job in possible if chosen[tuple(c.artifact for c in job.outputs)] is job]
    skipped = [job.state for job in jobs if tuple(c.artifact for c in job.outputs) not in chosen]
    return runnable, skipped


def run_pipeline(
    engine: Engine,
    jobs: Sequence[Job],
    inputs: Inputs,
    *,
    start: Mapping[str, Path],
    record: Mapping[str, Path] | None,
    workdir: Path,
    label: str,
    data_name: str,
) -> tuple[Path, list[JobResult], list[str]]:
    """One execution: its jobs in data order, each a container. Returns the run's store (artifact -> folder)."""
    store = workdir / "s3" / label
    store.mkdir(parents=True)
    sources: dict[str, Path] = {artifact: start[field] for artifact, field in inputs.external.items()}
    if record is not None:
        sources.update({artifact: record[field] for artifact, field in inputs.resolved.items() if field in record})
    runnable, skipped = runnable_jobs(jobs, sources)
    if record is not None and skipped:
        raise CheckFailed(f"{label}: jobs {skipped} read inputs that neither a job nor the train record provides")
    ordered = in_data_order(runnable, sources)
    log(f"{label}: {' -> '.join(job.state for job in ordered)}")
    results = []
    facts = {"run_id": label, "data_name": data_name}  # the plan step's run facts
    for job in ordered:
        environment = inputs.environment(job, facts)
        labelled = replace(job, pipeline=label)  # its name: <label>-<state>
        results.append(run_job(engine, labelled, store, sources, workdir, environment,
                               not_written=inputs.not_written(sources)))
        sources.update({c.artifact: store / c.artifact for c in job.outputs if (store / c.artifact).is_dir()})
    return store, results, skipped


def drift_of(store: Path) -> dict[str, Any]:
    reports = sorted(store.rglob("drift_report.json"))
    if len(reports) != 1:
        raise CheckFailed(f"the serve run wrote {len(reports)} drift_report.json files, expected one")
    data = json.loads(reports[0].read_text())
    return {k: data[k] for k in ("is_drift", "statistic", "threshold", "batch_size") if k in data}


def expect_failure(engine: Engine, job: Job, inputs: Inputs, workdir: Path, expected_file: str) -> str:
    """Run a job on empty inputs: it must fail and leave its message where SageMaker reads it."""
    scratch = workdir / "jobs" / f"failing-{job.name}"
    empty = writable(workdir / "jobs" / "empty-input")
    mounts = job_mounts(job, scratch, {c.artifact: empty for c in job.inputs})
    log_path = workdir / "logs" / f"failing-{job.name}.log"
    code, _ = container_run(engine, job, mounts, log_path, inputs.environment(job, {"run_id": "f", "data_name": "f"}))
    reason = scratch / "output" / expected_file
    if code == 0:
        raise CheckFailed(f"{job.name} on empty inputs exited 0; it should fail\n  log: {log_path}")
    if not reason.is_file() or not reason.read_text().strip():
        raise CheckFailed(f"{job.name} failed (exit {code}) without writing /opt/ml/output/{expected_file}")
    text = reason.read_text()
    log(f"  {job.name} on empty inputs: exit {code}, /opt/ml/output/{expected_file}: {text!r}")
    return text


# -------------------------------------------------------------------------------------------- main
def make_data(workdir: Path) -> Path:
    data = workdir / "data"
    if not (data / "original" / "train").is_dir():
        cli = Path(sys.executable).with_name("driftloop")
        run([str(cli), "data", "make", "--size", "small", "--out", str(data)], what="driftloop data make")
    return data


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Build the images, run the train and serve chain in them, then two failing jobs; the run's summary."""
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("s3", "jobs", "logs"):
        shutil.rmtree(workdir / stale, ignore_errors=True)
    summary: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cores": os.cpu_count()}
    engine = find_engine(workdir, args.engine)
    log(f"engine: {engine.program} ({engine('--version').strip()})")
    summary["engine"] = engine.program
    summary.update(build_checked_images(engine, workdir, args))

    log("synthesizing app.py: cdk.json's settings, then a serve step on 2 instances")
    pipelines = read_pipelines(synthesize(workdir / "cdk.out"))
    per_step = read_pipelines(synthesize(workdir / "cdk.out.per-step", PER_STEP_INSTANCES))["serve"]
    if len(pipelines["serve"]) != 1 or len(per_step) != len(PIPELINES["serve"].steps):
        raise CheckFailed(f"expected one serve job by default and a job a step with {PER_STEP_INSTANCES}, got "
                          f"{[j.state for j in pipelines['serve']]} and {[j.state for j in per_step]}")
    data = make_data(workdir)
    chain_started = time.monotonic()
    results, drift, runs = run_chain(engine, pipelines, per_step, data, workdir)
    summary["chain_seconds"] = round(time.monotonic() - chain_started, 1)
    summary["jobs"] = [{"job": r.name, "component": r.component, "seconds": round(r.seconds, 1)} for r in results]
    summary["runs"] = runs
    summary["drift"] = drift

    # A failing job tells SageMaker why (its ExitMessage): the whole serve run's job, and one step's.
    (whole,) = pipelines["serve"]
    process = next(j for j in per_step if j.component == Component.PROCESSING)
    summary["failure_messages"] = {
        whole.name: expect_failure(engine, whole, Inputs.of("serve"), workdir, "message"),
        f"{process.name}-per-step": expect_failure(engine, process, Inputs.of("serve"), workdir, "message"),
    }
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return summary


def build_checked_images(engine: Engine, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The base image, then the component images, each within the size limit; their part of the summary."""
    started = time.monotonic()
    base = args.base_image or standin_base(engine, workdir, rebuild=args.rebuild_base)
    summary: dict[str, Any] = {"base_image": base, "base_seconds": round(time.monotonic() - started, 1)}
    summary["build_seconds"] = round(build_images(engine, base, workdir, no_cache=args.no_cache), 1)
    sizes = {component: engine.size(image_tag(component)) for component in Component}
    summary["sizes_bytes"] = sizes
    for component, size in sizes.items():
        log(f"  {image_tag(component):<42} {size / 1e9:.2f} GB unpacked")
    too_big = {c: s for c, s in sizes.items() if s > SIZE_LIMIT}
    if too_big:
        raise CheckFailed(f"images over {SIZE_LIMIT / 1e9:.0f} GB unpacked: {too_big}")
    return summary


def run_chain(
    engine: Engine, pipelines: Mapping[str, Sequence[Job]], per_step: Sequence[Job], data: Path, workdir: Path
) -> tuple[list[JobResult], dict[str, Any], dict[str, dict[str, Any]]]:
    """Train on the original data, serve its test set and the noisy one, retrain on the noisy data, one
    job a run; serve both test sets again a job a step (``per_step``), which must give the same results.

    Returns every job's result, each serve run's drift result, and each run's job count and wall time.
    """
    train, serve = Inputs.of("train"), Inputs.of("serve")
    runs: dict[str, dict[str, Any]] = {}

    def timed(jobs: Sequence[Job], inputs: Inputs, label: str, **kwargs: Any) -> tuple[Path, list[JobResult]]:
        started = time.monotonic()
        store, results, skipped = run_pipeline(engine, jobs, inputs, workdir=workdir, label=label, **kwargs)
        if skipped:
            log(f"  not run in {label} (there is no champion yet): {', '.join(skipped)}")
        runs[label] = {"jobs": len(results), "seconds": round(time.monotonic() - started, 1),
                       "job_seconds": round(sum(r.seconds for r in results), 1)}
        return store, results

    def train_start(stage: str) -> dict[str, Path]:
        return {"train_data": data / stage / "train", "val_data": data / stage / "val"}

    first, results = timed(pipelines["train"], train, "train", start=train_start("original"), record=None,
                           data_name="original")
    # The train record holds the run's artifacts under their own names (model, detector, explainer).
    record = {artifact.name: artifact for artifact in first.iterdir()}
    drift: dict[str, Any] = {}
    for stage in ("original", "noisy"):
        start = {BATCH_START_FIELD: data / stage / "test"}
        store, jobs = timed(pipelines["serve"], serve, f"serve-{stage}", start=start, record=record, data_name=stage)
        by_step, step_jobs = timed(per_step, serve, f"serve-{stage}-per-step", start=start, record=record,
                                   data_name=stage)
        same_results(store, by_step, f"serve {stage}/test")
        results += jobs + step_jobs
        drift[stage] = drift_of(store)
        log(f"  serve on {stage}/test: {drift[stage]}; one job {runs[f'serve-{stage}']['seconds']} s, a job a step "
            f"{runs[f'serve-{stage}-per-step']['seconds']} s")
    _, jobs = timed(pipelines["train"], train, "retrain", start=train_start("noisy"), record=record, data_name="noisy")
    return results + jobs, drift, runs


def same_results(one_job: Path, per_step: Path, what: str) -> None:
    """The one-job run and the job-a-step run wrote the same drift report and predictions."""
    reports = [json.loads(next(store.rglob(DRIFT_REPORT_FILE)).read_text()) for store in (one_job, per_step)]
    predictions = [sorted(next(store.rglob(PREDICTIONS_FILE)).read_text().splitlines())
                   for store in (one_job, per_step)]
    if reports[0] != reports[1] or predictions[0] != predictions[1]:
        raise CheckFailed(f"{what}: one job and a job a step differ: {reports} / {len(predictions[0])} "
                          f"and {len(predictions[1])} prediction rows")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.image_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["docker", "podman"], help="default: docker if its daemon answers")
    parser.add_argument("--base-image", help="build on this base instead of the offline stand-in")
    parser.add_argument("--rebuild-base", action="store_true", help="make the stand-in base again")
    parser.add_argument("--no-cache", action="store_true", help="build without the layer cache (a cold build)")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "images")
    args = parser.parse_args(argv)
    try:
        summary = check(args)
    except CheckFailed as failure:
        print(f"\nmake images FAILED: {failure}", file=sys.stderr)
        return 1
    (args.workdir / "image_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    sizes = ", ".join(f"{c} {s / 1e9:.2f} GB" for c, s in summary["sizes_bytes"].items())
    log(
        f"OK: build {summary['build_seconds']} s (stand-in base {summary['base_seconds']} s), images {sizes}; "
        f"chain of {len(summary['jobs'])} jobs {summary['chain_seconds']} s; summary in "
        f"{args.workdir / 'image_check.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
