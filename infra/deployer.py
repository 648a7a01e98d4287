"""The deployer: a Lambda (infra/deployer_lambda) behind the pipeline's Deploy step, an
EventBridge rule on the model package group's approvals and one on the endpoint coming into
service (to finish autoscaling), plus the alarms that roll a blue/green update back and a
dead-letter queue for the events it could not handle."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import (
    Acknowledgment,
    CustomResource,
    Duration,
    RemovalPolicy,
    Stack,
    Validations,
)
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import arns, log_groups
from infra.config import StackConfig, StageConfig
from infra.custom_resource import provider
from infra.monitoring import StageMonitoring
from pipeline.instance_types import accepts_volume_kms_key

LAMBDA_CODE = Path(__file__).resolve().parent / "deployer_lambda"
SAGEMAKER = "sagemaker.amazonaws.com"
AUTOSCALING_SERVICE = "sagemaker.application-autoscaling.amazonaws.com"
VARIANT = "AllTraffic"
APPROVAL_EVENT = "SageMaker Model Package State Change"
ENDPOINT_EVENT = "SageMaker Endpoint State Change"


class Deployer(Construct):
    """`function` reconciles the endpoint with the registry; `rule` feeds it the group's status
    changes, `endpoint_rule` the endpoint's state changes, `schedule` a periodic safety net;
    `dead_letters` keeps what failed; `teardown` removes the endpoint with the stack."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        stage: StageConfig,
        next_stage: StageConfig | None,
        bucket: s3.IBucket,
        key: kms.IKey,
        model_role: iam.IRole,
        group_name: str,
        topic: sns.ITopic,
        monitor: StageMonitoring | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._stack = Stack.of(self)
        self.stage = stage
        self._endpoint = endpoint = stage.endpoint_name
        self._topic = topic
        self.alarm_names = [
            f"{config.resource_prefix}-{endpoint}-invocation-5xx",
            f"{config.resource_prefix}-{endpoint}-model-latency",
        ]
        self.alarms = self._alarms(config, self.alarm_names)
        for alarm in self.alarms:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))

        log_group = log_groups.log_group(self, "Logs", config, key)
        self.role = self._deployer_role(
            config, stage, key, model_role, group_name, log_group, next_stage, monitor
        )
        self.dead_letters = self._dead_letter_queue(config, key)
        self.function = self._function(
            stage,
            log_group,
            self._environment(config, stage, next_stage, bucket, key, model_role, group_name),
            monitor,
            key,
        )
        self.rule, self.endpoint_rule, self.schedule = self._rules(config, group_name)
        self.teardown = self._teardown(config, key, model_role)
        self.dead_letter_alarm = self._dead_letter_alarm(config, stage, topic)

    def _deployer_role(
        self,
        config: StackConfig,
        stage: StageConfig,
        key: kms.IKey,
        model_role: iam.IRole,
        group_name: str,
        log_group: logs.ILogGroup,
        next_stage: StageConfig | None,
        monitor: StageMonitoring | None,
    ) -> iam.Role:
        """The function's role: what _grant lists, plus the stage's monitoring schedule."""
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{config.resource_prefix}: the {stage.name} stage's model deployer",
        )
        self._grant(config, key, model_role, group_name, log_group, smoke=next_stage is not None)
        if monitor is not None:
            # The deployer keeps the stage's Model Monitor schedule on the live version.
            for statement in monitor.deployer_statements:
                self.role.add_to_policy(statement)
        return self.role

    def _dead_letter_queue(self, config: StackConfig, key: kms.IKey) -> sqs.Queue:
        """Approvals that could not be delivered or deployed (after retries) land here."""
        queue = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=RemovalPolicy.RETAIN
            if config.removal == "retain"
            else RemovalPolicy.DESTROY,
        )
        Validations.of(queue).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is itself the dead-letter queue of the deployer's "
                "EventBridge targets and asynchronous invocations.",
            )
        )
        return queue

    def _function(
        self,
        stage: StageConfig,
        log_group: logs.ILogGroup,
        environment: dict[str, str],
        monitor: StageMonitoring | None,
        key: kms.IKey,
    ) -> lambda_.Function:
        function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="deployer.handler",
            code=lambda_.Code.from_asset(str(LAMBDA_CODE), exclude=["__pycache__", "*.pyc"]),
            description=f"Keeps the {stage.name} endpoint on the newest Approved version",
            timeout=Duration.minutes(15),
            memory_size=256,
            dead_letter_queue=self.dead_letters,
            role=self.role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={
                **environment,
                # MONITOR_*: the monitoring schedule's settings (infra/monitoring.py).
                **(monitor.environment if monitor is not None else {}),
            },
            environment_encryption=key,
        )
        function.node.add_dependency(self.role)
        return function

    def _environment(
        self,
        config: StackConfig,
        stage: StageConfig,
        next_stage: StageConfig | None,
        bucket: s3.IBucket,
        key: kms.IKey,
        model_role: iam.IRole,
        group_name: str,
    ) -> dict[str, str]:
        """The function's settings (infra/deployer_lambda/deployer.py Config reads them)."""
        return {
            "ENDPOINT_NAME": self._endpoint,
            "MODEL_ROLE_ARN": model_role.role_arn,
            "DATA_CAPTURE_URI": f"s3://{bucket.bucket_name}/{stage.data_capture_prefix}",
            "STAGE": stage.name,
            "NEXT_STAGE": next_stage.name if next_stage else "",
            "INSTANCE_TYPE": stage.instance_type,
            "INSTANCE_COUNT": str(stage.instance_count),
            "SERVERLESS_MEMORY_MB": str(stage.serverless_memory_mb),
            "SERVERLESS_MAX_CONCURRENCY": str(stage.serverless_max_concurrency),
            "KMS_KEY_ARN": key.key_arn,
            # SageMaker refuses a volume key on instance types with NVMe storage.
            "VOLUME_KMS_KEY_ARN": key.key_arn
            if accepts_volume_kms_key(stage.instance_type) and not stage.serverless
            else "",
            "MODEL_PACKAGE_GROUP": group_name,
            "ALARM_NAMES": ",".join(self.alarm_names),
            "MIN_CAPACITY": str(stage.autoscaling_min),
            "MAX_CAPACITY": str(stage.autoscaling_max),
            "TARGET_INVOCATIONS": str(config.autoscaling_target_invocations),
            "CAPTURE_PERCENT": str(config.data_capture_percent),
            "CANARY_PERCENT": str(config.canary_percent),
            "BAKE_SECONDS": str(config.bake_seconds),
            "SUBNETS": ",".join(config.subnet_ids),
            "SECURITY_GROUP_IDS": ",".join(config.security_group_ids),
            "NETWORK_ISOLATION": "true" if config.vpc_mode else "false",
            "WAIT_SECONDS": str(config.deployer_wait_seconds),
            # Within the function's 15 minutes: the endpoint's deletion on `cdk destroy`.
            "TEARDOWN_SECONDS": "720",
            "TAGS": json.dumps(config.all_tags, sort_keys=True),
            "TOPIC_ARN": self._topic.topic_arn,
            # A stage with a next one smoke-tests each version it deploys: promotion needs
            # a passed test.
            "SMOKE_TEST": "true" if next_stage else "false",
            "SMOKE_P50_MS": str(config.smoke_p50_ms),
        }

    def _rules(self, config: StackConfig, group_name: str) -> tuple[events.Rule, ...]:
        """(approvals, endpoint states, schedule): what makes the deployer reconcile.

        Every change of a version's status (approved, rejected, or set back to pending), every
        change of the endpoint's state (a rollout finished, failed or rolled back) and a
        periodic safety net move the endpoint toward the newest Approved version. A busy
        endpoint is not an error: the next event finishes the work.
        """
        endpoint = self._endpoint
        approvals = events.Rule(
            self,
            "ApprovalRule",
            description=f"Status changes of versions in the {group_name} model package group",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[APPROVAL_EVENT],
                detail={"ModelPackageGroupName": [group_name]},
            ),
            targets=[self._target()],
        )
        endpoint_states = events.Rule(
            self,
            "EndpointStateRule",
            description=f"State changes of endpoint {endpoint}: the deployer finishes or "
            "corrects its rollout",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[ENDPOINT_EVENT],
                detail={"EndpointName": [endpoint]},
            ),
            targets=[self._target()],
        )
        schedule = events.Rule(
            self,
            "ReconcileSchedule",
            description=f"Safety net: the deployer reconciles endpoint {endpoint} periodically",
            schedule=events.Schedule.rate(Duration.minutes(config.reconcile_minutes)),
            targets=[self._target()],
        )
        return approvals, endpoint_states, schedule

    def _teardown(
        self, config: StackConfig, key: kms.IKey, model_role: iam.IRole
    ) -> CustomResource:
        """`cdk destroy`: the deployer deletes the endpoint, endpoint configs, models and
        scalable target it made outside CloudFormation (they would keep billing). The rules and
        the schedule depend on it, so they go first and no late event brings the endpoint back;
        it depends on the model role, the key and its own role, which must outlive the
        endpoint's deletion."""
        teardown = CustomResource(
            self,
            "Teardown",
            service_token=provider(
                self, "TeardownProvider", config=config, key=key, function=self.function
            ).service_token,
            resource_type="Custom::EndpointTeardown",
            properties={"EndpointName": self._endpoint},
        )
        teardown.node.add_dependency(model_role, key, self.role, self.function)
        for rule in (self.rule, self.endpoint_rule, self.schedule):
            rule.node.add_dependency(teardown)
        return teardown

    def _dead_letter_alarm(
        self, config: StackConfig, stage: StageConfig, topic: sns.ITopic
    ) -> cloudwatch.Alarm:
        """Anything in the dead-letter queue is work the deployer could not do: say so loudly."""
        alarm = cloudwatch.Alarm(
            self,
            "DeadLettersAlarm",
            alarm_name=f"{config.resource_prefix}-{stage.name}-deployer-dead-letters",
            alarm_description="Events the deployer could not handle after retries are waiting "
            "in its dead-letter queue",
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
        return alarm

    def _target(self) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            self.function, retry_attempts=2, dead_letter_queue=self.dead_letters
        )

    def _alarms(self, config: StackConfig, names: list[str]) -> list[cloudwatch.Alarm]:
        """What rolls a blue/green update back: server errors and slow answers."""
        dimensions = {"EndpointName": self._endpoint, "VariantName": VARIANT}
        errors = cloudwatch.Alarm(
            self,
            "Errors5xx",
            alarm_name=names[0],
            alarm_description="The endpoint answers with 5XX errors",
            metric=cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name="Invocation5XXErrors",
                dimensions_map=dimensions,
                statistic="Sum",
                period=Duration.minutes(1),
            ),
            threshold=config.error_alarm_count,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        latency = cloudwatch.Alarm(
            self,
            "ModelLatency",
            alarm_name=names[1],
            alarm_description="The model takes too long per request (microseconds)",
            metric=cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name="ModelLatency",
                dimensions_map=dimensions,
                statistic="p90",
                period=Duration.minutes(1),
            ),
            threshold=config.latency_alarm_microseconds,
            evaluation_periods=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        return [errors, latency]

    def _arn(self, service: str, resource: str, name: str, colon: bool = False) -> str:
        return arns.arn(self, service, resource, name, colon=colon)

    def _grant(
        self,
        config: StackConfig,
        key: kms.IKey,
        model_role: iam.IRole,
        group_name: str,
        log_group: logs.ILogGroup,
        *,
        smoke: bool,
    ) -> None:
        # Names the deployer creates all start with the endpoint name (resource_name()).
        endpoint = self._endpoint
        statements = [
            iam.PolicyStatement(
                sid="ReadPackages",
                # UpdateModelPackage only sets or removes the rollout-failed mark in a
                # version's CustomerMetadataProperties.
                actions=["sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"],
                resources=[self._arn("sagemaker", "model-package", f"{group_name}/*")],
            ),
            iam.PolicyStatement(
                sid="ListPackagesModelsAndConfigs",
                actions=[
                    "sagemaker:ListModelPackages",
                    "sagemaker:ListModels",
                    "sagemaker:ListEndpointConfigs",
                ],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="ModelsAndEndpoints",
                actions=[
                    "sagemaker:CreateModel",
                    "sagemaker:DescribeModel",
                    "sagemaker:DeleteModel",
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:DeleteEndpointConfig",
                    "sagemaker:CreateEndpoint",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:DescribeEndpoint",
                    # Only on `cdk destroy` (the teardown custom resource).
                    "sagemaker:DeleteEndpoint",
                    # Application Auto Scaling checks this one on whoever registers a variant
                    # as a scalable target.
                    "sagemaker:UpdateEndpointWeightsAndCapacities",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                resources=[
                    self._arn("sagemaker", "model", f"{endpoint}-*"),
                    self._arn("sagemaker", "endpoint-config", f"{endpoint}-*"),
                    self._arn("sagemaker", "endpoint", endpoint),
                ],
            ),
            iam.PolicyStatement(
                sid="PassModelRole",
                actions=["iam:PassRole"],
                resources=[model_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER}},
            ),
            iam.PolicyStatement(
                sid="EndpointKey",
                actions=[
                    "kms:CreateGrant",
                    "kms:DescribeKey",
                    "kms:Decrypt",
                    "kms:GenerateDataKey",
                ],
                resources=[key.key_arn],
            ),
            iam.PolicyStatement(
                sid="Autoscaling",
                actions=[
                    "application-autoscaling:RegisterScalableTarget",
                    "application-autoscaling:PutScalingPolicy",
                    "application-autoscaling:DeregisterScalableTarget",
                ],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="AutoscalingAlarms",
                actions=[
                    "cloudwatch:PutMetricAlarm",
                    "cloudwatch:DescribeAlarms",
                    "cloudwatch:DeleteAlarms",
                ],
                resources=[
                    self._arn(
                        "cloudwatch", "alarm", f"TargetTracking-endpoint/{endpoint}/*", colon=True
                    )
                ],
            ),
            # The blue/green rollback alarms are the stack's: read, never changed.
            iam.PolicyStatement(
                sid="RollbackAlarms",
                actions=["cloudwatch:DescribeAlarms"],
                resources=[a.alarm_arn for a in self.alarms],
            ),
            iam.PolicyStatement(
                sid="AutoscalingServiceRole",
                actions=["iam:CreateServiceLinkedRole"],
                resources=[
                    f"arn:{self._stack.partition}:iam::{self._stack.account}:role/"
                    f"aws-service-role/{AUTOSCALING_SERVICE}/"
                    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
                ],
                conditions={"StringLike": {"iam:AWSServiceName": AUTOSCALING_SERVICE}},
            ),
            iam.PolicyStatement(
                sid="OwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            ),
            iam.PolicyStatement(
                sid="Notify", actions=["sns:Publish"], resources=[self._topic.topic_arn]
            ),
        ]
        if smoke:
            # The smoke test calls the endpoint it has just deployed.
            statements.append(
                iam.PolicyStatement(
                    sid="SmokeTest",
                    actions=["sagemaker:InvokeEndpoint"],
                    resources=[self._arn("sagemaker", "endpoint", endpoint)],
                )
            )
        for statement in statements:
            self.role.add_to_policy(statement)
        self._acknowledge(config, group_name)

    def _acknowledge(self, config: StackConfig, group_name: str) -> None:
        arn = f"arn:<AWS::Partition>:{{}}:{self._stack.region}:<AWS::AccountId>:{{}}"
        endpoint = self._endpoint
        findings = {
            "Resource::*": "ListModelPackages, ListModels, ListEndpointConfigs and the "
            "Application Auto Scaling calls have no resource-level permissions.",
            "Resource::" + arn.format("sagemaker", f"model-package/{group_name}/*"): "Versions "
            "of this project's own model package group only.",
            "Resource::" + arn.format("sagemaker", f"model/{endpoint}-*"): "One model per package "
            "version, named <endpoint>-v<version>-<hash>.",
            "Resource::" + arn.format("sagemaker", f"endpoint-config/{endpoint}-*"): "One "
            "endpoint config per package version, named <endpoint>-v<version>-<hash>.",
            "Resource::"
            + arn.format(
                "cloudwatch", f"alarm:TargetTracking-endpoint/{endpoint}/*"
            ): "Target tracking creates its alarms under this name for the endpoint's variant.",
        }
        Validations.of(self.role).acknowledge(
            *(
                Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason)
                for finding, reason in findings.items()
            )
        )
