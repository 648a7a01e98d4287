"""The validating proxy and the botocore call recorder."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from recording_clients import Call, ValidatingClient, record_botocore_calls
from service_model import InvalidRequest


class Target:
    """A stand-in that answers describe_endpoint and counts what reached it."""

    region = "us-east-1"

    def __init__(self):
        self.received: list[dict] = []

    def describe_endpoint(self, **kwargs):
        self.received.append(kwargs)
        return {"EndpointName": kwargs["EndpointName"], "EndpointStatus": "InService"}


def test_a_valid_call_is_recorded_then_forwarded():
    target, calls = Target(), []
    client = ValidatingClient(target, "sagemaker", calls, caller="deployer")
    answer = client.describe_endpoint(EndpointName="bincount-dev")
    assert answer["EndpointStatus"] == "InService"
    assert target.received == [{"EndpointName": "bincount-dev"}]
    expected = Call("sagemaker", "DescribeEndpoint", {"EndpointName": "bincount-dev"}, "deployer")
    assert calls == [expected]


def test_a_call_aws_would_refuse_never_reaches_the_target():
    target, calls = Target(), []
    client = ValidatingClient(target, "sagemaker", calls)
    with pytest.raises(InvalidRequest, match=r"DescribeEndpoint\.EndpointName: 'under_score'"):
        client.describe_endpoint(EndpointName="under_score")
    with pytest.raises(InvalidRequest, match="unknown member 'Name'"):
        client.describe_endpoint(EndpointName="ok", Name="x")
    assert target.received == [] and calls == []


def test_other_attributes_pass_through_and_unknown_operations_fail():
    client = ValidatingClient(Target(), "sagemaker", [])
    assert client.region == "us-east-1"
    with pytest.raises(AttributeError):
        client.create_something(Name="x")


def test_botocore_clients_created_meanwhile_are_recorded(no_network):
    calls: list[Call] = []
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="before")
        with record_botocore_calls(calls, caller="job"):
            inner = boto3.session.Session().client("s3", region_name="us-east-1")
            inner.put_object(Bucket="before", Key="a/b.json", Body=b"{}")
            inner.list_objects_v2(Bucket="before", Prefix="a/")
        boto3.client("s3", region_name="us-east-1").get_object(Bucket="before", Key="a/b.json")
    assert [(c.service, c.operation, c.caller) for c in calls] == [
        ("s3", "PutObject", "job"),
        ("s3", "ListObjectsV2", "job"),
    ]
    assert calls[1].params == {"Bucket": "before", "Prefix": "a/"}
