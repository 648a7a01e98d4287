"""The strict validator itself: it refuses what AWS refuses and botocore lets through."""

from __future__ import annotations

import pytest
from botocore.validate import ParamValidator
from service_model import (
    InvalidRequest,
    java_pattern,
    operation_name,
    problems,
    service_model,
    validate,
)

ROLE = "arn:aws:iam::123456789012:role/bincount-dev-jobs"


def training_job(**changes) -> dict:
    request = {
        "TrainingJobName": "pipelines-a1b2c3d4e5f6-Train-1a2B3c4D5e",
        "AlgorithmSpecification": {
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6.0",
            "TrainingInputMode": "File",
        },
        "RoleArn": ROLE,
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/bincount/executions/x/Train"},
        "ResourceConfig": {
            "InstanceType": "ml.g4dn.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 100,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "HyperParameters": {"epochs": "15"},
    }
    request.update(changes)
    return request


def botocore_accepts(operation: str, params: dict) -> bool:
    shape = service_model("sagemaker").operation_model(operation).input_shape
    return not ParamValidator().validate(params, shape).has_errors()


def test_a_good_request_passes():
    assert problems("sagemaker", "CreateTrainingJob", training_job()) == []
    validate("sagemaker", "CreateTrainingJob", training_job())


def test_a_bad_enum_value_is_refused_although_botocore_accepts_it():
    request = training_job(
        ResourceConfig={"InstanceType": "ml.g4dn.huge", "InstanceCount": 1, "VolumeSizeInGB": 1}
    )
    assert botocore_accepts("CreateTrainingJob", request)
    (problem,) = problems("sagemaker", "CreateTrainingJob", request)
    assert problem.startswith("CreateTrainingJob.ResourceConfig.InstanceType: 'ml.g4dn.huge'")
    assert "is not one of" in problem


def test_a_too_long_name_is_refused():
    request = training_job(TrainingJobName="x" * 64)
    assert botocore_accepts("CreateTrainingJob", request)
    found = problems("sagemaker", "CreateTrainingJob", request)
    assert (
        "CreateTrainingJob.TrainingJobName: 64 characters, more than TrainingJobName's max 63"
        in found
    )


def test_a_pattern_mismatch_is_refused_on_the_whole_value():
    # The pattern finds "my" at the start: AWS matches the whole name, so must we.
    request = training_job(TrainingJobName="my_job")
    assert botocore_accepts("CreateTrainingJob", request)
    (problem,) = problems("sagemaker", "CreateTrainingJob", request)
    assert "TrainingJobName: 'my_job' does not match" in problem


def test_unknown_members_missing_members_and_types_are_all_named():
    request = training_job(Tags=[{"Key": "a"}], Epochs=3)
    request["ResourceConfig"]["InstanceCount"] = "1"
    del request["RoleArn"]
    found = problems("sagemaker", "CreateTrainingJob", request)
    assert "CreateTrainingJob: unknown member 'Epochs'" in found[0]
    assert "CreateTrainingJob: missing required member 'RoleArn'" in found
    assert any("Tags[0]: missing required member 'Value'" in p for p in found)
    assert any("InstanceCount: expected an integer" in p for p in found)
    with pytest.raises(InvalidRequest, match="would be refused"):
        validate("sagemaker", "CreateTrainingJob", request)


def test_ranges_list_lengths_and_map_entries_are_checked():
    request = training_job(
        StoppingCondition={"MaxRuntimeInSeconds": 0},
        HyperParameters={"k" * 257: "v"},
        VpcConfig={"SecurityGroupIds": ["sg-1"], "Subnets": []},
    )
    found = problems("sagemaker", "CreateTrainingJob", request)
    assert any("MaxRuntimeInSeconds: 0 is below" in p for p in found), found
    assert any("HyperParameters key 'kkk" in p and "more than" in p for p in found), found
    assert any("VpcConfig.Subnets: 0 items, fewer than" in p for p in found), found


def test_application_autoscaling_requests_are_checked_too():
    good = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/bincount-dev/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 1,
        "MaxCapacity": 2,
    }
    assert problems("application-autoscaling", "RegisterScalableTarget", good) == []
    bad = {**good, "ScalableDimension": "sagemaker:variant:InstanceCount"}
    (problem,) = problems("application-autoscaling", "RegisterScalableTarget", bad)
    assert "ScalableDimension" in problem and "is not one of" in problem


def test_client_method_names_map_to_operations():
    assert operation_name("sagemaker", "create_endpoint_config") == "CreateEndpointConfig"
    assert operation_name("application-autoscaling", "put_scaling_policy") == "PutScalingPolicy"
    with pytest.raises(AttributeError):
        operation_name("sagemaker", "create_anything")


@pytest.mark.parametrize("service", ["sagemaker", "application-autoscaling", "s3"])
def test_every_pattern_of_the_models_translates(service):
    model = service_model(service)
    patterns = {
        model.shape_for(name).metadata["pattern"]
        for name in model.shape_names
        if "pattern" in model.shape_for(name).metadata
    }
    assert patterns
    for pattern in patterns:
        java_pattern(pattern)  # raises UnsupportedPattern for a construct it does not know


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*", "Grün Tag_1:/=+-@", "tab\there"),
        (r"\p{Print}+", "printable ~", "new\nline"),
        (r"arn:[\p{Alnum}\-]+:lambda:.*", "arn:aws-cn:lambda:x", "arn:aws_x:lambda:x"),
        (r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*", "emoji \U0001f600", "\x01"),
        (r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,128}", "value", "semi;colon"),
        (r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}(?<!-)", "a-b", "a-"),
    ],
)
def test_java_constructs_mean_what_they_mean_in_java(pattern, good, bad):
    compiled = java_pattern(pattern)
    assert compiled.fullmatch(good)
    assert not compiled.fullmatch(bad)
