"""Log groups: retention, teardown and checkov's encryption finding (``checkov.LOG_GROUP``), in one place."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks import checkov
from stacks.config import DeploymentConfig

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def log_group(scope: Construct, construct_id: str, config: DeploymentConfig) -> logs.LogGroup:
    """A log group kept ``log_retention_days``; deleted by ``cdk destroy`` only in development."""
    group = logs.LogGroup(
        scope,
        construct_id,
        retention=_RETENTION[config.log_retention_days],
        removal_policy=RemovalPolicy.DESTROY if config.destroy_on_teardown else RemovalPolicy.RETAIN,
    )
    checkov.skip(group, checkov.LOG_GROUP)
    return group
