"""One KMS-encrypted SNS topic per environment and the events that reach people through it.

The deployers publish what they do (deployed, rolled back, rollout failed, smoke tests); the
endpoint and dead-letter alarms notify through their alarm actions; the rules below add what
no function sees: a pipeline execution that failed or was stopped, and a version that waits for
an approver in any stage's model package group.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import StackConfig

PIPELINE_EVENT = "SageMaker Model Building Pipeline Execution Status Change"
PACKAGE_EVENT = "SageMaker Model Package State Change"


class Notifications(Construct):
    """`topic`, with an email subscription per `notification_emails` address."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StackConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._region = stack.region
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name=f"{config.resource_prefix} notifications",
            master_key=key,
            enforce_ssl=True,
        )
        for email in config.notification_emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        # EventBridge and CloudWatch alarms encrypt what they publish with the stack's key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventsAndAlarmsPublish",
                principals=[
                    iam.ServicePrincipal("events.amazonaws.com"),
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                ],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )

    def pipeline_failures(self, pipeline_name: str) -> events.Rule:
        """An execution of the pipeline failed or was stopped."""
        detail = events.EventField.from_path
        link = (
            f"https://{self._region}.console.aws.amazon.com/sagemaker/home?region={self._region}"
            f"#/pipelines/{pipeline_name}"
        )
        return events.Rule(
            self,
            "PipelineFailures",
            description=f"Executions of {pipeline_name} that failed or were stopped",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[PIPELINE_EVENT],
                detail={
                    "pipelineArn": [{"suffix": f"/{pipeline_name}"}],
                    "currentPipelineExecutionStatus": ["Failed", "Stopped"],
                },
            ),
            targets=[
                targets.SnsTopic(
                    self.topic,
                    message=events.RuleTargetInput.from_multiline_text(
                        f"Pipeline {pipeline_name}: execution "
                        f"{detail('$.detail.pipelineExecutionArn')} is "
                        f"{detail('$.detail.currentPipelineExecutionStatus')}.\n"
                        f"Open it in the console: {link}\n"
                        f"Or: python -m pipeline status --pipeline-name {pipeline_name}"
                    ),
                )
            ],
        )

    def approvals_waiting(self, group_names: list[str]) -> events.Rule:
        """A version waits for an approver (registered, or promoted into a later stage)."""
        detail = events.EventField.from_path
        link = (
            f"https://{self._region}.console.aws.amazon.com/sagemaker/home?region={self._region}"
            "#/model-registry"
        )
        return events.Rule(
            self,
            "ApprovalsWaiting",
            description="Versions waiting for approval in this environment's stages",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[PACKAGE_EVENT],
                detail={
                    "ModelPackageGroupName": group_names,
                    "ModelApprovalStatus": ["PendingManualApproval"],
                },
            ),
            targets=[
                targets.SnsTopic(
                    self.topic,
                    message=events.RuleTargetInput.from_multiline_text(
                        f"Version {detail('$.detail.ModelPackageVersion')} of "
                        f"{detail('$.detail.ModelPackageGroupName')} waits for approval "
                        f"({detail('$.detail.ModelPackageArn')}).\n"
                        f"Review its evaluation and approve or reject it: {link}"
                    ),
                )
            ],
        )
