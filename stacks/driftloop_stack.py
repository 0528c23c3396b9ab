"""The one stack: composes the constructs and grants, where they meet, what each may do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from aws_cdk import App, Aspects, CfnOutput, Stack
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from driftloop.layout import RUNS_ROOT, START_ROOTS
from driftloop.pipelines import Component
from stacks.config import CONTEXT_KEY, DeploymentConfig
from stacks.control_steps import ControlStepFunctions
from stacks.dashboard import Dashboard
from stacks.images import ComponentImages
from stacks.notifications import Notifications
from stacks.parameters import RunParameters
from stacks.pipelines import PipelineStateMachines
from stacks.sagemaker_role import SageMakerJobRole
from stacks.schedule import ServeSchedule
from stacks.storage import Storage

REPO_ROOT: Final = Path(__file__).resolve().parent.parent


class DriftloopStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, repo_root: Path = REPO_ROOT,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope, construct_id, description="driftloop: batch image classification that retrains on drift", **kwargs
        )
        self.config = config
        self.storage = Storage(self, "Storage", config=config)
        bucket = self.storage.bucket
        self.parameters = RunParameters(
            self, "Parameters", names=config.parameter_names, retain=not config.destroy_on_teardown
        )
        self.images = ComponentImages(self, "Images", repo_root=repo_root)
        self.notifications = Notifications(
            self, "Notifications", email=config.notification_email, retain=not config.destroy_on_teardown
        )
        # The jobs read what users upload (data sets, batches; retrain sets are under data/) and the runs.
        self.job_role = SageMakerJobRole(
            self, "SageMaker", bucket=bucket, images=self.images.images, data_prefixes=START_ROOTS,
            runs_prefix=RUNS_ROOT,
        )
        self.functions = ControlStepFunctions(
            self, "Lambdas", config=config, repo_root=repo_root, bucket=bucket, parameters=self.parameters,
            topic=self.notifications.topic, algorithm_image=self.images.images[Component.ALGORITHM].image_uri,
        )
        self.pipelines = PipelineStateMachines(
            self,
            "Pipelines",
            config=config,
            images=self.images.images,
            sagemaker_role=self.job_role.role,
            parameters=self.parameters,
            functions=self.functions,
            topic=self.notifications.topic,
        )
        self.notifications.tell_unreported_ends(self.pipelines.train, self.pipelines.serve)
        self.schedule = ServeSchedule(self, "Schedule", config=config, state_machine=self.pipelines.serve)
        self.dashboard = Dashboard(self, "Dashboard", train=self.pipelines.train, serve=self.pipelines.serve)

        CfnOutput(self, "BucketName", value=bucket.bucket_name, description="data and run artifacts")
        CfnOutput(self, "TrainStateMachineArn", value=self.pipelines.train.state_machine_arn)
        CfnOutput(self, "ServeStateMachineArn", value=self.pipelines.serve.state_machine_arn)
        CfnOutput(self, "TopicArn", value=self.notifications.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.dashboard.dashboard.dashboard_name)
        CfnOutput(self, "ModelPackageGroup", value=config.package_group,
                  description="every trained model, to approve or reject (SageMaker Model Registry)")
        CfnOutput(self, "ParameterPrefix", value=config.parameter_names.prefix, description="the run records")


def cdk_json_context(repo_root: Path = REPO_ROOT) -> dict[str, Any]:
    """The context in cdk.json, so that ``python app.py`` synthesizes what ``cdk synth`` does."""
    return dict(json.loads((repo_root / "cdk.json").read_text()).get("context", {}))


def build(app: App) -> DriftloopStack:
    """The stack from the app's context (cdk.json plus ``-c driftloop.<key>=<value>``), with cdk-nag."""
    context = app.node.get_all_context()
    overrides = {k: v for k, v in context.items() if k.startswith(f"{CONTEXT_KEY}.")}
    config = DeploymentConfig.from_context(app.node.try_get_context(CONTEXT_KEY), overrides)
    stack = DriftloopStack(app, config.stack_name, config=config)
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return stack
