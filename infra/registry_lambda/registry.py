"""The model package group as a CloudFormation custom resource (the CDK Provider framework's
onEvent handler), so that a stack can be deleted and deployed again:

- Create/Update: create the group, or adopt it when it already exists (a `retain` stack that
  was deleted left it behind, with its versions: the new stack carries that history on).
- Delete: with `DeleteVersions` "true" (the `destroy` removal setting) delete every version and
  then the group, which SageMaker refuses to delete while it holds versions; otherwise leave it
  (versions are the record of what was trained, evaluated and approved).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import ClientError

LOG = logging.getLogger("bincount.registry")


def on_event(event: dict, context: object) -> dict:
    """Lambda entry point."""
    import boto3

    logging.getLogger().setLevel(logging.INFO)
    return handle(event, boto3.client("sagemaker"))


def handle(event: dict, sagemaker: Any) -> dict:
    request = event.get("RequestType")
    props = event.get("ResourceProperties")
    if request not in {"Create", "Update", "Delete"} or not isinstance(props, dict):
        raise ValueError(
            "expected a CloudFormation custom resource event with RequestType Create, Update or "
            f"Delete and ResourceProperties, got keys {sorted(event)}"
        )
    name = props.get("GroupName")
    if not isinstance(name, str) or not name:
        raise ValueError(f"ResourceProperties.GroupName is required, got {name!r}")
    if request == "Delete":
        if props.get("DeleteVersions") == "true":
            deleted = delete_group(sagemaker, name)
            LOG.info(json.dumps({"event": "group_deleted", "group": name, "versions": deleted}))
        else:
            LOG.info(json.dumps({"event": "group_retained", "group": name}))
        return {"PhysicalResourceId": event.get("PhysicalResourceId") or name}
    arn, adopted = ensure_group(sagemaker, name, props.get("Description", ""))
    LOG.info(json.dumps({"event": "group_ready", "group": name, "adopted": adopted}))
    return {"PhysicalResourceId": name, "Data": {"GroupName": name, "GroupArn": arn}}


def ensure_group(sagemaker: Any, name: str, description: str) -> tuple[str, bool]:
    """(group ARN, whether it already existed)."""
    existing = _describe(sagemaker, name)
    if existing:
        return existing["ModelPackageGroupArn"], True
    request = {"ModelPackageGroupName": name}
    if description:
        request["ModelPackageGroupDescription"] = description
    try:
        return sagemaker.create_model_package_group(**request)["ModelPackageGroupArn"], False
    except ClientError:
        # Created by someone else a moment ago? Then adopt it; otherwise the error stands.
        existing = _describe(sagemaker, name)
        if existing:
            return existing["ModelPackageGroupArn"], True
        raise


def delete_group(sagemaker: Any, name: str) -> int:
    """Delete every version, then the group; the number of versions deleted. A group already
    gone is fine (a retried delete)."""
    if not _describe(sagemaker, name):
        return 0
    deleted = 0
    token = None
    while True:
        page = sagemaker.list_model_packages(
            ModelPackageGroupName=name, **({"NextToken": token} if token else {})
        )
        for summary in page.get("ModelPackageSummaryList", []):
            sagemaker.delete_model_package(ModelPackageName=summary["ModelPackageArn"])
            deleted += 1
        token = page.get("NextToken")
        if not token:
            break
    sagemaker.delete_model_package_group(ModelPackageGroupName=name)
    return deleted


def _describe(sagemaker: Any, name: str) -> dict | None:
    try:
        return sagemaker.describe_model_package_group(ModelPackageGroupName=name)
    except ClientError as error:
        err = error.response.get("Error", {})
        if err.get("Code") == "ValidationException" and "does not exist" in err.get("Message", ""):
            return None
        raise
