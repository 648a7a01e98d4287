"""A second environment from context: VPC mode (jobs and model in the given subnets, an S3
gateway endpoint on their route tables) and an extra source bucket, still free of cdk-nag
findings."""

from __future__ import annotations

import json

import pytest

VPC = {
    "region": "eu-west-1",
    "endpoint_name": "bincount-secure",
    "vpc_id": "vpc-0123456789abcdef0",
    "subnet_ids": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
    "security_group_ids": ["sg-0123456789abcdef0"],
    "route_table_ids": ["rtb-0123456789abcdef0"],
    "source_buckets": ["example-corp-bin-photos"],
}


@pytest.fixture(scope="module")
def vpc_template(tmp_path_factory):
    from app import build_app, cdk_json_context

    context = cdk_json_context()
    context["bincount:environments"] = {"secure": VPC}
    context["bincount:environment"] = "secure"
    outdir = tmp_path_factory.mktemp("vpc-synth")
    app, stack = build_app(outdir=str(outdir), context=context)
    app.synth()  # the AWS Solutions checks run here: a finding fails it
    report = json.loads((outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == [], json.dumps(report["pluginReports"])[:3000]
    return json.loads((outdir / f"{stack.stack_name}.template.json").read_text())


def resources_of(template, kind):
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def test_jobs_run_in_the_subnets_and_only_prepare_reaches_out(vpc_template):
    (pipeline,) = resources_of(vpc_template, "AWS::SageMaker::Pipeline")
    body, _ = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    steps = {s["Name"]: s for s in json.loads(body)["Steps"]}
    vpc = {"Subnets": VPC["subnet_ids"], "SecurityGroupIds": VPC["security_group_ids"]}
    train = steps["Train"]["Arguments"]
    assert train["VpcConfig"] == vpc
    assert train["EnableNetworkIsolation"] is True
    evaluate = steps["Evaluate"]["Arguments"]["NetworkConfig"]
    assert evaluate == {"EnableNetworkIsolation": True, "VpcConfig": vpc}
    # Prepare reads the source bucket itself, through the VPC's S3 endpoint.
    prepare = steps["Prepare"]["Arguments"]["NetworkConfig"]
    assert prepare["VpcConfig"] == vpc
    assert prepare["EnableNetworkIsolation"] is False


def test_deployer_stays_out_of_the_vpc_and_isolates_the_model(vpc_template):
    """The deployer calls only control-plane APIs: outside the VPC it needs no interface
    endpoints. The model it creates runs in the subnets, isolated."""
    (function,) = [
        f
        for f in resources_of(vpc_template, "AWS::Lambda::Function")
        if f.get("Environment", {}).get("Variables", {}).get("ENDPOINT_NAME")
    ]
    assert "VpcConfig" not in function
    variables = function["Environment"]["Variables"]
    assert variables["SUBNETS"] == ",".join(VPC["subnet_ids"])
    assert variables["SECURITY_GROUP_IDS"] == ",".join(VPC["security_group_ids"])
    assert variables["NETWORK_ISOLATION"] == "true"


def test_an_s3_gateway_endpoint_serves_the_subnets(vpc_template):
    (endpoint,) = resources_of(vpc_template, "AWS::EC2::VPCEndpoint")
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert endpoint["ServiceName"] == "com.amazonaws.eu-west-1.s3"
    assert endpoint["RouteTableIds"] == VPC["route_table_ids"]
    assert endpoint["VpcId"] == VPC["vpc_id"]


def test_route_tables_without_vpc_mode_are_refused():
    from infra.config import StackConfig

    with pytest.raises(ValueError, match="route_table_ids belong to VPC mode"):
        StackConfig.from_dict({"route_table_ids": ["rtb-1"]})


def test_job_role_may_attach_network_interfaces(vpc_template):
    actions = {
        action
        for role_policy in resources_of(vpc_template, "AWS::IAM::Policy")
        for statement in role_policy["PolicyDocument"]["Statement"]
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }
    assert {"ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission"} <= actions


def test_jobs_read_the_configured_source_bucket_only(vpc_template):
    (job_policy,) = [
        p
        for p in resources_of(vpc_template, "AWS::IAM::Policy")
        if any(s.get("Sid") == "ReadSourceBuckets" for s in p["PolicyDocument"]["Statement"])
    ]
    (statement,) = [
        s for s in job_policy["PolicyDocument"]["Statement"] if s["Sid"] == "ReadSourceBuckets"
    ]
    assert sorted(statement["Action"]) == ["s3:GetObject", "s3:ListBucket"]
    resources = json.dumps(statement["Resource"])
    assert ":s3:::example-corp-bin-photos" in resources
    assert ":s3:::example-corp-bin-photos/*" in resources


def test_a_bad_source_bucket_name_is_refused():
    from infra.config import StackConfig

    with pytest.raises(ValueError, match="source_buckets: 'Not_A_Bucket'"):
        StackConfig.from_dict({"source_buckets": ["Not_A_Bucket"]})
