"""The model package group custom resource against botocore's SageMaker model (Stubber checks
every request and response shape): adopt on create, delete versions then the group on a
`destroy` delete, keep it on a `retain` one."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from infra.registry_lambda.registry import handle

GROUP = "bincount-dev"
GROUP_ARN = f"arn:aws:sagemaker:us-east-1:123456789012:model-package-group/{GROUP}"


def package_arn(version: int) -> str:
    return f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}/{version}"


@pytest.fixture
def sagemaker():
    client = boto3.client(
        "sagemaker",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    with Stubber(client) as stubber:
        client.stubber = stubber
        yield client
        stubber.assert_no_pending_responses()


def event(request: str, **props) -> dict:
    return {
        "RequestType": request,
        "PhysicalResourceId": GROUP,
        "ResourceProperties": {"GroupName": GROUP, **props},
    }


def described() -> dict:
    return {
        "ModelPackageGroupName": GROUP,
        "ModelPackageGroupArn": GROUP_ARN,
        "CreationTime": "2026-01-01T00:00:00Z",
        "CreatedBy": {},
        "ModelPackageGroupStatus": "Completed",
    }


def missing(stubber: Stubber) -> None:
    stubber.add_client_error(
        "describe_model_package_group",
        "ValidationException",
        f"ModelPackageGroup {GROUP_ARN} does not exist.",
        expected_params={"ModelPackageGroupName": GROUP},
    )


def test_create_makes_the_group(sagemaker):
    missing(sagemaker.stubber)
    sagemaker.stubber.add_response(
        "create_model_package_group",
        {"ModelPackageGroupArn": GROUP_ARN},
        {"ModelPackageGroupName": GROUP, "ModelPackageGroupDescription": "counts"},
    )
    result = handle(event("Create", Description="counts"), sagemaker)
    assert result == {
        "PhysicalResourceId": GROUP,
        "Data": {"GroupName": GROUP, "GroupArn": GROUP_ARN},
    }


def test_create_adopts_a_group_a_retained_stack_left_behind(sagemaker):
    """destroy-then-deploy of a `retain` stack: no 'already exists' failure."""
    sagemaker.stubber.add_response(
        "describe_model_package_group", described(), {"ModelPackageGroupName": GROUP}
    )
    assert handle(event("Create"), sagemaker)["Data"]["GroupArn"] == GROUP_ARN


def test_destroy_deletes_every_version_then_the_group(sagemaker):
    stub = sagemaker.stubber
    stub.add_response("describe_model_package_group", described(), {"ModelPackageGroupName": GROUP})
    summary = {"ModelPackageStatus": "Completed", "CreationTime": "2026-01-01T00:00:00Z"}
    stub.add_response(
        "list_model_packages",
        {
            "ModelPackageSummaryList": [
                {**summary, "ModelPackageArn": package_arn(1), "ModelPackageName": GROUP}
            ],
            "NextToken": "page-2",
        },
        {"ModelPackageGroupName": GROUP},
    )
    stub.add_response("delete_model_package", {}, {"ModelPackageName": package_arn(1)})
    stub.add_response(
        "list_model_packages",
        {
            "ModelPackageSummaryList": [
                {**summary, "ModelPackageArn": package_arn(2), "ModelPackageName": GROUP}
            ]
        },
        {"ModelPackageGroupName": GROUP, "NextToken": "page-2"},
    )
    stub.add_response("delete_model_package", {}, {"ModelPackageName": package_arn(2)})
    stub.add_response("delete_model_package_group", {}, {"ModelPackageGroupName": GROUP})
    assert handle(event("Delete", DeleteVersions="true"), sagemaker) == {
        "PhysicalResourceId": GROUP
    }


def test_destroy_of_a_group_already_gone_succeeds(sagemaker):
    missing(sagemaker.stubber)
    assert handle(event("Delete", DeleteVersions="true"), sagemaker)["PhysicalResourceId"] == GROUP


def test_retain_leaves_the_group_and_its_versions(sagemaker):
    # No stubbed call: any request would fail the Stubber.
    assert handle(event("Delete", DeleteVersions="false"), sagemaker)["PhysicalResourceId"] == GROUP


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"RequestType": "Explode", "ResourceProperties": {}}, "RequestType Create, Update"),
        ({"RequestType": "Create", "ResourceProperties": "x"}, "RequestType Create, Update"),
        ({"RequestType": "Create", "ResourceProperties": {}}, "GroupName is required"),
    ],
)
def test_events_of_another_shape_are_refused_by_name(sagemaker, bad, message):
    with pytest.raises(ValueError, match=message):
        handle(bad, sagemaker)
