"""Deploy an approved model package to the endpoint; roll back when the live one is rejected.

Runs as a Lambda (`handler`, boto3 clients) and anywhere else through `handle(event, clients,
config)`, where `clients.sagemaker` may be the local runner's stand-in. The SageMaker methods
called here are exactly those ARCHITECTURE.md "Deployer" lists; keep the two in step.

Everything is derived from the package: the model and endpoint config are named after the
endpoint and the package version (plus a short hash of the package ARN), so deploying the
live version again finds them in place and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

LOG = logging.getLogger("bincount.deployer")

PACKAGE_TAG = "bincount:model-package-arn"
VARIANT = "AllTraffic"
STATE_CHANGE = "SageMaker Model Package State Change"
ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"
BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting", "UpdateRollbackFailed"}
# States no update can leave: the endpoint has to be deleted by hand.
BROKEN = {"Failed", "OutOfService"}
_NAME_OK = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# Instance types with local NVMe storage refuse a KMS key for the endpoint's storage volume.
_NVME_FAMILIES = {"g5", "g6", "g6e", "gr6", "p5", "p5e", "p5en", "inf2", "trn1", "trn1n"}


class DeployError(RuntimeError):
    """The deployment could not be done; the message says why."""


@dataclass(frozen=True)
class Clients:
    sagemaker: Any
    autoscaling: Any
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Config:
    """What an endpoint looks like; `from_env` reads it from the Lambda's environment."""

    endpoint_name: str
    model_role_arn: str
    data_capture_uri: str
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    kms_key_arn: str = ""
    alarm_names: tuple[str, ...] = ()
    min_capacity: int = 1
    max_capacity: int = 2
    target_invocations: float = 100.0
    capture_percent: int = 100
    canary_percent: int = 50
    bake_seconds: int = 300
    subnets: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    network_isolation: bool = False
    # How long one call waits for the endpoint to come into service (0: do not wait).
    wait_seconds: int = 0
    poll_seconds: int = 20

    def __post_init__(self) -> None:
        if not _NAME_OK.match(self.endpoint_name or ""):
            raise ValueError(f"invalid endpoint name {self.endpoint_name!r}")
        if not self.model_role_arn.startswith("arn:"):
            raise ValueError(f"model_role_arn must be an IAM role ARN: {self.model_role_arn!r}")
        if not self.data_capture_uri.startswith("s3://"):
            raise ValueError(f"data_capture_uri must be an s3:// URI: {self.data_capture_uri!r}")
        if not 1 <= self.min_capacity <= self.max_capacity:
            raise ValueError(
                f"need 1 <= min_capacity <= max_capacity, got {self.min_capacity}, "
                f"{self.max_capacity}"
            )
        if self.instance_count < 1:
            raise ValueError(f"instance_count must be at least 1, got {self.instance_count}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        def need(name: str) -> str:
            value = env.get(name, "")
            if not value:
                raise ValueError(f"environment variable {name} is required")
            return value

        def listed(name: str) -> tuple[str, ...]:
            return tuple(v for v in env.get(name, "").split(",") if v)

        def number(name: str, default: int, kind: type = int):
            raw = env.get(name, "")
            try:
                return kind(raw) if raw else default
            except ValueError:
                raise ValueError(f"environment variable {name} must be a number: {raw!r}") from None

        return cls(
            endpoint_name=need("ENDPOINT_NAME"),
            model_role_arn=need("MODEL_ROLE_ARN"),
            data_capture_uri=need("DATA_CAPTURE_URI"),
            instance_type=env.get("INSTANCE_TYPE") or "ml.m5.large",
            instance_count=number("INSTANCE_COUNT", 1),
            kms_key_arn=env.get("KMS_KEY_ARN", ""),
            alarm_names=listed("ALARM_NAMES"),
            min_capacity=number("MIN_CAPACITY", 1),
            max_capacity=number("MAX_CAPACITY", 2),
            target_invocations=number("TARGET_INVOCATIONS", 100.0, float),
            capture_percent=number("CAPTURE_PERCENT", 100),
            canary_percent=number("CANARY_PERCENT", 50),
            bake_seconds=number("BAKE_SECONDS", 300),
            subnets=listed("SUBNETS"),
            security_group_ids=listed("SECURITY_GROUP_IDS"),
            network_isolation=env.get("NETWORK_ISOLATION", "false").lower() == "true",
            wait_seconds=number("WAIT_SECONDS", 0),
            poll_seconds=number("POLL_SECONDS", 20),
        )


def handler(event: dict, context: object) -> dict:
    """Lambda entry point."""
    import boto3

    logging.getLogger().setLevel(logging.INFO)
    clients = Clients(
        sagemaker=boto3.client("sagemaker"), autoscaling=boto3.client("application-autoscaling")
    )
    return handle(event, clients, Config.from_env(os.environ))


def handle(event: dict, clients: Clients, config: Config) -> dict:
    """Route one event: a pipeline Deploy step, an EventBridge package state change, or the
    endpoint coming into service (which finishes autoscaling a slow creation)."""
    if event.get("detail-type") == ENDPOINT_STATE_CHANGE:
        detail = event.get("detail") or {}
        return _log(finish(detail.get("EndpointName", ""), clients, config))
    if event.get("detail-type") == STATE_CHANGE:
        detail = event.get("detail") or {}
        arn = detail.get("ModelPackageArn") or next(iter(event.get("resources") or []), "")
        status = detail.get("ModelApprovalStatus", "")
        if not arn:
            raise ValueError(f"state change event names no model package: {json.dumps(event)}")
        if status == "Rejected":
            return _log(rollback(arn, config.endpoint_name, clients, config))
        return _log(deploy(arn, config.endpoint_name, clients, config))
    if "model_package_arn" in event:
        endpoint = event.get("endpoint_name") or config.endpoint_name
        if endpoint != config.endpoint_name:
            # Its permissions, alarms and autoscaling cover that one endpoint: refuse before
            # anything is created rather than fail half-way with AccessDenied.
            raise DeployError(
                f"this deployer manages endpoint {config.endpoint_name!r} only, not {endpoint!r}; "
                f"set the pipeline's EndpointName parameter to {config.endpoint_name!r}"
            )
        return _log(deploy(event["model_package_arn"], endpoint, clients, config))
    raise ValueError(
        "unsupported event: expected {'model_package_arn', 'endpoint_name'} or an EventBridge "
        f"'{STATE_CHANGE}', got keys {sorted(event)}"
    )


def deploy(
    package_arn: str, endpoint: str, clients: Clients, config: Config, *, rollback: bool = False
) -> dict:
    """Put an Approved package behind the endpoint; anything else is a logged no-op.

    `rollback`: shift all at once and without the alarm rollback (the alarms that made the
    version go are likely still in ALARM and would undo the rollback itself)."""
    sm = clients.sagemaker
    package = sm.describe_model_package(ModelPackageName=package_arn)
    package_arn = package["ModelPackageArn"]
    result = {"endpoint_name": endpoint, "model_package_arn": package_arn}
    approval = package.get("ModelApprovalStatus", "")
    if approval != "Approved":
        return {
            **result,
            "status": "skipped",
            "reason": f"model package is {approval}, not Approved",
        }

    config_name = _ensure_endpoint_config(package, endpoint, clients, config)
    live = _describe_endpoint(sm, endpoint)
    if live is not None and live["EndpointStatus"] in BROKEN:
        raise DeployError(
            f"endpoint {endpoint} is {live['EndpointStatus']}"
            f" ({live.get('FailureReason') or 'no failure reason given'}); no update can recover "
            f"it: delete it (aws sagemaker delete-endpoint --endpoint-name {endpoint}) and "
            f"deploy {package_arn} again"
        )
    if live is None:
        created = _create_once(
            sm.create_endpoint,
            EndpointName=endpoint,
            EndpointConfigName=config_name,
            Tags=[{"Key": PACKAGE_TAG, "Value": package_arn}],
        )
        if not created:
            # A concurrent call (the Deploy step and the approval rule) created it first.
            live = _describe_endpoint(sm, endpoint) or {}
            if config_name not in {live.get("EndpointConfigName"), _pending_config(live)}:
                raise DeployError(
                    f"endpoint {endpoint} was just created with {live.get('EndpointConfigName')} "
                    f"by a concurrent deployment; deploy {package_arn} again once it is InService"
                )
        action = "created"
    elif live["EndpointConfigName"] == config_name and live["EndpointStatus"] not in BUSY:
        _autoscale(endpoint, clients, config)
        return {**result, "status": "unchanged", "endpoint_config_name": config_name}
    elif _deploying(live, config_name):
        # The other of the two callers (the Deploy step, the approval rule) is on it already.
        return {**result, "status": "in_progress", "endpoint_config_name": config_name}
    elif live["EndpointStatus"] in BUSY:
        raise DeployError(
            f"endpoint {endpoint} is {live['EndpointStatus']}; deploy {package_arn} again "
            "once it is InService"
        )
    else:
        try:
            sm.update_endpoint(
                EndpointName=endpoint,
                EndpointConfigName=config_name,
                DeploymentConfig=_deployment_config(config, rollback=rollback),
            )
        except ClientError as error:
            # Refused because a concurrent call started this very update a moment ago?
            if not _deploying(_describe_endpoint(sm, endpoint) or {}, config_name):
                raise
            LOG.info(json.dumps({"event": "update_in_progress", "error": str(error)}))
            return {**result, "status": "in_progress", "endpoint_config_name": config_name}
        action = "updating"
    status = _wait(endpoint, config_name, clients, config)
    if status == "InService":
        _autoscale(endpoint, clients, config)
        action = "deployed"
    return {**result, "status": action, "endpoint_config_name": config_name}


def rollback(rejected_arn: str, endpoint: str, clients: Clients, config: Config) -> dict:
    """If the rejected package serves the endpoint, put the newest other Approved one back."""
    sm = clients.sagemaker
    result = {"endpoint_name": endpoint, "model_package_arn": rejected_arn}
    if pending_package_arn(endpoint, clients) == rejected_arn:
        # Still rolling out: roll back once it settles (the event is retried on this error).
        raise DeployError(
            f"rejected package {rejected_arn} is still being deployed to {endpoint}; "
            "roll back once the update settles"
        )
    live_arn = live_package_arn(endpoint, clients)
    if live_arn != rejected_arn:
        reason = f"rejected package is not live (live: {live_arn or 'no endpoint'})"
        return {**result, "status": "skipped", "reason": reason}
    group = sm.describe_model_package(ModelPackageName=rejected_arn)["ModelPackageGroupName"]
    listing = sm.list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
    )
    for summary in listing.get("ModelPackageSummaryList", []):
        if summary["ModelPackageArn"] != rejected_arn:
            outcome = deploy(summary["ModelPackageArn"], endpoint, clients, config, rollback=True)
            return {**outcome, "status": "rolled_back", "rejected_model_package_arn": rejected_arn}
    LOG.error(json.dumps({"event": "no_fallback", "endpoint": endpoint, "rejected": rejected_arn}))
    return {**result, "status": "no_fallback", "reason": f"no other Approved package in {group}"}


def live_package_arn(endpoint: str, clients: Clients) -> str:
    """The package ARN tagged on the endpoint config the endpoint runs; '' without endpoint."""
    live = _describe_endpoint(clients.sagemaker, endpoint)
    if live is None:
        return ""
    return _package_of(live["EndpointConfigName"], clients)


def pending_package_arn(endpoint: str, clients: Clients) -> str:
    """The package ARN of the config an update is rolling out; '' when none is."""
    live = _describe_endpoint(clients.sagemaker, endpoint)
    pending = _pending_config(live or {})
    return _package_of(pending, clients) if pending else ""


def finish(endpoint: str, clients: Clients, config: Config) -> dict:
    """The endpoint came into service: set up autoscaling that a slow creation left undone."""
    result = {"endpoint_name": endpoint}
    if endpoint != config.endpoint_name:
        return {**result, "status": "skipped", "reason": "not this deployer's endpoint"}
    live = _describe_endpoint(clients.sagemaker, endpoint)
    if live is None or live["EndpointStatus"] != "InService":
        status = live["EndpointStatus"] if live else "missing"
        return {**result, "status": "skipped", "reason": f"endpoint is {status}"}
    _autoscale(endpoint, clients, config)
    return {**result, "status": "autoscaled", "endpoint_config_name": live["EndpointConfigName"]}


def _package_of(endpoint_config_name: str, clients: Clients) -> str:
    sm = clients.sagemaker
    endpoint_config = sm.describe_endpoint_config(EndpointConfigName=endpoint_config_name)
    tags = sm.list_tags(ResourceArn=endpoint_config["EndpointConfigArn"]).get("Tags", [])
    return next((t["Value"] for t in tags if t["Key"] == PACKAGE_TAG), "")


def resource_name(endpoint: str, package: Mapping[str, Any]) -> str:
    """`<endpoint>-v<version>-<hash of ARN>`, within SageMaker's 63 characters."""
    digest = hashlib.sha256(package["ModelPackageArn"].encode()).hexdigest()[:8]
    suffix = f"-v{package.get('ModelPackageVersion', 0)}-{digest}"
    return f"{endpoint[: 63 - len(suffix)].rstrip('-')}{suffix}"


def storage_accepts_kms(instance_type: str) -> bool:
    """False for instance types whose storage is local NVMe (SageMaker rejects a KMS key)."""
    family = instance_type.split(".")[1] if instance_type.count(".") == 2 else instance_type
    return not (family in _NVME_FAMILIES or family.endswith(("d", "dn", "de")))


def _ensure_endpoint_config(
    package: Mapping[str, Any], endpoint: str, clients: Clients, config: Config
) -> str:
    sm = clients.sagemaker
    name = resource_name(endpoint, package)
    tags = [{"Key": PACKAGE_TAG, "Value": package["ModelPackageArn"]}]
    if not _exists(sm.describe_model, ModelName=name):
        _create_once(sm.create_model, **_model_request(name, package, config), Tags=tags)
    if not _exists(sm.describe_endpoint_config, EndpointConfigName=name):
        request: dict[str, Any] = {
            "EndpointConfigName": name,
            "ProductionVariants": [
                {
                    "VariantName": VARIANT,
                    "ModelName": name,
                    "InstanceType": config.instance_type,
                    "InitialInstanceCount": config.instance_count,
                }
            ],
            "DataCaptureConfig": {
                "EnableCapture": True,
                "InitialSamplingPercentage": config.capture_percent,
                "DestinationS3Uri": config.data_capture_uri,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            },
            "Tags": tags,
        }
        if config.kms_key_arn:
            request["DataCaptureConfig"]["KmsKeyId"] = config.kms_key_arn
            if storage_accepts_kms(config.instance_type):
                request["KmsKeyId"] = config.kms_key_arn
        _create_once(sm.create_endpoint_config, **request)
    return name


def _model_request(name: str, package: Mapping[str, Any], config: Config) -> dict:
    containers = package.get("InferenceSpecification", {}).get("Containers") or []
    if not containers:
        raise DeployError(f"model package {package['ModelPackageArn']} has no inference container")
    defs = []
    for container in containers:
        definition = {"Image": container["Image"]}
        if container.get("ModelDataUrl"):
            definition["ModelDataUrl"] = container["ModelDataUrl"]
        environment = dict(container.get("Environment") or {})
        environment["BINCOUNT_MODEL_VERSION"] = package["ModelPackageArn"]
        definition["Environment"] = environment
        defs.append(definition)
    request: dict[str, Any] = {"ModelName": name, "ExecutionRoleArn": config.model_role_arn}
    if len(defs) == 1:
        request["PrimaryContainer"] = defs[0]
    else:
        request["Containers"] = defs
    if config.subnets:
        request["VpcConfig"] = {
            "Subnets": list(config.subnets),
            "SecurityGroupIds": list(config.security_group_ids),
        }
    if config.network_isolation:
        request["EnableNetworkIsolation"] = True
    return request


def _deployment_config(config: Config, *, rollback: bool = False) -> dict:
    # A canary needs a fleet to split; one instance shifts all at once, and so does a rollback.
    if config.instance_count >= 2 and not rollback:
        routing = {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": config.canary_percent},
            "WaitIntervalInSeconds": config.bake_seconds,
        }
    else:
        routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    deployment: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": config.bake_seconds,
        }
    }
    if config.alarm_names and not rollback:
        deployment["AutoRollbackConfiguration"] = {
            "Alarms": [{"AlarmName": name} for name in config.alarm_names]
        }
    return deployment


def _autoscale(endpoint: str, clients: Clients, config: Config) -> None:
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{endpoint}/variant/{VARIANT}",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    clients.autoscaling.register_scalable_target(
        **target, MinCapacity=config.min_capacity, MaxCapacity=config.max_capacity
    )
    clients.autoscaling.put_scaling_policy(
        **target,
        PolicyName=f"{endpoint}-invocations-per-instance",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": config.target_invocations,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
        },
    )


def _wait(endpoint: str, config_name: str, clients: Clients, config: Config) -> str:
    """Poll until the endpoint settles or the wait budget is spent; returns its status."""
    deadline = time.monotonic() + config.wait_seconds
    while True:
        live = _describe_endpoint(clients.sagemaker, endpoint) or {}
        status = live.get("EndpointStatus", "")
        if status == "Failed":
            raise DeployError(f"endpoint {endpoint} failed: {live.get('FailureReason', '')}")
        if status not in BUSY:
            if live.get("EndpointConfigName") != config_name:
                raise DeployError(
                    f"endpoint {endpoint} rolled back to {live.get('EndpointConfigName')} "
                    f"instead of {config_name} (an alarm fired or the update failed)"
                )
            return status
        if time.monotonic() >= deadline:
            return status
        clients.sleep(config.poll_seconds)


def _describe_endpoint(sm: Any, endpoint: str) -> dict | None:
    try:
        return sm.describe_endpoint(EndpointName=endpoint)
    except ClientError as error:
        if _missing(error):
            return None
        raise


def _create_once(create: Callable[..., Any], **request: Any) -> bool:
    """Create; False when it already exists (a concurrent call for the same package won)."""
    try:
        create(**request)
    except ClientError as error:
        err = error.response.get("Error", {})
        if err.get("Code") == "ValidationException" and "already existing" in err.get(
            "Message", ""
        ):
            LOG.info(json.dumps({"event": "already_exists", "message": err.get("Message", "")}))
            return False
        raise
    return True


def _exists(describe: Callable[..., Any], **name: str) -> bool:
    try:
        describe(**name)
    except ClientError as error:
        if _missing(error):
            return False
        raise
    return True


def _missing(error: ClientError) -> bool:
    err = error.response.get("Error", {})
    return err.get("Code") in {"ValidationException", "ResourceNotFound"} and (
        "Could not find" in err.get("Message", "") or err.get("Code") == "ResourceNotFound"
    )


def _deploying(live: Mapping[str, Any], config_name: str) -> bool:
    """Whether `config_name` is what the endpoint is being created or updated to right now."""
    if _pending_config(live) == config_name:
        return True
    return live.get("EndpointConfigName") == config_name and live.get("EndpointStatus") in BUSY


def _pending_config(live: Mapping[str, Any]) -> str:
    return (live.get("PendingDeploymentSummary") or {}).get("EndpointConfigName", "")


def _log(result: dict) -> dict:
    LOG.info(json.dumps({"event": "deployer_result", **result}, sort_keys=True))
    return result
