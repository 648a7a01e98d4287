"""ARNs of this stack's account and region, as IAM policies name them."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from constructs import Construct


def arn(scope: Construct, service: str, resource: str, name: str, *, colon: bool = False) -> str:
    """`arn:<partition>:<service>:<region>:<account>:<resource>/<name>` (`:<name>` with colon)."""
    return Stack.of(scope).format_arn(
        service=service,
        resource=resource,
        resource_name=name,
        arn_format=ArnFormat.COLON_RESOURCE_NAME if colon else ArnFormat.SLASH_RESOURCE_NAME,
    )


def sagemaker(scope: Construct, resource: str, name: str) -> str:
    return arn(scope, "sagemaker", resource, name)
