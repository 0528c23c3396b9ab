"""One container image per component, built from ``containers/<component>/Dockerfile``.

The build context is the repository root, but only what the images install goes into it (an
allow-list), so a local ``.venv``, ``runs/`` or data folder never reaches the asset or its hash.
Images are built for linux/amd64, the architecture of SageMaker's ml.* CPU instances.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

from driftloop.pipelines import Component

# Everything not listed is left out of the build context (Docker ignore syntax).
BUILD_CONTEXT_ALLOW = ("driftloop", "requirements.txt", "pyproject.toml", "README.md")


def build_context_exclude(component: Component) -> list[str]:
    keep = [*BUILD_CONTEXT_ALLOW, f"containers/{component.value}"]
    return ["*", "containers/*", *(f"!{path}" for path in keep), "**/__pycache__", "**/*.pyc"]


class ComponentImages(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, repo_root: Path) -> None:
        super().__init__(scope, construct_id)
        self.images: dict[Component, ecr_assets.DockerImageAsset] = {
            component: ecr_assets.DockerImageAsset(
                self,
                component.value.title(),
                directory=str(repo_root),
                file=f"containers/{component.value}/Dockerfile",
                exclude=build_context_exclude(component),
                ignore_mode=IgnoreMode.DOCKER,
                platform=ecr_assets.Platform.LINUX_AMD64,
            )
            for component in Component
        }

