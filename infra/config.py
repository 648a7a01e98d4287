"""Per-environment settings of the stack, read from cdk.json context.

cdk.json holds `bincount:environments` (a dict of named environments) and
`bincount:environment` (the one to deploy, switch with `cdk deploy -c bincount:environment=prod`).
Each environment overrides the defaults below; unknown keys are an error, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

ENVIRONMENTS_KEY = "bincount:environments"
SELECTED_KEY = "bincount:environment"
_NAME = re.compile(r"^[a-z0-9](-?[a-z0-9]){0,40}$")
# Days SageMaker Pipelines reuses a cached step's outputs (pipeline/settings.py
# cache_expire_after, P30D): intermediate outputs must outlive every cache hit on them.
STEP_CACHE_DAYS = 30
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# ServerlessConfig.MemorySizeInMB takes 1024..6144 in steps of 1024.
SERVERLESS_MEMORY_SIZES = (1024, 2048, 3072, 4096, 5120, 6144)
# Model Monitor takes hourly or daily cron expressions (at minute 0); "off" makes no schedule.
MONITORING_SCHEDULES = {"hourly": "cron(0 * ? * * *)", "daily": "cron(0 0 ? * * *)"}
# The monitoring job's thresholds (processing/monitor.py's arguments, which the schedule passes)
# and the alarms' (infra/monitoring.py); cdk.json overrides any of them.
# prediction_psi: population stability index of the predicted counts against the baseline
# (0.1 is a moderate, 0.2 a significant shift by the usual rule of thumb); brightness_shift:
# how many baseline standard deviations the window's mean luma may move either way;
# decode_failure_rate: captured images that cannot be decoded, as a fraction; confidence_drop:
# how far the mean confidence may fall below the baseline's; min_accuracy / max_mae: alarms on
# the windows with ground truth.
MONITOR_THRESHOLDS = {
    "prediction_psi": 0.2,
    "brightness_shift": 1.0,
    "decode_failure_rate": 0.02,
    "confidence_drop": 0.15,
    "min_accuracy": 0.6,
    "max_mae": 0.6,
}
# The others are fractions (0..1).
_UNBOUNDED_THRESHOLDS = {"prediction_psi", "brightness_shift", "max_mae"}
_SCHEDULER_EXPRESSION = re.compile(
    r"^(cron\([^()]+\)|rate\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\))$"
)
_MLFLOW_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:mlflow-tracking-server/"
    r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$"
)
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")


@dataclass(frozen=True)
class StageConfig:
    """One stage of the path to production: its own endpoint, deployer and approvers.

    The first stage serves the versions the pipeline registers; each later one serves the
    versions promoted into its own model package group from the stage before it.
    """

    name: str
    endpoint_name: str
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    autoscaling_min: int = 1
    autoscaling_max: int = 2
    # > 0: a serverless endpoint with this much memory (idle costs nothing; no data capture,
    # no autoscaling or blue/green: SageMaker does not offer them for serverless).
    serverless_memory_mb: int = 0
    serverless_max_concurrency: int = 5
    # "hourly" | "daily" | "off": the Model Monitor schedule over the endpoint's captured data.
    # None: hourly for an instance-based stage, off for a serverless one (no data capture).
    monitoring_schedule: str | None = None

    def __post_init__(self) -> None:
        for name in ("name", "endpoint_name"):
            if not _NAME.match(getattr(self, name)):
                raise ValueError(
                    f"stage {name} must be lowercase letters, digits and single dashes "
                    f"(at most 41 characters): {getattr(self, name)!r}"
                )
        if not 1 <= self.autoscaling_min <= self.autoscaling_max:
            raise ValueError(
                f"stage {self.name}: need 1 <= autoscaling_min <= autoscaling_max, got "
                f"{self.autoscaling_min}, {self.autoscaling_max}"
            )
        if self.instance_count < 1:
            raise ValueError(f"stage {self.name}: instance_count must be at least 1")
        if self.serverless_memory_mb and self.serverless_memory_mb not in SERVERLESS_MEMORY_SIZES:
            raise ValueError(
                f"stage {self.name}: serverless_memory_mb must be one of "
                f"{SERVERLESS_MEMORY_SIZES} (or 0 for instances), got {self.serverless_memory_mb}"
            )
        if not 1 <= self.serverless_max_concurrency <= 200:
            raise ValueError(
                f"stage {self.name}: serverless_max_concurrency must be 1..200, got "
                f"{self.serverless_max_concurrency}"
            )
        if self.monitoring_schedule not in (None, "off", *MONITORING_SCHEDULES):
            raise ValueError(
                f"stage {self.name}: monitoring_schedule must be one of "
                f"{[*MONITORING_SCHEDULES, 'off']}, got {self.monitoring_schedule!r}"
            )
        if self.serverless and self.monitoring_schedule in MONITORING_SCHEDULES:
            raise ValueError(
                f"stage {self.name}: a serverless endpoint has no data capture to monitor; set "
                "monitoring_schedule to 'off' or give the stage an instance type"
            )

    @property
    def serverless(self) -> bool:
        return self.serverless_memory_mb > 0

    @property
    def monitored(self) -> bool:
        """Whether the deployer keeps a Model Monitor schedule on this stage's endpoint."""
        return not self.serverless and self.monitoring_schedule != "off"

    @property
    def monitoring_cron(self) -> str:
        """The schedule's cron expression (hourly unless the stage says daily)."""
        return MONITORING_SCHEDULES["daily" if self.monitoring_schedule == "daily" else "hourly"]

    @property
    def monitoring_period_seconds(self) -> int:
        return 86400 if self.monitoring_schedule == "daily" else 3600

    @property
    def monitoring_prefix(self) -> str:
        """Where the monitoring job writes its reports, one folder per window."""
        return f"monitoring/{self.endpoint_name}"

    @property
    def data_capture_prefix(self) -> str:
        return f"data-capture/{self.endpoint_name}"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StageConfig:
        if not isinstance(values, dict):
            raise ValueError(f"a stage must be an object, got {values!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown stage settings {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass(frozen=True)
class StackConfig:
    """Everything that differs between environments."""

    name: str = "dev"
    # Project name: prefixes resource names and is the pipeline's S3 prefix.
    project: str = "bincount"
    region: str = ""
    account: str = ""
    # "retain" keeps the data bucket and key on stack deletion; "destroy" is for dev.
    removal: str = "retain"
    # The first stage (the one approvals of pipeline-registered versions deploy to): its name,
    # endpoint and size. Later stages are `next_stages`, each promoted to from the one before.
    stage_name: str = "live"
    endpoint_name: str = "bincount"
    endpoint_instance_type: str = "ml.m5.large"
    endpoint_instance_count: int = 1
    autoscaling_min: int = 1
    autoscaling_max: int = 2
    serverless_memory_mb: int = 0
    serverless_max_concurrency: int = 5
    next_stages: tuple[StageConfig, ...] = ()
    # May the pipeline register versions already Approved (ModelApprovalStatus parameter)? Off
    # in prod: the pipeline role may then register only PendingManualApproval (IAM enforces it).
    pipeline_may_approve: bool = True
    # Who hears about failures, approvals waiting, deployments, rollbacks and smoke tests.
    notification_emails: tuple[str, ...] = ()
    # Tags on every resource, besides project and environment (e.g. {"cost-center": "ml-42"}).
    tags: dict[str, str] = field(default_factory=dict)
    # The smoke test's p50 latency budget for a stage that has a next stage.
    smoke_p50_ms: int = 2000
    autoscaling_target_invocations: int = 100
    data_capture_percent: int = 100
    canary_percent: int = 50
    bake_seconds: int = 300
    # How long one deployer call waits for the endpoint: the Deploy step is a pipeline Lambda
    # step (cut at 10 minutes); the endpoint's state-change events finish the rollout.
    deployer_wait_seconds: int = 120
    # Minutes between the deployer's periodic reconciliations (a safety net for lost events).
    reconcile_minutes: int = 15
    latency_alarm_microseconds: int = 2_000_000
    error_alarm_count: int = 5
    # Days before objects under the intermediate prefix expire (more than STEP_CACHE_DAYS),
    # and noncurrent versions go. Nothing under executions/ (models, reports) expires.
    execution_outputs_days: int = 90
    noncurrent_days: int = 30
    log_retention_days: int = 365
    # VPC mode: jobs, the endpoint model and the deployer run in these subnets.
    vpc_id: str = ""
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    # VPC mode: route tables of those subnets; when given, the stack adds an S3 gateway endpoint
    # to them (the subnets need one, or a NAT; see infra/network.py).
    route_table_ids: tuple[str, ...] = ()
    # Buckets besides aft-vbi-pds that Prepare may read a dataset from (SourceUri), read-only.
    source_buckets: tuple[str, ...] = ()
    # Which training instance type the pipeline defaults to (Studio can override it).
    training_instance_type: str = "ml.g4dn.xlarge"
    # Managed spot training (up to ~70% cheaper; interrupted jobs resume from checkpoints).
    spot_training: bool = False
    # The first stage's Model Monitor schedule (later stages set their own in next_stages).
    monitoring_schedule: str | None = None
    # The monitoring job's instance (a processing instance type) and alarm thresholds
    # (MONITOR_THRESHOLDS' keys; what is not given keeps its default).
    monitor_instance_type: str = "ml.m5.large"
    monitor_thresholds: dict[str, float] = field(default_factory=dict)
    # Retraining, both opt-in: an EventBridge Scheduler expression ("cron(...)" / "rate(...)")
    # that starts the pipeline, and whether a drift alarm starts it. Either start goes through
    # one guard that starts nothing while an execution is running.
    retraining_schedule: str | None = None
    retrain_on_drift: bool = False
    # Pipeline parameters of a retraining execution (names as the definition declares them;
    # checked against it at synth). What is not given keeps the definition's default.
    retraining_parameters: dict[str, str | int | float | bool] = field(default_factory=dict)
    # A SageMaker managed MLflow tracking server that Train logs to; None: the pipeline's own
    # experiment tracking (no always-on server is created by this stack).
    mlflow_tracking_server_arn: str | None = None

    def __post_init__(self) -> None:
        for name in ("name", "project", "endpoint_name"):
            if not _NAME.match(getattr(self, name)):
                raise ValueError(
                    f"{name} must be lowercase letters, digits and single dashes "
                    f"(at most 41 characters): {getattr(self, name)!r}"
                )
        if self.removal not in {"retain", "destroy"}:
            raise ValueError(f"removal must be 'retain' or 'destroy', got {self.removal!r}")
        if not 1 <= self.autoscaling_min <= self.autoscaling_max:
            raise ValueError(
                "need 1 <= autoscaling_min <= autoscaling_max, got "
                f"{self.autoscaling_min}, {self.autoscaling_max}"
            )
        for bucket in self.source_buckets:
            if not _BUCKET.match(bucket):
                raise ValueError(f"source_buckets: {bucket!r} is not an S3 bucket name")
        if self.execution_outputs_days <= STEP_CACHE_DAYS:
            raise ValueError(
                f"execution_outputs_days must exceed the pipeline's {STEP_CACHE_DAYS}-day step "
                "cache (a cached step's outputs must still be there when it is reused), got "
                f"{self.execution_outputs_days}"
            )
        if not 0 <= self.deployer_wait_seconds <= 300:
            raise ValueError(
                "deployer_wait_seconds must be 0..300 (the Deploy step must answer well within "
                f"a pipeline Lambda step's 10 minutes), got {self.deployer_wait_seconds}"
            )
        if self.reconcile_minutes < 1:
            raise ValueError(f"reconcile_minutes must be at least 1, got {self.reconcile_minutes}")
        if not isinstance(self.spot_training, bool):
            raise ValueError(f"spot_training must be true or false, got {self.spot_training!r}")
        if self.endpoint_instance_count < 1:
            raise ValueError("endpoint_instance_count must be at least 1")
        if bool(self.subnet_ids) != bool(self.security_group_ids) or (
            bool(self.subnet_ids) != bool(self.vpc_id)
        ):
            raise ValueError("VPC mode needs vpc_id, subnet_ids and security_group_ids together")
        if self.route_table_ids and not self.vpc_mode:
            raise ValueError("route_table_ids belong to VPC mode (vpc_id, subnet_ids, ...)")
        stages = self.stages  # validates the first stage's fields too
        for kind, values in (
            ("stage names", [s.name for s in stages]),
            ("endpoint names", [s.endpoint_name for s in stages]),
        ):
            if len(set(values)) != len(values):
                raise ValueError(f"stages need distinct {kind}, got {values}")
        serverless = [s.name for s in stages if s.serverless]
        if self.vpc_mode and serverless:
            # Serverless endpoints take neither a VpcConfig nor network isolation.
            raise ValueError(
                f"stages {serverless} are serverless, which VPC mode cannot use (serverless "
                "endpoints run outside any VPC): give them instance types"
            )
        for email in self.notification_emails:
            if not _EMAIL.match(email):
                raise ValueError(f"notification_emails: {email!r} is not an email address")
        if not isinstance(self.tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and not k.startswith("aws:")
            for k, v in self.tags.items()
        ):
            raise ValueError(f"tags must map names to strings (no aws: prefix), got {self.tags!r}")
        self._check_monitoring_and_retraining()

    def _check_monitoring_and_retraining(self) -> None:
        if not _INSTANCE_TYPE.match(self.monitor_instance_type):
            raise ValueError(
                "monitor_instance_type must be a SageMaker instance type such as ml.m5.large, "
                f"got {self.monitor_instance_type!r}"
            )
        if not isinstance(self.monitor_thresholds, dict):
            raise ValueError(
                f"monitor_thresholds must be an object, got {self.monitor_thresholds!r}"
            )
        unknown = sorted(set(self.monitor_thresholds) - set(MONITOR_THRESHOLDS))
        if unknown:
            raise ValueError(
                f"unknown monitor_thresholds {unknown}; known: {sorted(MONITOR_THRESHOLDS)}"
            )
        for name, value in self.thresholds.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"monitor_thresholds.{name} must be a number >= 0, got {value!r}")
            if name not in _UNBOUNDED_THRESHOLDS and value > 1:
                raise ValueError(f"monitor_thresholds.{name} is a fraction (0..1), got {value!r}")
        if self.retraining_schedule is not None and not _SCHEDULER_EXPRESSION.match(
            self.retraining_schedule
        ):
            raise ValueError(
                "retraining_schedule must be an EventBridge Scheduler expression, "
                "'cron(minutes hours day-of-month month day-of-week year)' or "
                f"'rate(N hours|days|minutes)', or null for none; got {self.retraining_schedule!r}"
            )
        if not isinstance(self.retrain_on_drift, bool):
            raise ValueError(
                f"retrain_on_drift must be true or false, got {self.retrain_on_drift!r}"
            )
        if self.retrain_on_drift and not any(s.monitored for s in self.stages):
            raise ValueError(
                "retrain_on_drift needs a monitored stage (an instance-based endpoint with a "
                "monitoring_schedule): no stage raises a drift alarm"
            )
        if not isinstance(self.retraining_parameters, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int | float | bool)
            for k, v in self.retraining_parameters.items()
        ):
            raise ValueError(
                "retraining_parameters must map pipeline parameter names to strings or numbers, "
                f"got {self.retraining_parameters!r}"
            )
        if self.mlflow_tracking_server_arn is not None and not _MLFLOW_ARN.match(
            self.mlflow_tracking_server_arn
        ):
            raise ValueError(
                "mlflow_tracking_server_arn must be a SageMaker MLflow tracking server ARN "
                "(arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>) or null, "
                f"got {self.mlflow_tracking_server_arn!r}"
            )

    @property
    def thresholds(self) -> dict[str, float]:
        """The monitoring alarms' thresholds: the defaults with cdk.json's overrides."""
        return {**MONITOR_THRESHOLDS, **self.monitor_thresholds}

    @property
    def retraining(self) -> bool:
        return self.retraining_schedule is not None or self.retrain_on_drift

    @property
    def vpc_mode(self) -> bool:
        return bool(self.subnet_ids)

    @property
    def stack_name(self) -> str:
        return f"Bincount-{self.name}"

    @property
    def resource_prefix(self) -> str:
        """Names of roles, pipeline, group, function: `<project>-<environment>`."""
        return f"{self.project}-{self.name}"

    @property
    def s3_prefix(self) -> str:
        """Everything the pipeline reads and writes lives under this key prefix."""
        return self.project

    @property
    def intermediate_prefix(self) -> str:
        """Step outputs no model version refers to; they expire (execution_outputs_days)."""
        return f"{self.s3_prefix}/intermediate"

    @property
    def stages(self) -> tuple[StageConfig, ...]:
        """The first stage (from the top-level endpoint keys), then `next_stages`."""
        first = StageConfig(
            name=self.stage_name,
            endpoint_name=self.endpoint_name,
            instance_type=self.endpoint_instance_type,
            instance_count=self.endpoint_instance_count,
            autoscaling_min=self.autoscaling_min,
            autoscaling_max=self.autoscaling_max,
            serverless_memory_mb=self.serverless_memory_mb,
            serverless_max_concurrency=self.serverless_max_concurrency,
            monitoring_schedule=self.monitoring_schedule,
        )
        return (first, *self.next_stages)

    def group_name(self, stage: StageConfig) -> str:
        """The first stage serves the pipeline's group; each later stage has its own, into
        which versions are promoted (the pattern that extends to a stage in another account)."""
        if stage.name == self.stage_name:
            return self.resource_prefix
        return f"{self.resource_prefix}-{stage.name}"

    @property
    def all_tags(self) -> dict[str, str]:
        return {"project": self.project, "environment": self.name, **self.tags}

    @classmethod
    def from_context(cls, context: dict[str, Any]) -> StackConfig:
        """Pick the selected environment out of the context (cdk.json or -c flags)."""
        environments = context.get(ENVIRONMENTS_KEY)
        if not isinstance(environments, dict) or not environments:
            raise ValueError(f"context {ENVIRONMENTS_KEY!r} must be a dict of environments")
        selected = context.get(SELECTED_KEY) or next(iter(environments))
        if selected not in environments:
            raise ValueError(
                f"{SELECTED_KEY}={selected!r} is not one of {sorted(environments)} in cdk.json"
            )
        return cls.from_dict({"name": selected, **environments[selected]})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StackConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"unknown stack settings {unknown}; known: {sorted(fields)}")
        converted = {
            key: tuple(value) if isinstance(value, list) else value for key, value in values.items()
        }
        if "next_stages" in converted:
            converted["next_stages"] = tuple(
                StageConfig.from_dict(stage) for stage in converted["next_stages"]
            )
        return cls(**converted)
