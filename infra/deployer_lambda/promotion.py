"""Promote a model version from one stage to the next: the explicit, separately permitted step
between, say, staging and prod.

Runs as a Lambda (`handler`, boto3 clients) and anywhere else through `promote(event, clients,
config)`, where `clients.sagemaker` may be the local runner's stand-in (and `clients.sns` an
SNS client or None). The event names the version: `{"model_package_arn": ARN}` or
`{"version": N}` (a version of the source group).

A version is promoted only when it is in the source stage's group, Approved, and its smoke
test on the source stage passed (`bincount:smoke-test:<stage>` = `passed`, recorded by that
stage's deployer). Promoting registers a copy into the target stage's group as
PendingManualApproval, never Approved: approving it there is the target stage's approvers'
decision, and that approval is what the target stage's deployer acts on. The copy carries
`bincount:promoted-from` = the source ARN; promoting the same version again returns that copy
(`already_promoted`), whatever its approval status, rather than register a second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

# Lambda loads this file top-level (handler "promotion.handler"), beside its siblings.
if __package__:
    from . import deployer, notify
else:
    import deployer
    import notify

LOG = logging.getLogger("bincount.promotion")

PROMOTED_FROM = "bincount:promoted-from"
# Metadata keys that describe a version's life in one stage (smoke tests, failed rollouts,
# its own promotion); the copy starts its own life in the target stage without them.
BOOKKEEPING_PREFIX = "bincount:"
# InferenceSpecification and container members that CreateModelPackage takes as they are.
# Left out: ImageDigest and ModelDataETag, which SageMaker works out at registration.
SPEC_FIELDS = (
    "Containers",
    "SupportedTransformInstanceTypes",
    "SupportedRealtimeInferenceInstanceTypes",
    "SupportedContentTypes",
    "SupportedResponseMIMETypes",
)
CONTAINER_FIELDS = (
    "ContainerHostname",
    "Image",
    "ModelDataUrl",
    "ModelDataSource",
    "ProductId",
    "Environment",
    "ModelInput",
    "Framework",
    "FrameworkVersion",
    "NearestModelName",
    "AdditionalS3DataSource",
    "AdditionalModelDataSources",
    "IsCheckpoint",
    "BaseModel",
)
_GROUP_OK = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_STAGE_OK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,39}$")


class PromotionError(RuntimeError):
    """The version cannot be promoted; the message says why and what to do."""


@dataclass(frozen=True)
class PromotionConfig:
    source_stage: str
    source_group: str
    target_stage: str
    target_group: str
    topic_arn: str = ""
    # Accepted for symmetry with the deployer, but not sent: a version registered into a
    # group "uses the tags associated with the model group. In this case, you cannot supply
    # a tag argument" (CreateModelPackage, Tags).
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what, stage in (("source", self.source_stage), ("target", self.target_stage)):
            if not _STAGE_OK.match(stage or ""):
                raise ValueError(f"invalid {what} stage name {stage!r}")
        for what, group in (("source", self.source_group), ("target", self.target_group)):
            if not _GROUP_OK.match(group or ""):
                raise ValueError(f"invalid {what} model package group name {group!r}")
        if self.source_group == self.target_group:
            raise ValueError(f"source and target group are both {self.source_group!r}")
        if self.topic_arn and not self.topic_arn.startswith("arn:"):
            raise ValueError(f"topic_arn must be an SNS topic ARN: {self.topic_arn!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PromotionConfig:
        def need(name: str) -> str:
            value = env.get(name, "")
            if not value:
                raise ValueError(f"environment variable {name} is required")
            return value

        tags = json.loads(env["TAGS"]) if env.get("TAGS") else {}
        if not isinstance(tags, dict):
            raise ValueError(f"environment variable TAGS must be a JSON object: {env['TAGS']!r}")
        return cls(
            source_stage=need("SOURCE_STAGE"),
            source_group=need("SOURCE_GROUP"),
            target_stage=need("TARGET_STAGE"),
            target_group=need("TARGET_GROUP"),
            topic_arn=env.get("TOPIC_ARN", ""),
            tags=tags,
        )


def handler(event: dict, context: object) -> dict:
    """Lambda entry point."""
    import boto3

    logging.getLogger().setLevel(logging.INFO)
    config = PromotionConfig.from_env(os.environ)
    clients = deployer.Clients(
        sagemaker=boto3.client("sagemaker"),
        autoscaling=None,
        sns=boto3.client("sns") if config.topic_arn else None,
    )
    return promote(event, clients, config)


def promote(event: Mapping[str, Any], clients: Any, config: PromotionConfig) -> dict:
    """Register the event's version into the target group as PendingManualApproval, or
    return the copy an earlier promotion registered. Raises PromotionError when it may not
    be promoted, ValueError for an event of the wrong shape."""
    sm = clients.sagemaker
    source = _source(event, sm, config)
    source_arn = source["ModelPackageArn"]
    _check_promotable(source, config)
    result = {
        "source_model_package_arn": source_arn,
        "target_group": config.target_group,
    }
    existing = _promoted_copy(source_arn, sm, config)
    if existing:
        LOG.info(json.dumps({"event": "already_promoted", **result, "copy": existing}))
        return {"status": "already_promoted", **result, "model_package_arn": existing}
    arn = sm.create_model_package(**promotion_request(source, config))["ModelPackageArn"]
    result = {"status": "promoted", **result, "model_package_arn": arn}
    LOG.info(json.dumps({"event": "promoted", **result}))
    notify.publish(
        getattr(clients, "sns", None), config.topic_arn, _waiting_message(source, arn, config)
    )
    return result


def promotion_request(source: Mapping[str, Any], config: PromotionConfig) -> dict:
    """CreateModelPackage for the copy of `source` in the target group."""
    metadata = {
        key: value
        for key, value in (source.get("CustomerMetadataProperties") or {}).items()
        if not key.startswith(BOOKKEEPING_PREFIX)
    }
    metadata[PROMOTED_FROM] = source["ModelPackageArn"]
    request: dict[str, Any] = {
        "ModelPackageGroupName": config.target_group,
        "InferenceSpecification": _inference_specification(source),
        "ModelApprovalStatus": "PendingManualApproval",
        "CustomerMetadataProperties": metadata,
        # The same version promoted twice at once registers one copy (SageMaker's
        # idempotency token; the metadata search below finds it afterwards).
        "ClientToken": _client_token(source["ModelPackageArn"], config.target_group),
    }
    if source.get("ModelPackageDescription"):
        request["ModelPackageDescription"] = source["ModelPackageDescription"]
    if source.get("ModelMetrics"):
        request["ModelMetrics"] = source["ModelMetrics"]
    return request


# -- the source version -------------------------------------------------------------------------


def _source(event: Mapping[str, Any], sm: Any, config: PromotionConfig) -> dict:
    if not isinstance(event, Mapping):
        raise ValueError(f"unsupported event: expected a JSON object, got {type(event).__name__}")
    arn, version = event.get("model_package_arn"), event.get("version")
    if (arn is None) == (version is None):
        raise ValueError(
            "unsupported event: expected {'model_package_arn': ARN} or {'version': N}, got "
            f"keys {sorted(map(str, event))}"
        )
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"'version' must be a positive integer, got {version!r}")
        arn = _arn_of_version(version, sm, config)
    if not isinstance(arn, str) or not arn:
        raise ValueError(f"'model_package_arn' must be a non-empty string, got {arn!r}")
    try:
        return sm.describe_model_package(ModelPackageName=arn)
    except ClientError as error:
        err = error.response.get("Error", {})
        if err.get("Code") == "ValidationException" and "does not exist" in err.get("Message", ""):
            raise PromotionError(f"model package {arn} does not exist") from error
        raise


def _arn_of_version(version: int, sm: Any, config: PromotionConfig) -> str:
    for summary in _versions(sm, config.source_group):
        if summary.get("ModelPackageVersion") == version:
            return summary["ModelPackageArn"]
    raise PromotionError(f"{config.source_group} has no version {version}")


def _check_promotable(source: Mapping[str, Any], config: PromotionConfig) -> None:
    arn = source["ModelPackageArn"]
    group = source.get("ModelPackageGroupName")
    if group != config.source_group:
        raise PromotionError(
            f"{arn} belongs to group {group!r}, not {config.source_group!r}: only "
            f"{config.source_stage} versions are promoted to {config.target_stage}"
        )
    status = source.get("ModelApprovalStatus")
    if status != "Approved":
        raise PromotionError(
            f"{arn} is {status}, not Approved in {config.source_stage}: only an Approved "
            "version that passed its smoke test there can be promoted"
        )
    key = f"{deployer.SMOKE_TEST_PREFIX}{config.source_stage}"
    smoke = (source.get("CustomerMetadataProperties") or {}).get(key)
    if smoke != "passed":
        why = (
            f"its smoke test on {config.source_stage} {smoke}"
            if smoke
            else f"it has no smoke-test result on {config.source_stage} yet (the deployer "
            f"records one once the {config.source_stage} endpoint is InService on it)"
        )
        raise PromotionError(f"{arn} cannot be promoted to {config.target_stage}: {why}")


# -- the target group ---------------------------------------------------------------------------


def _promoted_copy(source_arn: str, sm: Any, config: PromotionConfig) -> str:
    """The target group's version promoted from `source_arn`; '' when there is none."""
    for summary in _versions(sm, config.target_group):
        package = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        if (package.get("CustomerMetadataProperties") or {}).get(PROMOTED_FROM) == source_arn:
            return package["ModelPackageArn"]
    return ""


def _versions(sm: Any, group: str) -> Iterator[dict]:
    """Every version of `group`, newest first."""
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": 100,
    }
    while True:
        page = sm.list_model_packages(**request)
        yield from page.get("ModelPackageSummaryList", [])
        if not page.get("NextToken"):
            return
        request["NextToken"] = page["NextToken"]


def _inference_specification(source: Mapping[str, Any]) -> dict:
    spec = source.get("InferenceSpecification") or {}
    if not spec.get("Containers"):
        raise PromotionError(f"{source['ModelPackageArn']} has no inference container")
    copy = {key: spec[key] for key in SPEC_FIELDS if spec.get(key)}
    containers = []
    for container in spec["Containers"]:
        kept = {key: container[key] for key in CONTAINER_FIELDS if container.get(key)}
        if "ModelDataUrl" in kept:
            # DescribeModelPackage may report the artifact both ways; one is enough.
            kept.pop("ModelDataSource", None)
        containers.append(kept)
    copy["Containers"] = containers
    return copy


def _client_token(source_arn: str, target_group: str) -> str:
    return hashlib.sha256(f"{source_arn}>{target_group}".encode()).hexdigest()[:32]


def _waiting_message(source: Mapping[str, Any], arn: str, config: PromotionConfig):
    source_arn = source["ModelPackageArn"]
    version = notify.version_of(arn)
    source_version = notify.version_of(source_arn, source)
    headline = (
        f"version {version} waiting for approval in {config.target_stage} "
        f"({config.source_stage} version {source_version})"
    )
    body = "\n".join(
        [
            headline,
            "",
            "Event: waiting_for_approval",
            f"Stage: {config.target_stage} (group {config.target_group})",
            f"Version: {version} ({arn})",
            f"Promoted from: {config.source_stage} version {source_version} ({source_arn}), "
            "smoke test passed",
            "",
            f"Approving it deploys it to {config.target_stage}: aws sagemaker "
            f"update-model-package --model-package-arn {arn} --model-approval-status Approved",
        ]
    )
    return notify.Message(notify.subject(f"[{config.target_stage}] {headline}"), body + "\n")
