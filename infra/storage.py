"""The KMS key, the data bucket and its access-log bucket."""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import StackConfig


class Storage(Construct):
    """One customer-managed key for everything; a versioned, KMS-encrypted data bucket."""

    def __init__(self, scope: Construct, construct_id: str, config: StackConfig) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        removal = RemovalPolicy.RETAIN if config.removal == "retain" else RemovalPolicy.DESTROY
        # A versioned bucket with objects cannot be deleted: "destroy" empties it first.
        auto_delete = config.removal == "destroy"

        self.key = kms.Key(
            self,
            "Key",
            description=f"{config.resource_prefix}: data bucket, job volumes and outputs, "
            "endpoint storage, data capture and logs",
            enable_key_rotation=True,
            removal_policy=removal,
        )
        # CloudWatch Logs encrypts the project's log groups with this key.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsUse",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )

        # Access logs cannot be written with a KMS key: S3-managed encryption here.
        self.log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal,
            auto_delete_objects=auto_delete,
            lifecycle_rules=[
                s3.LifecycleRule(id="ExpireAccessLogs", expiration=Duration.days(365))
            ],
        )
        Validations.of(self.log_bucket).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="This is the access-log bucket itself; logging it would log its own logs.",
            )
        )

        self.bucket = s3.Bucket(
            self,
            "Data",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="data-bucket/",
            removal_policy=removal,
            auto_delete_objects=auto_delete,
            # Nothing under executions/ expires: Train writes the model.tar.gz files that
            # registered versions and the live endpoint serve there. Only what no version
            # refers to (Prepare's shards, checkpoints) belongs under intermediate/.
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireIntermediateOutputs",
                    prefix=f"{config.intermediate_prefix}/",
                    expiration=Duration.days(config.execution_outputs_days),
                ),
                s3.LifecycleRule(
                    id="ExpireNoncurrentVersions",
                    noncurrent_version_expiration=Duration.days(config.noncurrent_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
        )
        if auto_delete:
            self._acknowledge_auto_delete(stack)

    @staticmethod
    def _acknowledge_auto_delete(stack: Stack) -> None:
        """The CDK's own provider that empties the buckets on stack deletion (dev only)."""
        provider = stack.node.try_find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
        if provider is None:
            return
        reasons = {
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]": "The CDK's auto-delete provider only writes its own "
            "logs with this managed policy; it exists only where removal is destroy (dev).",
            "AwsSolutions-L1": "The CDK pins the runtime of its auto-delete provider; it runs "
            "only when the dev stack is deleted.",
        }
        Validations.of(provider).acknowledge(
            *(Acknowledgment(id=rule, reason=reason) for rule, reason in reasons.items())
        )
