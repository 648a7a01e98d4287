"""Fixtures for the checks against AWS's own definitions: the pipeline definitions of the
dev, prod, VPC and spot builds, and the synthesized dev stack with its intrinsics resolved.

The stack comes from the session fixture in tests/conftest.py (`python app.py`, offline),
shared with tests/infra, so it is synthesized once per session.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
from cfn_template import ACCOUNT, KMS_KEY_ID, REGION, ResolvedTemplate

REPO = Path(__file__).resolve().parents[2]

STACK_NAME = "Bincount-dev"
# tests/infra/test_infra_vpc.py's VPC environment.
VPC_ENVIRONMENT = {
    "region": "eu-west-1",
    "endpoint_name": "bincount-secure",
    "vpc_id": "vpc-0123456789abcdef0",
    "subnet_ids": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
    "security_group_ids": ["sg-0123456789abcdef0"],
    "source_buckets": ["example-corp-bin-photos"],
}


@dataclass(frozen=True)
class Build:
    """One build's definition with its CloudFormation placeholders, and what fills them."""

    label: str
    region: str
    definition: str
    substitutions: dict


def _substitutions(config, region: str) -> dict:
    return {
        "AWS::Partition": "aws",
        "AWS::AccountId": ACCOUNT,
        "AWS::Region": region,
        "BucketName": f"{config.resource_prefix}-databucket-1a2b3c",
        "JobRoleName": f"{config.resource_prefix}-RolesJobRole-AbC1dE2fG3hI",
        "PipelineRoleName": f"{config.resource_prefix}-RolesPipelineRole-AbC1dE2fG3hI",
        "DeployerFunctionArn": f"arn:aws:lambda:{region}:{ACCOUNT}:function:"
        f"{config.resource_prefix}-DeployerFunction-AbC1dE2fG3hI",
        "KmsKeyArn": f"arn:aws:kms:{region}:{ACCOUNT}:key/{KMS_KEY_ID}",
    }


@pytest.fixture(scope="session")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Build]:
    """dev and prod from cdk.json, the VPC environment, and dev with spot training."""
    from app import cdk_json_context
    from infra.config import StackConfig
    from infra.pipeline import pipeline_settings
    from pipeline.definition import definition_json

    context = cdk_json_context()
    configs = {
        name: StackConfig.from_context({**context, "bincount:environment": name})
        for name in ("dev", "prod")
    }
    configs["vpc"] = StackConfig.from_dict({"name": "secure", **VPC_ENVIRONMENT})
    out: dict[str, Build] = {}
    for label, config in [*configs.items(), ("spot", configs["dev"])]:
        region = config.region or REGION
        settings = pipeline_settings(config, region, tmp_path_factory.mktemp(f"staging-{label}"))
        if label == "spot":
            settings = settings.replace(spot=True)
        out[label] = Build(label, region, definition_json(settings), _substitutions(config, region))
    return out


@pytest.fixture(scope="session")
def stack(template_json: dict) -> ResolvedTemplate:
    return ResolvedTemplate(template_json, STACK_NAME)


# Construct paths of the roles (infra/roles.py, infra/deployer.py) -> principal labels.
ROLE_PREFIXES = {
    "job": "RolesJobRole",
    "pipeline": "RolesPipelineRole",
    "model": "RolesModelRole",
    "deployer": "DeployerRole",
}


@pytest.fixture(scope="session")
def role_statements(stack: ResolvedTemplate) -> dict[str, list[dict]]:
    """principal label -> the resolved statements of that role's identity policies."""
    return {
        label: stack.role_statements(stack.logical_id(prefix, "AWS::IAM::Role"))
        for label, prefix in ROLE_PREFIXES.items()
    }


@pytest.fixture(scope="session")
def deployed_definition(stack: ResolvedTemplate) -> dict:
    """The dev pipeline definition exactly as the stack deploys it (Fn::Sub resolved)."""
    import json

    (pipeline,) = [
        name for name, r in stack.resources.items() if r["Type"] == "AWS::SageMaker::Pipeline"
    ]
    body = stack.properties(pipeline)["PipelineDefinition"]["PipelineDefinitionBody"]
    return json.loads(stack.resolve(body))


@pytest.fixture(scope="session")
def deployer_config(stack: ResolvedTemplate):
    """The deployer's Config from the synthesized function's environment, resolved."""
    from infra.deployer_lambda.deployer import Config

    (function,) = [
        name
        for name, r in stack.resources.items()
        if r["Type"] == "AWS::Lambda::Function"
        and "ENDPOINT_NAME" in r["Properties"].get("Environment", {}).get("Variables", {})
    ]
    variables = stack.resolve(stack.properties(function)["Environment"]["Variables"])
    config = Config.from_env({k: str(v) for k, v in variables.items()})
    # The dev stage is serverless, which needs no autoscaling: the scenarios run the same
    # deployer as an instance-based stage (as prod's are), so every call it can make is
    # checked against the role, which is the same for both kinds.
    return dataclasses.replace(config, serverless_memory_mb=0)


@pytest.fixture(scope="session")
def deployer_run(tmp_path_factory, deployer_config, deployed_definition):
    """(calls, results) of the deployer scenarios (deployer_scenarios.run) on the dev stack."""
    import deployer_scenarios
    from pipeline_requests import parameter_assignments, step_requests

    _, defaults = next(parameter_assignments(deployed_definition))
    requests = step_requests(deployed_definition, defaults, REGION, ACCOUNT)
    (register,) = [r.params for r in requests if r.operation == "CreateModelPackage"]
    return deployer_scenarios.run(
        tmp_path_factory.mktemp("deployer-home"), deployer_config, register, REGION, ACCOUNT
    )
