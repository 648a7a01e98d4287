"""One CloudWatch dashboard per environment: what each stage's endpoint sees, how the
pipeline's executions end, and what the last trainings reached."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra.config import StackConfig

VARIANT = "AllTraffic"
PIPELINE_NAMESPACE = "AWS/Sagemaker/ModelBuildingPipeline"


class Dashboard(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StackConfig, pipeline_name: str
    ) -> None:
        super().__init__(scope, construct_id)
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=config.resource_prefix
        )
        for stage in config.stages:
            self.dashboard.add_widgets(*self._endpoint_widgets(stage.name, stage.endpoint_name))

        def executions(metric: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=PIPELINE_NAMESPACE,
                metric_name=metric,
                dimensions_map={"PipelineName": pipeline_name},
                statistic="Sum",
                period=Duration.days(1),
            )

        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=f"{pipeline_name}: executions per day",
                left=[executions("ExecutionSucceeded"), executions("ExecutionFailed")],
                width=12,
            ),
            cloudwatch.LogQueryWidget(
                title="Last trainings: validation accuracy per epoch",
                log_group_names=["/aws/sagemaker/TrainingJobs"],
                query_lines=[
                    "fields @timestamp, @logStream",
                    "filter @message like /epoch=\\d+ .*val_acc=/",
                    "parse @message /epoch=(?<epoch>\\d+) .*val_acc=(?<val_acc>[0-9.]+)/",
                    f"filter @logStream like /{pipeline_name}|pipelines-/",
                    "sort @timestamp desc",
                    "limit 20",
                ],
                width=12,
            ),
        )

    @staticmethod
    def _endpoint_widgets(stage: str, endpoint: str) -> list[cloudwatch.IWidget]:
        def metric(name: str, statistic: str, namespace: str = "AWS/SageMaker"):
            return cloudwatch.Metric(
                namespace=namespace,
                metric_name=name,
                dimensions_map={"EndpointName": endpoint, "VariantName": VARIANT},
                statistic=statistic,
                period=Duration.minutes(5),
            )

        return [
            cloudwatch.GraphWidget(
                title=f"{stage} ({endpoint}): invocations and errors",
                left=[
                    metric("Invocations", "Sum"),
                    metric("Invocation4XXErrors", "Sum"),
                    metric("Invocation5XXErrors", "Sum"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title=f"{stage}: model latency (microseconds)",
                left=[metric("ModelLatency", "p50"), metric("ModelLatency", "p99")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title=f"{stage}: instances and CPU",
                left=[metric("CPUUtilization", "Average", "/aws/sagemaker/Endpoints")],
                right=[metric("InvocationsPerInstance", "Sum")],
                width=8,
            ),
        ]
