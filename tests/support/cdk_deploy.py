"""What ``cdk bootstrap`` and ``cdk deploy`` do, done against the moto server.

``synthesize`` runs ``app.py`` as the CDK CLI does (context from ``cdk.json`` plus overrides, in
``CDK_CONTEXT_JSON``) into a fresh cloud assembly. ``prepare_account`` gives the account what the
templates expect to find there: the bootstrap stack's version parameter and assets bucket (the
app reads no public AWS parameter). ``publish_file_assets`` uploads the file
assets as ``cdk-assets`` would (Docker image assets cannot be built here; ``job_runner`` runs
their entrypoints instead). ``deploy`` creates each stack with CloudFormation and ``destroy``
deletes it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.moto_server import MotoServer

ACCOUNT = "123456789012"  # moto's default account
QUALIFIER = "hnb659fds"  # the CDK's default bootstrap qualifier
BOOTSTRAP_VERSION = "21"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


@dataclass(frozen=True)
class StackArtifact:
    name: str
    template: dict[str, Any]


@dataclass(frozen=True)
class CloudAssembly:
    outdir: Path
    stacks: tuple[StackArtifact, ...]  # in deployment order

    def asset_manifests(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.outdir.glob("*.assets.json")):
            yield json.loads(path.read_text())


def load_context(repo: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``cdk.json``'s context with ``overrides`` merged in (objects merge key by key)."""
    context = json.loads((repo / "cdk.json").read_text()).get("context", {})
    return _merge(context, overrides)


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def synthesize(repo: Path, outdir: Path, context: Mapping[str, Any], region: str) -> CloudAssembly:
    env = {
        **os.environ,
        "CDK_OUTDIR": str(outdir),
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_DEFAULT_ACCOUNT": ACCOUNT,
        "CDK_DEFAULT_REGION": region,
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=repo, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"synth failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return read_assembly(outdir)


def read_assembly(outdir: Path) -> CloudAssembly:
    artifacts = json.loads((outdir / "manifest.json").read_text())["artifacts"]
    stacks = {
        artifact_id: artifact
        for artifact_id, artifact in artifacts.items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    ordered: list[str] = []

    def visit(artifact_id: str) -> None:
        if artifact_id in ordered or artifact_id not in stacks:
            return
        for dependency in stacks[artifact_id].get("dependencies", []):
            visit(dependency)
        ordered.append(artifact_id)

    for artifact_id in stacks:
        visit(artifact_id)
    return CloudAssembly(
        outdir=outdir,
        stacks=tuple(
            StackArtifact(
                name=stacks[a]["properties"].get("stackName", a),
                template=json.loads((outdir / stacks[a]["properties"]["templateFile"]).read_text()),
            )
            for a in ordered
        ),
    )


def prepare_account(server: MotoServer) -> None:
    """The bootstrap stack's resources that the templates expect."""
    server.client("s3").create_bucket(Bucket=assets_bucket(server.region))
    ssm = server.client("ssm")
    ssm.put_parameter(Name=f"/cdk-bootstrap/{QUALIFIER}/version", Value=BOOTSTRAP_VERSION, Type="String")


def assets_bucket(region: str) -> str:
    return f"cdk-{QUALIFIER}-assets-{ACCOUNT}-{region}"


def publish_file_assets(server: MotoServer, assembly: CloudAssembly) -> int:
    """Upload every file asset to its destination (a folder asset as a zip of its contents)."""
    s3 = server.client("s3")
    published = 0
    for manifest in assembly.asset_manifests():
        for asset in manifest.get("files", {}).values():
            source = assembly.outdir / asset["source"]["path"]
            body = _zip_folder(source) if asset["source"].get("packaging") == "zip" else source.read_bytes()
            for destination in asset["destinations"].values():
                bucket = _placeholders(destination["bucketName"], server.region)
                s3.put_object(Bucket=bucket, Key=_placeholders(destination["objectKey"], server.region), Body=body)
                published += 1
    return published


def _placeholders(text: str, region: str) -> str:
    return (
        text.replace("${AWS::AccountId}", ACCOUNT).replace("${AWS::Region}", region).replace("${AWS::Partition}", "aws")
    )


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def deploy(server: MotoServer, assembly: CloudAssembly) -> dict[str, dict[str, str]]:
    """Create every stack; returns each stack's outputs."""
    cloudformation = server.client("cloudformation")
    outputs: dict[str, dict[str, str]] = {}
    for stack in assembly.stacks:
        cloudformation.create_stack(
            StackName=stack.name, TemplateBody=json.dumps(stack.template), Capabilities=CAPABILITIES
        )
        described = cloudformation.describe_stacks(StackName=stack.name)["Stacks"][0]
        if described["StackStatus"] != "CREATE_COMPLETE":
            events = cloudformation.describe_stack_events(StackName=stack.name)["StackEvents"]
            raise RuntimeError(f"{stack.name}: {described['StackStatus']}: {events[:5]}")
        outputs[stack.name] = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return outputs


def stack_resources(server: MotoServer, stack_name: str) -> list[dict[str, Any]]:
    cloudformation = server.client("cloudformation")
    pages = cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name)
    return [summary for page in pages for summary in page["StackResourceSummaries"]]


def destroy(server: MotoServer, assembly: CloudAssembly) -> None:
    cloudformation = server.client("cloudformation")
    for stack in reversed(assembly.stacks):
        cloudformation.delete_stack(StackName=stack.name)
