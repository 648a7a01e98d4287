"""Notifications for people: what happened, to which model version, where, and a link.

`publish` sends one message to the env's SNS topic and never raises: a notification that
cannot be sent is logged at ERROR and the deployment goes on (a lost e-mail must not undo or
retry a rollout). The messages are built here so that the deployer and the promoter word them
alike; callers decide *when* to send (on transitions only, see ARCHITECTURE.md "Deployer").
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger("bincount.notify")

# SNS: "Subjects must be UTF-8 text with no line breaks or control characters, and less than
# 100 characters long" (Publish API). ASCII keeps every mail client happy.
MAX_SUBJECT = 99


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


def version_of(package_arn: str, package: Mapping[str, Any] | None = None) -> str:
    """The version number of a versioned package: from DescribeModelPackage, else its ARN."""
    if package and package.get("ModelPackageVersion"):
        return str(package["ModelPackageVersion"])
    tail = package_arn.rsplit("/", 1)[-1]
    return tail if tail.isdigit() else "?"


def region_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else "us-east-1"


def endpoint_console_url(region: str, endpoint: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}"
        f"#/endpoints/{endpoint}"
    )


def subject(text: str) -> str:
    """One ASCII line below SNS's limit."""
    flat = re.sub(r"\s+", " ", text.encode("ascii", "replace").decode("ascii")).strip()
    return flat if len(flat) <= MAX_SUBJECT else flat[: MAX_SUBJECT - 3].rstrip() + "..."


def endpoint_message(
    what: str,
    *,
    headline: str,
    stage: str,
    endpoint: str,
    package_arn: str,
    package: Mapping[str, Any] | None = None,
    detail: str = "",
) -> Message:
    """A message about one version on one stage's endpoint. `what` is the event's kind
    (deployed, rollout_failed, ...), `headline` the sentence a person reads first."""
    version = version_of(package_arn, package)
    region = region_of(package_arn or "")
    lines = [
        headline,
        "",
        f"Event: {what}",
        f"Stage: {stage}",
        f"Endpoint: {endpoint}",
        f"Version: {version} ({package_arn or 'unknown'})",
        f"Console: {endpoint_console_url(region, endpoint)}",
    ]
    if detail:
        lines += ["", detail]
    return Message(subject(f"[{stage}] {endpoint}: {headline}"), "\n".join(lines) + "\n")


def publish(sns: Any, topic_arn: str, message: Message) -> bool:
    """Send `message`; False (logged) when there is no topic or client, or sending failed."""
    if not topic_arn or sns is None:
        if topic_arn:
            LOG.info(json.dumps({"event": "notification_skipped", "reason": "no SNS client"}))
        return False
    try:
        sns.publish(TopicArn=topic_arn, Subject=message.subject, Message=message.body)
    except Exception as error:  # whatever it is, a notification never fails the caller
        LOG.error(
            json.dumps(
                {
                    "event": "notification_failed",
                    "topic": topic_arn,
                    "subject": message.subject,
                    "error": f"{type(error).__name__}: {error}",
                }
            )
        )
        return False
    LOG.info(json.dumps({"event": "notified", "subject": message.subject}))
    return True
