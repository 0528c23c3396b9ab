"""Run a SageMaker Processing or Training job on this machine, the way SageMaker would run it.

There is no container engine here, so an image cannot run. What an image *does* is known anyway:
CDK records every Docker image asset in the cloud assembly (``*.assets.json``: the image tag is
the asset hash, the source is a folder with a Dockerfile and the target stage to build), and that
stage's ``ENTRYPOINT`` and ``ENV`` (with those of the stages it is built ``FROM``) say what the
container executes. ``ImageCatalog`` maps an image URI to that command, and
the command then runs here as a local process with this venv's Python (the same package the image
installs).

SageMaker's side of the job is emulated with folders: inputs are downloaded from S3 into a
temporary folder that stands for the container's ``/opt/ml``, which is mounted at ``/opt/ml`` in
a private mount namespace of the job's process, so the command runs exactly as the request gives
it (``ContainerEntrypoint`` + ``ContainerArguments``, or the image's entrypoint with ``train``),
nothing added (the image's ``python`` is this venv's), and the component finds its channels at
SageMaker's paths. Outputs are uploaded
back: each processing output to its ``S3Uri``, a training job's model folder as
``<S3OutputPath>/<job>/output/model.tar.gz``. A failed job's reason is what the container wrote
to ``/opt/ml/output/{failure,message}``, else the end of its log.

A processing job on ``InstanceCount`` > 1 runs its command once per host, all at once, each in its
own ``/opt/ml`` with its own ``config/resourceconfig.json`` (``current_host`` algo-1 ... algo-N and
``hosts``, as SageMaker writes it): a ``FullyReplicated`` input is downloaded for every host, a
``ShardedByS3Key`` one is split by key, each object to exactly one host (in contiguous blocks of the
sorted keys; SageMaker documents only "about 1/N of the objects" each). Every host's outputs are
uploaded to the output's one ``S3Uri``; two hosts writing the same key would overwrite each other
on SageMaker, so here that fails the job, naming the key.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from driftloop.components.entrypoint import FAILURE_FILES, FAILURE_LIMIT_BYTES, SAGEMAKER_ROOT
from driftloop.hosts import RESOURCE_CONFIG
from driftloop.pipelines import TRAINING_HYPERPARAMETERS, TRAINING_INPUT_ROOT, TRAINING_MODEL_DIR, JobKind

# SageMaker truncates FailureReason to 1024 characters; keep the end of the log, where errors are.
FAILURE_REASON_LIMIT = FAILURE_LIMIT_BYTES
# Where a failed container leaves its reason for SageMaker to show (training: FailureReason;
# processing: ExitMessage, folded into the FailureReason here, since moto describes no ExitMessage).
TRAINING_FAILURE = PurePosixPath(SAGEMAKER_ROOT, FAILURE_FILES[JobKind.TRAINING])
PROCESSING_MESSAGE = PurePosixPath(SAGEMAKER_ROOT, FAILURE_FILES[JobKind.PROCESSING])
DEFAULT_MAX_RUNTIME_S = 24 * 3600


@dataclass(frozen=True)
class ContainerImage:
    """What a container of this image executes: its ENTRYPOINT and ENV."""

    entrypoint: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)
    # The build context: the image installs its copy of the package, so the job imports that copy.
    context: Path | None = None

    @classmethod
    def from_dockerfile(
        cls, dockerfile: Path, context: Path | None = None, target: str | None = None
    ) -> ContainerImage:
        """ENTRYPOINT and ENV of a Dockerfile's ``target`` stage (default: the last), inherited along ``FROM``."""
        stages: dict[str, tuple[str, list[str]]] = {}  # stage name -> (what it is FROM, its instructions)
        order: list[str] = []
        for instruction in _instructions(dockerfile.read_text()):
            keyword, _, rest = instruction.partition(" ")
            if keyword.upper() == "FROM":
                words = rest.split()
                parent = next(w for w in words if not w.startswith("--"))
                name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else f"#{len(order)}"
                stages[name] = (parent, [])
                order.append(name)
            elif order:
                stages[order[-1]][1].append(instruction)
        if not order:
            raise ValueError(f"{dockerfile}: no FROM")
        name = target or order[-1]
        if name not in stages:
            raise ValueError(f"{dockerfile}: no stage named {name!r}")
        chain: list[str] = []
        while name in stages and name not in chain:
            chain.append(name)
            name = stages[name][0]
        entrypoint: tuple[str, ...] = ()
        environment: dict[str, str] = {}
        for stage in reversed(chain):  # the base stage first; later stages override
            for instruction in stages[stage][1]:
                keyword, _, rest = instruction.partition(" ")
                if keyword.upper() == "ENTRYPOINT":
                    entrypoint = tuple(json.loads(rest))  # exec form; the shell form is not supported
                elif keyword.upper() == "ENV":
                    for pair in shlex.split(rest):
                        key, _, value = pair.partition("=")
                        environment[key] = value
        if not entrypoint:
            raise ValueError(f"{dockerfile}: stage {chain[0]!r} has no ENTRYPOINT in exec form")
        return cls(entrypoint=entrypoint, environment=environment, context=context)

    def command(self, entrypoint: Sequence[str] | None = None) -> list[str]:
        """The image's entrypoint, or the request's ``ContainerEntrypoint``, as a local command: the
        image's ``python`` is this venv's Python (the one that has the image's packages)."""
        program, *args = self.entrypoint if entrypoint is None else entrypoint
        if program in ("python", "python3", "/usr/local/bin/python"):
            program = sys.executable
        return [program, *args]


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments and blank lines dropped."""
    instructions: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        instructions.append((current + stripped).strip())
        current = ""
    return instructions


class ImageCatalog:
    """Image URI -> ``ContainerImage``, from the Docker image assets of a synthesized cloud assembly."""

    def __init__(self, images_by_tag: Mapping[str, ContainerImage]) -> None:
        self._by_tag = dict(images_by_tag)

    @classmethod
    def from_cloud_assembly(cls, outdir: Path) -> ImageCatalog:
        images: dict[str, ContainerImage] = {}
        for manifest in sorted(outdir.glob("*.assets.json")):
            for asset in json.loads(manifest.read_text()).get("dockerImages", {}).values():
                source = asset["source"]
                context = outdir / source["directory"]
                dockerfile = context / source.get("dockerFile", "Dockerfile")
                image = ContainerImage.from_dockerfile(dockerfile, context, source.get("dockerBuildTarget"))
                for destination in asset["destinations"].values():
                    images[destination["imageTag"]] = image
        return cls(images)

    def image(self, uri: str) -> ContainerImage:
        tag = uri.rpartition(":")[2] if ":" in uri.rpartition("/")[2] else "latest"
        if tag not in self._by_tag:
            raise LookupError(f"image {uri} is not a Docker image asset of the deployed cloud assembly")
        return self._by_tag[tag]


@dataclass(frozen=True)
class JobOutcome:
    """What SageMaker reports at the end of a job."""

    status: str  # "Completed" or "Failed"
    failure_reason: str = ""


class JobFailed(Exception):
    """The job ends Failed; the message is SageMaker's FailureReason."""


class LocalJobRunner:
    """Runs jobs described by their CreateProcessingJob / CreateTrainingJob requests."""

    def __init__(self, s3: Any, images: ImageCatalog, workdir: Path) -> None:
        self.s3 = s3
        self.images = images
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)

    def run_processing_job(self, request: Mapping[str, Any]) -> JobOutcome:
        return self._outcome(self._processing_job, request)

    def run_training_job(self, request: Mapping[str, Any]) -> JobOutcome:
        return self._outcome(self._training_job, request)

    def _outcome(self, job: Any, request: Mapping[str, Any]) -> JobOutcome:
        try:
            job(request)
        except JobFailed as failure:
            return JobOutcome("Failed", str(failure)[-FAILURE_REASON_LIMIT:])
        return JobOutcome("Completed")

    # ------------------------------------------------------------------ jobs
    def _processing_job(self, request: Mapping[str, Any]) -> None:
        name = request["ProcessingJobName"]
        app = request["AppSpecification"]
        count = int(request["ProcessingResources"]["ClusterConfig"]["InstanceCount"])
        hosts = [f"algo-{i}" for i in range(1, count + 1)]
        outputs = request.get("ProcessingOutputConfig", {}).get("Outputs", [])
        image = self._image(app["ImageUri"])
        command = image.command(app.get("ContainerEntrypoint") or None)
        with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=self.workdir) as tmp:
            roots = {host: Path(tmp) / host for host in hosts}  # each stands for one container's root
            for item in request.get("ProcessingInputs", []):
                if "S3Input" not in item:
                    raise JobFailed(f"ClientError: input {item.get('InputName')}: only S3 inputs are emulated")
                s3_input = item["S3Input"]
                keys = self._keys(s3_input["S3Uri"])
                if s3_input.get("S3DataDistributionType") == "ShardedByS3Key":
                    shares = [keys[len(keys) * i // count : len(keys) * (i + 1) // count] for i in range(count)]
                else:
                    shares = [keys] * count
                for host, share in zip(hosts, shares, strict=True):
                    self._download(s3_input["S3Uri"], share, _under(roots[host], s3_input["LocalPath"]))
            for host, root in roots.items():
                config = _under(root, str(RESOURCE_CONFIG))
                config.parent.mkdir(parents=True)
                config.write_text(json.dumps({"current_host": host, "hosts": hosts, "network_interface_name": "eth0"}))
                for item in outputs:
                    _under(root, item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
            argv = [*command, *app.get("ContainerArguments", [])]
            with ThreadPoolExecutor(count) as instances:
                runs = [instances.submit(self._execute, name if count == 1 else f"{name}-{host}", argv, image,
                                         request, root, failure_file=PROCESSING_MESSAGE)
                        for host, root in roots.items()]
                for run in runs:
                    run.result()
            written: dict[str, str] = {}
            for host, root in roots.items():
                for item in outputs:
                    for key in self._upload_dir(_under(root, item["S3Output"]["LocalPath"]), item["S3Output"]["S3Uri"]):
                        if key in written:
                            raise JobFailed(f"AlgorithmError: hosts {written[key]} and {host} both wrote {key}")
                        written[key] = host

    def _training_job(self, request: Mapping[str, Any]) -> None:
        name = request["TrainingJobName"]
        spec = request["AlgorithmSpecification"]
        with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=self.workdir) as tmp:
            root = Path(tmp)
            for channel in request.get("InputDataConfig", []):
                local = str(TRAINING_INPUT_ROOT / channel["ChannelName"])
                uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
                self._download(uri, self._keys(uri), _under(root, local))
            hyperparameters = _under(root, str(TRAINING_HYPERPARAMETERS))
            hyperparameters.parent.mkdir(parents=True)
            hyperparameters.write_text(json.dumps(request.get("HyperParameters", {})))
            model_dir = _under(root, str(TRAINING_MODEL_DIR))
            model_dir.mkdir(parents=True)
            image = self._image(spec["TrainingImage"])
            # SageMaker starts a training image as ``<image> train``.
            command = image.command(spec.get("ContainerEntrypoint") or None)
            arguments = list(spec.get("ContainerArguments", ["train"]))
            self._execute(name, [*command, *arguments], image, request, root, failure_file=TRAINING_FAILURE)
            archive = root / "model.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                for path in sorted(model_dir.iterdir()):
                    tar.add(path, arcname=path.name)
            output = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
            bucket, key = _split_s3_uri(f"{output}/{name}/output/model.tar.gz")
            self.s3.upload_file(str(archive), bucket, key)

    # --------------------------------------------------------------- helpers
    def _image(self, uri: str) -> ContainerImage:
        try:
            return self.images.image(uri)
        except LookupError as error:
            raise JobFailed(f"ClientError: {error}") from error

    def _execute(
        self, name: str, argv: Sequence[str], image: ContainerImage, request: Mapping[str, Any], root: Path,
        *, failure_file: PurePosixPath,
    ) -> None:
        """Run the command exactly as the request gives it, with ``root/opt/ml`` mounted at ``/opt/ml``."""
        # A container sees no AWS credentials of the caller; the job's role is not emulated.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        env.update(image.environment)
        if image.context is not None:
            env["PYTHONPATH"] = str(image.context)
        env.update(request.get("Environment", {}))
        limit = request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_S)
        log_path = self.workdir / f"{name}.log"
        with log_path.open("w") as log:
            log.write(shlex.join(argv) + "\n")
            log.flush()
            try:
                completed = subprocess.run(
                    [*in_container_paths(root), *argv], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                    timeout=limit, check=False,
                )
            except subprocess.TimeoutExpired as error:
                raise JobFailed(f"MaxRuntimeExceeded: the job ran longer than {limit} s") from error
        if completed.returncode != 0:
            reason = _under(root, str(failure_file))
            if reason.is_file():  # what the container wrote for SageMaker to show
                message = reason.read_text(errors="replace")[:FAILURE_REASON_LIMIT]
            else:
                message = " | ".join(log_path.read_text().strip().splitlines()[1:][-5:])  # line 1 is the command
            raise JobFailed(f"AlgorithmError: exit code {completed.returncode}: {message}")

    def _keys(self, uri: str) -> list[str]:
        """The keys under an S3 prefix, sorted; none is an error, as on SageMaker."""
        bucket, prefix = _split_s3_uri(uri)
        keys = sorted(
            obj["Key"]
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        )
        if not keys:
            raise JobFailed(f"ClientError: No S3 objects found under S3 URL {uri!r}")
        return keys

    def _download(self, uri: str, keys: Sequence[str], folder: Path) -> Path:
        """``keys`` of an S3 prefix, keeping key paths below it (S3Prefix, File mode)."""
        bucket, prefix = _split_s3_uri(uri)
        folder.mkdir(parents=True, exist_ok=True)
        for key in keys:
            relative = key[len(prefix) :].lstrip("/") or PurePosixPath(key).name
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(bucket, key, str(target))
        return folder

    def _upload_dir(self, folder: Path, uri: str) -> list[str]:
        """Upload every file under ``folder``; returns the keys written."""
        bucket, prefix = _split_s3_uri(uri)
        keys = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = "/".join(filter(None, [prefix.rstrip("/"), path.relative_to(folder).as_posix()]))
            self.s3.upload_file(str(path), bucket, key)
            keys.append(key)
        return keys


def _split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise JobFailed(f"ClientError: not an S3 URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _under(root: Path, container_path: str) -> Path:
    return root / PurePosixPath(container_path).relative_to("/")


# The mount namespace of one job: a private /opt (so nothing reaches the machine's own), with the
# job's folder bound at /opt/ml, SageMaker's container paths. Needs root (as CI and sessions run).
_MOUNT_OPT_ML = 'mount -t tmpfs driftloop-job /opt && mkdir /opt/ml && mount --bind "$0" /opt/ml && exec "$@"'


def in_container_paths(root: Path) -> list[str]:
    """The command prefix that runs a job's command with ``root/opt/ml`` at ``/opt/ml``."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT_OPT_ML, str(root / "opt" / "ml")]
