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
from botocore.exceptions import ClientError
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


class MonitoringSchedules:
    """The local SageMaker stand-in plus Model Monitor schedules, as SageMaker keeps them: a
    schedule needs its endpoint to exist, and an endpoint a schedule names cannot be deleted
    (the local runner has no Model Monitor; everything else is forwarded)."""

    def __init__(self, sagemaker: Any) -> None:
        self._sagemaker = sagemaker
        self.schedules: dict[str, dict] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sagemaker, name)

    @staticmethod
    def _error(code: str, message: str, operation: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, operation)

    def create_monitoring_schedule(self, **request: Any) -> dict:
        name = request["MonitoringScheduleName"]
        config = request["MonitoringScheduleConfig"]
        endpoint = config["MonitoringJobDefinition"]["MonitoringInputs"][0]["EndpointInput"][
            "EndpointName"
        ]
        self._sagemaker.describe_endpoint(EndpointName=endpoint)  # raises when it is missing
        if name in self.schedules:
            raise self._error(
                "ResourceInUse", f"Monitoring schedule {name} already exists", "Create"
            )
        self.schedules[name] = {
            "MonitoringScheduleName": name,
            "MonitoringScheduleStatus": "Scheduled",
            "MonitoringScheduleConfig": config,
            "EndpointName": endpoint,
            "Tags": request.get("Tags", []),
        }
        return {"MonitoringScheduleArn": f"arn:aws:sagemaker:::monitoring-schedule/{name}"}

    def update_monitoring_schedule(self, **request: Any) -> dict:
        name = request["MonitoringScheduleName"]
        self.describe_monitoring_schedule(MonitoringScheduleName=name)
        self.schedules[name] = {
            **self.schedules[name],
            "MonitoringScheduleConfig": request["MonitoringScheduleConfig"],
            "MonitoringScheduleStatus": "Scheduled",
        }
        return {"MonitoringScheduleArn": f"arn:aws:sagemaker:::monitoring-schedule/{name}"}

    def describe_monitoring_schedule(self, MonitoringScheduleName: str) -> dict:
        if MonitoringScheduleName not in self.schedules:
            raise self._error(
                "ResourceNotFound",
                f"Monitoring schedule {MonitoringScheduleName} not found",
                "DescribeMonitoringSchedule",
            )
        return dict(self.schedules[MonitoringScheduleName])

    def delete_monitoring_schedule(self, MonitoringScheduleName: str) -> None:
        self.describe_monitoring_schedule(MonitoringScheduleName=MonitoringScheduleName)
        del self.schedules[MonitoringScheduleName]

    def delete_endpoint(self, EndpointName: str) -> Any:
        named = [s for s in self.schedules.values() if s["EndpointName"] == EndpointName]
        if named:
            raise self._error(
                "ValidationException",
                f"Cannot delete endpoint {EndpointName}: monitoring schedule "
                f"{named[0]['MonitoringScheduleName']} is attached to it",
                "DeleteEndpoint",
            )
        return self._sagemaker.delete_endpoint(EndpointName=EndpointName)


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
    *,
    teardown: bool = False,
) -> tuple[list[Call], list[tuple[str, dict]]]:
    """Register v1 (Approved) and deploy it through the Deploy step; register v2, approve it
    (blue/green update), deliver the endpoint's InService event, then reject v2 (rollback
    to v1); with `teardown`, then delete the stack's endpoint (CloudFormation's Delete).
    A config with monitoring keeps its schedule in a MonitoringSchedules stand-in. Returns
    (every deployer call, [(event label, deployer result)])."""
    from infra.deployer_lambda.deployer import Clients, handle
    from pipeline.local.sagemaker_client import LocalAutoscalingClient, LocalSageMakerClient

    setup: list[Call] = []
    calls: list[Call] = []
    sagemaker = LocalSageMakerClient(home, region, account)
    if getattr(config, "monitoring", None) is not None:
        sagemaker = MonitoringSchedules(sagemaker)
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
        if teardown:
            delete = {
                "RequestType": "Delete",
                "PhysicalResourceId": f"{config.endpoint_name}-deployer",
                "ResourceProperties": {"EndpointName": config.endpoint_name},
            }
            results.append(("teardown", handle(delete, clients, config)))
    return calls, results
