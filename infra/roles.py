"""The three SageMaker roles: the pipeline's, the jobs' (processing, training) and the served
model's.

Least privilege: S3 actions are named one by one and scoped to the prefixes each role uses,
the key is the stack's one key, images come only from the PyTorch framework repositories, and
PassRole names the job role (pipeline) or the model role (deployer) and SageMaker alone.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import arns
from infra.config import StackConfig

SAGEMAKER = "sagemaker.amazonaws.com"
PUBLIC_DATASET_BUCKET = "aft-vbi-pds"
KMS_USE = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")


def framework_repository(region: str, scope: str):
    """The PyTorch image repository the pipeline's jobs ("training") or model ("inference")
    pull from, per the SDK's own image config (the hosting account differs by region)."""
    from pipeline.images import repository
    from pipeline.settings import Settings

    return repository(region, Settings.framework_version, scope)


def container_runtime(
    pull: tuple[str, list[str]], logs: tuple[str, list[str]], metrics: tuple[str, list[str]]
) -> list[iam.PolicyStatement]:
    """What a SageMaker container's role needs to run at all: pull its image (ECR's token has
    no resource ARN), write its logs, publish its metrics; each as (sid, resources or, for
    metrics, the namespaces PutMetricData is held to)."""
    (pull_sid, repositories), (logs_sid, log_groups), (metrics_sid, namespaces) = (
        pull,
        logs,
        metrics,
    )
    return [
        iam.PolicyStatement(sid="EcrToken", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        iam.PolicyStatement(
            sid=pull_sid,
            actions=[
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
            ],
            resources=repositories,
        ),
        iam.PolicyStatement(
            sid=logs_sid,
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            resources=log_groups,
        ),
        iam.PolicyStatement(
            sid=metrics_sid,
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": namespaces}},
        ),
    ]


def vpc_network_interfaces() -> iam.PolicyStatement:
    """What SageMaker needs to put a job's or a model's containers into the VPC's subnets
    (EC2 network-interface actions take no resource ARNs)."""
    return iam.PolicyStatement(
        sid="VpcNetworkInterfaces",
        actions=[
            "ec2:CreateNetworkInterface",
            "ec2:CreateNetworkInterfacePermission",
            "ec2:DeleteNetworkInterface",
            "ec2:DeleteNetworkInterfacePermission",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeVpcs",
            "ec2:DescribeDhcpOptions",
            "ec2:DescribeSubnets",
            "ec2:DescribeSecurityGroups",
        ],
        resources=["*"],
    )


class Roles(Construct):
    """`pipeline_role` runs the pipeline; `job_role` runs its jobs; `model_role` serves."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        bucket: s3.IBucket,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self._stack = Stack.of(self)

        self.job_role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal(SAGEMAKER),
            description=f"{config.resource_prefix}: processing and training jobs",
        )
        self.model_role = iam.Role(
            self,
            "ModelRole",
            assumed_by=iam.ServicePrincipal(SAGEMAKER),
            description=f"{config.resource_prefix}: the endpoint's model",
        )
        self.pipeline_role = iam.Role(
            self,
            "PipelineRole",
            assumed_by=iam.ServicePrincipal(SAGEMAKER),
            description=f"{config.resource_prefix}: the SageMaker pipeline",
        )

        self._grant_job_data(config, bucket, key)
        self._grant_job_runtime()
        self._grant_job_network_and_tracking(config)
        self._model_policy(config, bucket, key)
        self._grant_pipeline_steps(config)
        self._grant_pipeline_tracking_and_approval(config)
        self._grant_pipeline_data(config, bucket, key)
        self._acknowledge(config, bucket)

    def _grant_job_data(self, config: StackConfig, bucket: s3.IBucket, key: kms.IKey) -> None:
        """Jobs: the project's objects (read), step outputs (write), the dataset buckets (read)
        and the project key."""
        job, stack, prefix = self.job_role, self._stack, config.s3_prefix
        # Read the project's objects (code archives included); write only step outputs.
        job.add_to_policy(
            iam.PolicyStatement(
                sid="ReadProjectObjects",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{prefix}/*")],
            )
        )
        job.add_to_policy(
            iam.PolicyStatement(
                sid="WriteStepOutputs",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[
                    bucket.arn_for_objects(f"{prefix}/executions/*"),
                    bucket.arn_for_objects(f"{config.intermediate_prefix}/*"),
                ],
            )
        )
        job.add_to_policy(
            iam.PolicyStatement(
                sid="ListProjectPrefix",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}},
            )
        )
        job.add_to_policy(
            iam.PolicyStatement(
                sid="ReadPublicBinImages",
                actions=["s3:GetObject", "s3:ListBucket"],
                resources=[
                    f"arn:{stack.partition}:s3:::{PUBLIC_DATASET_BUCKET}",
                    f"arn:{stack.partition}:s3:::{PUBLIC_DATASET_BUCKET}/*",
                ],
            )
        )
        if config.source_buckets:
            job.add_to_policy(
                iam.PolicyStatement(
                    sid="ReadSourceBuckets",
                    actions=["s3:GetObject", "s3:ListBucket"],
                    resources=[
                        arn
                        for name in config.source_buckets
                        for arn in (
                            f"arn:{stack.partition}:s3:::{name}",
                            f"arn:{stack.partition}:s3:::{name}/*",
                        )
                    ],
                )
            )
        job.add_to_policy(
            iam.PolicyStatement(sid="UseProjectKey", actions=list(KMS_USE), resources=[key.key_arn])
        )

    def _grant_job_runtime(self) -> None:
        """Jobs: the framework images, their logs and their metrics."""
        stack = self._stack
        for statement in container_runtime(
            pull=(
                "PullFrameworkImages",
                [
                    framework_repository(stack.region, scope).arn(stack.partition)
                    for scope in ("training", "inference")
                ],
            ),
            logs=("SageMakerLogs", [self.sagemaker_log_groups()]),
            metrics=("SageMakerMetrics", ["/aws/sagemaker/*"]),
        ):
            self.job_role.add_to_policy(statement)

    def _grant_job_network_and_tracking(self, config: StackConfig) -> None:
        """Jobs: VPC network interfaces (VPC mode) and the MLflow tracking server (if any)."""
        job = self.job_role
        if config.vpc_mode:
            job.add_to_policy(vpc_network_interfaces())
        if config.mlflow_tracking_server_arn:
            # Train logs its parameters, metrics and evaluation to this one tracking server
            # (SageMaker managed MLflow authorizes each request against the caller's IAM).
            job.add_to_policy(
                iam.PolicyStatement(
                    sid="MlflowTracking",
                    actions=["sagemaker-mlflow:*"],
                    resources=[config.mlflow_tracking_server_arn],
                )
            )

    def _grant_pipeline_steps(self, config: StackConfig) -> None:
        """The pipeline: start and watch its jobs, register model package versions."""
        pipe = self.pipeline_role
        pipe.add_to_policy(
            iam.PolicyStatement(
                sid="PipelineJobs",
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                ],
                resources=[
                    self.sagemaker_arn("processing-job", "pipelines-*"),
                    self.sagemaker_arn("training-job", "pipelines-*"),
                ],
            )
        )
        group = config.resource_prefix
        pipe.add_to_policy(
            iam.PolicyStatement(
                sid="RegisterModelPackages",
                actions=[
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:AddTags",
                ],
                resources=[
                    self.sagemaker_arn("model-package-group", group),
                    self.sagemaker_arn("model-package", f"{group}/*"),
                ],
            )
        )

    def _grant_pipeline_tracking_and_approval(self, config: StackConfig) -> None:
        """The pipeline: SageMaker Experiments (unless MLflow tracks) and, where it may not
        approve, a deny on registering anything but PendingManualApproval."""
        pipe = self.pipeline_role
        if not config.mlflow_tracking_server_arn:
            # SageMaker Experiments (the definition's PipelineExperimentConfig): the pipeline
            # creates an experiment named after itself, a run group (trial) per execution,
            # and adds each job's run (trial component) to it.
            pipe.add_to_policy(
                iam.PolicyStatement(
                    sid="ExperimentTracking",
                    actions=[
                        "sagemaker:CreateExperiment",
                        "sagemaker:DescribeExperiment",
                        "sagemaker:CreateTrial",
                        "sagemaker:DescribeTrial",
                        "sagemaker:AssociateTrialComponent",
                        "sagemaker:AddTags",
                    ],
                    resources=[
                        self.sagemaker_arn("experiment", config.resource_prefix),
                        self.sagemaker_arn("experiment-trial", "*"),
                        self.sagemaker_arn("experiment-trial-component", "pipelines-*"),
                    ],
                )
            )
        if not config.pipeline_may_approve:
            # Enforced where the code cannot be bypassed: whoever starts an execution with
            # ModelApprovalStatus=Approved gets AccessDenied at Register, not a deployment.
            pipe.add_to_policy(
                iam.PolicyStatement(
                    sid="RegisterOnlyPending",
                    effect=iam.Effect.DENY,
                    actions=["sagemaker:CreateModelPackage"],
                    resources=["*"],
                    conditions={
                        "StringNotEquals": {
                            "sagemaker:ModelApprovalStatus": "PendingManualApproval"
                        }
                    },
                )
            )

    def _grant_pipeline_data(self, config: StackConfig, bucket: s3.IBucket, key: kms.IKey) -> None:
        """The pipeline: pass the job role, read property files, use the project key."""
        pipe, prefix = self.pipeline_role, config.s3_prefix
        pipe.add_to_policy(
            iam.PolicyStatement(
                sid="PassJobRole",
                actions=["iam:PassRole"],
                resources=[self.job_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER}},
            )
        )
        pipe.add_to_policy(
            iam.PolicyStatement(
                sid="ReadProjectObjects",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{prefix}/*")],
            )
        )
        pipe.add_to_policy(
            iam.PolicyStatement(
                sid="ListProjectPrefix",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}},
            )
        )
        # Jobs with a volume and output key need grants on it from the caller.
        pipe.add_to_policy(
            iam.PolicyStatement(
                sid="UseProjectKey",
                actions=[*KMS_USE, "kms:CreateGrant"],
                resources=[key.key_arn],
            )
        )

    def _model_policy(self, config: StackConfig, bucket: s3.IBucket, key: kms.IKey) -> None:
        """What the endpoint needs: its model artifacts, data capture, the key, the inference
        image, logs and metrics."""
        stack = self._stack
        statements = [
            iam.PolicyStatement(
                sid="ReadModelArtifacts",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{config.s3_prefix}/executions/*")],
            ),
            iam.PolicyStatement(
                sid="DataCaptureObjects",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[
                    bucket.arn_for_objects(f"{stage.data_capture_prefix}/*")
                    for stage in config.stages
                ],
            ),
            iam.PolicyStatement(
                sid="UseProjectKey", actions=list(KMS_USE), resources=[key.key_arn]
            ),
            *container_runtime(
                pull=(
                    "PullInferenceImage",
                    [framework_repository(stack.region, "inference").arn(stack.partition)],
                ),
                logs=("EndpointLogs", [self.sagemaker_log_groups("Endpoints/*")]),
                metrics=("EndpointMetrics", ["/aws/sagemaker/*"]),
            ),
        ]
        if config.vpc_mode:
            statements.append(vpc_network_interfaces())
        for statement in statements:
            self.model_role.add_to_policy(statement)

    def sagemaker_arn(self, resource: str, name: str) -> str:
        return arns.sagemaker(self, resource, name)

    def sagemaker_log_groups(self, below: str = "*") -> str:
        return arns.arn(self, "logs", "log-group", f"/aws/sagemaker/{below}", colon=True)

    def grant_invoke(self, function_arn: str) -> None:
        """Let the pipeline's Deploy step call the deployer, and nothing else."""
        self.pipeline_role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeDeployer", actions=["lambda:InvokeFunction"], resources=[function_arn]
            )
        )

    def _acknowledge(self, config: StackConfig, bucket: s3.IBucket) -> None:
        stack = self._stack
        data = f"<{stack.resolve(stack.get_logical_id(bucket.node.default_child))}.Arn>"
        arn = f"arn:<AWS::Partition>:{{}}:{stack.region}:<AWS::AccountId>:{{}}"
        prefix = config.s3_prefix
        job_findings = {
            f"Resource::{data}/{prefix}/*": "Jobs read (only read) code archives, file lists and "
            "earlier steps' outputs under the project prefix.",
            f"Resource::{data}/{prefix}/executions/*": "Jobs write step outputs under "
            "executions/<execution id>/, an id that exists only at run time.",
            f"Resource::{data}/{config.intermediate_prefix}/*": "Jobs write intermediate "
            "outputs under intermediate/<execution id>/, an id that exists only at run time.",
            f"Resource::arn:<AWS::Partition>:s3:::{PUBLIC_DATASET_BUCKET}/*": "Prepare reads "
            "images and metadata of the public Amazon Bin Image Dataset, read-only.",
            **{
                f"Resource::arn:<AWS::Partition>:s3:::{name}/*": "Prepare reads a dataset in "
                "the bin-images/ + metadata/ layout from this configured source bucket, read-only."
                for name in config.source_buckets
            },
            "Resource::*": "ecr:GetAuthorizationToken has no resource-level permissions; "
            "PutMetricData is held to /aws/sagemaker/* by the cloudwatch:namespace condition"
            + (
                "; EC2 network-interface actions (VPC mode) take no resource ARNs"
                if config.vpc_mode
                else ""
            )
            + ".",
            "Resource::" + arn.format("logs", "log-group:/aws/sagemaker/*"): "SageMaker writes "
            "job and endpoint logs to log groups it names under /aws/sagemaker/.",
        }
        if config.mlflow_tracking_server_arn:
            job_findings["Action::sagemaker-mlflow:*"] = (
                "MLflow's tracking API (runs, metrics, parameters, artifacts) on the one "
                "configured tracking server only."
            )
        pipeline_findings = {
            f"Resource::{data}/{prefix}/*": "The pipeline reads property files (the evaluation "
            "report) that its jobs wrote under the project prefix.",
            "Resource::" + arn.format("sagemaker", "processing-job/pipelines-*"): "SageMaker "
            "Pipelines names the jobs it starts pipelines-<execution id>-<step>-...",
            "Resource::" + arn.format("sagemaker", "training-job/pipelines-*"): "SageMaker "
            "Pipelines names the jobs it starts pipelines-<execution id>-<step>-...",
            "Resource::"
            + arn.format(
                "sagemaker", f"model-package/{config.resource_prefix}/*"
            ): "Versions of this project's own model package group only.",
        }
        if not config.mlflow_tracking_server_arn:
            pipeline_findings.update(
                {
                    "Resource::" + arn.format("sagemaker", "experiment-trial/*"): "A run group "
                    "(trial) per execution, named by SageMaker Pipelines after the execution "
                    "id, inside this pipeline's own experiment.",
                    "Resource::"
                    + arn.format("sagemaker", "experiment-trial-component/pipelines-*"): "The "
                    "runs of the jobs SageMaker Pipelines starts (pipelines-<execution id>-...).",
                }
            )
        model_findings = {
            f"Resource::{data}/{prefix}/executions/*": "The endpoint reads its model.tar.gz, "
            "which Train wrote under executions/<execution id>/Train/, read-only.",
            **{
                f"Resource::{data}/{stage.data_capture_prefix}/*": "The endpoint writes data "
                "capture files under time-partitioned keys below the endpoint's capture prefix."
                for stage in config.stages
            },
            "Resource::*": "ecr:GetAuthorizationToken has no resource-level permissions; "
            "PutMetricData is held to /aws/sagemaker/* by the cloudwatch:namespace condition"
            + (
                "; EC2 network-interface actions (VPC mode) take no resource ARNs"
                if config.vpc_mode
                else ""
            )
            + ".",
            "Resource::" + arn.format("logs", "log-group:/aws/sagemaker/Endpoints/*"): "SageMaker "
            "writes endpoint logs to log groups it names under /aws/sagemaker/Endpoints/.",
        }
        for role, findings in (
            (self.job_role, job_findings),
            (self.model_role, model_findings),
            (self.pipeline_role, pipeline_findings),
        ):
            Validations.of(role).acknowledge(
                *(
                    Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason)
                    for finding, reason in findings.items()
                )
            )
