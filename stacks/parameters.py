"""The Parameter Store keys of the loop (names from ``driftloop.layout``), with initial values.

No record parameter may point at a model that does not exist, so each starts as the sentinel
``{"status": "none"}`` that every reader treats as "no run yet".
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from driftloop.layout import ParameterNames
from driftloop.records import NO_RECORD


class RunParameters(Construct):
    """The record parameters. Kept by ``cdk destroy`` in production, like the buckets they point into."""

    def __init__(self, scope: Construct, construct_id: str, *, names: ParameterNames, retain: bool) -> None:
        super().__init__(scope, construct_id)
        self.names = names

        def parameter(construct_id: str, name: str, value: str, description: str) -> ssm.StringParameter:
            created = ssm.StringParameter(
                self, construct_id, parameter_name=name, string_value=value, description=description
            )
            created.apply_removal_policy(RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY)
            return created

        self.train_latest = parameter(
            "TrainLatest", names.train_latest, NO_RECORD, "driftloop: the promoted model, detector and explainer"
        )
        self.train_last_attempt = parameter(
            "TrainLastAttempt", names.train_last_attempt, NO_RECORD, "driftloop: the newest train run, promoted or not"
        )
        self.serve_latest = parameter(
            "ServeLatest", names.serve_latest, NO_RECORD, "driftloop: the newest complete serve run"
        )
        self.simulation_position = parameter(
            "SimulationPosition", names.simulation_position, "0", "driftloop: next test set in the simulation cycle"
        )



def allow(principal: iam.IGrantable, action: str, *parameters: ssm.StringParameter) -> None:
    """One SSM action on the named parameters only (CDK's grant_read adds ssm:DescribeParameters,
    which has no resource-level permissions and does nothing when scoped to a parameter)."""
    principal.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=[action], resources=[p.parameter_arn for p in parameters])
    )
