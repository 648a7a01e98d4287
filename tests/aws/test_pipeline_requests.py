"""Every job step of the dev, prod, VPC and spot definitions, as the request SageMaker
Pipelines will make from it, for every value its parameters may take: valid against
botocore's SageMaker model (enums, patterns, lengths, ranges), and within the SDK's rules
that the model does not encode."""

from __future__ import annotations

import json

import pytest
from cfn_template import ACCOUNT
from pipeline_requests import load, parameter_assignments, step_requests, steps_in_order
from sagemaker.core.common_utils import instance_supports_kms
from service_model import problems

BUILDS = ("dev", "prod", "vpc", "spot")
JOB_STEPS = {"Prepare", "Train", "Evaluate", "Register"}


def definition_of(build) -> dict:
    return load(build.definition, build.substitutions)


@pytest.mark.parametrize("label", BUILDS)
def test_every_job_request_is_one_sagemaker_accepts(builds, label):
    build = builds[label]
    definition = definition_of(build)
    refused: list[str] = []
    seen: set[str] = set()
    for assignment, values in parameter_assignments(definition):
        for request in step_requests(definition, values, build.region, ACCOUNT):
            seen.add(request.step)
            for problem in problems("sagemaker", request.operation, request.params):
                refused.append(f"[{assignment}] {request.step}: {problem}")
    assert seen == JOB_STEPS
    assert not refused, f"{len(refused)} problem(s):\n" + "\n".join(dict.fromkeys(refused))


def _instance_type_field(step: dict) -> tuple[dict, str]:
    """(the resources structure holding InstanceType and VolumeKmsKeyId, its path)."""
    arguments = step["Arguments"]
    if step["Type"] == "Training":
        return arguments["ResourceConfig"], "ResourceConfig"
    return arguments["ProcessingResources"]["ClusterConfig"], "ProcessingResources.ClusterConfig"


def _possible_values(value, parameters: dict) -> list[str] | None:
    """Every value an InstanceType may take: a literal is itself, a parameter its EnumValues;
    None when a parameter without EnumValues lets any type through."""
    if isinstance(value, str):
        return [value]
    name = value["Get"].removeprefix("Parameters.")
    return parameters[name].get("EnumValues")


def volume_key_problems(definition: dict) -> list[str]:
    """SageMaker refuses VolumeKmsKeyId on instance types with NVMe instance storage; the
    SDK's own rule (sagemaker.core.common_utils.instance_supports_kms) must hold for every
    type the step's instance type may take at run time."""
    parameters = {p["Name"]: p for p in definition["Parameters"]}
    broken: list[str] = []
    for step in steps_in_order(definition):
        if step["Type"] not in ("Training", "Processing"):
            continue
        resources, path = _instance_type_field(step)
        if not resources.get("VolumeKmsKeyId"):
            continue
        types = _possible_values(resources["InstanceType"], parameters)
        if types is None:
            broken.append(
                f"{step['Name']}.{path}: VolumeKmsKeyId with InstanceType "
                f"{json.dumps(resources['InstanceType'])}, a parameter without EnumValues "
                "(any type, NVMe ones included, could be chosen)"
            )
            continue
        refusing = [t for t in types if not instance_supports_kms(t)]
        if refusing:
            broken.append(
                f"{step['Name']}.{path}: VolumeKmsKeyId, but InstanceType may be {refusing}, "
                "which have instance storage and refuse a volume key"
            )
    return broken


def isolation_problems(definition: dict) -> list[str]:
    """With EnableNetworkIsolation the container cannot reach S3: the toolkit must find the
    code archive in an input channel (/opt/ml/input/data/<channel>/...), not download it."""
    broken: list[str] = []
    for step in steps_in_order(definition):
        if step["Type"] != "Training" or not step["Arguments"].get("EnableNetworkIsolation"):
            continue
        arguments = step["Arguments"]
        code = arguments.get("HyperParameters", {}).get("sagemaker_submit_directory")
        if not (isinstance(code, str) and code.startswith("/opt/ml/input/data/")):
            broken.append(
                f"{step['Name']} is network-isolated but sagemaker_submit_directory is "
                f"{code!r}: the container cannot download it"
            )
            continue
        channel = code.removeprefix("/opt/ml/input/data/").split("/")[0]
        channels = {c["ChannelName"] for c in arguments.get("InputDataConfig", [])}
        if channel not in channels:
            broken.append(f"{step['Name']}: {code!r} names channel {channel!r}, not in {channels}")
    return broken


@pytest.mark.parametrize("label", BUILDS)
def test_no_volume_key_on_an_instance_type_with_local_storage(builds, label):
    problems_found = volume_key_problems(definition_of(builds[label]))
    assert not problems_found, "\n".join(problems_found)


@pytest.mark.parametrize("label", BUILDS)
def test_an_isolated_training_job_gets_its_code_from_a_channel(builds, label):
    problems_found = isolation_problems(definition_of(builds[label]))
    assert not problems_found, "\n".join(problems_found)


def _train_step(**arguments) -> dict:
    return {"Name": "Train", "Type": "Training", "Arguments": arguments}


def test_the_sdk_rule_finds_a_volume_key_any_allowed_type_refuses():
    resources = {
        "InstanceType": {"Get": "Parameters.TrainingInstanceType"},
        "VolumeKmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/k",
    }
    parameter = {"Name": "TrainingInstanceType", "DefaultValue": "ml.m5.xlarge"}
    open_ended = {"Parameters": [parameter], "Steps": [_train_step(ResourceConfig=resources)]}
    (problem,) = volume_key_problems(open_ended)
    assert "a parameter without EnumValues" in problem
    constrained = json.loads(json.dumps(open_ended))
    constrained["Parameters"][0]["EnumValues"] = ["ml.m5.xlarge", "ml.g4dn.xlarge"]
    (problem,) = volume_key_problems(constrained)
    assert "may be ['ml.g4dn.xlarge']" in problem
    constrained["Parameters"][0]["EnumValues"] = ["ml.m5.xlarge", "ml.c5.2xlarge"]
    assert volume_key_problems(constrained) == []


def test_the_isolation_rule_finds_code_fetched_from_s3():
    step = _train_step(
        EnableNetworkIsolation=True,
        HyperParameters={"sagemaker_submit_directory": "s3://b/code/sourcedir.tar.gz"},
        InputDataConfig=[{"ChannelName": "train"}],
    )
    (problem,) = isolation_problems({"Steps": [step]})
    assert "cannot download it" in problem
    step["Arguments"]["HyperParameters"]["sagemaker_submit_directory"] = (
        "/opt/ml/input/data/code/sourcedir.tar.gz"
    )
    (problem,) = isolation_problems({"Steps": [step]})
    assert "names channel 'code'" in problem
    step["Arguments"]["InputDataConfig"].append({"ChannelName": "code"})
    assert isolation_problems({"Steps": [step]}) == []


def test_the_vpc_build_isolates_training(builds):
    """The rule above must have something to check."""
    definition = definition_of(builds["vpc"])
    (train,) = [s for s in definition["Steps"] if s["Type"] == "Training"]
    assert train["Arguments"]["EnableNetworkIsolation"] is True


def test_parameter_values_reach_the_requests(builds):
    """The substitution is real: an EnumValue of a parameter ends up in the request."""
    build = builds["dev"]
    definition = definition_of(build)
    declared = {p["Name"]: p for p in definition["Parameters"]}
    other = next(
        v
        for v in declared["Architecture"]["EnumValues"]
        if v != declared["Architecture"]["DefaultValue"]
    )
    values = {name: p["DefaultValue"] for name, p in declared.items()} | {"Architecture": other}
    requests = {r.step: r for r in step_requests(definition, values, build.region, ACCOUNT)}
    assert requests["Train"].params["HyperParameters"]["arch"] == other
    metadata = requests["Register"].params["CustomerMetadataProperties"]
    assert metadata["architecture"] == other
    assert metadata["evaluation_report"].endswith("/Evaluate/report.html")
    model = requests["Register"].params["InferenceSpecification"]["Containers"][0]
    assert model["ModelDataUrl"].endswith(
        "/pipelines-a1b2c3d4e5f6-Train-1a2B3c4D5e/output/model.tar.gz"
    )
