"""One CloudWatch dashboard: drift, accuracy (validation, each batch's label-free estimate and, in production,
its labelled accuracy once labels come back), how the executions end.

Drift and accuracy come from the Lambdas' Powertools metrics (embedded metric format: no
PutMetricData permission needed); execution outcomes from Step Functions' own metrics.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from driftloop import telemetry

PERIOD = Duration.hours(1)


def loop_metric(name: str, statistic: str, label: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=telemetry.NAMESPACE,
        metric_name=name,
        dimensions_map={"service": telemetry.SERVICE},
        statistic=statistic,
        period=PERIOD,
        label=label,
    )


class Dashboard(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, train: sfn.StateMachine, serve: sfn.StateMachine
    ) -> None:
        super().__init__(scope, construct_id)
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.days(7))
        drift = cloudwatch.GraphWidget(
            title="Drift: smallest p-value per serve run (drift when below the corrected threshold)",
            left=[loop_metric(telemetry.DRIFT_STATISTIC, "Minimum", "smallest p-value")],
            right=[loop_metric(telemetry.DRIFT_DETECTED, "Sum", "runs with drift")],
            width=12,
        )
        accuracy = cloudwatch.GraphWidget(
            title="Validation accuracy: new model (challenger) vs current model (champion)",
            left=[
                loop_metric(telemetry.CHALLENGER_ACCURACY, "Maximum", "challenger"),
                loop_metric(telemetry.CHAMPION_ACCURACY, "Maximum", "champion"),
            ],
            right=[loop_metric(telemetry.PROMOTED, "Sum", "promoted")],
            left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
            width=12,
        )
        estimate = cloudwatch.GraphWidget(
            title="Estimated accuracy of each serve batch, without labels (95 % interval; "
            "over-estimates a confidently wrong model; unreliable: outside its calibration's domain)",
            left=[
                loop_metric(telemetry.ESTIMATED_ACCURACY, "Average", "estimate"),
                loop_metric(telemetry.ESTIMATED_ACCURACY_LOWER, "Average", "lower"),
                loop_metric(telemetry.ESTIMATED_ACCURACY_UPPER, "Average", "upper"),
                loop_metric(telemetry.ESTIMATED_ACCURACY_UNRELIABLE, "Average", "unreliable (not to be believed)"),
            ],
            left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
            width=12,
        )
        labelled = cloudwatch.GraphWidget(
            title="Labelled accuracy of served batches (production: measured when their labels come back)",
            left=[
                loop_metric(telemetry.LABELLED_ACCURACY, "Average", "labelled accuracy"),
                loop_metric(telemetry.LABELLED_ACCURACY, "Minimum", "worst batch"),
            ],
            right=[loop_metric(telemetry.LABELLED_IMAGES, "Sum", "labelled images")],
            left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
            width=12,
        )
        outcomes = [
            cloudwatch.GraphWidget(
                title=f"{name} executions",
                left=[
                    machine.metric_succeeded(period=PERIOD, statistic="Sum", label="succeeded"),
                    machine.metric_failed(period=PERIOD, statistic="Sum", label="failed"),
                    machine.metric_timed_out(period=PERIOD, statistic="Sum", label="timed out"),
                    machine.metric_aborted(period=PERIOD, statistic="Sum", label="aborted"),
                ],
                width=12,
            )
            for name, machine in (("Serve", serve), ("Train", train))
        ]
        self.dashboard.add_widgets(drift, accuracy)
        self.dashboard.add_widgets(estimate, labelled)
        self.dashboard.add_widgets(*outcomes)
