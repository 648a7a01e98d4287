"""The model package group every pipeline run registers its model into.

A custom resource (infra/registry_lambda) rather than AWS::SageMaker::ModelPackageGroup: the
group outlives a `retain` stack (its versions are history), and a plain resource with a fixed
name then makes the next deployment fail with "already exists"; the custom resource adopts
it. Where `removal` is `destroy`, deleting the stack deletes the versions and the group.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, CustomResource, Duration, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra import arns
from infra.config import StackConfig
from infra.custom_resource import CustomResourceHandler

LAMBDA_CODE = Path(__file__).resolve().parent / "registry_lambda"


class Registry(Construct):
    """One group per stage (`groups`, by name); `group`/`group_name` are the first stage's,
    the one the pipeline registers into."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StackConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        group_names = [config.group_name(stage) for stage in config.stages]
        self.group_name = group_names[0]

        def arn(resource: str, name: str) -> str:
            return arns.sagemaker(self, resource, name)

        statements = [
            iam.PolicyStatement(
                sid="ManageTheGroup",
                actions=[
                    "sagemaker:CreateModelPackageGroup",
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:DeleteModelPackageGroup",
                    "sagemaker:AddTags",
                ],
                resources=[arn("model-package-group", name) for name in group_names],
            ),
            # ListModelPackages has no resource-level permissions.
            iam.PolicyStatement(
                sid="ListVersions", actions=["sagemaker:ListModelPackages"], resources=["*"]
            ),
        ]
        if config.removal == "destroy":
            statements.append(
                iam.PolicyStatement(
                    sid="DeleteVersions",
                    actions=["sagemaker:DeleteModelPackage"],
                    resources=[arn("model-package", f"{name}/*") for name in group_names],
                )
            )
        self.handler = CustomResourceHandler(
            self,
            "Handler",
            config=config,
            key=key,
            code_dir=LAMBDA_CODE,
            handler="registry.on_event",
            description="Creates or adopts the model package group; deletes it with the stack "
            "where removal is destroy",
            statements=statements,
            timeout=Duration.minutes(5),
        )
        self.groups = {
            name: CustomResource(
                self,
                "Group" if index == 0 else f"Group{stage.name.title().replace('-', '')}",
                service_token=self.handler.provider.service_token,
                resource_type="Custom::ModelPackageGroup",
                properties={
                    "GroupName": name,
                    "Description": f"bincount: item-count classifiers, {stage.name} stage",
                    "DeleteVersions": "true" if config.removal == "destroy" else "false",
                },
            )
            for index, (stage, name) in enumerate(zip(config.stages, group_names, strict=True))
        }
        self.group = self.groups[self.group_name]
        findings = {
            "Resource::*": "ListModelPackages has no resource-level permissions in IAM.",
            **{
                f"Resource::arn:<AWS::Partition>:sagemaker:{stack.region}:<AWS::AccountId>:"
                f"model-package/{name}/*": "Deletes only the versions of this stack's own "
                "groups, and only where removal is destroy."
                for name in group_names
            },
        }
        Validations.of(self.handler.role).acknowledge(
            *(
                Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason)
                for finding, reason in findings.items()
            )
        )
