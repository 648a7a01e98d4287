"""Managed policies for the people who use an environment, output by the stack:

- read-only: inspect executions, versions, evaluation reports, endpoints and logs;
- data scientist: read-only, plus start/stop/retry executions, approve or reject versions of
  the first stage's group (which deploys them there), promote to the next stage, and call the
  first stage's endpoint;
- release approver: read-only, plus approve or reject versions in every later stage's group.

Promotion goes through the promoter Lambdas only, so nobody registers into a later stage's
group directly (and so around its smoke-test rule).
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import arns
from infra.config import StackConfig


class Personas(Construct):
    """`read_only`, `data_scientist`, `release_approver`: iam.ManagedPolicy each."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        bucket: s3.IBucket,
        key: kms.IKey,
        pipeline_name: str,
        promoter_arns: list[str],
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._stack = stack
        stages = config.stages
        groups = [config.group_name(s) for s in stages]
        read = [
            iam.PolicyStatement(
                sid="ReadPipeline",
                actions=[
                    "sagemaker:DescribePipeline",
                    "sagemaker:ListPipelineExecutions",
                    "sagemaker:DescribePipelineExecution",
                    "sagemaker:ListPipelineExecutionSteps",
                    "sagemaker:ListPipelineParametersForExecution",
                    "sagemaker:DescribePipelineDefinitionForExecution",
                ],
                resources=[
                    self._arn("pipeline", pipeline_name),
                    self._arn("pipeline", f"{pipeline_name}/execution/*"),
                ],
            ),
            iam.PolicyStatement(
                sid="ReadRegistry",
                actions=["sagemaker:DescribeModelPackageGroup", "sagemaker:DescribeModelPackage"],
                resources=[
                    arn
                    for group in groups
                    for arn in (
                        self._arn("model-package-group", group),
                        self._arn("model-package", f"{group}/*"),
                    )
                ],
            ),
            iam.PolicyStatement(
                sid="ListRegistry",
                actions=["sagemaker:ListModelPackages", "sagemaker:ListModelPackageGroups"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="ReadEndpoints",
                actions=["sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig"],
                resources=[
                    arn
                    for stage in stages
                    for arn in (
                        self._arn("endpoint", stage.endpoint_name),
                        self._arn("endpoint-config", f"{stage.endpoint_name}-*"),
                    )
                ],
            ),
            iam.PolicyStatement(
                sid="ReadReports",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{config.s3_prefix}/executions/*")],
            ),
            iam.PolicyStatement(
                sid="DecryptReports", actions=["kms:Decrypt"], resources=[key.key_arn]
            ),
            iam.PolicyStatement(
                sid="ReadLogs",
                actions=["logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams"],
                resources=[arns.arn(self, "logs", "log-group", "/aws/sagemaker/*", colon=True)],
            ),
        ]
        scientist = [
            iam.PolicyStatement(
                sid="RunPipeline",
                actions=[
                    "sagemaker:StartPipelineExecution",
                    "sagemaker:StopPipelineExecution",
                    "sagemaker:RetryPipelineExecution",
                ],
                resources=[
                    self._arn("pipeline", pipeline_name),
                    self._arn("pipeline", f"{pipeline_name}/execution/*"),
                ],
            ),
            iam.PolicyStatement(
                sid="ApproveFirstStage",
                actions=["sagemaker:UpdateModelPackage"],
                resources=[self._arn("model-package", f"{groups[0]}/*")],
            ),
            iam.PolicyStatement(
                sid="TryFirstStage",
                actions=["sagemaker:InvokeEndpoint"],
                resources=[self._arn("endpoint", stages[0].endpoint_name)],
            ),
        ]
        if promoter_arns:
            scientist.append(
                iam.PolicyStatement(
                    sid="Promote", actions=["lambda:InvokeFunction"], resources=promoter_arns
                )
            )
        approver = [
            iam.PolicyStatement(
                sid="ApproveLaterStages",
                actions=["sagemaker:UpdateModelPackage"],
                resources=[self._arn("model-package", f"{group}/*") for group in groups[1:]],
            )
        ]
        prefix = config.resource_prefix
        self.read_only = self._policy("ReadOnly", f"{prefix}-read-only", read)
        self.data_scientist = self._policy(
            "DataScientist", f"{prefix}-data-scientist", [*read, *scientist]
        )
        self.release_approver = (
            self._policy("ReleaseApprover", f"{prefix}-release-approver", [*read, *approver])
            if len(stages) > 1
            else None
        )
        self._acknowledge(config, bucket, groups, pipeline_name)

    def _arn(self, resource: str, name: str) -> str:
        return arns.sagemaker(self, resource, name)

    def _policy(self, construct_id: str, name: str, statements) -> iam.ManagedPolicy:
        return iam.ManagedPolicy(
            self,
            construct_id,
            managed_policy_name=name,
            description=f"bincount persona: {name}",
            statements=statements,
        )

    def _acknowledge(self, config, bucket, groups, pipeline_name) -> None:
        stack = self._stack
        data = f"<{stack.resolve(stack.get_logical_id(bucket.node.default_child))}.Arn>"
        arn = f"arn:<AWS::Partition>:{{}}:{stack.region}:<AWS::AccountId>:{{}}"
        findings = {
            "Resource::*": "ListModelPackages and ListModelPackageGroups have no resource-level "
            "permissions in IAM.",
            "Resource::" + arn.format("sagemaker", f"pipeline/{pipeline_name}/execution/*"): (
                "Executions of this environment's pipeline only; their ids exist at run time."
            ),
            f"Resource::{data}/{config.s3_prefix}/executions/*": "Evaluation reports and plots "
            "of this project's executions, read-only.",
            "Resource::" + arn.format("logs", "log-group:/aws/sagemaker/*"): "SageMaker names "
            "job and endpoint log groups under /aws/sagemaker/ at run time; read-only.",
            **{
                "Resource::"
                + arn.format("sagemaker", f"model-package/{group}/*"): f"Versions of the {group} "
                "model package group only; version numbers exist at run time."
                for group in groups
            },
            **{
                "Resource::"
                + arn.format("sagemaker", f"endpoint-config/{stage.endpoint_name}-*"): (
                    "The endpoint configs the deployer names after this stage's endpoint."
                )
                for stage in config.stages
            },
        }
        for policy in (self.read_only, self.data_scientist, self.release_approver):
            if policy is not None:
                Validations.of(policy).acknowledge(
                    *(
                        Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason)
                        for finding, reason in findings.items()
                    )
                )
