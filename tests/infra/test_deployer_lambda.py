"""The deployer against moto's SageMaker and Application Auto Scaling.

moto has no UpdateEndpoint, so exactly that one call is stood in for: it records the request
and switches moto's endpoint to the new config, as a finished blue/green update would. The
asynchronous sequences (busy endpoints, alarm rollbacks) are in test_deployer_reconcile.py.
"""

from __future__ import annotations

import hashlib

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends

from infra.deployer_lambda.deployer import (
    PACKAGE_TAG,
    Clients,
    Config,
    DeployError,
    created_for,
    handle,
    live_package_arn,
    resource_name,
)

REGION = "us-east-1"
GROUP = "bincount-dev"
ENDPOINT = "bincount-dev"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"


class UpdateEndpointStandIn:
    """moto's SageMaker client with update_endpoint (which moto lacks) stood in for."""

    def __init__(self, client):
        self._client = client
        self.calls: list[tuple[str, dict]] = []
        self.updates: list[dict] = []

    def __getattr__(self, name):
        method = getattr(self._client, name)

        def recorded(**kwargs):
            self.calls.append((name, kwargs))
            return method(**kwargs)

        return recorded

    def update_endpoint(self, **kwargs):
        self.calls.append(("update_endpoint", kwargs))
        self.updates.append(kwargs)
        endpoint = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].endpoints[kwargs["EndpointName"]]
        endpoint.endpoint_config_name = kwargs["EndpointConfigName"]
        return {"EndpointArn": endpoint.arn}

    def created(self) -> list[str]:
        return [name for name, _ in self.calls if name.startswith("create_")]


@pytest.fixture
def aws(no_network):
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        yield sm, boto3.client("application-autoscaling", region_name=REGION)


@pytest.fixture
def sagemaker(aws):
    return UpdateEndpointStandIn(aws[0])


@pytest.fixture
def clients(sagemaker, aws):
    return Clients(sagemaker=sagemaker, autoscaling=aws[1], sleep=lambda s: None)


@pytest.fixture
def config():
    return Config(
        endpoint_name=ENDPOINT,
        model_role_arn=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/bincount-jobs",
        data_capture_uri="s3://bincount-data/data-capture/bincount-dev",
        kms_key_arn=f"arn:aws:kms:{REGION}:{DEFAULT_ACCOUNT_ID}:key/1234",
        volume_kms_key_arn=f"arn:aws:kms:{REGION}:{DEFAULT_ACCOUNT_ID}:key/1234",
        model_package_group=GROUP,
        alarm_names=("bincount-dev-5xx", "bincount-dev-latency"),
        instance_count=2,
        wait_seconds=0,
    )


def register(sm, status: str) -> str:
    return sm.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [
                {
                    "Image": IMAGE,
                    "ModelDataUrl": "s3://bincount-data/bincount/executions/x/Train/model.tar.gz",
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                }
            ],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]


def step_event(arn: str) -> dict:
    return {"model_package_arn": arn, "endpoint_name": ENDPOINT}


def state_change(arn: str, status: str) -> dict:
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change",
        "resources": [arn],
        "detail": {
            "ModelPackageGroupName": GROUP,
            "ModelPackageArn": arn,
            "ModelApprovalStatus": status,
        },
    }


def test_first_approved_version_creates_model_config_and_endpoint(aws, clients, config):
    sm, autoscaling = aws
    arn = register(sm, "Approved")

    result = handle(step_event(arn), clients, config)

    package = sm.describe_model_package(ModelPackageName=arn)
    name = resource_name(ENDPOINT, package)
    assert result == {
        "endpoint_name": ENDPOINT,
        "model_package_arn": arn,
        "requested_model_package_arn": arn,
        "status": "deployed",
        "endpoint_config_name": name,
    }
    model = sm.describe_model(ModelName=name)
    assert model["PrimaryContainer"]["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py",
        "BINCOUNT_MODEL_VERSION": arn,
    }
    assert model["ExecutionRoleArn"] == config.model_role_arn
    endpoint_config = sm.describe_endpoint_config(EndpointConfigName=name)
    capture = endpoint_config["DataCaptureConfig"]
    assert capture["DestinationS3Uri"] == config.data_capture_uri
    assert capture["KmsKeyId"] == config.kms_key_arn
    assert endpoint_config["KmsKeyId"] == config.volume_kms_key_arn
    assert endpoint_config["ProductionVariants"][0]["InitialInstanceCount"] == 2
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == name
    assert live_package_arn(ENDPOINT, clients) == arn
    (target,) = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")[
        "ScalableTargets"
    ]
    assert target["ResourceId"] == f"endpoint/{ENDPOINT}/variant/AllTraffic"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 2)
    (policy,) = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")[
        "ScalingPolicies"
    ]
    spec = policy["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
    assert spec["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"


def test_deploying_the_live_version_again_creates_nothing(aws, sagemaker, clients, config):
    arn = register(aws[0], "Approved")
    handle(step_event(arn), clients, config)
    sagemaker.calls.clear()

    again = handle(state_change(arn, "Approved"), clients, config)

    assert again["status"] == "unchanged"
    assert sagemaker.created() == []
    assert sagemaker.updates == []


def test_new_version_updates_blue_green_with_canary_and_alarm_rollback(
    aws, sagemaker, clients, config
):
    sm = aws[0]
    first = register(sm, "Approved")
    handle(step_event(first), clients, config)
    second = register(sm, "Approved")

    result = handle(state_change(second, "Approved"), clients, config)

    assert result["status"] == "deployed"
    (update,) = sagemaker.updates
    assert update["EndpointConfigName"] == resource_name(
        ENDPOINT, sm.describe_model_package(ModelPackageName=second)
    )
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": "bincount-dev-5xx"},
        {"AlarmName": "bincount-dev-latency"},
    ]
    assert live_package_arn(ENDPOINT, clients) == second


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_anything_not_approved_is_refused_without_touching_anything(
    aws, sagemaker, clients, config, status
):
    arn = register(aws[0], status)

    result = handle(step_event(arn), clients, config)

    assert result["status"] == "skipped"
    assert status in result["reason"]
    assert sagemaker.created() == [] and sagemaker.updates == []


def test_rejecting_the_live_version_rolls_back_to_the_newest_other_approved(
    aws, sagemaker, clients, config
):
    sm = aws[0]
    oldest = register(sm, "Approved")
    newer = register(sm, "Approved")
    register(sm, "PendingManualApproval")
    live = register(sm, "Approved")
    for arn in (oldest, newer, live):
        handle(step_event(arn), clients, config)
    assert live_package_arn(ENDPOINT, clients) == live
    sm.update_model_package(ModelPackageArn=live, ModelApprovalStatus="Rejected")

    result = handle(state_change(live, "Rejected"), clients, config)

    assert result["status"] == "rolled_back"
    assert result["model_package_arn"] == newer
    assert result["replaced_model_package_arn"] == live
    assert result["replaced_approval_status"] == "Rejected"
    assert live_package_arn(ENDPOINT, clients) == newer


def test_rejecting_a_version_that_is_not_live_changes_nothing(aws, sagemaker, clients, config):
    sm = aws[0]
    live = register(sm, "Approved")
    handle(step_event(live), clients, config)
    other = register(sm, "Rejected")
    sagemaker.calls.clear()

    result = handle(state_change(other, "Rejected"), clients, config)

    assert result["status"] == "unchanged"
    assert sagemaker.created() == [] and sagemaker.updates == []
    assert live_package_arn(ENDPOINT, clients) == live


def test_tags_name_the_package_on_what_it_creates(aws, clients, config):
    sm = aws[0]
    arn = register(sm, "Approved")
    handle(step_event(arn), clients, config)
    name = resource_name(ENDPOINT, sm.describe_model_package(ModelPackageName=arn))
    model_arn = sm.describe_model(ModelName=name)["ModelArn"]
    assert {"Key": PACKAGE_TAG, "Value": arn} in sm.list_tags(ResourceArn=model_arn)["Tags"]


def test_unknown_events_and_bad_config_say_what_is_wrong(clients, config):
    with pytest.raises(ValueError, match="unsupported event"):
        handle({"hello": "world"}, clients, config)
    with pytest.raises(ValueError, match="ENDPOINT_NAME"):
        Config.from_env({})
    env = {
        "ENDPOINT_NAME": "e",
        "MODEL_ROLE_ARN": "arn:aws:iam::1:role/r",
        "DATA_CAPTURE_URI": "s3://b/p",
    }
    with pytest.raises(ValueError, match="MODEL_PACKAGE_GROUP"):
        Config.from_env(env)
    env["MODEL_PACKAGE_GROUP"] = "g"
    with pytest.raises(ValueError, match="MIN_CAPACITY"):
        Config.from_env({**env, "MIN_CAPACITY": "two"})
    # The Deploy step is cut at 10 minutes: its wait must leave room.
    with pytest.raises(ValueError, match=r"wait_seconds must be 0\.\.300"):
        Config.from_env({**env, "WAIT_SECONDS": "600"})
    with pytest.raises(ValueError, match="invalid model package group"):
        Config.from_env({**env, "MODEL_PACKAGE_GROUP": "no_underscores"})


def test_config_from_lambda_environment():
    config = Config.from_env(
        {
            "ENDPOINT_NAME": "bincount",
            "MODEL_ROLE_ARN": "arn:aws:iam::1:role/r",
            "DATA_CAPTURE_URI": "s3://b/data-capture/bincount",
            "MODEL_PACKAGE_GROUP": "bincount",
            "ALARM_NAMES": "a,b",
            "TEARDOWN_SECONDS": "300",
            "INSTANCE_COUNT": "3",
            "SUBNETS": "subnet-1,subnet-2",
            "SECURITY_GROUP_IDS": "sg-1",
            "NETWORK_ISOLATION": "true",
        }
    )
    assert config.alarm_names == ("a", "b")
    assert config.instance_count == 3
    assert config.subnets == ("subnet-1", "subnet-2")
    assert config.network_isolation is True
    assert config.model_package_group == "bincount"
    assert (config.wait_seconds, config.teardown_seconds) == (60, 300)


def test_names_are_deterministic_and_fit_sagemaker():
    arn = "arn:aws:sagemaker:r:1:model-package/g/7"
    package = {"ModelPackageArn": arn, "ModelPackageVersion": 7}
    name = resource_name("e" * 80, package)
    digest = hashlib.sha256(arn.encode()).hexdigest()[:8]
    assert name == "e" * (63 - len(f"-v7-{digest}")) + f"-v7-{digest}"
    assert len(name) == 63
    assert resource_name("bincount", package) == f"bincount-v7-{digest}"
    # Teardown finds what it made by name, and only that.
    assert created_for("e" * 80, name)
    assert created_for("bincount", f"bincount-v7-{digest}")
    assert not created_for("bincount", f"bincount-2-v7-{digest}")
    assert not created_for("bincount", "bincount-v7")
    assert not created_for("bincount-v2", f"bincount-v2-{digest}")


def test_no_volume_key_leaves_the_endpoint_storage_unkeyed():
    """The stack gives no VOLUME_KMS_KEY_ARN for NVMe instance types (they refuse one); data
    capture keeps its key."""
    config = Config.from_env(
        {
            "ENDPOINT_NAME": "e",
            "MODEL_ROLE_ARN": "arn:aws:iam::123456789012:role/m",
            "DATA_CAPTURE_URI": "s3://b/capture",
            "MODEL_PACKAGE_GROUP": "g",
            "INSTANCE_TYPE": "ml.g5.xlarge",
            "KMS_KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/k",
        }
    )
    assert config.kms_key_arn and not config.volume_kms_key_arn


def test_busy_endpoint_is_not_an_error(aws, sagemaker, clients, config):
    sm = aws[0]
    handle(step_event(register(sm, "Approved")), clients, config)
    backend = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION]
    backend.endpoints[ENDPOINT].endpoint_status = "Updating"
    sagemaker.calls.clear()
    result = handle(step_event(register(sm, "Approved")), clients, config)
    assert (result["status"], result["endpoint_status"]) == ("busy", "Updating")
    assert sagemaker.created() == [] and sagemaker.updates == []


def test_single_instance_shifts_all_at_once(aws, sagemaker, clients, config):
    from dataclasses import replace

    one = replace(config, instance_count=1)
    sm = aws[0]
    handle(step_event(register(sm, "Approved")), clients, one)
    handle(step_event(register(sm, "Approved")), clients, one)
    (update,) = sagemaker.updates
    routing = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "ALL_AT_ONCE"


def _missing(operation: str, what: str):
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": "ValidationException", "Message": f'Could not find {what} "x".'}},
        operation,
    )


def _already(operation: str, what: str):
    from botocore.exceptions import ClientError

    message = f'Cannot create already existing {what} "arn:aws:sagemaker:x".'
    return ClientError({"Error": {"Code": "ValidationException", "Message": message}}, operation)


def test_concurrent_deploy_of_the_same_version_treats_already_existing_as_done(
    aws, sagemaker, clients, config
):
    """The Deploy step and the approval rule both see nothing, both create: the second call's
    creates answer 'already existing', which is success."""
    arn = register(aws[0], "Approved")
    handle(step_event(arn), clients, config)  # the first call wins the race
    sagemaker.calls.clear()
    # The second call described before the first created anything ...
    sagemaker.describe_model = lambda **kw: (_ for _ in ()).throw(
        _missing("DescribeModel", "model")
    )
    sagemaker.describe_endpoint_config = lambda **kw: (_ for _ in ()).throw(
        _missing("DescribeEndpointConfig", "endpoint configuration")
    )
    real_describe_endpoint = aws[0].describe_endpoint
    seen = []

    def describe_endpoint(**kw):
        seen.append(kw)
        if len(seen) == 1:
            raise _missing("DescribeEndpoint", "endpoint")
        return real_describe_endpoint(**kw)

    sagemaker.describe_endpoint = describe_endpoint
    # ... and creates what SageMaker then refuses as already existing.
    sagemaker.create_model = lambda **kw: (_ for _ in ()).throw(_already("CreateModel", "model"))
    sagemaker.create_endpoint_config = lambda **kw: (_ for _ in ()).throw(
        _already("CreateEndpointConfig", "endpoint configuration")
    )
    sagemaker.create_endpoint = lambda **kw: (_ for _ in ()).throw(
        _already("CreateEndpoint", "endpoint")
    )

    result = handle(state_change(arn, "Approved"), clients, config)

    assert result["status"] == "busy"  # the winner's events finish it; no error to retry
    assert live_package_arn(ENDPOINT, Clients(sagemaker=aws[0], autoscaling=aws[1])) == arn


def test_other_create_errors_still_raise(aws, sagemaker, clients, config):
    from botocore.exceptions import ClientError

    def refuse(**kw):
        raise ClientError(
            {"Error": {"Code": "ValidationException", "Message": "Invalid image"}}, "CreateModel"
        )

    sagemaker.create_model = refuse
    with pytest.raises(ClientError, match="Invalid image"):
        handle(step_event(register(aws[0], "Approved")), clients, config)


def test_rollback_shifts_all_at_once_without_the_alarms(aws, sagemaker, clients, config):
    sm = aws[0]
    fallback = register(sm, "Approved")
    live = register(sm, "Approved")
    for arn in (fallback, live):
        handle(step_event(arn), clients, config)
    sagemaker.updates.clear()
    sm.update_model_package(ModelPackageArn=live, ModelApprovalStatus="Rejected")

    result = handle(state_change(live, "Rejected"), clients, config)

    assert result["status"] == "rolled_back"
    (update,) = sagemaker.updates
    deployment = update["DeploymentConfig"]
    assert "AutoRollbackConfiguration" not in deployment
    routing = deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "ALL_AT_ONCE"


@pytest.mark.parametrize("state", ["Failed", "OutOfService"])
def test_failed_endpoint_is_refused_naming_the_reason_and_the_remedy(
    aws, sagemaker, clients, config, state
):
    sm = aws[0]
    first = register(sm, "Approved")
    handle(step_event(first), clients, config)
    endpoint = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].endpoints[ENDPOINT]
    endpoint.endpoint_status = state
    endpoint.failure_reason = "Image pull failed"
    real = sm.describe_endpoint
    sagemaker.describe_endpoint = lambda **kw: {
        **real(**kw),
        "FailureReason": "Image pull failed",
    }
    sagemaker.calls.clear()

    for arn in (first, register(sm, "Approved")):  # the same version and a new one
        with pytest.raises(
            DeployError, match=rf"is {state} \(Image pull failed\).*delete-endpoint"
        ):
            handle(step_event(arn), clients, config)
    assert sagemaker.updates == []
    assert aws[1].describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]


def test_rejecting_a_version_still_rolling_out_waits_for_the_endpoint_without_raising(
    aws, sagemaker, clients, config
):
    sm = aws[0]
    live = register(sm, "Approved")
    handle(step_event(live), clients, config)
    rolling = register(sm, "Approved")
    # Its endpoint config exists and is the pending one of an update in progress.
    package = sm.describe_model_package(ModelPackageName=rolling)
    name = resource_name(ENDPOINT, package)
    from infra.deployer_lambda.deployer import _ensure_endpoint_config

    _ensure_endpoint_config(package, ENDPOINT, clients, config)
    real = sm.describe_endpoint
    sagemaker.describe_endpoint = lambda **kw: {
        **real(**kw),
        "EndpointStatus": "Updating",
        "PendingDeploymentSummary": {"EndpointConfigName": name},
    }
    sm.update_model_package(ModelPackageArn=rolling, ModelApprovalStatus="Rejected")
    sagemaker.calls.clear()

    result = handle(state_change(rolling, "Rejected"), clients, config)
    assert (result["status"], result["pending_endpoint_config_name"]) == ("busy", name)
    assert sagemaker.created() == [] and sagemaker.updates == []


def test_an_endpoint_other_than_the_managed_one_is_refused_before_anything(
    aws, sagemaker, clients, config
):
    arn = register(aws[0], "Approved")
    sagemaker.calls.clear()
    with pytest.raises(DeployError, match=rf"manages endpoint '{ENDPOINT}' only, not 'other'"):
        handle({"model_package_arn": arn, "endpoint_name": "other"}, clients, config)
    assert sagemaker.calls == []


def test_endpoint_in_service_event_finishes_autoscaling_of_a_slow_creation(
    aws, sagemaker, clients, config
):
    sm, autoscaling = aws
    arn = register(sm, "Approved")
    backend = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION]
    real_create = sm.create_endpoint

    def create_slowly(**kw):
        answer = real_create(**kw)
        backend.endpoints[kw["EndpointName"]].endpoint_status = "Creating"
        return answer

    sagemaker.create_endpoint = create_slowly
    first = handle(step_event(arn), clients, config)  # wait_seconds=0: returns while Creating
    assert first["status"] == "created"
    assert (
        autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    )
    backend.endpoints[ENDPOINT].endpoint_status = "InService"

    event = {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Endpoint State Change",
        "detail": {"EndpointName": ENDPOINT, "EndpointStatus": "IN_SERVICE"},
    }
    result = handle(event, clients, config)

    assert result["status"] == "unchanged"
    (target,) = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")[
        "ScalableTargets"
    ]
    assert target["ResourceId"] == f"endpoint/{ENDPOINT}/variant/AllTraffic"
    other = {**event, "detail": {"EndpointName": "someone-else", "EndpointStatus": "IN_SERVICE"}}
    assert handle(other, clients, config)["status"] == "skipped"


def test_a_second_caller_finds_the_same_version_being_created_and_leaves_it(
    aws, sagemaker, clients, config
):
    """Approved at registration: the Deploy step and the approval rule both deploy it. The one
    that comes second while the endpoint is still Creating must not fail the pipeline."""
    arn = register(aws[0], "Approved")
    handle(step_event(arn), clients, config)
    backend = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION]
    backend.endpoints[ENDPOINT].endpoint_status = "Creating"
    sagemaker.calls.clear()

    result = handle(state_change(arn, "Approved"), clients, config)

    assert result["status"] == "busy"
    assert sagemaker.created() == [] and sagemaker.updates == []


def test_an_update_refused_because_a_concurrent_call_started_it_is_in_progress(
    aws, sagemaker, clients, config
):
    from botocore.exceptions import ClientError

    handle(step_event(register(aws[0], "Approved")), clients, config)
    second = register(aws[0], "Approved")
    backend = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION]

    def raced(**kwargs):
        # The other caller's update landed between our describe and our update.
        endpoint = backend.endpoints[kwargs["EndpointName"]]
        endpoint.endpoint_config_name = kwargs["EndpointConfigName"]
        endpoint.endpoint_status = "Updating"
        raise ClientError(
            {
                "Error": {
                    "Code": "ValidationException",
                    "Message": "Cannot update in-progress endpoint",
                }
            },
            "UpdateEndpoint",
        )

    sagemaker.update_endpoint = raced
    assert handle(state_change(second, "Approved"), clients, config)["status"] == "busy"

    def refused(**kwargs):
        raise ClientError(
            {"Error": {"Code": "ValidationException", "Message": "Instance type not supported"}},
            "UpdateEndpoint",
        )

    backend.endpoints[ENDPOINT].endpoint_status = "InService"
    sagemaker.update_endpoint = refused
    with pytest.raises(ClientError, match="Instance type not supported"):
        handle(state_change(register(aws[0], "Approved"), "Approved"), clients, config)
