"""The local SageMaker stand-in: registry and record operations with boto3's shapes and errors."""

from __future__ import annotations

from datetime import datetime

import pytest
from botocore.exceptions import ClientError

from pipeline.local.sagemaker_client import LocalAutoscalingClient, LocalSageMakerClient

CONTAINER = {"Image": "img", "ModelDataUrl": "s3://bincount-local/m/model.tar.gz"}


@pytest.fixture
def sm(tmp_path) -> LocalSageMakerClient:
    return LocalSageMakerClient(tmp_path)


def register(sm, status="PendingManualApproval", group="bincount"):
    return sm.create_model_package(
        ModelPackageGroupName=group,
        ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [CONTAINER], "SupportedContentTypes": ["image/jpeg"]},
    )["ModelPackageArn"]


def error_code(excinfo) -> tuple[str, str]:
    err = excinfo.value.response["Error"]
    return err["Code"], err["Message"]


def test_versions_count_up_with_aws_like_arns(sm):
    first, second = register(sm), register(sm, "Approved")
    assert first == "arn:aws:sagemaker:us-east-1:000000000000:model-package/bincount/1"
    assert second.endswith("/bincount/2")
    described = sm.describe_model_package(ModelPackageName=second)
    assert described["ModelPackageVersion"] == 2
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ModelPackageGroupName"] == "bincount"
    assert described["InferenceSpecification"]["Containers"] == [CONTAINER]
    assert isinstance(described["CreationTime"], datetime)
    groups = sm.list_model_package_groups()["ModelPackageGroupSummaryList"]
    assert [g["ModelPackageGroupName"] for g in groups] == ["bincount"]


def test_list_filters_sorts_and_pages(sm):
    arns = [register(sm, s) for s in ("Approved", "Rejected", "Approved", "PendingManualApproval")]
    register(sm, group="other")
    approved = sm.list_model_packages(
        ModelPackageGroupName="bincount",
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
    )["ModelPackageSummaryList"]
    assert [p["ModelPackageArn"] for p in approved] == [arns[2], arns[0]]
    page = sm.list_model_packages(ModelPackageGroupName="bincount", MaxResults=3)
    rest = sm.list_model_packages(ModelPackageGroupName="bincount", NextToken=page["NextToken"])
    listed = page["ModelPackageSummaryList"] + rest["ModelPackageSummaryList"]
    assert [p["ModelPackageArn"] for p in listed] == arns
    assert "NextToken" not in rest


def test_update_approval_and_errors(sm):
    arn = register(sm)
    assert sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved") == {
        "ModelPackageArn": arn
    }
    assert sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Approved"
    with pytest.raises(ClientError) as bad_status:
        sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Fine")
    assert error_code(bad_status)[0] == "ValidationException"
    with pytest.raises(ClientError) as missing:
        sm.describe_model_package(ModelPackageName=arn.replace("/1", "/9"))
    assert error_code(missing) == (
        "ValidationException",
        f"ModelPackage {arn[:-1]}9 does not exist.",
    )
    with pytest.raises(ClientError, match=r"InferenceSpecification\.Containers"):
        sm.create_model_package(ModelPackageGroupName="bincount", InferenceSpecification={})
    with pytest.raises(ClientError, match="already exists"):
        sm.create_model_package_group(ModelPackageGroupName="bincount")


def test_models_configs_and_missing_endpoints_answer_like_aws(sm):
    with pytest.raises(ClientError) as missing:
        sm.describe_endpoint(EndpointName="nope")
    assert error_code(missing) == ("ValidationException", 'Could not find endpoint "nope".')
    with pytest.raises(ClientError, match="Could not find model"):
        sm.describe_model(ModelName="m1")
    arn = sm.create_model(ModelName="m1", PrimaryContainer=CONTAINER, ExecutionRoleArn="arn:r")[
        "ModelArn"
    ]
    assert arn == "arn:aws:sagemaker:us-east-1:000000000000:model/m1"
    assert sm.describe_model(ModelName="m1")["PrimaryContainer"] == CONTAINER
    with pytest.raises(ClientError, match="Cannot create already existing model"):
        sm.create_model(ModelName="m1", PrimaryContainer=CONTAINER)
    with pytest.raises(ClientError, match=r'Could not find model ".*/m2"'):
        sm.create_endpoint_config(
            EndpointConfigName="c1", ProductionVariants=[{"VariantName": "A", "ModelName": "m2"}]
        )
    config_arn = sm.create_endpoint_config(
        EndpointConfigName="c1",
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "m1"}],
        Tags=[{"Key": "k", "Value": "v"}],
    )["EndpointConfigArn"]
    assert sm.describe_endpoint_config(EndpointConfigName="c1")["EndpointConfigArn"] == config_arn
    assert sm.list_tags(ResourceArn=config_arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    sm.add_tags(
        ResourceArn=config_arn, Tags=[{"Key": "k", "Value": "w"}, {"Key": "j", "Value": "x"}]
    )
    assert sm.list_tags(ResourceArn=config_arn)["Tags"] == [
        {"Key": "k", "Value": "w"},
        {"Key": "j", "Value": "x"},
    ]
    with pytest.raises(ClientError, match="Could not find endpoint configuration"):
        sm.create_endpoint(EndpointName="e1", EndpointConfigName="c9")
    with pytest.raises(ClientError, match='Could not find endpoint "e1"'):
        sm.update_endpoint(EndpointName="e1", EndpointConfigName="c1")
    assert sm.list_endpoints() == {"Endpoints": []}


def test_package_tags(sm):
    arn = register(sm)
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "a", "Value": "1"}])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "a", "Value": "1"}]
    with pytest.raises(ClientError, match="does not exist"):
        sm.list_tags(ResourceArn="arn:aws:sagemaker:us-east-1:000000000000:endpoint/none")


def test_autoscaling_records_targets_and_policies(tmp_path):
    autoscaling = LocalAutoscalingClient(tmp_path)
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/e/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    autoscaling.register_scalable_target(**target, MinCapacity=1, MaxCapacity=2)
    response = autoscaling.put_scaling_policy(
        **target, PolicyName="p", PolicyType="TargetTrackingScaling"
    )
    assert "policyName/p" in response["PolicyARN"]
    records = autoscaling.records()
    assert records["targets"]["endpoint/e/variant/AllTraffic"]["MaxCapacity"] == 2
    assert "endpoint/e/variant/AllTraffic:p" in records["policies"]
    with pytest.raises(ClientError, match="PolicyName"):
        autoscaling.put_scaling_policy(**target)


def test_models_and_configs_list_by_name_page_and_delete_like_aws(sm):
    for name in ("ep-v1-aaaa0000", "ep-v2-bbbb0000", "other-v1-cccc0000"):
        sm.create_model(ModelName=name, PrimaryContainer=CONTAINER, ExecutionRoleArn="arn:r")
        sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name}],
        )
    first = sm.list_models(NameContains="ep-v", MaxResults=1)
    rest = sm.list_models(NameContains="ep-v", NextToken=first["NextToken"])
    assert "NextToken" not in rest
    listed = first["Models"] + rest["Models"]
    assert sorted(m["ModelName"] for m in listed) == ["ep-v1-aaaa0000", "ep-v2-bbbb0000"]
    assert listed[0]["ModelArn"].endswith(f":model/{listed[0]['ModelName']}")
    configs = sm.list_endpoint_configs(NameContains="other")["EndpointConfigs"]
    assert [c["EndpointConfigName"] for c in configs] == ["other-v1-cccc0000"]
    assert isinstance(configs[0]["CreationTime"], datetime)

    assert sm.delete_endpoint_config(EndpointConfigName="ep-v1-aaaa0000") == {}
    assert sm.delete_model(ModelName="ep-v1-aaaa0000") == {}
    with pytest.raises(ClientError) as gone:
        sm.delete_model(ModelName="ep-v1-aaaa0000")
    assert error_code(gone) == (
        "ValidationException",
        'Could not find model "arn:aws:sagemaker:us-east-1:000000000000:model/ep-v1-aaaa0000".',
    )
    with pytest.raises(ClientError, match="Could not find endpoint configuration"):
        sm.delete_endpoint_config(EndpointConfigName="ep-v1-aaaa0000")
    assert [m["ModelName"] for m in sm.list_models(NameContains="ep-v")["Models"]] == [
        "ep-v2-bbbb0000"
    ]


def test_customer_metadata_properties_are_set_and_removed(sm):
    arn = register(sm, "Approved")
    sm.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={"a": "1", "b": "2"})
    sm.update_model_package(ModelPackageArn=arn, CustomerMetadataPropertiesToRemove=["a", "zz"])
    described = sm.describe_model_package(ModelPackageName=arn)
    assert described["CustomerMetadataProperties"] == {"b": "2"}
    assert described["ModelApprovalStatus"] == "Approved"


def test_deregistering_a_scalable_target_removes_its_policies(tmp_path):
    autoscaling = LocalAutoscalingClient(tmp_path)
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/e/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    other = {**target, "ResourceId": "endpoint/f/variant/AllTraffic"}
    for t in (target, other):
        autoscaling.register_scalable_target(**t, MinCapacity=1, MaxCapacity=2)
        autoscaling.put_scaling_policy(**t, PolicyName="p", PolicyType="TargetTrackingScaling")

    assert autoscaling.deregister_scalable_target(**target) == {}

    records = autoscaling.records()
    assert list(records["targets"]) == [other["ResourceId"]]
    assert list(records["policies"]) == [f"{other['ResourceId']}:p"]
    with pytest.raises(ClientError) as again:
        autoscaling.deregister_scalable_target(**target)
    assert error_code(again)[0] == "ObjectNotFoundException"
