"""What the local commands print and look up: one execution's steps as a table, every model
package of a group, and which endpoints serve each version (the deployer's tag), against the
local stand-ins and boto3's clients alike."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from pipeline.progress import lambda_outcome


def format_execution(record: dict) -> str:
    lines = [
        f"execution {record['PipelineExecutionId']}: {record['PipelineExecutionStatus']}"
        + (f" in {record['Seconds']:.1f} s" if "Seconds" in record else ""),
        f"  started {record['StartTime']}",
    ]
    for step in record.get("Steps", []):
        extra = ""
        if step.get("Cached"):
            extra = f" (cached from {step['CacheHitResult']['SourcePipelineExecutionId']})"
        if step.get("Outcome"):
            extra = f" -> {step['Outcome']} ({'; '.join(step.get('Conditions', []))})"
        if step.get("Reason"):
            extra = f" ({step['Reason']})"
        if step.get("StepStatus") == "Succeeded" and step.get("LambdaResponse"):
            extra = lambda_outcome(step["LambdaResponse"]).replace(":", " ->", 1)
        seconds = f"{step['Seconds']:7.1f} s" if "Seconds" in step else " " * 9
        lines.append(
            f"  {step['StepName']:<20} {step['StepType']:<14} {step['StepStatus']:<12} "
            f"{seconds}{extra}"
        )
    if record.get("FailureReason"):
        lines.append(f"  failure: {record['FailureReason']}")
    return "\n".join(lines)


def all_packages(sm: Any, group: str) -> list[dict]:
    packages, token = [], None
    while True:
        kwargs = {
            "ModelPackageGroupName": group,
            "SortBy": "CreationTime",
            "SortOrder": "Ascending",
        }
        if token:
            kwargs["NextToken"] = token
        page = sm.list_model_packages(**kwargs)
        packages += page.get("ModelPackageSummaryList", [])
        token = page.get("NextToken")
        if not token:
            return packages


def live_arns(sm: Any) -> dict[str, list[str]]:
    """Model package ARN -> endpoints serving it (from the deployer's tag on the config)."""
    from infra.deployer_lambda.deployer import PACKAGE_TAG

    live: dict[str, list[str]] = {}
    for e in all_endpoints(sm):
        try:
            # An endpoint deleted or half-made meanwhile serves nothing: skip just that one.
            described = sm.describe_endpoint(EndpointName=e["EndpointName"])
            config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
            tags = sm.list_tags(ResourceArn=config["EndpointConfigArn"]).get("Tags", [])
        except ClientError:
            continue
        for tag in tags:
            if tag["Key"] == PACKAGE_TAG:
                live.setdefault(tag["Value"], []).append(e["EndpointName"])
    return live


def all_endpoints(sm: Any) -> list[dict]:
    """Every page of ListEndpoints (boto3's client and the local stand-in alike)."""
    endpoints, token = [], None
    while True:
        page = sm.list_endpoints(**({"NextToken": token} if token else {}))
        endpoints += page.get("Endpoints", [])
        token = page.get("NextToken")
        if not token:
            return endpoints


def readable_answer(text: str) -> str:
    """One line from the endpoint's JSON answer: the count and its confidence (per image for
    a batch); the text itself when it is not that shape."""
    try:
        answer = json.loads(text)
    except ValueError:
        return text
    answers = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(answers, list):
        answers = [answer]
    parts = []
    for one in answers:
        if not isinstance(one, dict) or "count" not in one:
            return text
        part = f"count {one['count']}"
        probabilities = one.get("probabilities")
        confidence = one.get("confidence")
        if confidence is None and isinstance(probabilities, dict):
            # The probability of the count given (keys are counts, as strings in JSON).
            confidence = probabilities.get(str(one["count"]))
        if isinstance(confidence, (int, float)):
            part += f" (confidence {confidence:.0%})"
        parts.append(part)
    version = answer.get("model_version") if isinstance(answer, dict) else None
    line = "; ".join(parts)
    return f"{line}  [model {version}]" if version else line
