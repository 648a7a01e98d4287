"""One local home folder wired up: settings, definition, staged code, clients and Lambdas.

The local runner executes the same definition `pipeline.definition` builds for AWS, only with
local settings (bucket `bincount-local`, account 000000000000, us-east-1); its staged files
(code archives, runproc.sh, ...) are copied into the local object store before each run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline.local import stages
from pipeline.local.runner import LocalRunner
from pipeline.local.sagemaker_client import (
    ACCOUNT,
    REGION,
    LocalAutoscalingClient,
    LocalSageMakerClient,
)
from pipeline.local.store import ObjectStore, home_dir

LOCAL_BUCKET = "bincount-local"
# Results after which the endpoint has changed (or is about to): on AWS its state-change
# event reconciles again; locally a deploy is synchronous, so that pass follows at once.
MOVED = {"created", "updating", "deployed", "rolling_back", "rolled_back"}
FOLLOW_UP_PASSES = 5


@dataclass
class Workspace:
    """Everything under one BINCOUNT_HOME."""

    home: Path

    @classmethod
    def default(cls) -> Workspace:
        return cls(home_dir())

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        self.home.mkdir(parents=True, exist_ok=True)

    @cached_property
    def settings(self):
        from pipeline.settings import Settings

        return Settings(
            region=REGION,
            bucket=LOCAL_BUCKET,
            role_arn=f"arn:aws:iam::{ACCOUNT}:role/bincount-local-pipeline",
            deployer_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:bincount-deployer",
            staging_dir=self.home / "staging",
        )

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore(self.home / "s3")

    @cached_property
    def sagemaker(self) -> LocalSageMakerClient:
        return LocalSageMakerClient(self.home, REGION, ACCOUNT)

    @cached_property
    def autoscaling(self) -> LocalAutoscalingClient:
        return LocalAutoscalingClient(self.home)

    def deployer_config(self, endpoint_name: str | None = None):
        """The deployer of the local stage that owns the endpoint (stages.STAGES), with its
        group, smoke test and notifications (the first stage's when none is named: the
        pipeline's Deploy step names none); any other endpoint (`--endpoint` in tests) gets a
        one-stage deployer of the pipeline's group."""
        from infra.deployer_lambda.deployer import Config

        endpoint_name = endpoint_name or stages.STAGES[0].endpoint_name
        stage = stages.stage_of_endpoint(endpoint_name)
        following = stages.next_stage(stage) if stage else None
        return Config(
            endpoint_name=endpoint_name,
            model_role_arn=f"arn:aws:iam::{ACCOUNT}:role/bincount-local-model",
            data_capture_uri=self.settings.s3_uri("data-capture"),
            model_package_group=stage.group if stage else self.settings.model_package_group_name,
            instance_type=self.settings.inference_instance_types[0],
            stage=stage.name if stage else "live",
            next_stage=following.name if following else "",
            smoke_test=following is not None,
            topic_arn=stages.TOPIC_ARN,
        )

    def clients(self):
        """The deployer's and promoter's clients, local: registry, endpoints, autoscaling,
        runtime (the smoke test) and the notifications file."""
        from infra.deployer_lambda.deployer import Clients

        return Clients(
            sagemaker=self.sagemaker,
            autoscaling=self.autoscaling,
            runtime=stages.LocalRuntimeClient(self.sagemaker.endpoints),
            sns=stages.LocalNotifications(self.home),
        )

    def promote(self, version: str | int, from_stage: str | None = None) -> dict:
        """The promoter Lambda's own code: the version of `from_stage` (default the first)
        into the next stage's group, as PendingManualApproval."""
        from infra.deployer_lambda.promotion import PromotionConfig, promote

        source = stages.stage_named(from_stage) if from_stage else stages.STAGES[0]
        target = stages.next_stage(source)
        if target is None:
            raise ValueError(f"stage {source.name!r} is the last one: nothing to promote to")
        event = (
            {"model_package_arn": version}
            if str(version).startswith("arn:")
            else {"version": int(str(version).lstrip("vV"))}
        )
        config = PromotionConfig(
            source_stage=source.name,
            source_group=source.group,
            target_stage=target.name,
            target_group=target.group,
            topic_arn=stages.TOPIC_ARN,
        )
        return promote(event, self.clients(), config)

    def deploy_handler(self, event: Mapping[str, Any], endpoint_name: str | None = None) -> dict:
        """The deployer's own `handle` with the local clients (what the Lambda does on AWS)."""
        from infra.deployer_lambda.deployer import handle

        clients = self.clients()
        # Locally one deployer serves whichever endpoint the caller names (the first stage's
        # for the Deploy step); on AWS each stack's deployer manages its own endpoint only.
        endpoint_name = endpoint_name or event.get("endpoint_name")
        config = self.deployer_config(endpoint_name)

        def deliver(event: Mapping[str, Any]) -> dict:
            try:
                return handle(dict(event), clients, config)
            except ClientError as error:
                if "Cannot update in-progress endpoint" not in str(error):
                    raise
                # Refused in the instant before the other deploy's record says Updating:
                # the same "busy" the deployer answers once it does.
                return {"endpoint_name": config.endpoint_name, "status": "busy"}

        result = deliver(event)
        # What EventBridge delivers on AWS after a deploy: the endpoint's state change. Two
        # approvals at once then end on one version, the newest Approved: the second call
        # finds the first one's deploy under way ("busy"), waits for it to finish, and
        # reconciles again; each call reconciles once more after moving the endpoint.
        last = result
        for _ in range(FOLLOW_UP_PASSES):
            if last.get("status") == "busy":
                self.sagemaker.endpoints.wait_idle(config.endpoint_name)
            elif last.get("status") not in MOVED:
                break
            last = deliver(endpoint_state_change(config.endpoint_name))
            if result.get("status") == "busy":
                # The answer is what this call did once the other deploy was done.
                result = {**last, "after_concurrent_deploy": True}
            elif last.get("status") in MOVED:
                result.setdefault("followed_by", []).append(last)
        return result

    def lambdas(self) -> dict[str, Callable[[dict], dict]]:
        """Lambda function ARN -> local handler."""
        return {self.settings.deployer_function_arn: self.deploy_handler}

    def definition(self) -> str:
        """The definition JSON for the local settings, with its staged files in the store."""
        from pipeline.definition import build
        from pipeline.packaging import write_staged

        # One build: the JSON and the archives it names come from the same source snapshot.
        built = build(self.settings)
        write_staged(built.staged, self.settings.staging_dir)
        self.store.import_staging(self.settings.staging_dir)
        return built.definition

    def runner(self, echo: Callable[[str], None] = print, stream_logs: bool = False) -> LocalRunner:
        return LocalRunner(self.home, lambdas=self.lambdas(), echo=echo, stream_logs=stream_logs)


def endpoint_state_change(endpoint_name: str) -> dict:
    """The EventBridge event SageMaker emits when an endpoint changes state (its status is
    re-read by the deployer, so the event's own status does not matter)."""
    return {
        "version": "0",
        "detail-type": "SageMaker Endpoint State Change",
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "region": REGION,
        "detail": {"EndpointName": endpoint_name, "EndpointStatus": "IN_SERVICE"},
    }
