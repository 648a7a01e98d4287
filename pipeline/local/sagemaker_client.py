"""Local stand-ins for boto3's `sagemaker` and `application-autoscaling` clients.

They implement exactly the methods ARCHITECTURE.md "Deployer" lists, plus what the registry
CLI needs, with boto3's keyword arguments, response shapes and `ClientError` codes. Endpoints
are served by local processes (`pipeline.local.endpoints`); create_endpoint and
update_endpoint return once the new server answers /ping, so the endpoint is InService.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.local.endpoints import EndpointBusy, EndpointError, Endpoints
from pipeline.local.registry import Registry, as_time, client_error, merge_tags
from pipeline.local.store import ObjectStore, home_dir, locked, read_json, write_json

# The local account and region (one definition: jobs.py imports them from here).
REGION = "us-east-1"
ACCOUNT = "000000000000"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _required(operation: str, kwargs: dict, *names: str) -> None:
    missing = [n for n in names if not kwargs.get(n)]
    if missing:
        raise client_error(
            operation, "ValidationException", f"missing required parameter(s): {', '.join(missing)}"
        )


class LocalSageMakerClient:
    """boto3 `sagemaker` client surface over the local home folder."""

    def __init__(self, home: Path | None = None, region: str = REGION, account: str = ACCOUNT):
        self.home = Path(home) if home else home_dir()
        self.region = region
        self.account = account
        self.store = ObjectStore(self.home / "s3")
        self.registry = Registry(self.home / "registry", region, account)
        self.endpoints = Endpoints(self.home / "endpoints", self.store)

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:{kind}/{name.lower()}"

    # -- model registry -----------------------------------------------------------------------

    def create_model_package_group(self, **kwargs: Any) -> dict:
        _required("CreateModelPackageGroup", kwargs, "ModelPackageGroupName")
        return self.registry.create_group(**kwargs)

    def list_model_package_groups(self, **kwargs: Any) -> dict:
        groups = self.registry.groups()
        if kwargs.get("NameContains"):
            groups = [g for g in groups if kwargs["NameContains"] in g["ModelPackageGroupName"]]
        return {"ModelPackageGroupSummaryList": groups}

    def create_model_package(self, **kwargs: Any) -> dict:
        return self.registry.create_package(kwargs)

    def describe_model_package(self, **kwargs: Any) -> dict:
        _required("DescribeModelPackage", kwargs, "ModelPackageName")
        return self.registry.describe_package(kwargs["ModelPackageName"])

    def list_model_packages(self, **kwargs: Any) -> dict:
        return self.registry.list_packages(kwargs)

    def update_model_package(self, **kwargs: Any) -> dict:
        _required("UpdateModelPackage", kwargs, "ModelPackageArn")
        return self.registry.update_package(kwargs)

    # -- models and endpoint configs ----------------------------------------------------------

    def _create(self, operation: str, kind: str, arn_kind: str, name_key: str, kwargs: dict) -> str:
        name = kwargs[name_key]
        arn = self._arn(arn_kind, name)
        path = self.endpoints.record_path(kind, name)
        with locked(path):
            if path.exists():
                label = {"models": "model", "configs": "endpoint configuration"}[kind]
                raise client_error(
                    operation,
                    "ValidationException",
                    f'Cannot create already existing {label} "{arn}".',
                )
            record = {
                **kwargs,
                f"{arn_kind.title().replace('-', '')}Arn": arn,
                "CreationTime": _now(),
            }
            record["Tags"] = list(kwargs.get("Tags") or [])
            write_json(path, record)
        return arn

    def create_model(self, **kwargs: Any) -> dict:
        _required("CreateModel", kwargs, "ModelName")
        if not (kwargs.get("PrimaryContainer") or kwargs.get("Containers")):
            raise client_error(
                "CreateModel", "ValidationException", "PrimaryContainer or Containers is required"
            )
        return {"ModelArn": self._create("CreateModel", "models", "model", "ModelName", kwargs)}

    def describe_model(self, **kwargs: Any) -> dict:
        _required("DescribeModel", kwargs, "ModelName")
        record = self.endpoints.get("models", kwargs["ModelName"])
        if record is None:
            arn = self._arn("model", kwargs["ModelName"])
            raise client_error(
                "DescribeModel", "ValidationException", f'Could not find model "{arn}".'
            )
        return self._shape(record)

    def create_endpoint_config(self, **kwargs: Any) -> dict:
        _required("CreateEndpointConfig", kwargs, "EndpointConfigName", "ProductionVariants")
        for variant in kwargs["ProductionVariants"]:
            if self.endpoints.get("models", variant.get("ModelName", "")) is None:
                raise client_error(
                    "CreateEndpointConfig",
                    "ValidationException",
                    f'Could not find model "{self._arn("model", variant.get("ModelName", ""))}".',
                )
        arn = self._create(
            "CreateEndpointConfig", "configs", "endpoint-config", "EndpointConfigName", kwargs
        )
        return {"EndpointConfigArn": arn}

    def describe_endpoint_config(self, **kwargs: Any) -> dict:
        _required("DescribeEndpointConfig", kwargs, "EndpointConfigName")
        record = self.endpoints.get("configs", kwargs["EndpointConfigName"])
        if record is None:
            arn = self._arn("endpoint-config", kwargs["EndpointConfigName"])
            raise client_error(
                "DescribeEndpointConfig",
                "ValidationException",
                f'Could not find endpoint configuration "{arn}".',
            )
        return self._shape(record)

    def _list(self, kind: str, key: str, name_key: str, arn_key: str, kwargs: dict) -> dict:
        """ListModels / ListEndpointConfigs: NameContains, newest first, paged."""
        contains = kwargs.get("NameContains") or ""
        records = [
            record
            for name in self.endpoints.names(kind)
            if contains in name and (record := self.endpoints.get(kind, name)) is not None
        ]
        records.sort(key=lambda r: r["CreationTime"], reverse=True)
        start = int(kwargs.get("NextToken") or 0)
        size = int(kwargs.get("MaxResults") or 100)
        page = {
            key: [
                {
                    name_key: r[name_key],
                    arn_key: r[arn_key],
                    "CreationTime": as_time(r["CreationTime"]),
                }
                for r in records[start : start + size]
            ]
        }
        if start + size < len(records):
            page["NextToken"] = str(start + size)
        return page

    def list_models(self, **kwargs: Any) -> dict:
        return self._list("models", "Models", "ModelName", "ModelArn", kwargs)

    def list_endpoint_configs(self, **kwargs: Any) -> dict:
        return self._list(
            "configs", "EndpointConfigs", "EndpointConfigName", "EndpointConfigArn", kwargs
        )

    def _delete(self, operation: str, kind: str, arn_kind: str, label: str, name: str) -> dict:
        path = self.endpoints.record_path(kind, name)
        with locked(path):
            if not path.exists():
                arn = self._arn(arn_kind, name)
                raise client_error(
                    operation, "ValidationException", f'Could not find {label} "{arn}".'
                )
            path.unlink()
        return {}

    def delete_model(self, **kwargs: Any) -> dict:
        _required("DeleteModel", kwargs, "ModelName")
        return self._delete("DeleteModel", "models", "model", "model", kwargs["ModelName"])

    def delete_endpoint_config(self, **kwargs: Any) -> dict:
        _required("DeleteEndpointConfig", kwargs, "EndpointConfigName")
        return self._delete(
            "DeleteEndpointConfig",
            "configs",
            "endpoint-config",
            "endpoint configuration",
            kwargs["EndpointConfigName"],
        )

    @staticmethod
    def _shape(record: dict) -> dict:
        out = {k: v for k, v in record.items() if k not in {"Tags", "Server"}}
        for key in ("CreationTime", "LastModifiedTime"):
            if key in out:
                out[key] = as_time(out[key])
        return out

    # -- endpoints ----------------------------------------------------------------------------

    def _missing_endpoint(self, operation: str, name: str):
        return client_error(operation, "ValidationException", f'Could not find endpoint "{name}".')

    def create_endpoint(self, **kwargs: Any) -> dict:
        _required("CreateEndpoint", kwargs, "EndpointName", "EndpointConfigName")
        name, config = kwargs["EndpointName"], kwargs["EndpointConfigName"]
        arn = self._arn("endpoint", name)
        if self.endpoints.get("configs", config) is None:
            raise client_error(
                "CreateEndpoint",
                "ValidationException",
                f'Could not find endpoint configuration "{self._arn("endpoint-config", config)}".',
            )
        record = {
            "EndpointName": name,
            "EndpointArn": arn,
            "EndpointConfigName": config,
            "CreationTime": _now(),
            "LastModifiedTime": _now(),
            "Tags": list(kwargs.get("Tags") or []),
        }
        try:
            self.endpoints.create(record)
        except FileExistsError:
            raise client_error(
                "CreateEndpoint",
                "ValidationException",
                f'Cannot create already existing endpoint "{arn}".',
            ) from None
        except EndpointError:
            pass  # the record says Failed, with the FailureReason, as SageMaker's would
        return {"EndpointArn": arn}

    def update_endpoint(self, **kwargs: Any) -> dict:
        _required("UpdateEndpoint", kwargs, "EndpointName", "EndpointConfigName")
        name, config = kwargs["EndpointName"], kwargs["EndpointConfigName"]
        if self.endpoints.get("endpoints", name) is None:
            raise self._missing_endpoint("UpdateEndpoint", name)
        if self.endpoints.get("configs", config) is None:
            raise client_error(
                "UpdateEndpoint",
                "ValidationException",
                f'Could not find endpoint configuration "{self._arn("endpoint-config", config)}".',
            )
        # A local server swap is instant, so DeploymentConfig (canary, bake time) has no effect.
        try:
            self.endpoints.deploy(name, config, wait=False)
        except EndpointBusy:
            # As SageMaker refuses an update while one is under way.
            raise client_error(
                "UpdateEndpoint",
                "ValidationException",
                f'Cannot update in-progress endpoint "{self._arn("endpoint", name)}".',
            ) from None
        except EndpointError:
            pass  # a failed update keeps serving the old config, with the FailureReason
        return {"EndpointArn": self._arn("endpoint", name)}

    def describe_endpoint(self, **kwargs: Any) -> dict:
        _required("DescribeEndpoint", kwargs, "EndpointName")
        # Repaired first: a deploy abandoned by a killed process must not read as Updating.
        record = self.endpoints.recover(kwargs["EndpointName"])
        if record is None:
            raise self._missing_endpoint("DescribeEndpoint", kwargs["EndpointName"])
        out = self._shape(record)
        config = self.endpoints.get("configs", record["EndpointConfigName"]) or {}
        out["ProductionVariants"] = [
            {
                "VariantName": v.get("VariantName", "AllTraffic"),
                "CurrentWeight": 1.0,
                "DesiredWeight": 1.0,
                "CurrentInstanceCount": v.get("InitialInstanceCount", 1),
                "DesiredInstanceCount": v.get("InitialInstanceCount", 1),
            }
            for v in config.get("ProductionVariants", [])
        ]
        return out

    def list_endpoints(self, **kwargs: Any) -> dict:
        summaries = []
        for name in self.endpoints.names("endpoints"):
            if kwargs.get("NameContains") and kwargs["NameContains"] not in name:
                continue
            record = self.endpoints.recover(name)
            if record is None:
                continue
            summaries.append(
                {
                    "EndpointName": name,
                    "EndpointArn": record["EndpointArn"],
                    "CreationTime": as_time(record["CreationTime"]),
                    "LastModifiedTime": as_time(record["LastModifiedTime"]),
                    "EndpointStatus": record["EndpointStatus"],
                }
            )
        return {"Endpoints": summaries}

    def delete_endpoint(self, **kwargs: Any) -> dict:
        _required("DeleteEndpoint", kwargs, "EndpointName")
        if not self.endpoints.delete(kwargs["EndpointName"]):
            raise self._missing_endpoint("DeleteEndpoint", kwargs["EndpointName"])
        return {}

    # -- tags ---------------------------------------------------------------------------------

    def _tagged(self, arn: str, operation: str) -> tuple[str, Any]:
        """('package', arn) or ('record', path) for a taggable ARN."""
        prefix = f"arn:aws:sagemaker:{self.region}:{self.account}:"
        kind, _, name = arn.removeprefix(prefix).partition("/")
        if arn.startswith(prefix) and kind == "model-package":
            return "package", arn
        folders = {"model": "models", "endpoint-config": "configs", "endpoint": "endpoints"}
        if arn.startswith(prefix) and kind in folders:
            for candidate in self.endpoints.names(folders[kind]):
                if candidate.lower() == name:
                    return "record", self.endpoints.record_path(folders[kind], candidate)
        raise client_error(operation, "ValidationException", f"Resource {arn} does not exist.")

    def add_tags(self, **kwargs: Any) -> dict:
        _required("AddTags", kwargs, "ResourceArn", "Tags")
        kind, target = self._tagged(kwargs["ResourceArn"], "AddTags")
        if kind == "package":
            self.registry.set_package_tags(target, kwargs["Tags"])
        else:
            with locked(target):
                record = read_json(target)
                record["Tags"] = merge_tags(record.get("Tags", []), kwargs["Tags"])
                write_json(target, record)
        return {"Tags": kwargs["Tags"]}

    def list_tags(self, **kwargs: Any) -> dict:
        _required("ListTags", kwargs, "ResourceArn")
        kind, target = self._tagged(kwargs["ResourceArn"], "ListTags")
        if kind == "package":
            return {"Tags": self.registry.package_tags(target)}
        return {"Tags": read_json(target).get("Tags", [])}


class LocalAutoscalingClient:
    """boto3 `application-autoscaling` surface: records targets and policies (nothing scales
    locally: one server per endpoint)."""

    def __init__(self, home: Path | None = None):
        self.path = (Path(home) if home else home_dir()) / "autoscaling.json"

    def _update(self, section: str, key: str, value: dict) -> None:
        with locked(self.path):
            data = read_json(self.path) if self.path.exists() else {"targets": {}, "policies": {}}
            data[section][key] = {**value, "UpdatedAt": _now()}
            write_json(self.path, data)

    def records(self) -> dict:
        return read_json(self.path) if self.path.exists() else {"targets": {}, "policies": {}}  # type: ignore[return-value]

    def register_scalable_target(self, **kwargs: Any) -> dict:
        _required(
            "RegisterScalableTarget", kwargs, "ServiceNamespace", "ResourceId", "ScalableDimension"
        )
        self._update("targets", kwargs["ResourceId"], kwargs)
        arn = f"arn:aws:application-autoscaling:{REGION}:{ACCOUNT}:scalable-target"
        return {"ScalableTargetARN": f"{arn}/{kwargs['ResourceId']}"}

    def deregister_scalable_target(self, **kwargs: Any) -> dict:
        """Removes the target and, as on AWS, its scaling policies."""
        _required(
            "DeregisterScalableTarget",
            kwargs,
            "ServiceNamespace",
            "ResourceId",
            "ScalableDimension",
        )
        resource = kwargs["ResourceId"]
        with locked(self.path):
            data = self.records()
            if resource not in data["targets"]:
                raise client_error(
                    "DeregisterScalableTarget",
                    "ObjectNotFoundException",
                    "No scalable target registered for service namespace: "
                    f"{kwargs['ServiceNamespace']}, resource ID: {resource}, scalable dimension: "
                    f"{kwargs['ScalableDimension']}",
                )
            del data["targets"][resource]
            data["policies"] = {
                key: policy
                for key, policy in data["policies"].items()
                if policy.get("ResourceId") != resource
            }
            write_json(self.path, data)
        return {}

    def put_scaling_policy(self, **kwargs: Any) -> dict:
        _required(
            "PutScalingPolicy",
            kwargs,
            "PolicyName",
            "ServiceNamespace",
            "ResourceId",
            "ScalableDimension",
        )
        self._update("policies", f"{kwargs['ResourceId']}:{kwargs['PolicyName']}", kwargs)
        return {
            "PolicyARN": (
                f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:scalingPolicy:local:resource/"
                f"{kwargs['ResourceId']}:policyName/{kwargs['PolicyName']}"
            ),
            "Alarms": [],
        }
