"""The deployer driven through a model's life on the local stand-in clients, every request it
makes validated against the service models and recorded (for the IAM coverage test).

Only the public surface is used: `handle(event, clients, config)`, `Clients`, `Config`. The
local endpoints start no server here: a stand-in server that is "up" at once replaces
`Endpoints.start_server`, so the endpoint goes InService as SageMaker's would, without a
model process.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from recording_clients import Call, ValidatingClient

APPROVAL = "SageMaker Model Package State Change"
ENDPOINT = "SageMaker Endpoint State Change"


def _server_up_at_once(self, endpoint_name: str, config_name: str, workdir) -> dict:
    _, model = self.model_of_config(config_name)
    container = model.get("PrimaryContainer") or model["Containers"][0]
    return {
        "Pid": 0,  # no such process: stopping it is a no-op
        "Port": 0,
        "Workdir": str(workdir),
        "ModelName": model["ModelName"],
        "ModelDataUrl": container["ModelDataUrl"],
        "StartedAt": "2025-01-01T00:00:00+00:00",
    }


def approval_event(package: Mapping[str, Any], status: str) -> dict:
    return {
        "source": "aws.sagemaker",
        "detail-type": APPROVAL,
        "resources": [package["ModelPackageArn"]],
        "detail": {
            "ModelPackageGroupName": package["ModelPackageGroupName"],
            "ModelPackageArn": package["ModelPackageArn"],
            "ModelApprovalStatus": status,
        },
    }


def in_service_event(endpoint: str) -> dict:
    return {
        "source": "aws.sagemaker",
        "detail-type": ENDPOINT,
        "detail": {"EndpointName": endpoint, "EndpointStatus": "IN_SERVICE"},
    }


def run(
    home: Path,
    config,
    register_request: Mapping[str, Any],
    region: str,
    account: str,
) -> tuple[list[Call], list[tuple[str, dict]]]:
    """Register v1 (Approved) and deploy it through the Deploy step; register v2, approve it
    (blue/green update), deliver the endpoint's InService event, then reject v2 (rollback
    to v1). Returns (every deployer call, [(event label, deployer result)])."""
    from infra.deployer_lambda.deployer import Clients, handle
    from pipeline.local.sagemaker_client import LocalAutoscalingClient, LocalSageMakerClient

    setup: list[Call] = []
    calls: list[Call] = []
    sagemaker = LocalSageMakerClient(home, region, account)
    registry = ValidatingClient(sagemaker, "sagemaker", setup, caller="setup")
    clients = Clients(
        sagemaker=ValidatingClient(sagemaker, "sagemaker", calls, caller="deployer"),
        autoscaling=ValidatingClient(
            LocalAutoscalingClient(home), "application-autoscaling", calls, caller="deployer"
        ),
        sleep=lambda seconds: None,
    )
    group = register_request["ModelPackageGroupName"]
    registry.create_model_package_group(ModelPackageGroupName=group)

    def register(status: str) -> dict:
        arn = registry.create_model_package(**{**register_request, "ModelApprovalStatus": status})
        return registry.describe_model_package(ModelPackageName=arn["ModelPackageArn"])

    def set_status(package: dict, status: str) -> None:
        registry.update_model_package(
            ModelPackageArn=package["ModelPackageArn"], ModelApprovalStatus=status
        )

    results: list[tuple[str, dict]] = []
    with pytest.MonkeyPatch.context() as patch:
        from pipeline.local.endpoints import Endpoints

        patch.setattr(Endpoints, "start_server", _server_up_at_once)
        first = register("Approved")
        step = {
            "model_package_arn": first["ModelPackageArn"],
            "endpoint_name": config.endpoint_name,
        }
        results.append(("deploy step v1", handle(step, clients, config)))
        second = register("PendingManualApproval")
        set_status(second, "Approved")
        results.append(("approve v2", handle(approval_event(second, "Approved"), clients, config)))
        event = in_service_event(config.endpoint_name)
        results.append(("endpoint in service", handle(event, clients, config)))
        set_status(second, "Rejected")
        results.append(("reject v2", handle(approval_event(second, "Rejected"), clients, config)))
    return calls, results
