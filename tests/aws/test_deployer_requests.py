"""The deployer's requests, through a model's life on the local stand-ins: every one valid
against the sagemaker and application-autoscaling models (the proxy raises otherwise)."""

from __future__ import annotations


def test_the_deployer_makes_only_requests_aws_accepts(deployer_run):
    calls, results = deployer_run
    assert [label for label, _ in results] == [
        "deploy step v1",
        "approve v2",
        "endpoint in service",
        "reject v2",
    ]
    # Each request was validated before it was forwarded: reaching here means all passed.
    assert calls and all(call.caller == "deployer" for call in calls)


def test_the_scenarios_cover_what_a_deployment_calls(deployer_run):
    """The IAM coverage test relies on these calls having been made at least once."""
    calls, _ = deployer_run
    made = {call.operation for call in calls}
    expected = {
        "DescribeModelPackage",
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
        "UpdateEndpoint",
        "DescribeEndpoint",
        "RegisterScalableTarget",
        "PutScalingPolicy",
    }
    assert expected <= made, f"never called: {sorted(expected - made)}"
