"""The SageMaker pipeline: pipeline/ builds its definition at synth, with CloudFormation
placeholders that Fn::Sub fills in, and stages the code it points at; a BucketDeployment puts
that code at the very keys the definition names before the pipeline exists."""

from __future__ import annotations

import shutil
from pathlib import Path

from aws_cdk import (
    Acknowledgment,
    DefaultStackSynthesizer,
    Fn,
    RemovalPolicy,
    Stack,
    Validations,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.config import StackConfig

# The definition names resources by these placeholders; Fn::Sub resolves them at deploy time.
BUCKET = "${BucketName}"
JOB_ROLE_ARN = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${JobRoleName}"
PIPELINE_ROLE_ARN = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${PipelineRoleName}"
DEPLOYER_ARN = "${DeployerFunctionArn}"
KMS_KEY_ARN = "${KmsKeyArn}"
STAGING_ROOT = Path(__file__).resolve().parent.parent / "build" / "cdk-staging"


def pipeline_settings(config: StackConfig, region: str, staging_dir: Path):
    """The pipeline/ Settings for this stack: placeholders where CloudFormation decides."""
    from pipeline.instance_types import inference_instance_types
    from pipeline.settings import APPROVAL_STATUSES, ParameterDefaults, Settings

    return Settings(
        pipeline_name=config.resource_prefix,
        region=region,
        bucket=BUCKET,
        prefix=config.s3_prefix,
        role_arn=PIPELINE_ROLE_ARN,
        job_role_arn=JOB_ROLE_ARN,
        model_package_group_name=config.resource_prefix,
        deployer_function_arn=DEPLOYER_ARN,
        kms_key=KMS_KEY_ARN,
        staging_dir=staging_dir,
        subnets=config.subnet_ids,
        security_group_ids=config.security_group_ids,
        network_isolation=config.vpc_mode,
        spot=config.spot_training,
        mlflow_tracking_server_arn=config.mlflow_tracking_server_arn or "",
        approval_statuses=APPROVAL_STATUSES
        if config.pipeline_may_approve
        else ("PendingManualApproval",),
        inference_instance_types=inference_instance_types(config.endpoint_instance_type),
        defaults=ParameterDefaults(
            training_instance_type=config.training_instance_type,
        ),
    )


def build_definition(settings) -> tuple[str, Path]:
    """(definition JSON with placeholders, folder of files to deploy at the bucket's root)."""
    from pipeline.definition import definition_json, stage_files

    # A fresh folder each synth, so the asset holds exactly what this definition points at.
    shutil.rmtree(settings.staging_dir, ignore_errors=True)
    staged = stage_files(settings) / settings.bucket
    if not staged.is_dir():
        raise RuntimeError(f"pipeline.packaging staged nothing for the bucket under {staged}")
    return definition_json(settings), staged


class Pipeline(Construct):
    """AWS::SageMaker::Pipeline plus the code it runs, uploaded first."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        bucket: s3.IBucket,
        key: kms.IKey,
        pipeline_role: iam.Role,
        job_role: iam.Role,
        deployer_function_arn: str,
    ) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region
        staging_dir = STAGING_ROOT / config.name
        self.settings = pipeline_settings(config, region, staging_dir)
        body, staged = build_definition(self.settings)
        self.definition_body = body

        self.code = self._upload(config, staged, bucket, key)

        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=self.settings.pipeline_name,
            pipeline_display_name=self.settings.pipeline_name,
            pipeline_description="bincount: Prepare, Train, Evaluate, QualityGate, Register, "
            "Deploy",
            role_arn=pipeline_role.role_arn,
            pipeline_definition={
                "PipelineDefinitionBody": Fn.sub(
                    body,
                    {
                        name: value
                        for name, value in {
                            "BucketName": bucket.bucket_name,
                            "JobRoleName": job_role.role_name,
                            "PipelineRoleName": pipeline_role.role_name,
                            "DeployerFunctionArn": deployer_function_arn,
                            "KmsKeyArn": key.key_arn,
                        }.items()
                        # Fn::Sub rejects variables its string does not use.
                        if f"${{{name}}}" in body
                    },
                )
            },
        )
        # The definition points at the code: upload it first.
        self.pipeline.node.add_dependency(self.code)
        # The pipeline role's policy must exist before SageMaker validates the pipeline.
        self.pipeline.node.add_dependency(pipeline_role)

    def _upload(
        self, config: StackConfig, staged: Path, bucket: s3.IBucket, key: kms.IKey
    ) -> s3deploy.BucketDeployment:
        """Copy the staged files to their keys with a role of our own, S3 actions named."""
        stack = Stack.of(self)
        prefix = config.s3_prefix
        strays = sorted(
            p.relative_to(staged).as_posix() for p in staged.iterdir() if p.name != prefix
        )
        if strays:
            raise RuntimeError(f"staged files outside the project prefix {prefix!r}: {strays}")
        # The default synthesizer's asset bucket; cdk-nag prints the account as <AWS::AccountId>.
        assets = "cdk-{q}-assets-{a}-{r}".format(
            q=DefaultStackSynthesizer.DEFAULT_QUALIFIER, a="{a}", r=stack.region
        )
        log_group = logs.LogGroup(
            self,
            "UploadLogs",
            encryption_key=key,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "UploadRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{config.resource_prefix}: copies the pipeline code into the bucket",
        )
        for statement in (
            iam.PolicyStatement(
                sid="ReadAsset",
                actions=["s3:GetObject"],
                resources=[f"arn:{stack.partition}:s3:::{assets.format(a=stack.account)}/*"],
            ),
            iam.PolicyStatement(
                sid="WriteCode",
                actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{prefix}/*")],
            ),
            iam.PolicyStatement(
                sid="ListCode",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}},
            ),
            iam.PolicyStatement(
                sid="EncryptCode",
                actions=["kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt", "kms:DescribeKey"],
                resources=[key.key_arn],
            ),
            iam.PolicyStatement(
                sid="OwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            ),
        ):
            role.add_to_policy(statement)
        deployment = s3deploy.BucketDeployment(
            self,
            "Code",
            sources=[s3deploy.Source.asset(str(staged / prefix))],
            destination_bucket=bucket,
            destination_key_prefix=f"{prefix}/",
            # Never delete what is already there: outputs of past executions live beside it.
            prune=False,
            retain_on_delete=True,
            server_side_encryption=s3deploy.ServerSideEncryption.AWS_KMS,
            server_side_encryption_aws_kms_key_id=key.key_arn,
            memory_limit=512,
            log_group=log_group,
            # Immutable: the construct's own wildcard grants are dropped; ours above stand.
            role=role.without_policy_updates(),
        )
        data = f"<{stack.resolve(stack.get_logical_id(bucket.node.default_child))}.Arn>"
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::"
                f"{assets.format(a='<AWS::AccountId>')}/*]",
                reason="The CDK bootstrap asset bucket: the zipped code's key is a content hash.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{data}/{prefix}/*]",
                reason="The staged files go to content-hash keys under the project prefix.",
            ),
        )
        handler = next(
            child
            for child in stack.node.children
            if child.node.id.startswith("Custom::CDKBucketDeployment")
        )
        Validations.of(handler).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason="The BucketDeployment handler's runtime is chosen by aws-cdk-lib and "
                "moves with its upgrades.",
            )
        )
        return deployment
