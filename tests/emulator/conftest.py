"""One deployment of the synthesized stacks into the moto server, shared by the scenario's tests.

The module-scoped ``deployed`` fixture synthesizes the app (small, fast component settings),
prepares the account as ``cdk bootstrap`` would, publishes the file assets and creates the stack,
all inside ``emulated_aws`` (see ``support.aws_emulation``). It deletes the stack at the end
unless a test already did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.aws_emulation import emulated_aws
from support.cdk_deploy import deploy, destroy, load_context, prepare_account, publish_file_assets, synthesize
from support.deployed_system import DeployedSystem
from support.job_runner import ImageCatalog
from support.moto_server import MotoServer

REPO = Path(__file__).resolve().parents[2]
# Plumbing, not model quality: few epochs and few SHAP samples keep each job to seconds.
TEST_CONTEXT: dict[str, Any] = {
    "driftloop": {
        "settings": {
            "algorithm": {"epochs": 3, "patience": 1},
            "explainability": {"n_explain": 4, "n_background": 16, "nsamples": 8, "per_class": 1},
        },
    }
}


@pytest.fixture(scope="module")
def deployed(
    moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[DeployedSystem]:
    """A module may deploy with other settings: its ``DEPLOYMENT_CONTEXT`` replaces ``TEST_CONTEXT``."""
    moto_server.reset()
    workdir = tmp_path_factory.mktemp("emulator")
    context = load_context(REPO, getattr(request.module, "DEPLOYMENT_CONTEXT", TEST_CONTEXT))
    assembly = synthesize(REPO, workdir / "cdk.out", context, moto_server.region)
    images = ImageCatalog.from_cloud_assembly(assembly.outdir)
    with emulated_aws(moto_server, images=images, workdir=workdir / "emulation") as emulation:
        prepare_account(moto_server)
        publish_file_assets(moto_server, assembly)
        (stack,) = assembly.stacks
        outputs = deploy(moto_server, assembly)[stack.name]
        system = DeployedSystem(
            server=moto_server,
            emulation=emulation,
            assembly=assembly,
            stack_name=stack.name,
            bucket=outputs["BucketName"],
            train_machine=outputs["TrainStateMachineArn"],
            serve_machine=outputs["ServeStateMachineArn"],
            topic=outputs["TopicArn"],
            parameter_prefix=outputs["ParameterPrefix"],
            package_group=outputs["ModelPackageGroup"],
        )
        yield system
        if not system.destroyed:
            destroy(moto_server, assembly)
