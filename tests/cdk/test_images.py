"""The component images as the template ships them: one asset per component, each a target of the one
Dockerfile, with a lean build context; and the SageMaker jobs ``make images`` reads from the template."""

from __future__ import annotations

import json
import sys
from pathlib import PurePosixPath

from driftloop.pipelines import Component

from .conftest import REPO_ROOT, Synthesized

sys.path.insert(0, str(REPO_ROOT / "tools"))
import image_check  # noqa: E402


def test_one_image_asset_per_component_each_a_target_of_the_one_dockerfile(synthesized: Synthesized) -> None:
    stack = synthesized.development
    manifest = json.loads((synthesized.outdir / f"{stack.artifact_id}.assets.json").read_text())
    images = list(manifest["dockerImages"].values())
    assert sorted(image["source"]["dockerBuildTarget"] for image in images) == sorted(c.value for c in Component)
    assert {image["source"]["dockerFile"] for image in images} == {"containers/Dockerfile"}
    tags = {d["imageTag"] for image in images for d in image["destinations"].values()}
    assert len(tags) == 4  # four images (they differ in the entrypoint)
    listings = []
    for image in images:
        assert image["source"]["platform"] == "linux/amd64"
        assert "dockerBuildArgs" not in image["source"]  # the Dockerfile's pinned BASE_IMAGE
        context = synthesized.outdir / image["source"]["directory"]
        listings.append(sorted(p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file()))
    present = listings[0]
    assert all(listing == present for listing in listings)  # the same context: the builds share their layers
    assert "containers/Dockerfile" in present and "requirements/runtime.txt" in present
    assert "driftloop/pipelines.py" in present and "pyproject.toml" in present
    allowed = ("containers/Dockerfile", "requirements/runtime.txt", "pyproject.toml", "README.md", ".dockerignore")
    assert [p for p in present if not p.startswith("driftloop/") and p not in allowed] == []
    assert not [p for p in present if "__pycache__" in p or p.endswith(".pyc")]


def test_make_images_reads_every_sagemaker_job_with_its_container_paths(synthesized: Synthesized) -> None:
    pipelines = image_check.read_pipelines(synthesized.outdir)
    assert set(pipelines) == {"train", "serve"}
    # Every run is one job (the state machine of each stack): the train job with and without the champion.
    train = {job.state: job for job in pipelines["train"]}
    assert set(train) == {"TrainRun", "TrainRunWithoutChampionModel"}
    assert all(job.entrypoint == ("python", "-m", "driftloop.components.pipeline") for job in train.values())
    channels = {state: [c.artifact for c in job.inputs] for state, job in train.items()}
    assert channels == {"TrainRun": ["raw_train", "raw_val", "champion_model"],
                        "TrainRunWithoutChampionModel": ["raw_train", "raw_val"]}
    for jobs in pipelines.values():
        for job in jobs:
            for channel in (*job.inputs, *job.outputs):
                assert PurePosixPath("/opt/ml") in channel.container_path.parents
    # Every job's inputs come from the run's start, the train record or an earlier job of the run.
    for name, jobs in pipelines.items():
        inputs = image_check.Inputs.of(name)
        image_check.in_data_order(jobs, {*inputs.external, *inputs.resolved})
