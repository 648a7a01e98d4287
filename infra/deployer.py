"""The deployer: a Lambda (infra/deployer_lambda) behind the pipeline's Deploy step, an
EventBridge rule on the model package group's approvals and one on the endpoint coming into
service (to finish autoscaling), plus the alarms that roll a blue/green update back and a
dead-letter queue for the events it could not handle."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, ArnFormat, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StackConfig

LAMBDA_CODE = Path(__file__).resolve().parent / "deployer_lambda"
SAGEMAKER = "sagemaker.amazonaws.com"
AUTOSCALING_SERVICE = "sagemaker.application-autoscaling.amazonaws.com"
VARIANT = "AllTraffic"
APPROVAL_EVENT = "SageMaker Model Package State Change"
ENDPOINT_EVENT = "SageMaker Endpoint State Change"


class Deployer(Construct):
    """`function` deploys Approved packages to the endpoint; `rule` feeds it approvals,
    `in_service_rule` the endpoint's arrival in service; `dead_letters` keeps what failed."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        bucket: s3.IBucket,
        key: kms.IKey,
        model_role: iam.IRole,
        group_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._stack = stack
        endpoint = config.endpoint_name
        self.alarm_names = [
            f"{config.resource_prefix}-{endpoint}-invocation-5xx",
            f"{config.resource_prefix}-{endpoint}-model-latency",
        ]
        self.alarms = self._alarms(config, self.alarm_names)

        log_group = logs.LogGroup(
            self,
            "Logs",
            encryption_key=key,
            retention=_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.RETAIN
            if config.removal == "retain"
            else RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{config.resource_prefix}: the model deployer Lambda",
        )
        self._grant(config, key, model_role, group_name, log_group)

        vpc_props = {}
        if config.vpc_mode:
            vpc = ec2.Vpc.from_vpc_attributes(
                self, "Vpc", vpc_id=config.vpc_id, availability_zones=stack.availability_zones
            )
            vpc_props = {
                "vpc": vpc,
                "vpc_subnets": ec2.SubnetSelection(
                    subnets=[
                        ec2.Subnet.from_subnet_id(self, f"Subnet{i}", subnet)
                        for i, subnet in enumerate(config.subnet_ids)
                    ]
                ),
                "security_groups": [
                    ec2.SecurityGroup.from_security_group_id(self, f"Sg{i}", group)
                    for i, group in enumerate(config.security_group_ids)
                ],
            }

        # Approvals that could not be delivered or deployed (after retries) land here.
        self.dead_letters = sqs.Queue(
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
        Validations.of(self.dead_letters).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is itself the dead-letter queue of the deployer's "
                "EventBridge targets and asynchronous invocations.",
            )
        )
        # EventBridge and Lambda encrypt what they send to the queue with the stack's key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeDeadLetters",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )

        data_capture_uri = f"s3://{bucket.bucket_name}/{config.data_capture_prefix}"
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="deployer.handler",
            code=lambda_.Code.from_asset(str(LAMBDA_CODE), exclude=["__pycache__", "*.pyc"]),
            description="Deploys Approved bincount model packages; rolls back Rejected live ones",
            timeout=Duration.minutes(15),
            memory_size=256,
            dead_letter_queue=self.dead_letters,
            role=self.role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={
                "ENDPOINT_NAME": endpoint,
                "MODEL_ROLE_ARN": model_role.role_arn,
                "DATA_CAPTURE_URI": data_capture_uri,
                "INSTANCE_TYPE": config.endpoint_instance_type,
                "INSTANCE_COUNT": str(config.endpoint_instance_count),
                "KMS_KEY_ARN": key.key_arn,
                "ALARM_NAMES": ",".join(self.alarm_names),
                "MIN_CAPACITY": str(config.autoscaling_min),
                "MAX_CAPACITY": str(config.autoscaling_max),
                "TARGET_INVOCATIONS": str(config.autoscaling_target_invocations),
                "CAPTURE_PERCENT": str(config.data_capture_percent),
                "CANARY_PERCENT": str(config.canary_percent),
                "BAKE_SECONDS": str(config.bake_seconds),
                "SUBNETS": ",".join(config.subnet_ids),
                "SECURITY_GROUP_IDS": ",".join(config.security_group_ids),
                "NETWORK_ISOLATION": "true" if config.vpc_mode else "false",
                "WAIT_SECONDS": str(config.deployer_wait_seconds),
            },
            environment_encryption=key,
            **vpc_props,
        )
        self.function.node.add_dependency(self.role)

        self.rule = events.Rule(
            self,
            "ApprovalRule",
            description=f"Approvals and rejections in the {group_name} model package group",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[APPROVAL_EVENT],
                detail={
                    "ModelPackageGroupName": [group_name],
                    "ModelApprovalStatus": ["Approved", "Rejected"],
                },
            ),
            targets=[self._target()],
        )
        # A creation that outlasts one call's wait finishes its autoscaling here.
        self.in_service_rule = events.Rule(
            self,
            "InServiceRule",
            description=f"Endpoint {endpoint} in service: the deployer sets up autoscaling",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[ENDPOINT_EVENT],
                detail={"EndpointName": [endpoint], "EndpointStatus": ["IN_SERVICE"]},
            ),
            targets=[self._target()],
        )

    def _target(self) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            self.function, retry_attempts=2, dead_letter_queue=self.dead_letters
        )

    def _alarms(self, config: StackConfig, names: list[str]) -> list[cloudwatch.Alarm]:
        """What rolls a blue/green update back: server errors and slow answers."""
        dimensions = {"EndpointName": config.endpoint_name, "VariantName": VARIANT}
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
        return self._stack.format_arn(
            service=service,
            resource=resource,
            resource_name=name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME if colon else ArnFormat.SLASH_RESOURCE_NAME,
        )

    def _grant(
        self,
        config: StackConfig,
        key: kms.IKey,
        model_role: iam.IRole,
        group_name: str,
        log_group: logs.ILogGroup,
    ) -> None:
        # Names the deployer creates all start with the endpoint name (resource_name()).
        endpoint = config.endpoint_name
        statements = [
            iam.PolicyStatement(
                sid="ReadPackages",
                actions=["sagemaker:DescribeModelPackage"],
                resources=[self._arn("sagemaker", "model-package", f"{group_name}/*")],
            ),
            iam.PolicyStatement(
                sid="ListPackages", actions=["sagemaker:ListModelPackages"], resources=["*"]
            ),
            iam.PolicyStatement(
                sid="ModelsAndEndpoints",
                actions=[
                    "sagemaker:CreateModel",
                    "sagemaker:DescribeModel",
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:CreateEndpoint",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:DescribeEndpoint",
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
        ]
        if config.vpc_mode:
            statements.append(
                iam.PolicyStatement(
                    sid="VpcNetworkInterfaces",
                    actions=[
                        "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:UnassignPrivateIpAddresses",
                    ],
                    resources=["*"],
                )
            )
        for statement in statements:
            self.role.add_to_policy(statement)
        self._acknowledge(config, group_name)

    def _acknowledge(self, config: StackConfig, group_name: str) -> None:
        arn = f"arn:<AWS::Partition>:{{}}:{self._stack.region}:<AWS::AccountId>:{{}}"
        endpoint = config.endpoint_name
        findings = {
            "Resource::*": "ListModelPackages and the Application Auto Scaling calls have no "
            "resource-level permissions"
            + ("; Lambda's VPC network interfaces take no resource ARNs" if config.vpc_mode else "")
            + ".",
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


def _retention(days: int) -> logs.RetentionDays:
    by_days = {
        1: logs.RetentionDays.ONE_DAY,
        7: logs.RetentionDays.ONE_WEEK,
        14: logs.RetentionDays.TWO_WEEKS,
        30: logs.RetentionDays.ONE_MONTH,
        90: logs.RetentionDays.THREE_MONTHS,
        180: logs.RetentionDays.SIX_MONTHS,
        365: logs.RetentionDays.ONE_YEAR,
        731: logs.RetentionDays.TWO_YEARS,
    }
    if days not in by_days:
        raise ValueError(f"log_retention_days must be one of {sorted(by_days)}, got {days}")
    return by_days[days]
