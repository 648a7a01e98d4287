"""The local model registry: model package groups and their versions, kept as JSON records.

Requests and responses have boto3's shapes (CreateModelPackage, DescribeModelPackage, ...),
ARNs look like AWS's, and errors are `botocore.exceptions.ClientError` with AWS's codes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline.local.store import locked, read_json, write_json

APPROVAL_STATUSES = ("Approved", "Rejected", "PendingManualApproval")


def client_error(operation: str, code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def merge_tags(existing: list[dict], added: list[dict]) -> list[dict]:
    """AddTags: `added` replaces the values of existing keys and appends new keys."""
    merged = {t["Key"]: t["Value"] for t in existing}
    merged.update({t["Key"]: t["Value"] for t in added})
    return [{"Key": k, "Value": v} for k, v in merged.items()]


def now() -> datetime:
    return datetime.now(UTC)


def as_time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


class Registry:
    """Model package groups under `<home>/registry/<group>/{group.json, <version>.json}`."""

    def __init__(self, root: Path, region: str, account: str):
        self.root = Path(root)
        self.region = region
        self.account = account

    def group_arn(self, group: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:model-package-group/{group.lower()}"

    def package_arn(self, group: str, version: int) -> str:
        prefix = f"arn:aws:sagemaker:{self.region}:{self.account}"
        return f"{prefix}:model-package/{group.lower()}/{version}"

    def _group_file(self, group: str) -> Path:
        return self.root / group / "group.json"

    def _package_file(self, group: str, version: int) -> Path:
        return self.root / group / f"{version:06d}.json"

    # -- groups -------------------------------------------------------------------------------

    def create_group(self, ModelPackageGroupName: str, **kwargs: Any) -> dict:
        path = self._group_file(ModelPackageGroupName)
        with locked(path):
            if path.exists():
                raise client_error(
                    "CreateModelPackageGroup",
                    "ValidationException",
                    f"Model Package Group already exists: {self.group_arn(ModelPackageGroupName)}",
                )
            self._write_group(ModelPackageGroupName, **kwargs)
        return {"ModelPackageGroupArn": self.group_arn(ModelPackageGroupName)}

    def _write_group(self, name: str, **kwargs: Any) -> None:
        record = {
            "ModelPackageGroupName": name,
            "ModelPackageGroupArn": self.group_arn(name),
            "ModelPackageGroupDescription": kwargs.get("ModelPackageGroupDescription", ""),
            "CreationTime": now().isoformat(),
            "ModelPackageGroupStatus": "Completed",
            "Tags": kwargs.get("Tags", []),
        }
        write_json(self._group_file(name), record)

    def groups(self) -> list[dict]:
        found = [read_json(p) for p in sorted(self.root.glob("*/group.json"))]
        return [
            {
                "ModelPackageGroupName": g["ModelPackageGroupName"],
                "ModelPackageGroupArn": g["ModelPackageGroupArn"],
                "ModelPackageGroupDescription": g.get("ModelPackageGroupDescription", ""),
                "CreationTime": as_time(g["CreationTime"]),
                "ModelPackageGroupStatus": g["ModelPackageGroupStatus"],
            }
            for g in found
        ]

    # -- versions -----------------------------------------------------------------------------

    def create_package(self, request: dict) -> dict:
        group = request.get("ModelPackageGroupName")
        if not group:
            raise client_error(
                "CreateModelPackage",
                "ValidationException",
                "ModelPackageGroupName is required (unversioned model packages are not supported "
                "by the local registry)",
            )
        status = request.get("ModelApprovalStatus", "PendingManualApproval")
        if status not in APPROVAL_STATUSES:
            raise client_error(
                "CreateModelPackage",
                "ValidationException",
                f"ModelApprovalStatus {status!r} is not one of {', '.join(APPROVAL_STATUSES)}",
            )
        if not request.get("InferenceSpecification", {}).get("Containers"):
            raise client_error(
                "CreateModelPackage",
                "ValidationException",
                "InferenceSpecification.Containers is required",
            )
        group_file = self._group_file(group)
        with locked(group_file):
            if not group_file.exists():
                # SageMaker Pipelines' RegisterModel creates the group when it is missing.
                self._write_group(group)
            version = 1 + max(
                (int(p.stem) for p in group_file.parent.glob("[0-9]*.json")), default=0
            )
            record = {
                **{k: v for k, v in request.items() if k not in {"Tags"}},
                "ModelPackageName": group,
                "ModelPackageGroupName": group,
                "ModelPackageVersion": version,
                "ModelPackageArn": self.package_arn(group, version),
                "ModelPackageStatus": "Completed",
                "ModelApprovalStatus": status,
                "CreationTime": now().isoformat(),
                "LastModifiedTime": now().isoformat(),
                "Tags": request.get("Tags", []),
            }
            write_json(self._package_file(group, version), record)
        return {"ModelPackageArn": record["ModelPackageArn"]}

    def _locate(self, arn_or_name: str, operation: str) -> Path:
        prefix = f"arn:aws:sagemaker:{self.region}:{self.account}:model-package/"
        if arn_or_name.startswith(prefix):
            group_lower, _, version = arn_or_name[len(prefix) :].rpartition("/")
            for group_dir in self.root.iterdir() if self.root.is_dir() else []:
                if group_dir.name.lower() == group_lower and version.isdigit():
                    path = self._package_file(group_dir.name, int(version))
                    if path.exists():
                        return path
        raise client_error(
            operation, "ValidationException", f"ModelPackage {arn_or_name} does not exist."
        )

    def describe_package(self, arn: str) -> dict:
        record = read_json(self._locate(arn, "DescribeModelPackage"))
        out = {k: v for k, v in record.items() if k != "Tags"}
        out["CreationTime"] = as_time(out["CreationTime"])
        out["LastModifiedTime"] = as_time(out["LastModifiedTime"])
        return out

    def package_tags(self, arn: str) -> list[dict]:
        return read_json(self._locate(arn, "ListTags")).get("Tags", [])

    def set_package_tags(self, arn: str, tags: list[dict]) -> None:
        path = self._locate(arn, "AddTags")
        with locked(path):
            record = read_json(path)
            record["Tags"] = merge_tags(record.get("Tags", []), tags)
            write_json(path, record)

    def update_package(self, request: dict) -> dict:
        arn = request["ModelPackageArn"]
        path = self._locate(arn, "UpdateModelPackage")
        status = request.get("ModelApprovalStatus")
        if status is not None and status not in APPROVAL_STATUSES:
            raise client_error(
                "UpdateModelPackage",
                "ValidationException",
                f"ModelApprovalStatus {status!r} is not one of {', '.join(APPROVAL_STATUSES)}",
            )
        with locked(path):
            record = read_json(path)
            if status is not None:
                record["ModelApprovalStatus"] = status
            if "ApprovalDescription" in request:
                record["ApprovalDescription"] = request["ApprovalDescription"]
            if "CustomerMetadataProperties" in request:
                record.setdefault("CustomerMetadataProperties", {}).update(
                    request["CustomerMetadataProperties"]
                )
            for key in request.get("CustomerMetadataPropertiesToRemove") or []:
                record.get("CustomerMetadataProperties", {}).pop(key, None)
            record["LastModifiedTime"] = now().isoformat()
            write_json(path, record)
        return {"ModelPackageArn": arn}

    def list_packages(self, request: dict) -> dict:
        group = request.get("ModelPackageGroupName")
        if group and group.startswith("arn:"):
            group = group.rsplit("/", 1)[-1]
        records = []
        for g in self.root.iterdir() if self.root.is_dir() else []:
            if group and g.name.lower() != group.lower():
                continue
            records += [read_json(p) for p in g.glob("[0-9]*.json")]
        if request.get("ModelApprovalStatus"):
            records = [
                r for r in records if r["ModelApprovalStatus"] == request["ModelApprovalStatus"]
            ]
        if request.get("SortBy", "CreationTime") == "Name":
            records.sort(key=lambda r: (r["ModelPackageGroupName"], r["ModelPackageVersion"]))
        else:
            records.sort(key=lambda r: (r["CreationTime"], r["ModelPackageVersion"]))
        if request.get("SortOrder", "Ascending") == "Descending":
            records.reverse()
        start = int(request.get("NextToken") or 0)
        size = int(request.get("MaxResults") or 100)
        page = records[start : start + size]
        out: dict[str, Any] = {
            "ModelPackageSummaryList": [
                {
                    "ModelPackageName": r["ModelPackageName"],
                    "ModelPackageGroupName": r["ModelPackageGroupName"],
                    "ModelPackageVersion": r["ModelPackageVersion"],
                    "ModelPackageArn": r["ModelPackageArn"],
                    "ModelPackageDescription": r.get("ModelPackageDescription", ""),
                    "CreationTime": as_time(r["CreationTime"]),
                    "ModelPackageStatus": r["ModelPackageStatus"],
                    "ModelApprovalStatus": r["ModelApprovalStatus"],
                }
                for r in page
            ]
        }
        if start + size < len(records):
            out["NextToken"] = str(start + size)
        return out
