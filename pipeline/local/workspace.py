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

from pipeline.local.runner import LocalRunner
from pipeline.local.sagemaker_client import (
    ACCOUNT,
    REGION,
    LocalAutoscalingClient,
    LocalSageMakerClient,
)
from pipeline.local.store import ObjectStore, home_dir

LOCAL_BUCKET = "bincount-local"


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
        from infra.deployer_lambda.deployer import Config

        return Config(
            endpoint_name=endpoint_name or self.settings.defaults.endpoint_name,
            model_role_arn=f"arn:aws:iam::{ACCOUNT}:role/bincount-local-model",
            data_capture_uri=self.settings.s3_uri("data-capture"),
            model_package_group=self.settings.model_package_group_name,
            instance_type=self.settings.inference_instance_types[0],
        )

    def deploy_handler(self, event: Mapping[str, Any], endpoint_name: str | None = None) -> dict:
        """The deployer's own `handle` with the local clients (what the Lambda does on AWS)."""
        from infra.deployer_lambda.deployer import Clients, handle

        clients = Clients(sagemaker=self.sagemaker, autoscaling=self.autoscaling)
        # Locally one deployer serves whichever endpoint the event names (the Deploy step's
        # EndpointName); on AWS each stack's deployer manages its own endpoint only.
        endpoint_name = endpoint_name or event.get("endpoint_name")
        return handle(dict(event), clients, self.deployer_config(endpoint_name))

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
