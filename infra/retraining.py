"""Retraining, opt-in: an EventBridge Scheduler schedule (`retraining_schedule`) and the drift
alarms (`retrain_on_drift`) start the pipeline through one guard Lambda
(infra/retraining_lambda/retrain.py) that starts nothing while an execution is running.

Both triggers go through the guard, not straight to StartPipelineExecution: a scheduled run
while a drift-triggered one trains (or the reverse) would be the storm the guard exists to
prevent, and the parameters from cdk.json live in one place. Every role names its one target:
the scheduler's may invoke the guard, the guard may list and start executions of this pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra import arns
from infra.config import StackConfig
from infra.custom_resource import PythonFunction

LAMBDA_CODE = Path(__file__).resolve().parent / "retraining_lambda"
ALARM_EVENT = "CloudWatch Alarm State Change"


def retraining_parameters(config: StackConfig, definition_body: str) -> dict[str, str]:
    """cdk.json's retraining_parameters checked against the parameters the definition declares
    (names, types, EnumValues, rules: pipeline/parameters.py), as StartPipelineExecution takes
    them (strings). A mistake fails the synth, naming the parameter."""
    from pipeline.parameters import check_names, check_value

    declared = {p["Name"]: p for p in json.loads(definition_body).get("Parameters", [])}
    values = config.retraining_parameters
    try:
        check_names(values, declared)
        for name, value in values.items():
            check_value(declared[name], value)
    except ValueError as error:
        raise ValueError(f"retraining_parameters: {error}") from None
    return {
        name: (str(value).lower() if isinstance(value, bool) else str(value))
        for name, value in sorted(values.items())
    }


class Retraining(Construct):
    """`function` is the guard; `schedule` (or None) and `drift_rule` (or None) call it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        key: kms.IKey,
        topic: sns.ITopic,
        pipeline_name: str,
        definition_body: str,
        drift_alarms: list[cloudwatch.IAlarm],
    ) -> None:
        super().__init__(scope, construct_id)
        if not config.retraining:
            raise ValueError("neither retraining_schedule nor retrain_on_drift is set")
        stack = Stack.of(self)
        pipeline_arn = arns.sagemaker(self, "pipeline", pipeline_name)
        self.parameters = retraining_parameters(config, definition_body)
        self.lambda_ = PythonFunction(
            self,
            "Guard",
            config=config,
            key=key,
            code_dir=LAMBDA_CODE,
            handler="retrain.handler",
            description=f"Starts a retraining execution of {pipeline_name} unless one is running",
            statements=[
                iam.PolicyStatement(
                    sid="ListAndStartExecutions",
                    actions=[
                        "sagemaker:ListPipelineExecutions",
                        "sagemaker:StartPipelineExecution",
                    ],
                    resources=[pipeline_arn],
                ),
                iam.PolicyStatement(
                    sid="Notify", actions=["sns:Publish"], resources=[topic.topic_arn]
                ),
                # The topic is encrypted with the stack's key: a publisher needs a data key.
                iam.PolicyStatement(
                    sid="NotifyKey",
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[key.key_arn],
                ),
            ],
            timeout=Duration.minutes(1),
            environment={
                "PIPELINE_NAME": pipeline_name,
                "PARAMETERS": json.dumps(self.parameters, sort_keys=True),
                "TOPIC_ARN": topic.topic_arn,
            },
        )
        self.role, self.function = self.lambda_.role, self.lambda_.function

        # A guard that fails (throttled, access denied) would otherwise be silent.
        self.errors_alarm = cloudwatch.Alarm(
            self,
            "GuardErrors",
            alarm_name=f"{config.resource_prefix}-retraining-guard-errors",
            alarm_description="The retraining guard failed: a schedule or drift alarm did not "
            "start the retraining it asked for (see the function's log)",
            metric=self.function.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.errors_alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))

        self.schedule = None
        if config.retraining_schedule is not None:
            self.schedule = self._schedule(config, stack)
        self.drift_rule = None
        if config.retrain_on_drift:
            self.drift_rule = events.Rule(
                self,
                "DriftRule",
                description="A drift alarm went into ALARM: start a retraining (the guard "
                "skips it while an execution runs)",
                event_pattern=events.EventPattern(
                    source=["aws.cloudwatch"],
                    detail_type=[ALARM_EVENT],
                    resources=[alarm.alarm_arn for alarm in drift_alarms],
                    detail={"state": {"value": ["ALARM"]}},
                ),
                targets=[targets.LambdaFunction(self.function, retry_attempts=2)],
            )

    def _schedule(self, config: StackConfig, stack: Stack) -> scheduler.CfnSchedule:
        role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            ),
            description=f"{config.resource_prefix}: the retraining schedule invokes the guard",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeGuard",
                actions=["lambda:InvokeFunction"],
                resources=[self.function.function_arn],
            )
        )
        schedule = scheduler.CfnSchedule(
            self,
            "Schedule",
            description="Retraining on a schedule (retraining_schedule in cdk.json)",
            schedule_expression=config.retraining_schedule,
            schedule_expression_timezone="UTC",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.function.function_arn,
                role_arn=role.role_arn,
                input=json.dumps(
                    {"trigger": "schedule", "execution_id": "<aws.scheduler.execution-id>"}
                ),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=2, maximum_event_age_in_seconds=3600
                ),
            ),
        )
        schedule.node.add_dependency(role)
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::<"
                + stack.resolve(stack.get_logical_id(self.function.node.default_child))
                + ".Arn>:*]",
                reason="Invoking the guard function (any of its versions) only.",
            )
        )
        return schedule
