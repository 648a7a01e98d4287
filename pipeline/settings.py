"""Everything the pipeline definition depends on besides the code: one frozen dataclass.

Values pass through unchanged, so the CDK app can hand in CloudFormation placeholders such as
`${BucketName}` or `${PipelineRoleArn}` and wrap the resulting JSON in Fn::Sub; the local
runner hands in local values (bucket `bincount-local`, account 000000000000).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.instance_types import (
    PROCESSING_INSTANCE_TYPES,
    TRAINING_INSTANCE_TYPES,
    is_accelerated,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")
# The Architecture parameter's EnumValues (training/train.py builds each).
ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "smallcnn")


@dataclass(frozen=True)
class ParameterDefaults:
    """Defaults of the pipeline parameters a person can override per execution."""

    processing_instance_type: str = "ml.m5.2xlarge"
    processing_instance_count: int = 1
    training_instance_type: str = "ml.g4dn.xlarge"
    training_instance_count: int = 1
    epochs: int = 15
    learning_rate: float = 0.001
    batch_size: int = 64
    image_size: int = 224
    architecture: str = "resnet34"
    source_uri: str = "s3://aft-vbi-pds"
    file_list_uri: str = "bundled"
    per_class_cap: int = 0
    # At most 1% of a curated list unusable: room for a few bad files, while a wrong prefix or
    # a role without read access fails the run (processing/prepare.py's default too).
    max_skip_fraction: float = 0.01
    accuracy_threshold: float = 0.5
    # Smallest splits worth training on and judging by (justified in training/train.py and
    # processing/evaluate.py, whose own defaults these equal).
    min_train_images: int = 250
    min_validation_images: int = 100
    min_test_images: int = 200
    model_approval_status: str = "PendingManualApproval"


@dataclass(frozen=True)
class Settings:
    """Where the pipeline lives and what it may use. Equal settings give byte-equal JSON."""

    pipeline_name: str = "bincount"
    region: str = "us-east-1"
    bucket: str = "bincount-artifacts"
    prefix: str = "bincount"
    role_arn: str = "arn:aws:iam::000000000000:role/bincount-pipeline"
    # The jobs' execution role; the pipeline role when left empty.
    job_role_arn: str = ""
    model_package_group_name: str = "bincount"
    deployer_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:bincount-deployer"
    # KMS key (id or ARN) for job volumes and job outputs; none when empty.
    kms_key: str = ""
    staging_dir: Path = REPO_ROOT / "build" / "staging"
    subnets: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    network_isolation: bool = False
    spot: bool = False
    # A SageMaker managed MLflow tracking server: the pipeline records its executions there.
    # Empty: SageMaker Experiments (the pipeline's experiment, a run group per execution).
    mlflow_tracking_server_arn: str = ""
    framework_version: str = "2.6.0"
    py_version: str = "py312"
    # Where registered versions may serve, the deployer's (the endpoint's) type first: it picks
    # the inference image (CPU or GPU), and the rest of the list is of the same kind.
    inference_instance_types: tuple[str, ...] = ("ml.m5.large", "ml.m5.xlarge", "ml.c5.xlarge")
    # What the ModelApprovalStatus parameter may be (its EnumValues): only
    # PendingManualApproval where the pipeline may not approve its own versions.
    approval_statuses: tuple[str, ...] = APPROVAL_STATUSES
    max_training_seconds: int = 4 * 3600
    max_spot_wait_seconds: int = 8 * 3600
    cache_expire_after: str = "P30D"
    defaults: ParameterDefaults = field(default_factory=ParameterDefaults)

    def __post_init__(self) -> None:
        for name in ("pipeline_name", "region", "bucket", "role_arn", "model_package_group_name"):
            if not getattr(self, name):
                raise ValueError(f"Settings.{name} must not be empty")
        if self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ValueError(f"Settings.prefix must not start or end with '/': {self.prefix!r}")
        if bool(self.subnets) != bool(self.security_group_ids):
            raise ValueError("Settings.subnets and Settings.security_group_ids go together")
        object.__setattr__(self, "staging_dir", Path(self.staging_dir))
        d = self.defaults
        for name, value, allowed in (
            ("processing_instance_type", d.processing_instance_type, PROCESSING_INSTANCE_TYPES),
            ("training_instance_type", d.training_instance_type, TRAINING_INSTANCE_TYPES),
        ):
            if value not in allowed:
                raise ValueError(
                    f"default {name} {value!r} is not one the pipeline allows: {', '.join(allowed)}"
                )
        if d.model_approval_status not in self.approval_statuses:
            raise ValueError(
                f"default model_approval_status {d.model_approval_status!r} is not one of "
                f"{self.approval_statuses}"
            )
        if not self.inference_instance_types:
            raise ValueError("Settings.inference_instance_types must not be empty")
        kinds = {is_accelerated(t) for t in self.inference_instance_types}
        if len(kinds) != 1:
            raise ValueError(
                "Settings.inference_instance_types mixes CPU and accelerated types, which need "
                f"different inference images: {self.inference_instance_types}"
            )

    @property
    def jobs_role_arn(self) -> str:
        return self.job_role_arn or self.role_arn

    def s3_uri(self, *parts: str) -> str:
        """s3://bucket/prefix/parts..."""
        key = "/".join(p.strip("/") for p in (self.prefix, *parts) if p)
        return f"s3://{self.bucket}/{key}"

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)
