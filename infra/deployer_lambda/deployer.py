"""Keep the endpoint on the newest Approved model package: a reconciler.

Runs as a Lambda (`handler`, boto3 clients) and anywhere else through `handle(event, clients,
config)`, where `clients.sagemaker` may be the local runner's stand-in. The SageMaker methods
called here are exactly those ARCHITECTURE.md "Deployer" lists; keep the two in step.

Every event (the pipeline's Deploy step, a package's approval or rejection, an endpoint state
change, the periodic schedule) runs the same reconcile: re-read the registry and the endpoint,
derive the desired version (the newest Approved one of the group that has not failed its
rollout on this endpoint) and move the endpoint one step toward it. A busy endpoint is not an
error: its next state-change event, or the schedule, reconciles again. So nothing that only
has to wait is ever raised (Lambda's two async retries would drop it into the DLQ).

The model and endpoint config are named after the endpoint and the package version (plus a
short hash of the package ARN), so deploying the live version again finds them in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

# Lambda loads this file top-level (handler "deployer.handler"), beside its sibling modules;
# everyone else imports it as infra.deployer_lambda.deployer.
if __package__:
    from . import monitoring, notify, smoke
else:
    import monitoring
    import notify
    import smoke

LOG = logging.getLogger("bincount.deployer")

# On the models and endpoint configs the deployer creates: the package they were made from.
PACKAGE_TAG = "bincount:model-package-arn"
# On the endpoint: "<config it replaced>/<config it was updated to>", written after each
# UpdateEndpoint the deployer started. An endpoint that settles back on the first one was
# rolled back (by the alarms, or because the update failed).
ROLLOUT_TAG = "bincount:rollout"
# A CustomerMetadataProperties key on a package version whose rollout to <endpoint> failed.
# Versioned model packages cannot be tagged (they carry their group's tags), hence metadata.
ROLLOUT_FAILED_PREFIX = "bincount:rollout-failed:"
# CustomerMetadataProperties keys on a package version: its smoke test on <stage>
# (`passed` or `failed: <reason>`) and the median latency it measured, in ms.
SMOKE_TEST_PREFIX = "bincount:smoke-test:"
SMOKE_P50_PREFIX = "bincount:smoke-p50-ms:"
# On the endpoint, with notifications on: the last state announced (`live:<config>`,
# `unapproved:<config>`), so that each transition is published once, not on every event.
ANNOUNCED_TAG = "bincount:announced"
# Tags the deployer writes itself (package, rollout, announced) besides Config.tags; a
# SageMaker resource takes 50.
MAX_EXTRA_TAGS = 45
VARIANT = "AllTraffic"
PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
STATE_CHANGE = PACKAGE_STATE_CHANGE  # the name other modules use
ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"
SCHEDULED_EVENT = "Scheduled Event"
# Statuses that pass on their own: the endpoint's next state-change event reconciles again.
BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}
# Statuses no update of ours can leave: a person has to act (see _broken_message).
BROKEN = {"Failed", "OutOfService", "UpdateRollbackFailed"}
# The Deploy step is a synchronous pipeline Lambda step, cut at 10 minutes.
MAX_WAIT_SECONDS = 300
_NAME_OK = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_GROUP_OK = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_CREATED_NAME = re.compile(r"(?P<prefix>.+)-v(?P<version>\d+)-[0-9a-f]{8}")
_STAGE_OK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,39}$")
# botocore's TagKey / TagValue patterns (sagemaker): letters, spaces, digits, _.:/=+-@
_TAG_OK = re.compile(r"^[\w .:/=+\-@]*$")
# ProductionVariantServerlessConfig.MemorySizeInMB: 1024..6144 in steps of 1024.
SERVERLESS_MEMORY_SIZES = range(1024, 6145, 1024)


class DeployError(RuntimeError):
    """The deployment could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class Clients:
    sagemaker: Any
    autoscaling: Any
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    # sagemaker-runtime, for the smoke test; without it the smoke test is skipped (logged).
    runtime: Any = None
    # SNS, for notifications; without it nothing is published (logged).
    sns: Any = None


@dataclass(frozen=True)
class Config:
    """What an endpoint looks like; `from_env` reads it from the Lambda's environment."""

    endpoint_name: str
    model_role_arn: str
    data_capture_uri: str
    # The model package group whose newest Approved version the endpoint serves.
    model_package_group: str
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    # Data capture's key; the storage volume's key is separate: the stack leaves it empty for
    # instance types with NVMe instance storage, which refuse one (pipeline/instance_types.py).
    kms_key_arn: str = ""
    volume_kms_key_arn: str = ""
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
    # How long a Deploy step waits for the endpoint to settle (events finish the rest).
    wait_seconds: int = 60
    poll_seconds: int = 20
    # How long a stack deletion waits for the endpoint to be gone.
    teardown_seconds: int = 600
    # The stage this endpoint serves, and the one its versions are promoted to next.
    stage: str = "live"
    next_stage: str = ""
    # 0: instance-based; else a serverless endpoint with this much memory.
    serverless_memory_mb: int = 0
    serverless_max_concurrency: int = 5
    # Added to every model, endpoint config and endpoint created (cost allocation).
    tags: Mapping[str, str] = field(default_factory=dict)
    # SNS topic for notifications; "" = none.
    topic_arn: str = ""
    smoke_test: bool = False
    smoke_p50_ms: int = 2000
    # The Model Monitor schedule kept on the live version's baseline (monitoring.py); None:
    # the stage is not monitored (serverless, or the local runner).
    monitoring: monitoring.Settings | None = None

    @property
    def serverless(self) -> bool:
        return self.serverless_memory_mb > 0

    def __post_init__(self) -> None:
        if not _NAME_OK.match(self.endpoint_name or ""):
            raise ValueError(f"invalid endpoint name {self.endpoint_name!r}")
        if not _GROUP_OK.match(self.model_package_group or ""):
            raise ValueError(f"invalid model package group name {self.model_package_group!r}")
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
        if not 0 <= self.wait_seconds <= MAX_WAIT_SECONDS:
            raise ValueError(
                f"wait_seconds must be 0..{MAX_WAIT_SECONDS} (the Deploy step is cut at 10 "
                f"minutes; endpoint events finish the rollout), got {self.wait_seconds}"
            )
        if self.poll_seconds <= 0 or self.teardown_seconds <= 0:
            raise ValueError(
                f"poll_seconds and teardown_seconds must be positive, got {self.poll_seconds}, "
                f"{self.teardown_seconds}"
            )
        for what, stage in (("stage", self.stage), ("next_stage", self.next_stage or "x")):
            if not _STAGE_OK.match(stage):
                raise ValueError(f"invalid {what} {stage!r}: letters, digits, - and _, at most 40")
        if self.next_stage == self.stage:
            raise ValueError(f"next_stage must differ from stage {self.stage!r}")
        if self.serverless_memory_mb and self.serverless_memory_mb not in SERVERLESS_MEMORY_SIZES:
            raise ValueError(
                "serverless_memory_mb must be 0 (instance-based) or 1024..6144 in steps of 1024, "
                f"got {self.serverless_memory_mb}"
            )
        if not 1 <= self.serverless_max_concurrency <= 200:
            raise ValueError(
                f"serverless_max_concurrency must be 1..200, got {self.serverless_max_concurrency}"
            )
        if self.serverless and (self.subnets or self.security_group_ids or self.network_isolation):
            # "Serverless Inference ... does not support: ... VPC configuration, network
            # isolation" (SageMaker Developer Guide, serverless-endpoints.html, feature
            # exclusions): refused here rather than serve outside the VPC asked for.
            raise ValueError(
                "a serverless endpoint cannot run in a VPC or with network isolation; use an "
                "instance-based endpoint (serverless_memory_mb=0) in VPC mode"
            )
        _check_tags(self.tags)
        if self.topic_arn and not self.topic_arn.startswith("arn:"):
            raise ValueError(f"topic_arn must be an SNS topic ARN: {self.topic_arn!r}")
        if self.smoke_p50_ms <= 0:
            raise ValueError(f"smoke_p50_ms must be positive, got {self.smoke_p50_ms}")

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
            model_package_group=need("MODEL_PACKAGE_GROUP"),
            instance_type=env.get("INSTANCE_TYPE") or "ml.m5.large",
            instance_count=number("INSTANCE_COUNT", 1),
            kms_key_arn=env.get("KMS_KEY_ARN", ""),
            volume_kms_key_arn=env.get("VOLUME_KMS_KEY_ARN", ""),
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
            wait_seconds=number("WAIT_SECONDS", 60),
            poll_seconds=number("POLL_SECONDS", 20),
            teardown_seconds=number("TEARDOWN_SECONDS", 600),
            stage=env.get("STAGE") or "live",
            next_stage=env.get("NEXT_STAGE", ""),
            serverless_memory_mb=number("SERVERLESS_MEMORY_MB", 0),
            serverless_max_concurrency=number("SERVERLESS_MAX_CONCURRENCY", 5),
            tags=_tags_from_json(env.get("TAGS", "")),
            topic_arn=env.get("TOPIC_ARN", ""),
            smoke_test=env.get("SMOKE_TEST", "false").lower() == "true",
            smoke_p50_ms=number("SMOKE_P50_MS", 2000),
            monitoring=monitoring.Settings.from_env(env),
        )


def _tags_from_json(raw: str) -> dict[str, str]:
    try:
        tags = json.loads(raw) if raw else {}
    except ValueError:
        raise ValueError(f"environment variable TAGS must be a JSON object: {raw!r}") from None
    if not isinstance(tags, dict):
        raise ValueError(f"environment variable TAGS must be a JSON object: {raw!r}")
    return tags


def _check_tags(tags: Mapping[str, str]) -> None:
    if len(tags) > MAX_EXTRA_TAGS:
        raise ValueError(f"at most {MAX_EXTRA_TAGS} tags, got {len(tags)}")
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"tag {key!r}: keys and values must be strings, got {value!r}")
        if not (1 <= len(key) <= 128 and len(value) <= 256):
            raise ValueError(f"tag {key!r}: key 1..128 characters, value at most 256")
        if not (_TAG_OK.match(key) and _TAG_OK.match(value)):
            raise ValueError(f"tag {key!r}={value!r}: only letters, digits, spaces and _.:/=+-@")
        if key.lower().startswith(("aws:", "bincount:")):
            raise ValueError(f"tag {key!r}: aws: is reserved by AWS, bincount: by the deployer")


def handler(event: dict, context: object) -> dict:
    """Lambda entry point."""
    import boto3

    logging.getLogger().setLevel(logging.INFO)
    config = Config.from_env(os.environ)
    clients = Clients(
        sagemaker=boto3.client("sagemaker"),
        autoscaling=boto3.client("application-autoscaling"),
        runtime=boto3.client("sagemaker-runtime") if config.smoke_test else None,
        sns=boto3.client("sns") if config.topic_arn else None,
    )
    return handle(event, clients, config)


# -- events -------------------------------------------------------------------------------------


def handle(event: Mapping[str, Any], clients: Clients, config: Config) -> dict:
    """Route one event: the pipeline's Deploy step, an EventBridge package or endpoint state
    change, the periodic schedule, or CloudFormation's custom resource (stack deletion)."""
    if not isinstance(event, Mapping):
        raise ValueError(f"unsupported event: expected a JSON object, got {type(event).__name__}")
    if "RequestType" in event:
        return on_custom_resource(event, clients, config)
    if "detail-type" in event:
        kind = event["detail-type"]
        detail = event.get("detail", {})
        if not isinstance(detail, Mapping):
            raise ValueError(
                f"unsupported {kind!r} event: 'detail' must be an object, got "
                f"{type(detail).__name__}"
            )
        if kind == PACKAGE_STATE_CHANGE:
            return _log(on_package_change(event, detail, clients, config))
        if kind == ENDPOINT_STATE_CHANGE:
            return _log(on_endpoint_change(detail, clients, config))
        if kind == SCHEDULED_EVENT and event.get("source") == "aws.events":
            return _log(reconcile(clients, config))
        raise ValueError(
            f"unsupported EventBridge event {kind!r} from {event.get('source')!r}: expected "
            f"{PACKAGE_STATE_CHANGE!r}, {ENDPOINT_STATE_CHANGE!r} or an aws.events "
            f"{SCHEDULED_EVENT!r}"
        )
    if "model_package_arn" in event:
        return _log(on_deploy_step(event, clients, config))
    raise ValueError(
        "unsupported event: expected {'model_package_arn'}, an EventBridge "
        f"{PACKAGE_STATE_CHANGE!r}, {ENDPOINT_STATE_CHANGE!r} or {SCHEDULED_EVENT!r}, or a "
        f"CloudFormation custom resource request; got keys {sorted(map(str, event))}"
    )


def on_deploy_step(event: Mapping[str, Any], clients: Clients, config: Config) -> dict:
    """The pipeline's Deploy step: its package, if Approved, is what the registry now wants
    (or an even newer one is); start moving the endpoint and return within `wait_seconds`."""
    arn = _text(event, "model_package_arn", "Deploy step event")
    # The Deploy step names no endpoint: this stage's is the one. An event that names one
    # (a definition from before the EndpointName parameter went) must name this one.
    endpoint = event.get("endpoint_name") or config.endpoint_name
    if endpoint != config.endpoint_name:
        # Its permissions, alarms and autoscaling cover that one endpoint: refuse before
        # anything is called rather than fail half-way with AccessDenied.
        raise DeployError(
            f"this deployer manages endpoint {config.endpoint_name!r} only, not {endpoint!r}"
        )
    package = clients.sagemaker.describe_model_package(ModelPackageName=arn)
    _check_group(package, config)
    if package.get("ModelApprovalStatus") != "Approved":
        _clear_marks(package, clients, config)
        return {
            "endpoint_name": endpoint,
            "model_package_arn": package["ModelPackageArn"],
            "status": "skipped",
            "reason": f"model package is {package.get('ModelApprovalStatus')}, not Approved",
        }
    outcome = reconcile(clients, config, wait_seconds=config.wait_seconds)
    return {**outcome, "requested_model_package_arn": package["ModelPackageArn"]}


def on_package_change(
    event: Mapping[str, Any], detail: Mapping[str, Any], clients: Clients, config: Config
) -> dict:
    """Any change of a version of the group (approval, rejection, an edit): reconcile. The
    status is re-read from the registry, never taken from the event (events repeat and come
    late: a stale Rejected must not undo a later re-approval)."""
    resources = event.get("resources") or []
    if not isinstance(resources, list):
        raise ValueError(f"unsupported {PACKAGE_STATE_CHANGE!r} event: 'resources' is not a list")
    arn = detail.get("ModelPackageArn") or next(iter(resources), "")
    if not isinstance(arn, str) or not arn:
        raise ValueError(
            f"{PACKAGE_STATE_CHANGE!r} event names no model package: {json.dumps(event)[:500]}"
        )
    group = detail.get("ModelPackageGroupName")
    if group is not None and group != config.model_package_group:
        raise DeployError(_other_group(arn, group, config))
    package = _describe_package(clients.sagemaker, arn)
    if package is not None:
        _check_group(package, config)
        if package.get("ModelApprovalStatus") != "Approved":
            _clear_marks(package, clients, config)
    return {**reconcile(clients, config), "event_model_package_arn": arn}


def on_endpoint_change(detail: Mapping[str, Any], clients: Clients, config: Config) -> dict:
    """The endpoint changed state (IN_SERVICE, FAILED, UPDATE_ROLLBACK_FAILED, ...): its
    status is re-read (DescribeEndpoint spells it InService, the event IN_SERVICE)."""
    name = detail.get("EndpointName")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{ENDPOINT_STATE_CHANGE!r} event names no EndpointName")
    if name != config.endpoint_name:
        return {
            "endpoint_name": name,
            "status": "skipped",
            "reason": "not this deployer's endpoint",
        }
    return reconcile(clients, config)


def on_custom_resource(event: Mapping[str, Any], clients: Clients, config: Config) -> dict:
    """CloudFormation, through the CDK Provider framework's onEvent: only Delete acts."""
    request = event.get("RequestType")
    if request not in {"Create", "Update", "Delete"}:
        raise ValueError(f"unsupported custom resource RequestType {request!r}")
    properties = event.get("ResourceProperties") or {}
    if not isinstance(properties, Mapping):
        raise ValueError("custom resource 'ResourceProperties' must be an object")
    named = properties.get("EndpointName")
    if named is not None and named != config.endpoint_name:
        raise DeployError(
            f"this deployer manages endpoint {config.endpoint_name!r} only, not {named!r}"
        )
    physical_id = f"{config.endpoint_name}-deployer"
    if request == "Delete":
        summary = teardown(clients, config)
        _log(summary)
        return {"PhysicalResourceId": event.get("PhysicalResourceId") or physical_id}
    return {"PhysicalResourceId": physical_id}


# -- reconcile ----------------------------------------------------------------------------------


def reconcile(clients: Clients, config: Config, *, wait_seconds: int = 0) -> dict:
    """Move the endpoint one step toward the desired version; returns what it did."""
    sm = clients.sagemaker
    endpoint = config.endpoint_name
    result: dict[str, Any] = {"endpoint_name": endpoint}
    live = _describe_endpoint(sm, endpoint)
    if live is not None:
        status = live["EndpointStatus"]
        if status in BUSY:
            busy = {**result, "status": "busy", "endpoint_status": status}
            busy["endpoint_config_name"] = live.get("EndpointConfigName", "")
            if _pending_config(live):
                busy["pending_endpoint_config_name"] = _pending_config(live)
            return busy
        if status in BROKEN:
            raise DeployError(_broken_message(live))
        failed = _settle_rollout(live, clients, config)
        if failed:
            result["rollout_failed_model_package_arn"] = failed

    desired = desired_package(clients, config)
    live_config = live["EndpointConfigName"] if live else ""
    if desired is None:
        live_package = _package_of(live_config, clients) if live else ""
        return {**result, **_nothing_to_deploy(live, live_package, clients, config)}
    desired_arn = desired["ModelPackageArn"]
    result["model_package_arn"] = desired_arn
    name = endpoint_config_name(endpoint, desired, config)
    result["endpoint_config_name"] = name
    if live is not None and live_config == name:
        return {**result, "status": "unchanged", **_settled(live, desired, clients, config)}
    if live is not None and config.serverless and _instance_based(live_config, clients):
        raise DeployError(
            f"endpoint {endpoint} is instance-based and SageMaker cannot update an "
            "instance-based endpoint to serverless; delete it (aws sagemaker delete-endpoint "
            f"--endpoint-name {endpoint}) and the deployer creates it serverless"
        )

    _ensure_endpoint_config(desired, endpoint, clients, config)
    if live is None:
        created = _create_once(
            sm.create_endpoint,
            EndpointName=endpoint,
            EndpointConfigName=name,
            Tags=_tags(desired_arn, config),
        )
        if not created:
            # A concurrent call created it first; its state-change events reconcile again.
            return {**result, "status": "busy", "reason": "created by a concurrent call"}
        action, done = "created", "deployed"
    else:
        live_package = _package_of(live_config, clients)
        replaced = _approval_of(live_package, clients)
        rollback = replaced != "Approved"
        update: dict[str, Any] = {"EndpointName": endpoint, "EndpointConfigName": name}
        if not config.serverless:
            update["DeploymentConfig"] = _deployment_config(config, rollback=rollback)
        try:
            sm.update_endpoint(**update)
        except ClientError as error:
            now = _describe_endpoint(sm, endpoint)
            if now is not None and now["EndpointStatus"] in BUSY:
                # A concurrent call started an update a moment ago: not ours to finish.
                LOG.info(json.dumps({"event": "update_refused_busy", "error": str(error)}))
                return {**result, "status": "busy", "endpoint_status": now["EndpointStatus"]}
            raise
        # Written once the update is under way, never before: a refused update must not
        # leave a record that would later read as a rollback.
        sm.add_tags(
            ResourceArn=live["EndpointArn"],
            Tags=[{"Key": ROLLOUT_TAG, "Value": f"{live_config}/{name}"}],
        )
        if rollback:
            result["replaced_model_package_arn"] = live_package
            result["replaced_approval_status"] = replaced
            action, done = "rolling_back", "rolled_back"
            _notify(
                "rolling_back",
                f"rolling back to version {notify.version_of(desired_arn, desired)}",
                desired_arn,
                desired,
                clients,
                config,
                detail=f"The live version {notify.version_of(live_package)} ({live_package}) is "
                f"{replaced}; the endpoint moves to the newest Approved version, all at once.",
            )
        else:
            action, done = "updating", "deployed"
    settled = _wait(endpoint, clients, config, wait_seconds)
    if settled is None:
        return {**result, "status": action}
    if settled["EndpointStatus"] in BROKEN:
        raise DeployError(_broken_message(settled))
    if settled["EndpointConfigName"] == name:
        return {**result, "status": done, **_settled(settled, desired, clients, config)}
    # Settled elsewhere: rolled back. One more pass marks it and moves on (without waiting).
    return {**reconcile(clients, config), "attempted_model_package_arn": desired_arn}


def desired_package(clients: Clients, config: Config) -> dict | None:
    """The newest Approved version of the group that has not failed its rollout here."""
    sm = clients.sagemaker
    summaries: list[dict] = []
    request: dict[str, Any] = {
        "ModelPackageGroupName": config.model_package_group,
        "ModelApprovalStatus": "Approved",
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": 100,
    }
    while True:
        page = sm.list_model_packages(**request)
        summaries += page.get("ModelPackageSummaryList", [])
        if not page.get("NextToken"):
            break
        request["NextToken"] = page["NextToken"]
    summaries.sort(key=lambda s: (s["CreationTime"], s.get("ModelPackageVersion", 0)), reverse=True)
    for summary in summaries:
        package = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        # Re-read: the listing and the version may disagree for a moment.
        if package.get("ModelApprovalStatus") != "Approved":
            continue
        if _rollout_failed_key(config) in (package.get("CustomerMetadataProperties") or {}):
            continue
        return package
    return None


def _nothing_to_deploy(
    live: Mapping[str, Any] | None, live_package: str, clients: Clients, config: Config
) -> dict:
    group = config.model_package_group
    if not live_package:
        LOG.warning(json.dumps({"event": "no_approved_version", "group": group}))
        return {
            "status": "no_approved_version",
            "reason": f"no Approved version in {group} that has not failed its rollout here",
        }
    approval = _approval_of(live_package, clients)
    if approval == "Approved":
        # Every Approved version failed its rollout here except, possibly, the live one.
        return {"status": "unchanged", "model_package_arn": live_package}
    # Rejecting the only Approved version keeps it serving (deleting the endpoint would turn
    # a review decision into an outage), loudly, every time this runs, until a person acts.
    reason = (
        f"the live version {live_package} is {approval} and {group} has no other Approved "
        f"version: the endpoint keeps serving it. Approve another version, or delete the "
        f"endpoint (aws sagemaker delete-endpoint --endpoint-name {config.endpoint_name}) "
        f"to stop serving"
    )
    LOG.error(json.dumps({"event": "serving_unapproved", "reason": reason}))
    if live is not None:
        _announce(
            live,
            f"unapproved:{live['EndpointConfigName']}",
            "serving_unapproved",
            f"still serving version {notify.version_of(live_package)}, which is {approval}",
            live_package,
            None,
            clients,
            config,
            detail=reason,
        )
    return {"status": "serving_unapproved", "model_package_arn": live_package, "reason": reason}


def _settled(
    live: Mapping[str, Any], package: Mapping[str, Any], clients: Clients, config: Config
) -> dict:
    """The endpoint is InService on the desired version: scale it, announce it (once), and
    smoke-test the version (once per stage). Returns what to add to the result."""
    if not config.serverless:
        _autoscale(clients, config)
    arn = package["ModelPackageArn"]
    _announce(
        live,
        f"live:{live['EndpointConfigName']}",
        "deployed",
        f"version {notify.version_of(arn, package)} is live",
        arn,
        package,
        clients,
        config,
    )
    outcome = _smoke_test(package, clients, config)
    monitored = _ensure_monitoring(package, clients, config)
    return {
        **({"smoke_test": outcome} if outcome else {}),
        **({"monitoring_schedule": monitored} if monitored else {}),
    }


def _ensure_monitoring(package: Mapping[str, Any], clients: Clients, config: Config) -> str:
    """The endpoint serves `package`: its monitoring schedule follows the version's baseline."""
    if config.monitoring is None or config.serverless:
        return ""
    return (
        monitoring.ensure_schedule(
            package,
            clients.sagemaker,
            config.monitoring,
            endpoint=config.endpoint_name,
            kms_key_arn=config.kms_key_arn,
            subnets=config.subnets,
            security_group_ids=config.security_group_ids,
            # Not the package tag: the schedule outlives the version it was created for.
            tags=[{"Key": key, "Value": value} for key, value in sorted(config.tags.items())],
        )
        or ""
    )


def _instance_based(endpoint_config_name: str, clients: Clients) -> bool:
    """Whether the endpoint config runs instance-based variants (False when it is gone)."""
    try:
        described = clients.sagemaker.describe_endpoint_config(
            EndpointConfigName=endpoint_config_name
        )
    except ClientError as error:
        if _missing(error):
            return False
        raise
    variants = described.get("ProductionVariants") or []
    return bool(variants) and not any("ServerlessConfig" in v for v in variants)


# -- smoke test ---------------------------------------------------------------------------------


def _smoke_test(package: Mapping[str, Any], clients: Clients, config: Config) -> str:
    """Run the smoke test on the live version unless it has a result for this stage; record
    it on the version (UpdateModelPackage) and notify. Returns the result ('' when off)."""
    if not config.smoke_test:
        return ""
    arn = package["ModelPackageArn"]
    key = f"{SMOKE_TEST_PREFIX}{config.stage}"
    recorded = (package.get("CustomerMetadataProperties") or {}).get(key)
    if recorded:
        return recorded
    if clients.runtime is None:
        LOG.warning(json.dumps({"event": "smoke_test_skipped", "reason": "no runtime client"}))
        return "skipped"
    try:
        outcome = smoke.run(
            clients.runtime,
            config.endpoint_name,
            arn,
            budget_ms=config.smoke_p50_ms,
            clock=clients.clock,
        )
    except smoke.SmokeUnavailable as error:
        # No verdict on the version: the next event or schedule tick tries again.
        LOG.warning(json.dumps({"event": "smoke_test_unavailable", "error": str(error)}))
        return "unavailable"
    properties = {key: outcome.status}
    if outcome.p50_ms is not None:
        properties[f"{SMOKE_P50_PREFIX}{config.stage}"] = str(round(outcome.p50_ms))
    clients.sagemaker.update_model_package(
        ModelPackageArn=arn, CustomerMetadataProperties=properties
    )
    record = {
        "event": "smoke_test",
        "stage": config.stage,
        "model_package_arn": arn,
        "result": outcome.status,
        "p50_ms": outcome.p50_ms,
        "invocations": outcome.invocations,
    }
    version = notify.version_of(arn, package)
    p50 = f"{outcome.p50_ms:.0f} ms" if outcome.p50_ms is not None else "not measured"
    if outcome.passed:
        LOG.info(json.dumps(record))
        if config.next_stage:
            _notify(
                "smoke_test_passed",
                f"version {version} passed its smoke test, ready to promote to {config.next_stage}",
                arn,
                package,
                clients,
                config,
                detail=f"p50 latency {p50} (budget {config.smoke_p50_ms} ms). Promoting is a "
                f"separate decision: python -m pipeline models promote {version}",
            )
    else:
        LOG.error(json.dumps(record))
        _notify(
            "smoke_test_failed",
            f"version {version} FAILED its smoke test",
            arn,
            package,
            clients,
            config,
            detail=f"{outcome.reason} (p50 latency {p50}, budget {config.smoke_p50_ms} ms). "
            "The version keeps serving here but cannot be promoted. To test it again, reject "
            "it and approve it again.",
        )
    return outcome.status


# -- notifications ------------------------------------------------------------------------------


def _notifying(clients: Clients, config: Config) -> bool:
    if config.topic_arn and clients.sns is None:
        LOG.warning(json.dumps({"event": "notifications_skipped", "reason": "no SNS client"}))
    return bool(config.topic_arn) and clients.sns is not None


def _notify(
    what: str,
    headline: str,
    package_arn: str,
    package: Mapping[str, Any] | None,
    clients: Clients,
    config: Config,
    *,
    detail: str = "",
) -> None:
    """Publish one message now; the caller is a transition that happens once."""
    if not _notifying(clients, config):
        return
    message = notify.endpoint_message(
        what,
        headline=headline,
        stage=config.stage,
        endpoint=config.endpoint_name,
        package_arn=package_arn,
        package=package,
        detail=detail,
    )
    notify.publish(clients.sns, config.topic_arn, message)


def _announce(
    live: Mapping[str, Any],
    state: str,
    what: str,
    headline: str,
    package_arn: str,
    package: Mapping[str, Any] | None,
    clients: Clients,
    config: Config,
    *,
    detail: str = "",
) -> None:
    """Publish once per `state` of the endpoint: a state seen on every event and schedule
    tick (live on a version, serving an unapproved one) is announced by the first call that
    sees it, recorded in the endpoint's ANNOUNCED_TAG. (Two calls racing over the same
    transition may both publish.)"""
    if not _notifying(clients, config):
        return
    sm = clients.sagemaker
    tags = sm.list_tags(ResourceArn=live["EndpointArn"]).get("Tags", [])
    if next((t["Value"] for t in tags if t["Key"] == ANNOUNCED_TAG), "") == state:
        return
    # Recorded first: a failed publish is logged and not retried, a failed record raises.
    sm.add_tags(ResourceArn=live["EndpointArn"], Tags=[{"Key": ANNOUNCED_TAG, "Value": state}])
    _notify(what, headline, package_arn, package, clients, config, detail=detail)


def _settle_rollout(live: Mapping[str, Any], clients: Clients, config: Config) -> str:
    """If the endpoint settled back on the config its last update replaced, that update was
    rolled back: mark its package as failed here. Returns the marked package's ARN or ''."""
    sm = clients.sagemaker
    tags = sm.list_tags(ResourceArn=live["EndpointArn"]).get("Tags", [])
    record = next((t["Value"] for t in tags if t["Key"] == ROLLOUT_TAG), "")
    replaced, _, target = record.partition("/")
    if not target or target == replaced or live["EndpointConfigName"] != replaced:
        return ""
    package_arn = _package_of(target, clients)
    package = _describe_package(sm, package_arn) if package_arn else None
    if package is not None and package.get("ModelPackageGroupName") == config.model_package_group:
        key = _rollout_failed_key(config)
        if key not in (package.get("CustomerMetadataProperties") or {}):
            sm.update_model_package(
                ModelPackageArn=package_arn,
                CustomerMetadataProperties={key: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
            )
    _notify(
        "rollout_failed",
        f"version {notify.version_of(package_arn, package)} rollout failed, rolled back",
        package_arn,
        package,
        clients,
        config,
        detail=f"The endpoint is back on {replaced}. Reason: "
        f"{live.get('FailureReason') or 'none given'}. The version is not deployed here again; "
        "to retry it, reject it and approve it again.",
    )
    LOG.error(
        json.dumps(
            {
                "event": "rollout_failed",
                "endpoint": config.endpoint_name,
                "model_package_arn": package_arn,
                "endpoint_config_name": target,
                "failure_reason": live.get("FailureReason", ""),
                "remedy": "the version is not deployed here again; to retry it, reject it and "
                "approve it again once the deployer has seen the rejection",
            }
        )
    )
    sm.add_tags(
        ResourceArn=live["EndpointArn"], Tags=[{"Key": ROLLOUT_TAG, "Value": f"{replaced}/"}]
    )
    return package_arn


def _clear_marks(package: Mapping[str, Any], clients: Clients, config: Config) -> None:
    """A version seen not Approved loses its failed-rollout mark and its smoke-test result
    here, so that approving it again retries it (and tests it again). An Approved event alone
    never clears them: events repeat, and marking itself is an edit that emits one."""
    metadata = package.get("CustomerMetadataProperties") or {}
    keys = [key for key in _marks(config) if key in metadata]
    if keys:
        clients.sagemaker.update_model_package(
            ModelPackageArn=package["ModelPackageArn"], CustomerMetadataPropertiesToRemove=keys
        )
        LOG.info(
            json.dumps({"event": "marks_cleared", "arn": package["ModelPackageArn"], "keys": keys})
        )


def _marks(config: Config) -> list[str]:
    return [
        _rollout_failed_key(config),
        f"{SMOKE_TEST_PREFIX}{config.stage}",
        f"{SMOKE_P50_PREFIX}{config.stage}",
    ]


def _rollout_failed_key(config: Config) -> str:
    return f"{ROLLOUT_FAILED_PREFIX}{config.endpoint_name}"


def _wait(endpoint: str, clients: Clients, config: Config, wait_seconds: int) -> dict | None:
    """The endpoint once it has settled, or None when `wait_seconds` ran out first."""
    deadline = clients.clock() + wait_seconds
    while True:
        live = _describe_endpoint(clients.sagemaker, endpoint)
        if live is None:
            return None
        if live["EndpointStatus"] not in BUSY:
            return live
        left = deadline - clients.clock()
        if left <= 0:
            return None
        clients.sleep(float(min(config.poll_seconds, left)))


def _broken_message(live: Mapping[str, Any]) -> str:
    name, status = live["EndpointName"], live["EndpointStatus"]
    reason = live.get("FailureReason") or "no failure reason given"
    if status == "UpdateRollbackFailed":
        remedy = (
            "it serves a mix of the old and new configs; update it by hand to a known-good "
            f"config (aws sagemaker update-endpoint --endpoint-name {name} "
            f"--endpoint-config-name <config>) or delete it "
            f"(aws sagemaker delete-endpoint --endpoint-name {name}); the deployer then "
            "reconciles again"
        )
    else:
        remedy = (
            f"no update can recover it: delete it (aws sagemaker delete-endpoint "
            f"--endpoint-name {name}) and the deployer creates it again"
        )
    return f"endpoint {name} is {status} ({reason}); {remedy}"


def _check_group(package: Mapping[str, Any], config: Config) -> None:
    group = package.get("ModelPackageGroupName", "")
    if group != config.model_package_group:
        raise DeployError(_other_group(package["ModelPackageArn"], group, config))


def _other_group(arn: str, group: str, config: Config) -> str:
    return (
        f"model package {arn} belongs to group {group!r}; this deployer serves endpoint "
        f"{config.endpoint_name!r} from group {config.model_package_group!r} only"
    )


# -- what the endpoint runs ---------------------------------------------------------------------


def live_package_arn(endpoint: str, clients: Clients) -> str:
    """The package ARN tagged on the endpoint config the endpoint runs; '' without endpoint."""
    live = _describe_endpoint(clients.sagemaker, endpoint)
    if live is None:
        return ""
    return _package_of(live["EndpointConfigName"], clients)


def _package_of(endpoint_config_name: str, clients: Clients) -> str:
    """The package tagged on an endpoint config; '' when the config is gone or untagged."""
    sm = clients.sagemaker
    try:
        endpoint_config = sm.describe_endpoint_config(EndpointConfigName=endpoint_config_name)
    except ClientError as error:
        if _missing(error):
            return ""
        raise
    tags = sm.list_tags(ResourceArn=endpoint_config["EndpointConfigArn"]).get("Tags", [])
    return next((t["Value"] for t in tags if t["Key"] == PACKAGE_TAG), "")


def _approval_of(package_arn: str, clients: Clients) -> str:
    """The package's current approval status; 'Unknown' when it cannot be found."""
    package = _describe_package(clients.sagemaker, package_arn) if package_arn else None
    return (package or {}).get("ModelApprovalStatus") or "Unknown"


def _describe_package(sm: Any, arn: str) -> dict | None:
    try:
        return sm.describe_model_package(ModelPackageName=arn)
    except ClientError as error:
        err = error.response.get("Error", {})
        if err.get("Code") == "ValidationException" and "does not exist" in err.get("Message", ""):
            return None
        raise


# -- what the deployer creates ------------------------------------------------------------------


def resource_name(endpoint: str, package: Mapping[str, Any], *, serverless: bool = False) -> str:
    """`<endpoint>-v<version>-<hash of ARN>`, within SageMaker's 63 characters (the hash
    covers the kind too for a serverless endpoint config)."""
    key = package["ModelPackageArn"] + ("#serverless" if serverless else "")
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    suffix = f"-v{package.get('ModelPackageVersion', 0)}-{digest}"
    return f"{endpoint[: 63 - len(suffix)].rstrip('-')}{suffix}"


def endpoint_config_name(endpoint: str, package: Mapping[str, Any], config: Config) -> str:
    """The endpoint config for `package`: a serverless one is named apart from an
    instance-based one (same pattern), so switching kinds never finds the other in place."""
    return resource_name(endpoint, package, serverless=config.serverless)


def created_for(endpoint: str, name: str) -> bool:
    """Whether `name` is one `resource_name(endpoint, ...)` can return."""
    match = _CREATED_NAME.fullmatch(name)
    if match is None:
        return False
    suffix = name[len(match["prefix"]) :]
    return match["prefix"] == endpoint[: 63 - len(suffix)].rstrip("-")


def _ensure_endpoint_config(
    package: Mapping[str, Any], endpoint: str, clients: Clients, config: Config
) -> str:
    sm = clients.sagemaker
    model = resource_name(endpoint, package)
    name = endpoint_config_name(endpoint, package, config)
    tags = _tags(package["ModelPackageArn"], config)
    if not _exists(sm.describe_model, ModelName=model):
        _create_once(sm.create_model, **_model_request(model, package, config), Tags=tags)
    if not _exists(sm.describe_endpoint_config, EndpointConfigName=name):
        request: dict[str, Any] = {
            "EndpointConfigName": name,
            "ProductionVariants": [{"VariantName": VARIANT, "ModelName": model}],
            "Tags": tags,
        }
        if config.serverless:
            request["ProductionVariants"][0]["ServerlessConfig"] = {
                "MemorySizeInMB": config.serverless_memory_mb,
                "MaxConcurrency": config.serverless_max_concurrency,
            }
        else:
            request["ProductionVariants"][0].update(
                InstanceType=config.instance_type, InitialInstanceCount=config.instance_count
            )
            # Serverless endpoints take no data capture ("Serverless Inference ... does not
            # support: ... data capture", SageMaker Developer Guide, serverless-endpoints.html,
            # feature exclusions).
            request["DataCaptureConfig"] = {
                "EnableCapture": True,
                "InitialSamplingPercentage": config.capture_percent,
                "DestinationS3Uri": config.data_capture_uri,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            }
            if config.kms_key_arn:
                request["DataCaptureConfig"]["KmsKeyId"] = config.kms_key_arn
        # Both kinds take it: for a serverless endpoint it encrypts the image SageMaker keeps
        # (serverless-endpoints-create-config.html: "KmsKeyId ... to encrypt your ECR image").
        if config.volume_kms_key_arn:
            request["KmsKeyId"] = config.volume_kms_key_arn
        _create_once(sm.create_endpoint_config, **request)
    return name


def _tags(package_arn: str, config: Config) -> list[dict[str, str]]:
    own = [{"Key": PACKAGE_TAG, "Value": package_arn}]
    return own + [{"Key": key, "Value": value} for key, value in sorted(config.tags.items())]


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
    # A canary needs a fleet to split; one instance shifts all at once, and so does a move
    # away from a version that is no longer Approved (its alarms may well be firing, and
    # would roll the move itself back).
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


def _scalable_target(endpoint: str) -> dict:
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{endpoint}/variant/{VARIANT}",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }


def _autoscale(clients: Clients, config: Config) -> None:
    endpoint = config.endpoint_name
    target = _scalable_target(endpoint)
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


# -- teardown -----------------------------------------------------------------------------------


def teardown(clients: Clients, config: Config) -> dict:
    """Remove what the deployer created for its endpoint (stack deletion): the scalable target
    (its policies go with it), the endpoint, then every endpoint config and model named by
    `resource_name`. What is already gone is fine. The registry is never touched."""
    sm, endpoint = clients.sagemaker, config.endpoint_name
    summary: dict[str, Any] = {"endpoint_name": endpoint, "status": "deleted"}
    try:
        clients.autoscaling.deregister_scalable_target(**_scalable_target(endpoint))
        summary["scalable_target_deregistered"] = True
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ObjectNotFoundException":
            raise
        summary["scalable_target_deregistered"] = False
    if config.monitoring is not None:
        # SageMaker refuses to delete an endpoint that a monitoring schedule still names.
        summary["monitoring_schedule_deleted"] = monitoring.delete_schedule(
            sm,
            endpoint,
            sleep=clients.sleep,
            clock=clients.clock,
            timeout_seconds=config.teardown_seconds,
            poll_seconds=float(config.poll_seconds),
        )
    summary["endpoint_deleted"] = _delete_endpoint(clients, config)
    # Only once the endpoint is gone: a config in use must not be deleted (UpdateEndpoint doc).
    prefix = endpoint[:42].rstrip("-")
    configs = _names(sm.list_endpoint_configs, "EndpointConfigs", "EndpointConfigName", prefix)
    summary["endpoint_configs_deleted"] = [
        name
        for name in configs
        if created_for(endpoint, name)
        and _delete(sm.delete_endpoint_config, EndpointConfigName=name)
    ]
    models = _names(sm.list_models, "Models", "ModelName", prefix)
    summary["models_deleted"] = [
        name
        for name in models
        if created_for(endpoint, name) and _delete(sm.delete_model, ModelName=name)
    ]
    return summary


def _delete_endpoint(clients: Clients, config: Config) -> bool:
    """Delete the endpoint and wait until it is gone; False when there was none."""
    sm, endpoint = clients.sagemaker, config.endpoint_name
    deadline = clients.clock() + config.teardown_seconds
    existed = False
    while True:
        live = _describe_endpoint(sm, endpoint)
        if live is None:
            return existed
        existed = True
        status = live["EndpointStatus"]
        if status != "Deleting":
            try:
                sm.delete_endpoint(EndpointName=endpoint)
                continue
            except ClientError as error:
                if _missing(error):
                    return existed
                # Creating/Updating endpoints refuse deletion until they settle.
                if error.response.get("Error", {}).get("Code") != "ValidationException" or (
                    status not in BUSY
                ):
                    raise
        if clients.clock() >= deadline:
            raise DeployError(
                f"endpoint {endpoint} is still {status} after {config.teardown_seconds} s; "
                "delete the stack again once it is gone"
            )
        clients.sleep(float(config.poll_seconds))


def _names(list_call: Callable[..., dict], key: str, name_key: str, contains: str) -> list[str]:
    names, request = [], {"NameContains": contains, "MaxResults": 100}
    while True:
        page = list_call(**request)
        names += [item[name_key] for item in page.get(key, [])]
        if not page.get("NextToken"):
            return names
        request["NextToken"] = page["NextToken"]


def _delete(delete: Callable[..., Any], **name: str) -> bool:
    try:
        delete(**name)
    except ClientError as error:
        if _missing(error):
            return False
        raise
    return True


# -- SageMaker helpers --------------------------------------------------------------------------


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


def _pending_config(live: Mapping[str, Any]) -> str:
    return (live.get("PendingDeploymentSummary") or {}).get("EndpointConfigName", "")


def _text(event: Mapping[str, Any], key: str, what: str) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: {key!r} must be a non-empty string, got {value!r}")
    return value


def _log(result: dict) -> dict:
    LOG.info(json.dumps({"event": "deployer_result", **result}, sort_keys=True, default=str))
    return result
