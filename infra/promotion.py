"""Promotion from one stage to the next: a Lambda (infra/deployer_lambda/promotion.py) that
copies an Approved version whose smoke test passed into the next stage's model package group
as PendingManualApproval. People get to promote by being allowed to invoke it, never by
CreateModelPackage on the next group themselves, so the smoke-test rule cannot be skipped;
approving the copy there is the next stage's approvers' decision."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra import arns
from infra.config import StackConfig, StageConfig
from infra.custom_resource import PythonFunction

LAMBDA_CODE = Path(__file__).resolve().parent / "deployer_lambda"


class Promoter(Construct):
    """`function` promotes versions of `source`'s group into `target`'s group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        source: StageConfig,
        target: StageConfig,
        key: kms.IKey,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        source_group, target_group = config.group_name(source), config.group_name(target)

        def packages(group: str) -> str:
            return arns.sagemaker(self, "model-package", f"{group}/*")

        self.lambda_ = PythonFunction(
            self,
            "Lambda",
            config=config,
            key=key,
            code_dir=LAMBDA_CODE,
            handler="promotion.handler",
            description=f"Promotes smoke-tested {source.name} versions to {target.name} "
            "(PendingManualApproval)",
            statements=[
                iam.PolicyStatement(
                    sid="ReadVersions",
                    actions=["sagemaker:DescribeModelPackage"],
                    resources=[packages(source_group), packages(target_group)],
                ),
                iam.PolicyStatement(
                    sid="ListVersions", actions=["sagemaker:ListModelPackages"], resources=["*"]
                ),
                # Only ever as PendingManualApproval: the target stage's approvers decide.
                iam.PolicyStatement(
                    sid="RegisterPending",
                    actions=["sagemaker:CreateModelPackage"],
                    resources=[
                        arns.sagemaker(self, "model-package-group", target_group),
                        packages(target_group),
                    ],
                    conditions={
                        "StringEquals": {"sagemaker:ModelApprovalStatus": "PendingManualApproval"}
                    },
                ),
                iam.PolicyStatement(
                    sid="Notify", actions=["sns:Publish"], resources=[topic.topic_arn]
                ),
                # The topic is encrypted with the stack's key: a publisher needs a data key.
                iam.PolicyStatement(
                    sid="TopicKey",
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[key.key_arn],
                ),
            ],
            timeout=Duration.minutes(1),
            environment={
                "SOURCE_STAGE": source.name,
                "SOURCE_GROUP": source_group,
                "TARGET_STAGE": target.name,
                "TARGET_GROUP": target_group,
                "TOPIC_ARN": topic.topic_arn,
                "TAGS": json.dumps(config.all_tags, sort_keys=True),
            },
        )
        self.role, self.function = self.lambda_.role, self.lambda_.function
        arn = f"arn:<AWS::Partition>:sagemaker:{stack.region}:<AWS::AccountId>:"
        Validations.of(self.role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="ListModelPackages has no resource-level permissions in IAM.",
            ),
            *(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{arn}model-package/{group}/*]",
                    reason=f"Versions of the {group} model package group only (their version "
                    "numbers exist only at run time).",
                )
                for group in (source_group, target_group)
            ),
        )
