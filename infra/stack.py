"""The one stack: storage, roles, registry, deployer and pipeline, wired together."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.config import StackConfig
from infra.deployer import Deployer
from infra.network import VpcEndpoints
from infra.pipeline import Pipeline
from infra.registry import Registry
from infra.roles import Roles
from infra.storage import Storage


class BincountStack(Stack):
    """Everything bincount needs in one account and region."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs):
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.storage = Storage(self, "Storage", config)
        if config.route_table_ids:
            VpcEndpoints(self, "VpcEndpoints", config=config)
        bucket, key = self.storage.bucket, self.storage.key
        self.roles = Roles(self, "Roles", config=config, bucket=bucket, key=key)
        self.registry = Registry(self, "Registry", config=config, key=key)
        self.deployer = Deployer(
            self,
            "Deployer",
            config=config,
            bucket=bucket,
            key=key,
            model_role=self.roles.model_role,
            group_name=self.registry.group_name,
        )
        self.roles.grant_invoke(self.deployer.function.function_arn)
        self.pipeline = Pipeline(
            self,
            "Pipeline",
            config=config,
            bucket=bucket,
            key=key,
            pipeline_role=self.roles.pipeline_role,
            job_role=self.roles.job_role,
            deployer_function_arn=self.deployer.function.function_arn,
        )
        self.pipeline.pipeline.node.add_dependency(self.registry.group)
        # Deleted before the deployer's teardown: no execution deploys during `cdk destroy`.
        self.pipeline.pipeline.node.add_dependency(self.deployer.teardown)
        # The teardown runs before the group goes (a `destroy` group deletes its versions).
        self.deployer.teardown.node.add_dependency(self.registry.group)

        outputs = {
            "BucketName": bucket.bucket_name,
            "KmsKeyArn": key.key_arn,
            "PipelineRoleArn": self.roles.pipeline_role.role_arn,
            "JobRoleArn": self.roles.job_role.role_arn,
            "ModelRoleArn": self.roles.model_role.role_arn,
            "PipelineName": self.pipeline.settings.pipeline_name,
            "ModelPackageGroupName": self.registry.group_name,
            "EndpointName": config.endpoint_name,
            "DeployerFunctionName": self.deployer.function.function_name,
            "DeployerFunctionArn": self.deployer.function.function_arn,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
