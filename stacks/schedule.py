"""EventBridge Scheduler: starts the serve state machine on the configured schedule.

Every scheduled run starts with ``{}``: in simulation mode the state machine asks ``next_batch`` for
the next stage's test set; in production ``claim_batch`` takes the oldest complete batch not served
yet, or ends the run without a job. The target role may only start that state machine.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import DeploymentConfig


class ServeSchedule(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, state_machine: sfn.IStateMachine
    ) -> None:
        super().__init__(scope, construct_id)
        self.schedule = scheduler.Schedule(
            self,
            "Serve",
            description="driftloop: run the serve pipeline",
            schedule=scheduler.ScheduleExpression.expression(config.schedule_expression),
            enabled=config.schedule_enabled,
            target=targets.StepFunctionsStartExecution(
                state_machine,
                input=scheduler.ScheduleTargetInput.from_object({}),
                retry_attempts=3,
                max_event_age=Duration.hours(1),
            ),
        )
