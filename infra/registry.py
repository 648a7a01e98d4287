"""The model package group every pipeline run registers its model into."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct


class Registry(Construct):
    """An AWS::SageMaker::ModelPackageGroup that outlives the stack (its versions are history)."""

    def __init__(self, scope: Construct, construct_id: str, *, group_name: str) -> None:
        super().__init__(scope, construct_id)
        self.group_name = group_name
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=group_name,
            model_package_group_description="bincount: item-count classifiers for bin photos",
        )
        self.group.apply_removal_policy(RemovalPolicy.RETAIN)
