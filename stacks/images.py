"""One container image per component: the targets of ``containers/Dockerfile``.

The four targets share the Dockerfile's ``runtime`` stage (the runtime lock and the package), so
they share every heavy layer in ECR too; each is its own Docker image asset (one ECR image per
component, the one its SageMaker jobs pull). The build context is the repository root, but only
what the images install goes into it (an allow-list, the same as ``.dockerignore``), so a local
``.venv``, ``runs/`` or data folder never reaches the asset or its hash. Images are built for
linux/amd64, the architecture of SageMaker's ml.* CPU instances. ``base_image`` overrides the
Dockerfile's pinned base (its ``BASE_IMAGE`` build argument), e.g. with a mirror in your registry.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

from driftloop.pipelines import Component

DOCKERFILE = "containers/Dockerfile"
# Everything not listed is left out of the build context (Docker ignore syntax).
BUILD_CONTEXT_ALLOW = (DOCKERFILE, "driftloop", "pyproject.toml", "README.md", "requirements/runtime.txt")


def build_context_exclude() -> list[str]:
    return ["*", *(f"!{path}" for path in BUILD_CONTEXT_ALLOW), "**/__pycache__", "**/*.pyc"]


class ComponentImages(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, repo_root: Path) -> None:
        super().__init__(scope, construct_id)
        self.images: dict[Component, ecr_assets.DockerImageAsset] = {
            component: ecr_assets.DockerImageAsset(
                self,
                component.value.title(),
                directory=str(repo_root),
                file=DOCKERFILE,
                target=component.value,
                exclude=build_context_exclude(),
                ignore_mode=IgnoreMode.DOCKER,
                platform=ecr_assets.Platform.LINUX_AMD64,
            )
            for component in Component
        }
