"""A Python Lambda behind a CloudFormation custom resource (the CDK Provider framework), with
its own encrypted log group, and the cdk-nag findings the framework's own function brings."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra import log_groups
from infra.config import StackConfig


class PythonFunction(Construct):
    """A Python Lambda from `code_dir` with its own role (`statements` plus writing its own
    encrypted log group) and nothing else."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        key: kms.IKey,
        code_dir: Path,
        handler: str,
        description: str,
        statements: list[iam.PolicyStatement],
        timeout: Duration,
        environment: dict[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        log_group = log_groups.log_group(self, "Logs", config, key)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{config.resource_prefix}: {description}"[:1000],
        )
        for statement in [
            *statements,
            iam.PolicyStatement(
                sid="OwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            ),
        ]:
            self.role.add_to_policy(statement)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler=handler,
            code=lambda_.Code.from_asset(str(code_dir), exclude=["__pycache__", "*.pyc"]),
            description=description,
            timeout=timeout,
            memory_size=256,
            role=self.role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment=environment,
            environment_encryption=key if environment else None,
        )
        self.function.node.add_dependency(self.role)


class CustomResourceHandler(PythonFunction):
    """A PythonFunction behind the CDK Provider framework: `provider.service_token` is what a
    CustomResource names."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.provider = provider(
            self, "Provider", config=kwargs["config"], key=kwargs["key"], function=self.function
        )


def provider(
    scope: Construct,
    construct_id: str,
    *,
    config: StackConfig,
    key: kms.IKey,
    function: lambda_.IFunction,
) -> cr.Provider:
    """The CDK Provider framework in front of `function` (its onEvent handler), with the
    cdk-nag findings that the framework's own function brings acknowledged."""
    framework_logs = log_groups.log_group(scope, f"{construct_id}Logs", config, key)
    found = cr.Provider(scope, construct_id, on_event_handler=function, log_group=framework_logs)
    stack = Stack.of(scope)
    handler_arn = stack.resolve(stack.get_logical_id(function.node.default_child))
    Validations.of(found).acknowledge(
        Acknowledgment(
            id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            reason="The CDK Provider framework's own function writes its logs with the AWS "
            "managed basic execution policy.",
        ),
        Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::<{handler_arn}.Arn>:*]",
            reason="The Provider framework invokes any version of this one function.",
        ),
        Acknowledgment(
            id="AwsSolutions-L1",
            reason="The Provider framework's function runtime is chosen by the CDK itself.",
        ),
    )
    return found
