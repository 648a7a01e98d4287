"""A scripted SageMaker and Application Auto Scaling that behave as AWS does, for the deployer.

Every request is checked against botocore's service model (required members, types, enums,
lengths and patterns: botocore's own validator checks only the first few), and every call is
recorded as (service, Operation, request), so tests can also check IAM coverage. Endpoints
change state only when a test says so (`finish`), like the asynchronous service: create and
update leave them Creating / Updating with a PendingDeploymentSummary.

Every request also goes through tests/aws's strict validator (service_model.validate), the
one the IAM-coverage and request tests use. Besides SageMaker and Application Auto Scaling
there are SageMaker Runtime (InvokeEndpoint answered from the model the endpoint serves) and
SNS (Publish recorded).

This file also tests the fakes themselves; the other test_deployer_*, test_smoke,
test_notify and test_promotion modules import them.
"""

from __future__ import annotations

import io
import itertools
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import regex
from botocore.exceptions import ClientError, ParamValidationError
from botocore.response import StreamingBody
from botocore.validate import validate_parameters

# tests/ is no package: tests/aws's strict validator is imported by path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aws"))
import service_model as strict

ACCOUNT = "123456789012"
REGION = "us-east-1"
_SESSION = botocore.session.get_session()
_MODELS: dict[str, Any] = {}


def service_model(service: str):
    if service not in _MODELS:
        _MODELS[service] = _SESSION.get_service_model(service)
    return _MODELS[service]


def operation_name(service: str, method: str) -> str:
    """boto3's method name -> the API's operation name (create_endpoint -> CreateEndpoint)."""
    from botocore import xform_name

    names = {xform_name(op): op for op in service_model(service).operation_names}
    if method not in names:
        raise AttributeError(f"{service} has no operation for method {method!r}")
    return names[method]


def validate_request(service: str, operation: str, request: dict) -> None:
    """Raise ParamValidationError when `request` breaks the operation's input shape."""
    shape = service_model(service).operation_model(operation).input_shape
    validate_parameters(request, shape)
    problems: list[str] = []
    _walk(shape, request, operation, problems)
    if problems:
        raise ParamValidationError(report="\n".join(problems))


def _walk(shape, value, path: str, problems: list[str]) -> None:
    meta = shape.metadata
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            if name in value:
                _walk(member, value[name], f"{path}.{name}", problems)
    elif shape.type_name == "list":
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} items, at most {meta['max']}")
        for i, item in enumerate(value):
            _walk(shape.member, item, f"{path}[{i}]", problems)
    elif shape.type_name == "map":
        for key, item in value.items():
            _walk(shape.key, key, f"{path} key", problems)
            _walk(shape.value, item, f"{path}.{key}", problems)
    elif shape.type_name == "string":
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {shape.enum}")
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} characters, at most {meta['max']}")
        # Java spells characters beyond the BMP as a surrogate-pair range; Python does not.
        pattern = meta.get("pattern", "").replace(
            r"\uD800\uDC00-\uDBFF\uDFFF", r"\U00010000-\U0010FFFF"
        )
        if pattern and regex.fullmatch(pattern, value) is None:
            problems.append(f"{path}: {value!r} does not match {pattern}")
    elif shape.type_name in {"integer", "long", "double", "float"} and value > meta.get(
        "max", value
    ):
        problems.append(f"{path}: {value} is above {meta['max']}")


def error(operation: str, code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class _Recorded:
    """Records and validates every call; the subclass implements each operation."""

    service = ""

    def __init__(self, log: list[tuple[str, str, dict]]):
        self.log = log

    def __getattribute__(self, name: str):
        attr = object.__getattribute__(self, name)
        if name.startswith("_") or not callable(attr) or name in _NOT_OPERATIONS:
            return attr
        service = object.__getattribute__(self, "service")
        operation = operation_name(service, name)

        def call(**request):
            validate_request(service, operation, request)
            strict.validate(service, operation, request)
            self.log.append((service, operation, request))
            return attr(**request)

        return call


_NOT_OPERATIONS = {
    "finish",
    "register",
    "set_status",
    "endpoint",
    "calls",
    "fail_next",
    "answer",
    "serving_version",
}


class FakeSageMaker(_Recorded):
    """The SageMaker calls the deployer may make (ARCHITECTURE.md "Deployer"), and the state
    they act on. Registry writes by people go through `register` and `set_status`."""

    service = "sagemaker"

    def __init__(self, log: list | None = None, group: str = "bincount"):
        super().__init__(log if log is not None else [])
        self.group = group
        self.packages: dict[str, dict] = {}
        self.models: dict[str, dict] = {}
        self.configs: dict[str, dict] = {}
        self.endpoints: dict[str, dict] = {}
        self.tags: dict[str, dict[str, str]] = {}
        self._clock = itertools.count()
        self._failures: dict[str, ClientError] = {}

    def _now(self) -> datetime:
        return datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=next(self._clock))

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"

    def fail_next(self, operation: str, failure: ClientError) -> None:
        """The next call of `operation` raises `failure`."""
        self._failures[operation] = failure

    def _maybe_fail(self, operation: str) -> None:
        if operation in self._failures:
            raise self._failures.pop(operation)

    # -- what people do -------------------------------------------------------------------

    def register(self, status: str = "Approved", group: str | None = None) -> str:
        group = group or self.group
        version = 1 + sum(p["ModelPackageGroupName"] == group for p in self.packages.values())
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/{version}"
        self.packages[arn] = {
            "ModelPackageGroupName": group,
            "ModelPackageVersion": version,
            "ModelPackageArn": arn,
            "ModelPackageName": group,
            "CreationTime": self._now(),
            "LastModifiedTime": self._now(),
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": status,
            "InferenceSpecification": {
                "Containers": [
                    {
                        "Image": f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch:2.6",
                        # DescribeModelPackage reports these; SageMaker works them out.
                        "ImageDigest": "sha256:" + "0" * 64,
                        "ModelDataUrl": f"s3://bucket/models/{version}/model.tar.gz",
                        "ModelDataETag": f"etag{version}",
                        "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                    }
                ],
                "SupportedContentTypes": ["image/jpeg"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        }
        return arn

    def set_status(self, arn: str, status: str) -> None:
        self.packages[arn]["ModelApprovalStatus"] = status
        self.packages[arn]["LastModifiedTime"] = self._now()

    def finish(self, name: str, outcome: str = "succeed", reason: str = "") -> None:
        """End the endpoint's create or update: `succeed`, `rollback` (back on the old
        config, InService, as after an alarm), `fail` (Failed) or `rollback_failed`."""
        endpoint = self.endpoints[name]
        pending = endpoint.pop("PendingDeploymentSummary", None)
        if endpoint["EndpointStatus"] == "Deleting":
            del self.endpoints[name]
            return
        if outcome == "succeed":
            if pending:
                endpoint["EndpointConfigName"] = pending["EndpointConfigName"]
            endpoint["EndpointStatus"] = "InService"
            endpoint.pop("FailureReason", None)
        elif outcome == "rollback":
            endpoint["EndpointStatus"] = "InService"
            endpoint["FailureReason"] = reason or "Alarm bincount-5xx went into ALARM"
        elif outcome == "fail":
            endpoint["EndpointStatus"] = "Failed"
            endpoint["FailureReason"] = reason or "Image pull failed"
        elif outcome == "rollback_failed":
            endpoint["EndpointStatus"] = "UpdateRollbackFailed"
            endpoint["FailureReason"] = reason or "Rollback failed"
        else:
            raise ValueError(outcome)
        endpoint["LastModifiedTime"] = self._now()

    def endpoint(self, name: str) -> dict:
        return self.endpoints[name]

    def calls(self, *operations: str) -> list[dict]:
        return [request for _, op, request in self.log if not operations or op in operations]

    # -- registry -------------------------------------------------------------------------

    def _package(self, operation: str, arn: str) -> dict:
        if arn not in self.packages:
            raise error(operation, "ValidationException", f"ModelPackage {arn} does not exist.")
        return self.packages[arn]

    def describe_model_package(self, ModelPackageName: str) -> dict:
        return {
            k: (dict(v) if isinstance(v, dict) else v)
            for k, v in self._package("DescribeModelPackage", ModelPackageName).items()
        }

    def create_model_package(self, **request) -> dict:
        group = request["ModelPackageGroupName"]
        token = request.get("ClientToken")
        for package in self.packages.values():
            if token and package.get("_token") == token:
                return {"ModelPackageArn": package["ModelPackageArn"]}
        version = 1 + sum(p["ModelPackageGroupName"] == group for p in self.packages.values())
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/{version}"
        stored = {k: v for k, v in request.items() if k != "ClientToken"}
        self.packages[arn] = {
            **stored,
            "ModelPackageVersion": version,
            "ModelPackageArn": arn,
            "ModelPackageName": group,
            "CreationTime": self._now(),
            "LastModifiedTime": self._now(),
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": request.get("ModelApprovalStatus", "PendingManualApproval"),
            "_token": token,
        }
        return {"ModelPackageArn": arn}

    def list_model_packages(self, **request) -> dict:
        found = [
            p
            for p in self.packages.values()
            if p["ModelPackageGroupName"]
            == request.get("ModelPackageGroupName", p["ModelPackageGroupName"])
            and p["ModelApprovalStatus"]
            == request.get("ModelApprovalStatus", p["ModelApprovalStatus"])
        ]
        found.sort(
            key=lambda p: p["CreationTime"], reverse=request.get("SortOrder") == "Descending"
        )
        start, size = int(request.get("NextToken") or 0), request.get("MaxResults", 100)
        # Small pages on purpose: the deployer must follow NextToken.
        size = min(size, 2)
        page = {
            "ModelPackageSummaryList": [
                {
                    key: p[key]
                    for key in (
                        "ModelPackageGroupName",
                        "ModelPackageVersion",
                        "ModelPackageArn",
                        "CreationTime",
                        "ModelPackageStatus",
                        "ModelApprovalStatus",
                    )
                }
                for p in found[start : start + size]
            ]
        }
        if start + size < len(found):
            page["NextToken"] = str(start + size)
        return page

    def update_model_package(self, **request) -> dict:
        package = self._package("UpdateModelPackage", request["ModelPackageArn"])
        if "ModelApprovalStatus" in request:
            package["ModelApprovalStatus"] = request["ModelApprovalStatus"]
        metadata = package.setdefault("CustomerMetadataProperties", {})
        metadata.update(request.get("CustomerMetadataProperties", {}))
        for key in request.get("CustomerMetadataPropertiesToRemove", []):
            metadata.pop(key, None)
        package["LastModifiedTime"] = self._now()
        return {"ModelPackageArn": package["ModelPackageArn"]}

    # -- models and endpoint configs ------------------------------------------------------

    def _create(self, operation: str, store: dict, label: str, kind: str, name: str, request):
        self._maybe_fail(operation)
        arn = self._arn(kind, name)
        if name in store:
            raise error(
                operation, "ValidationException", f'Cannot create already existing {label} "{arn}".'
            )
        store[name] = {**request, "Arn": arn, "CreationTime": self._now()}
        self.tags[arn] = {t["Key"]: t["Value"] for t in request.get("Tags", [])}
        return arn

    def _get(self, operation: str, store: dict, label: str, kind: str, name: str) -> dict:
        if name not in store:
            raise error(
                operation,
                "ValidationException",
                f'Could not find {label} "{self._arn(kind, name)}".',
            )
        return store[name]

    def create_model(self, **request) -> dict:
        name = request["ModelName"]
        return {
            "ModelArn": self._create("CreateModel", self.models, "model", "model", name, request)
        }

    def describe_model(self, ModelName: str) -> dict:
        model = self._get("DescribeModel", self.models, "model", "model", ModelName)
        return {"ModelName": ModelName, "ModelArn": model["Arn"]}

    def list_models(self, **request) -> dict:
        return self._list(self.models, "Models", "ModelName", "ModelArn", request)

    def delete_model(self, ModelName: str) -> dict:
        self._get("DeleteModel", self.models, "model", "model", ModelName)
        del self.models[ModelName]
        return {}

    def create_endpoint_config(self, **request) -> dict:
        for variant in request["ProductionVariants"]:
            self._get("CreateEndpointConfig", self.models, "model", "model", variant["ModelName"])
        name = request["EndpointConfigName"]
        arn = self._create(
            "CreateEndpointConfig",
            self.configs,
            "endpoint configuration",
            "endpoint-config",
            name,
            request,
        )
        return {"EndpointConfigArn": arn}

    def describe_endpoint_config(self, EndpointConfigName: str) -> dict:
        config = self._get(
            "DescribeEndpointConfig",
            self.configs,
            "endpoint configuration",
            "endpoint-config",
            EndpointConfigName,
        )
        return {
            "EndpointConfigName": EndpointConfigName,
            "EndpointConfigArn": config["Arn"],
            "ProductionVariants": [dict(v) for v in config["ProductionVariants"]],
        }

    def list_endpoint_configs(self, **request) -> dict:
        return self._list(
            self.configs, "EndpointConfigs", "EndpointConfigName", "EndpointConfigArn", request
        )

    def delete_endpoint_config(self, EndpointConfigName: str) -> dict:
        self._get(
            "DeleteEndpointConfig",
            self.configs,
            "endpoint configuration",
            "endpoint-config",
            EndpointConfigName,
        )
        del self.configs[EndpointConfigName]
        return {}

    @staticmethod
    def _list(store: dict, key: str, name_key: str, arn_key: str, request: dict) -> dict:
        names = sorted(n for n in store if request.get("NameContains", "") in n)
        start = int(request.get("NextToken") or 0)
        size = min(request.get("MaxResults", 100), 2)
        page = {
            key: [
                {name_key: n, arn_key: store[n]["Arn"], "CreationTime": store[n]["CreationTime"]}
                for n in names[start : start + size]
            ]
        }
        if start + size < len(names):
            page["NextToken"] = str(start + size)
        return page

    # -- endpoints ------------------------------------------------------------------------

    def _missing_endpoint(self, operation: str, name: str) -> ClientError:
        arn = self._arn("endpoint", name)
        return error(operation, "ValidationException", f'Could not find endpoint "{arn}".')

    def create_endpoint(self, **request) -> dict:
        self._maybe_fail("CreateEndpoint")
        name, config = request["EndpointName"], request["EndpointConfigName"]
        self._get(
            "CreateEndpoint", self.configs, "endpoint configuration", "endpoint-config", config
        )
        arn = self._arn("endpoint", name)
        if name in self.endpoints:
            raise error(
                "CreateEndpoint",
                "ValidationException",
                f'Cannot create already existing endpoint "{arn}".',
            )
        self.endpoints[name] = {
            "EndpointName": name,
            "EndpointArn": arn,
            "EndpointConfigName": config,
            "EndpointStatus": "Creating",
            "CreationTime": self._now(),
            "LastModifiedTime": self._now(),
        }
        self.tags[arn] = {t["Key"]: t["Value"] for t in request.get("Tags", [])}
        return {"EndpointArn": arn}

    def update_endpoint(self, **request) -> dict:
        self._maybe_fail("UpdateEndpoint")
        name, config = request["EndpointName"], request["EndpointConfigName"]
        if name not in self.endpoints:
            raise self._missing_endpoint("UpdateEndpoint", name)
        endpoint = self.endpoints[name]
        if endpoint["EndpointStatus"] != "InService":
            raise error(
                "UpdateEndpoint",
                "ValidationException",
                f'Cannot update in-progress endpoint "{endpoint["EndpointArn"]}".',
            )
        self._get(
            "UpdateEndpoint", self.configs, "endpoint configuration", "endpoint-config", config
        )
        endpoint["EndpointStatus"] = "Updating"
        endpoint["PendingDeploymentSummary"] = {
            "EndpointConfigName": config,
            "StartTime": self._now(),
        }
        endpoint["LastDeploymentConfig"] = request.get("DeploymentConfig", {})
        return {"EndpointArn": endpoint["EndpointArn"]}

    def describe_endpoint(self, EndpointName: str) -> dict:
        if EndpointName not in self.endpoints:
            raise self._missing_endpoint("DescribeEndpoint", EndpointName)
        endpoint = dict(self.endpoints[EndpointName])
        if endpoint["EndpointStatus"] != "Creating":
            # As SageMaker reports the variants it runs: serverless or instance-based.
            (variant,) = self.configs[endpoint["EndpointConfigName"]]["ProductionVariants"]
            running = {"VariantName": variant["VariantName"]}
            if "ServerlessConfig" in variant:
                running["CurrentServerlessConfig"] = dict(variant["ServerlessConfig"])
            else:
                running["CurrentInstanceCount"] = variant["InitialInstanceCount"]
            endpoint["ProductionVariants"] = [running]
        return endpoint

    def serving_version(self, name: str) -> str:
        """BINCOUNT_MODEL_VERSION of the model the endpoint's config runs."""
        config = self.configs[self.endpoints[name]["EndpointConfigName"]]
        model = self.models[config["ProductionVariants"][0]["ModelName"]]
        return model["PrimaryContainer"]["Environment"]["BINCOUNT_MODEL_VERSION"]

    def delete_endpoint(self, EndpointName: str) -> dict:
        if EndpointName not in self.endpoints:
            raise self._missing_endpoint("DeleteEndpoint", EndpointName)
        endpoint = self.endpoints[EndpointName]
        if endpoint["EndpointStatus"] in {"Creating", "Updating", "SystemUpdating"}:
            raise error(
                "DeleteEndpoint",
                "ValidationException",
                f'Cannot delete in-progress endpoint "{endpoint["EndpointArn"]}".',
            )
        endpoint["EndpointStatus"] = "Deleting"
        return {}

    # -- tags -----------------------------------------------------------------------------

    def _taggable(self, operation: str, arn: str) -> dict:
        # Versioned model packages carry their group's tags and cannot be tagged themselves.
        if arn not in self.tags:
            raise error(operation, "ValidationException", f"Resource {arn} does not exist.")
        return self.tags[arn]

    def add_tags(self, ResourceArn: str, Tags: list) -> dict:
        self._taggable("AddTags", ResourceArn).update({t["Key"]: t["Value"] for t in Tags})
        return {"Tags": Tags}

    def list_tags(self, ResourceArn: str, **request) -> dict:
        tags = self._taggable("ListTags", ResourceArn)
        return {"Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


class FakeRuntime(_Recorded):
    """sagemaker-runtime: an InService endpoint answers as training/inference.py does, for the
    version its model serves, taking `latency_ms` on `clock` (a test's Clock). `answer` may
    replace the answer: a function (request, version) -> bytes, or raise a ClientError."""

    service = "sagemaker-runtime"

    def __init__(self, sm: FakeSageMaker, clock=None, latency_ms: float = 50.0):
        super().__init__(sm.log)
        self.sm = sm
        self._clock = clock
        self.latency_ms = latency_ms
        self.answer: Callable[[dict, str], bytes] | None = None

    def invoke_endpoint(self, **request) -> dict:
        name = request["EndpointName"]
        endpoint = self.sm.endpoints.get(name)
        if endpoint is None or endpoint["EndpointStatus"] not in {"InService", "Updating"}:
            raise error(
                "InvokeEndpoint", "ValidationError", f"Endpoint {name} of account not found."
            )
        if self._clock is not None:
            self._clock.now += self.latency_ms / 1000.0
        version = self.sm.serving_version(name)
        body = (self.answer or good_answer)(request, version)
        return {
            "ResponseMetadata": {"HTTPStatusCode": 200},
            "ContentType": "application/json",
            "Body": StreamingBody(io.BytesIO(body), len(body)),
        }


def good_answer(request: dict, version: str) -> bytes:
    probabilities = {"1": 0.1, "2": 0.2, "3": 0.4, "4": 0.2, "5": 0.1}
    return json.dumps(
        {"predictions": [{"count": 3, "probabilities": probabilities}], "model_version": version}
    ).encode()


class FakeSNS(_Recorded):
    service = "sns"

    def __init__(self, log: list | None = None):
        super().__init__(log if log is not None else [])
        self.messages: list[dict] = []
        self._failures: list[ClientError] = []

    def fail_next(self, failure: ClientError) -> None:
        self._failures.append(failure)

    def publish(self, **request) -> dict:
        if self._failures:
            raise self._failures.pop(0)
        self.messages.append(request)
        return {"MessageId": str(len(self.messages))}


class FakeAutoscaling(_Recorded):
    service = "application-autoscaling"

    def __init__(self, log: list | None = None):
        super().__init__(log if log is not None else [])
        self.targets: dict[str, dict] = {}
        self.policies: dict[str, dict] = {}

    def register_scalable_target(self, **request) -> dict:
        self.targets[request["ResourceId"]] = request
        return {"ScalableTargetARN": f"arn:aws:application-autoscaling:{REGION}:{ACCOUNT}:x"}

    def put_scaling_policy(self, **request) -> dict:
        if request["ResourceId"] not in self.targets:
            raise error(
                "PutScalingPolicy", "ObjectNotFoundException", "No scalable target registered"
            )
        self.policies[f"{request['ResourceId']}:{request['PolicyName']}"] = request
        return {"PolicyARN": "arn:aws:autoscaling:x", "Alarms": []}

    def deregister_scalable_target(self, **request) -> dict:
        resource = request["ResourceId"]
        if resource not in self.targets:
            raise error(
                "DeregisterScalableTarget",
                "ObjectNotFoundException",
                f"No scalable target registered for service namespace: sagemaker, resource ID: "
                f"{resource}, scalable dimension: sagemaker:variant:DesiredInstanceCount",
            )
        del self.targets[resource]
        self.policies = {k: v for k, v in self.policies.items() if v["ResourceId"] != resource}
        return {}


# -- the fakes themselves -----------------------------------------------------------------------


def test_requests_are_checked_against_the_service_model():
    sm = FakeSageMaker()
    with pytest.raises(ParamValidationError, match="EndpointName"):
        sm.describe_endpoint()
    with pytest.raises(ParamValidationError, match="not one of"):
        sm.list_model_packages(ModelApprovalStatus="approved")
    with pytest.raises(ParamValidationError, match="does not match"):
        sm.describe_endpoint(EndpointName="under_score")
    with pytest.raises(ParamValidationError, match="does not match"):
        sm.add_tags(
            ResourceArn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/e",
            Tags=[{"Key": "k", "Value": "semi;colon"}],
        )
    with pytest.raises(ParamValidationError, match="at most 63"):
        sm.list_models(NameContains="x" * 64)


def test_endpoint_lifecycle_is_asynchronous_like_sagemaker():
    sm = FakeSageMaker()
    sm.create_model(
        ModelName="e-v1-0000aaaa",
        PrimaryContainer={"Image": "i"},
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/r",
    )
    sm.create_endpoint_config(
        EndpointConfigName="e-v1-0000aaaa",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "e-v1-0000aaaa",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName="e", EndpointConfigName="e-v1-0000aaaa")
    assert sm.describe_endpoint(EndpointName="e")["EndpointStatus"] == "Creating"
    with pytest.raises(ClientError, match="in-progress"):
        sm.update_endpoint(EndpointName="e", EndpointConfigName="e-v1-0000aaaa")
    sm.finish("e")
    assert sm.describe_endpoint(EndpointName="e")["EndpointStatus"] == "InService"
    with pytest.raises(ClientError, match="already existing"):
        sm.create_endpoint(EndpointName="e", EndpointConfigName="e-v1-0000aaaa")
    sm.delete_endpoint(EndpointName="e")
    sm.finish("e")
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName="e")


def test_deregistering_an_unknown_scalable_target_is_object_not_found():
    autoscaling = FakeAutoscaling()
    with pytest.raises(ClientError) as raised:
        autoscaling.deregister_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId="endpoint/e/variant/AllTraffic",
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        )
    assert raised.value.response["Error"]["Code"] == "ObjectNotFoundException"
