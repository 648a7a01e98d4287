"""Start a retraining execution of the pipeline, unless one is already running.

Called by the retraining schedule (EventBridge Scheduler) and by the drift alarm's state change
(an EventBridge rule), both opt-in (infra/retraining.py). The guard against retraining storms:
an execution is started only when none of the pipeline's executions is Executing or Stopping
(ListPipelineExecutions). Two triggers at the same moment (the drift alarms of two stages, or
one with the schedule) could both see none running, so each start carries a ClientRequestToken
derived from the pipeline and the hour: SageMaker answers a second start with that token with
the first one's execution, so one hour starts at most one retraining, however many triggers
or retried deliveries arrive.

Runs as a Lambda (`handler`) and anywhere else through `start(event, sagemaker, config)`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

LOG = logging.getLogger("bincount.retrain")

RUNNING = ("Executing", "Stopping")
ALARM_EVENT = "CloudWatch Alarm State Change"
# Executions that started longer ago than this are not looked at: SageMaker ends a pipeline
# execution after at most this long.
LOOKBACK_DAYS = 30
_PIPELINE_OK = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")


@dataclass(frozen=True)
class Config:
    pipeline_name: str
    # Pipeline parameters of a retraining execution, as StartPipelineExecution takes them.
    parameters: Mapping[str, str] = field(default_factory=dict)
    topic_arn: str = ""

    def __post_init__(self) -> None:
        if not _PIPELINE_OK.match(self.pipeline_name or ""):
            raise ValueError(f"invalid pipeline name {self.pipeline_name!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.parameters.items()):
            raise ValueError(f"parameters must map names to strings, got {self.parameters!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        raw = env.get("PARAMETERS") or "{}"
        try:
            parameters = json.loads(raw)
        except ValueError:
            raise ValueError(f"environment variable PARAMETERS must be JSON: {raw!r}") from None
        if not isinstance(parameters, dict):
            raise ValueError(f"environment variable PARAMETERS must be a JSON object: {raw!r}")
        return cls(
            pipeline_name=env.get("PIPELINE_NAME", ""),
            parameters=parameters,
            topic_arn=env.get("TOPIC_ARN", ""),
        )


def handler(event: dict, context: object) -> dict:
    """Lambda entry point."""
    import boto3

    logging.getLogger().setLevel(logging.INFO)
    config = Config.from_env(os.environ)
    sns = boto3.client("sns") if config.topic_arn else None
    return start(event, boto3.client("sagemaker"), config, sns=sns)


def trigger_of(event: Mapping[str, Any]) -> tuple[str, str]:
    """(what triggered, an id unique to this delivery) of a schedule or alarm event."""
    if not isinstance(event, Mapping):
        raise ValueError(f"unsupported event: expected a JSON object, got {type(event).__name__}")
    if event.get("detail-type") == ALARM_EVENT:
        detail = event.get("detail")
        if not isinstance(detail, Mapping):
            raise ValueError(f"{ALARM_EVENT!r} event without a 'detail' object")
        state = (detail.get("state") or {}).get("value")
        if state != "ALARM":
            raise ValueError(f"alarm event in state {state!r}: only ALARM starts a retraining")
        alarm = detail.get("alarmName") or "alarm"
        return f"drift alarm {alarm}", str(event.get("id") or "")
    if event.get("trigger") == "schedule":
        # EventBridge Scheduler fills <aws.scheduler.execution-id> in per invocation.
        return "retraining schedule", str(event.get("execution_id") or "")
    raise ValueError(
        f"unsupported event: expected a {ALARM_EVENT!r} event or the retraining schedule's "
        f"{{'trigger': 'schedule', ...}}; got keys {sorted(map(str, event))}"
    )


def running_executions(sagemaker: Any, pipeline_name: str, now: datetime) -> list[str]:
    """ARNs of the pipeline's executions that are still running."""
    request: dict[str, Any] = {
        "PipelineName": pipeline_name,
        "CreatedAfter": now - timedelta(days=LOOKBACK_DAYS),
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": 100,
    }
    running = []
    while True:
        page = sagemaker.list_pipeline_executions(**request)
        running += [
            summary["PipelineExecutionArn"]
            for summary in page.get("PipelineExecutionSummaries", [])
            if summary.get("PipelineExecutionStatus") in RUNNING
        ]
        if not page.get("NextToken"):
            return running
        request["NextToken"] = page["NextToken"]


def start(
    event: Mapping[str, Any],
    sagemaker: Any,
    config: Config,
    *,
    sns: Any = None,
    now: datetime | None = None,
) -> dict:
    """Start one execution unless one is running; returns what happened."""
    trigger, delivery = trigger_of(event)
    now = now or datetime.now(UTC)
    running = running_executions(sagemaker, config.pipeline_name, now)
    if running:
        result = {"status": "skipped", "trigger": trigger, "running": running}
        LOG.info(json.dumps({"event": "retraining_skipped", **result}))
        return result
    # One token per pipeline and hour: racing triggers and retried deliveries all get the
    # execution the first of them started (StartPipelineExecution is idempotent on it).
    token = hashlib.sha256(f"{config.pipeline_name}/{now:%Y-%m-%dT%H}".encode()).hexdigest()[:32]
    request: dict[str, Any] = {
        "PipelineName": config.pipeline_name,
        "PipelineExecutionDisplayName": f"retrain-{now:%Y%m%d-%H%M%S}",
        "PipelineExecutionDescription": f"Retraining started by the {trigger}"[:3072],
        "ClientRequestToken": token,
    }
    if config.parameters:
        request["PipelineParameters"] = [
            {"Name": name, "Value": value} for name, value in sorted(config.parameters.items())
        ]
    arn = sagemaker.start_pipeline_execution(**request)["PipelineExecutionArn"]
    result = {
        "status": "started",
        "trigger": trigger,
        "delivery": delivery,
        "pipeline_execution_arn": arn,
    }
    LOG.info(json.dumps({"event": "retraining_started", **result}))
    if sns is not None and config.topic_arn:
        try:
            sns.publish(
                TopicArn=config.topic_arn,
                Subject=f"bincount: retraining started ({config.pipeline_name})"[:100],
                Message=f"The {trigger} started execution {arn} of pipeline "
                f"{config.pipeline_name}.",
            )
        except Exception as error:  # a lost message must not fail a started retraining
            LOG.error(json.dumps({"event": "notification_failed", "error": str(error)}))
    return result
