"""The local stand-in for an environment's stages, as the prod environment has them: staging
(endpoint `bincount`, the pipeline's group `bincount`) then prod (endpoint `bincount-prod`,
group `bincount-prod`). The deployer, its smoke test, the promoter and the notifications run
their own Lambda code (infra/deployer_lambda) against local clients: a sagemaker-runtime that
calls the local endpoints, and an SNS topic that is a JSON Lines file under BINCOUNT_HOME.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline.local.sagemaker_client import ACCOUNT, REGION
from pipeline.local.store import write_json_line


@dataclass(frozen=True)
class LocalStage:
    name: str
    endpoint_name: str
    group: str


STAGES = (
    LocalStage("staging", "bincount", "bincount"),
    LocalStage("prod", "bincount-prod", "bincount-prod"),
)
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:bincount-local-notifications"
NOTIFICATIONS_FILE = "notifications.jsonl"


def stage_named(name: str) -> LocalStage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise ValueError(f"no local stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def stage_of_endpoint(endpoint_name: str) -> LocalStage | None:
    return next((s for s in STAGES if s.endpoint_name == endpoint_name), None)


def next_stage(stage: LocalStage) -> LocalStage | None:
    index = STAGES.index(stage)
    return STAGES[index + 1] if index + 1 < len(STAGES) else None


class LocalRuntimeClient:
    """sagemaker-runtime's InvokeEndpoint over the local endpoints, with its error shape: an
    answer other than 2xx is a ModelError carrying OriginalStatusCode."""

    def __init__(self, endpoints: Any):
        self.endpoints = endpoints

    def invoke_endpoint(
        self, *, EndpointName: str, Body: bytes, ContentType: str, Accept: str = "*/*"
    ) -> dict:
        status, content_type, body = self.endpoints.invoke(
            EndpointName, Body, ContentType, Accept if Accept != "*/*" else "application/json"
        )
        if not 200 <= status < 300:
            raise ClientError(
                {
                    "Error": {"Code": "ModelError", "Message": body.decode(errors="replace")},
                    "OriginalStatusCode": status,
                },
                "InvokeEndpoint",
            )
        return {
            "Body": body,
            "ContentType": content_type,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }


class LocalNotifications:
    """SNS Publish to a JSON Lines file: what the topic's subscribers would receive."""

    def __init__(self, home: Path):
        self.path = Path(home) / NOTIFICATIONS_FILE

    def publish(self, *, TopicArn: str, Message: str, Subject: str = "") -> dict:
        message_id = str(uuid.uuid4())
        write_json_line(
            self.path,
            {
                "MessageId": message_id,
                "TopicArn": TopicArn,
                "Subject": Subject,
                "Message": Message,
                "Time": datetime.now(UTC).isoformat(),
            },
        )
        return {"MessageId": message_id}

    def messages(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]
