"""Model monitoring of one stage's endpoint, on the AWS side: the monitoring job's role, the
alarms on the metrics it publishes, and what the stage's deployer needs to keep its schedule.

The schedule itself is not a CloudFormation resource: its job definition names the live
version's baseline, which changes with every deployment, and CreateMonitoringSchedule needs the
endpoint to exist, which the deployer creates. So the deployer keeps it
(infra/deployer_lambda/monitoring.py) with the settings this construct hands it in
`environment`, passing `role` (iam:PassRole, `deployer_statements`).

The job (the PyTorch DLC running processing/monitor.py) publishes, per window, CloudWatch
metrics in Model Monitor's namespace with the Endpoint and MonitoringSchedule dimensions. Each
alarm below goes to the environment's SNS topic; `drift_alarm` (the job's own verdict: any drift
constraint violated) is the one the retraining trigger listens to (infra/retraining.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import jsii
from aws_cdk import Acknowledgment, Duration, IStableStringProducer, Lazy, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra import arns
from infra.config import StackConfig, StageConfig
from infra.deployer_lambda.monitoring import METRIC_NAMESPACE, schedule_name
from infra.roles import (
    KMS_USE,
    SAGEMAKER,
    container_runtime,
    framework_repository,
    vpc_network_interfaces,
)
from pipeline.instance_types import accepts_volume_kms_key

ARCHIVE_NAME = "sourcedir.tar.gz"  # pipeline.packaging's archive name under its digest
# Labels keyed by inference id, uploaded by whoever has them (README: "Model quality").
GROUND_TRUTH_PREFIX = "ground-truth"
PROCESSING_JOB_EVENT = "SageMaker Processing Job State Change"


# Evaluate's code input folder in the definition: s3://<bucket>/<prefix>/code/<digest>/.
_CODE_FOLDER = re.compile(r"^s3://[^/]+/(?P<key>(.+/)?code/[0-9a-f]{16})/?$")


def processing_code_key(definition_body: str) -> str:
    """The key of the processing source archive Evaluate runs (the one that writes the
    baseline), read from the definition the stack deploys: the very object the pipeline
    uploads, not a second packing of a source dir that may have changed in between."""
    from pipeline.definition import EVALUATE

    steps = json.loads(definition_body)["Steps"]
    found = [
        entry["S3Input"]["S3Uri"]
        for step in _all_steps(steps)
        if step["Name"] == EVALUATE
        for entry in step["Arguments"].get("ProcessingInputs", [])
        if entry["InputName"] == "code"
    ]
    match = _CODE_FOLDER.match(found[0]) if len(found) == 1 else None
    if match is None:
        raise ValueError(f"no code input of step {EVALUATE} in the pipeline definition: {found}")
    return f"{match.group('key')}/{ARCHIVE_NAME}"


def _all_steps(steps: list[dict]):
    for step in steps:
        yield step
        arguments = step.get("Arguments", {})
        if isinstance(arguments, dict):
            yield from _all_steps(arguments.get("IfSteps", []) + arguments.get("ElseSteps", []))


@jsii.implements(IStableStringProducer)
class _Later:
    """A value known only once the pipeline's definition is built (after the deployers)."""

    def __init__(self, produce: Callable[[], str]) -> None:
        self._produce = produce

    def produce(self) -> str:
        return self._produce()


def monitor_image_uri(config: StackConfig, region: str) -> str:
    """The PyTorch DLC the pipeline's processing jobs run, for the monitoring instance type."""
    from pipeline.images import image_uri
    from pipeline.settings import Settings

    return image_uri(
        region,
        Settings.framework_version,
        Settings.py_version,
        config.monitor_instance_type,
        "training",
    )


class StageMonitoring(Construct):
    """`role` runs the stage's monitoring jobs; `alarms` watch what they publish;
    `environment` and `deployer_statements` are what the stage's deployer needs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        stage: StageConfig,
        bucket: s3.IBucket,
        key: kms.IKey,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        if not stage.monitored:
            raise ValueError(f"stage {stage.name} is not monitored (serverless, or 'off')")
        stack = Stack.of(self)
        self._stack = stack
        self.stage = stage
        endpoint = stage.endpoint_name
        self.schedule_name = schedule_name(endpoint)
        self.code_key: str | None = None  # use_pipeline_code
        self.image_uri = monitor_image_uri(config, stack.region)

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(SAGEMAKER),
            description=f"{config.resource_prefix}: the {stage.name} stage's monitoring jobs",
        )
        self._grant(config, bucket, key)

        self.alarms = self._alarms(config)
        self.drift_alarm = self.alarms[0]
        for alarm in self.alarms:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
        self.failures = self._failures(topic)

        thresholds = config.thresholds
        self.environment = {
            "MONITOR_ROLE_ARN": self.role.role_arn,
            "MONITOR_IMAGE_URI": self.image_uri,
            "MONITOR_CODE_URI": Lazy.string(
                _Later(lambda: f"s3://{bucket.bucket_name}/{self._required_code_key()}")
            ),
            "MONITOR_OUTPUT_URI": f"s3://{bucket.bucket_name}/{stage.monitoring_prefix}",
            "MONITOR_GROUND_TRUTH_URI": f"s3://{bucket.bucket_name}/{self.ground_truth_prefix}",
            "MONITOR_SCHEDULE": stage.monitoring_cron,
            "MONITOR_INSTANCE_TYPE": config.monitor_instance_type,
            # SageMaker refuses a volume key on instance types with NVMe instance storage.
            "MONITOR_VOLUME_KMS_KEY_ARN": key.key_arn
            if accepts_volume_kms_key(config.monitor_instance_type)
            else "",
            "MONITOR_THRESHOLDS": json.dumps(thresholds, sort_keys=True),
        }
        self.deployer_statements = [
            iam.PolicyStatement(
                sid="MonitoringSchedule",
                actions=[
                    "sagemaker:CreateMonitoringSchedule",
                    "sagemaker:UpdateMonitoringSchedule",
                    "sagemaker:DescribeMonitoringSchedule",
                    # Only on `cdk destroy`, before the endpoint goes.
                    "sagemaker:DeleteMonitoringSchedule",
                    "sagemaker:AddTags",
                ],
                resources=[arns.sagemaker(self, "monitoring-schedule", self.schedule_name)],
            ),
            iam.PolicyStatement(
                sid="PassMonitoringRole",
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER}},
            ),
        ]

    def use_pipeline_code(self, definition_body: str) -> None:
        """Run the processing archive this definition's Evaluate runs (stack.py calls it once
        the pipeline is built)."""
        self.code_key = processing_code_key(definition_body)

    def _required_code_key(self) -> str:
        if self.code_key is None:
            raise RuntimeError(
                f"{self.node.path}: use_pipeline_code() was never called, so the monitoring "
                "job has no code"
            )
        return self.code_key

    @property
    def ground_truth_prefix(self) -> str:
        return f"{GROUND_TRUTH_PREFIX}/{self.stage.endpoint_name}"

    def _grant(self, config: StackConfig, bucket: s3.IBucket, key: kms.IKey) -> None:
        stack, stage = self._stack, self.stage
        capture, truth = stage.data_capture_prefix, self.ground_truth_prefix
        statements = [
            iam.PolicyStatement(
                sid="ReadCodeBaselinesCaptureAndTruth",
                actions=["s3:GetObject"],
                resources=[
                    # The processing source archive (its content-hash key) and the versions'
                    # baselines, both under the project prefix, read-only.
                    bucket.arn_for_objects(f"{config.s3_prefix}/code/*"),
                    bucket.arn_for_objects(f"{config.s3_prefix}/executions/*"),
                    bucket.arn_for_objects(f"{capture}/*"),
                    bucket.arn_for_objects(f"{truth}/*"),
                ],
            ),
            iam.PolicyStatement(
                sid="ListCaptureAndTruth",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={
                    "StringLike": {"s3:prefix": [capture, f"{capture}/*", truth, f"{truth}/*"]}
                },
            ),
            iam.PolicyStatement(
                sid="WriteReports",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{stage.monitoring_prefix}/*")],
            ),
            iam.PolicyStatement(
                sid="UseProjectKey", actions=list(KMS_USE), resources=[key.key_arn]
            ),
            *container_runtime(
                pull=(
                    "PullProcessingImage",
                    [framework_repository(stack.region, "training").arn(stack.partition)],
                ),
                logs=(
                    "ProcessingLogs",
                    [
                        arns.arn(
                            self, "logs", "log-group", "/aws/sagemaker/ProcessingJobs*", colon=True
                        )
                    ],
                ),
                metrics=("MonitorMetrics", [METRIC_NAMESPACE, "/aws/sagemaker/*"]),
            ),
        ]
        if config.vpc_mode:
            statements.append(vpc_network_interfaces())
        for statement in statements:
            self.role.add_to_policy(statement)
        data = f"<{stack.resolve(stack.get_logical_id(bucket.node.default_child))}.Arn>"
        arn = f"arn:<AWS::Partition>:{{}}:{stack.region}:<AWS::AccountId>:{{}}"
        findings = {
            f"Resource::{data}/{config.s3_prefix}/code/*": "The job reads the processing source "
            "archive, whose key is its content hash, read-only.",
            f"Resource::{data}/{config.s3_prefix}/executions/*": "The job reads the live "
            "version's baseline, written by Evaluate under executions/<execution id>/.",
            f"Resource::{data}/{stage.data_capture_prefix}/*": "Model Monitor reads this "
            "endpoint's captured data, under time-partitioned keys.",
            f"Resource::{data}/{self.ground_truth_prefix}/*": "The job reads this endpoint's "
            "ground-truth labels, under time-partitioned keys.",
            f"Resource::{data}/{stage.monitoring_prefix}/*": "The job writes one report per "
            "window under this endpoint's monitoring prefix.",
            "Resource::*": "ecr:GetAuthorizationToken has no resource-level permissions; "
            "PutMetricData is held to Model Monitor's namespaces by the cloudwatch:namespace "
            "condition"
            + (
                "; EC2 network-interface actions (VPC mode) take no resource ARNs"
                if config.vpc_mode
                else ""
            )
            + ".",
            "Resource::"
            + arn.format("logs", "log-group:/aws/sagemaker/ProcessingJobs*"): "SageMaker "
            "writes the monitoring jobs' logs to the processing jobs' log group and streams.",
        }
        Validations.of(self.role).acknowledge(
            *(
                Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason)
                for finding, reason in findings.items()
            )
        )

    def _failures(self, topic: sns.ITopic) -> events.Rule:
        """A monitoring job that failed: without it a broken job would read as "no drift".
        (A window without captured data starts no job, so it raises nothing here.)"""
        detail = events.EventField.from_path
        return events.Rule(
            self,
            "JobFailures",
            description=f"Failed monitoring jobs of schedule {self.schedule_name}",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[PROCESSING_JOB_EVENT],
                detail={
                    "ProcessingJobStatus": ["Failed"],
                    "MonitoringScheduleArn": [{"suffix": f"/{self.schedule_name}"}],
                },
            ),
            targets=[
                targets.SnsTopic(
                    topic,
                    message=events.RuleTargetInput.from_multiline_text(
                        f"Monitoring job {detail('$.detail.ProcessingJobName')} of schedule "
                        f"{self.schedule_name} (endpoint {self.stage.endpoint_name}) failed: "
                        f"{detail('$.detail.FailureReason')}\n"
                        "Its log is in CloudWatch Logs, /aws/sagemaker/ProcessingJobs."
                    ),
                )
            ],
        )

    def _metric(self, name: str, statistic: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRIC_NAMESPACE,
            metric_name=name,
            dimensions_map={
                "Endpoint": self.stage.endpoint_name,
                "MonitoringSchedule": self.schedule_name,
            },
            statistic=statistic,
            period=Duration.seconds(self.stage.monitoring_period_seconds),
        )

    def _alarms(self, config: StackConfig) -> list[cloudwatch.Alarm]:
        """The drift verdict first, then one alarm per threshold."""
        t = config.thresholds
        name = f"{config.resource_prefix}-{self.stage.endpoint_name}"
        above = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        below = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
        # bincount_mean_confidence has no alarm of its own: how far it may fall depends on the
        # version's baseline confidence, which the job's verdict (confidence_drop) knows.
        specs = [
            # (id, suffix, metric, statistic, threshold, comparison, what it means)
            (
                "Drift",
                "drift",
                "bincount_drift",
                "Maximum",
                1,
                cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                "The monitoring job found drift against the live version's baseline (a drift "
                "constraint violated; its report lists which)",
            ),
            (
                "PredictionPsi",
                "prediction-psi",
                "bincount_prediction_psi",
                "Maximum",
                t["prediction_psi"],
                above,
                "The predicted counts' distribution moved away from the baseline's (PSI)",
            ),
            (
                "DecodeFailures",
                "decode-failures",
                "bincount_decode_failure_rate",
                "Maximum",
                t["decode_failure_rate"],
                above,
                "Too many requests held images that could not be decoded",
            ),
            (
                "Accuracy",
                "accuracy",
                "bincount_accuracy",
                "Minimum",
                t["min_accuracy"],
                below,
                "Accuracy on requests with ground truth fell below the threshold",
            ),
            (
                "Mae",
                "mae",
                "bincount_mae",
                "Maximum",
                t["max_mae"],
                above,
                "Mean absolute count error on requests with ground truth rose above the threshold",
            ),
        ]
        alarms = [
            cloudwatch.Alarm(
                self,
                construct_id,
                alarm_name=f"{name}-{suffix}",
                alarm_description=f"{what} (endpoint {self.stage.endpoint_name}, schedule "
                f"{self.schedule_name})",
                metric=self._metric(metric, statistic),
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=comparison,
                # A window without traffic (or ground truth) publishes nothing: not a drift.
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            for construct_id, suffix, metric, statistic, threshold, comparison, what in specs
        ]
        # The shift is signed (darker is negative): the alarm takes its size either way.
        alarms.insert(
            2,
            cloudwatch.Alarm(
                self,
                "BrightnessShift",
                alarm_name=f"{name}-brightness-shift",
                alarm_description="The images' mean brightness moved more than "
                f"{t['brightness_shift']:g} baseline standard deviations (endpoint "
                f"{self.stage.endpoint_name}, schedule {self.schedule_name})",
                metric=cloudwatch.MathExpression(
                    expression="ABS(shift)",
                    using_metrics={"shift": self._metric("bincount_brightness_shift", "Average")},
                    label="|brightness shift| (baseline standard deviations)",
                    period=Duration.seconds(self.stage.monitoring_period_seconds),
                ),
                threshold=t["brightness_shift"],
                evaluation_periods=1,
                comparison_operator=above,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        )
        return alarms
