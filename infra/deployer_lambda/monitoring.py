"""The Model Monitor schedule of a stage's endpoint, kept by the deployer.

A schedule's job definition names the baseline it compares against, and the baseline belongs to
the model version (Evaluate writes `baseline.json` beside `evaluation.json`; Register records it
on the version). So the deployer, which knows when a version goes live, keeps the schedule on the
live version's baseline: `ensure_schedule` when the endpoint is InService on the desired version
(CreateMonitoringSchedule needs the endpoint to exist), `delete_schedule` before the endpoint is
deleted on teardown (SageMaker refuses to delete an endpoint that a schedule still monitors).

The job is bring-your-own-container Model Monitor: the PyTorch DLC running
`processing/monitor.py`. A job definition has no code input channel, so the container's
entrypoint is a short bootstrap (`BOOTSTRAP`, below) that reads the processing source archive
the pipeline already uploads (`<prefix>/code/<sha256[:16]>/sourcedir.tar.gz`), checks it against
the digest in its key, unpacks it and runs monitor.py with the environment Model Monitor gives
it. That needs S3 from inside the container, so the job never runs network-isolated: in VPC
mode it runs in the stage's subnets (which already need the S3 gateway endpoint or a NAT,
infra/network.py), and its role may read only the code, the baselines, this endpoint's captured
data and ground truth, and write only this endpoint's monitoring reports.

Serverless endpoints have no data capture: no schedule there (`Settings` is absent).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

LOG = logging.getLogger("bincount.deployer")

SCHEDULE_SUFFIX = "-monitor"
# Where Model Monitor puts the window's captured data, and where the job's reports go.
ENDPOINT_INPUT_PATH = "/opt/ml/processing/input/endpoint"
OUTPUT_PATH = "/opt/ml/processing/output"
# The file Evaluate writes beside evaluation.json, recorded on the version by Register.
BASELINE_FILE = "baseline.json"
# Model Monitor's namespace for a bring-your-own container's metrics on a real-time endpoint,
# with the Endpoint and MonitoringSchedule dimensions the BYOC guide recommends.
METRIC_NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"
METRIC_NAMES = (
    "bincount_prediction_psi",
    "bincount_mean_confidence",
    "bincount_brightness_shift",
    "bincount_decode_failure_rate",
    "bincount_drift",
    "bincount_accuracy",
    "bincount_mae",
)
# Model Monitor accepts only these two cadences for a real-time endpoint's schedule.
CRON_HOURLY = "cron(0 * ? * * *)"
CRON_DAILY = "cron(0 0 ? * * *)"
# The environment variable holding a digest of the rest of the schedule's definition: what
# DescribeMonitoringSchedule answers carries defaults SageMaker filled in, so equality of the
# answer and the request says nothing; the digest does.
DIGEST_ENV = "BINCOUNT_SCHEDULE_DIGEST"
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_CODE_KEY = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/(.+/)?code/([0-9a-f]{16})/[^/]+$")
_NAME_OK = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")

# The container's entrypoint is `python3 -c "<runner>" <line> <line> ...`: the runner executes
# the lines joined by newlines. Each entry of ContainerEntrypoint may hold at most 256
# characters (the service model), so the bootstrap travels one line per entry. Everything it
# reads comes from the job's environment, so the lines never change.
RUNNER = "import sys; exec('\\n'.join(sys.argv[1:]))"
BOOTSTRAP = (
    "import datetime, hashlib, io, json, os, sys, tarfile",
    "import boto3",
    "env = os.environ",
    "s3 = boto3.client('s3')",
    "def split(uri):",
    "    bucket, _, key = uri.removeprefix('s3://').partition('/')",
    "    return bucket, key",
    "bucket, key = split(env['BINCOUNT_CODE_URI'])",
    "body = s3.get_object(Bucket=bucket, Key=key)['Body'].read()",
    "if hashlib.sha256(body).hexdigest()[:16] != env['BINCOUNT_CODE_SHA256']:",
    "    sys.exit(f'error: {env[\"BINCOUNT_CODE_URI\"]} does not match its digest: not run')",
    "code = env.get('BINCOUNT_CODE_DIR', '/opt/ml/processing/code')",
    "tarfile.open(fileobj=io.BytesIO(body)).extractall(code, filter='data')",
    "truth_uri = env.get('BINCOUNT_GROUND_TRUTH_URI', '')",
    "if truth_uri and not env.get('ground_truth_source'):",
    "    truth = env.get('BINCOUNT_GROUND_TRUTH_DIR', '/opt/ml/processing/groundtruth')",
    "    bucket, prefix = split(truth_uri.rstrip('/') + '/')",
    "    end = datetime.date.fromisoformat(env['end_time'][:10])",
    "    pages = s3.get_paginator('list_objects_v2')",
    "    for back in range(int(env.get('BINCOUNT_GROUND_TRUTH_DAYS', '7')) + 1):",
    "        day = (end - datetime.timedelta(days=back)).strftime('%Y/%m/%d/')",
    "        for page in pages.paginate(Bucket=bucket, Prefix=prefix + day):",
    "            for item in page.get('Contents', []):",
    "                path = os.path.join(truth, item['Key'][len(prefix):])",
    "                os.makedirs(os.path.dirname(path), exist_ok=True)",
    "                s3.download_file(bucket, item['Key'], path)",
    "    env['ground_truth_source'] = truth",
    "os.chdir(code)",
    "args = json.loads(env.get('BINCOUNT_MONITOR_ARGS') or '[]')",
    "os.execv(sys.executable, [sys.executable, 'monitor.py', *args])",
)


def entrypoint() -> list[str]:
    return ["python3", "-c", RUNNER, *BOOTSTRAP]


@dataclass(frozen=True)
class Settings:
    """What the stack decides about a stage's monitoring job (the deployer's environment)."""

    role_arn: str
    image_uri: str
    # s3://<bucket>/<prefix>/code/<sha256[:16]>/sourcedir.tar.gz: the processing source archive.
    code_uri: str
    # Reports go to <output_uri>/<window>/ (Model Monitor adds the schedule and time).
    output_uri: str
    schedule_expression: str = CRON_HOURLY
    instance_type: str = "ml.m5.large"
    volume_size_gb: int = 30
    # Empty where the instance type refuses a volume key (NVMe instance storage).
    volume_kms_key_arn: str = ""
    # cdk.json's thresholds: those monitor.py judges by become its arguments.
    thresholds: Mapping[str, float] = field(default_factory=dict)
    # Labels keyed by inference id, <uri>/yyyy/mm/dd/hh/*.jsonl; "" = none.
    ground_truth_uri: str = ""
    ground_truth_days: int = 7

    def __post_init__(self) -> None:
        if not _ROLE_ARN.match(self.role_arn):
            raise ValueError(f"MONITOR_ROLE_ARN must be an IAM role ARN, got {self.role_arn!r}")
        if not self.image_uri or "/" not in self.image_uri:
            raise ValueError(f"MONITOR_IMAGE_URI must be an image URI, got {self.image_uri!r}")
        if not _CODE_KEY.match(self.code_uri):
            raise ValueError(
                "MONITOR_CODE_URI must be s3://<bucket>/<prefix>/code/<sha256[:16]>/<archive> "
                f"(the processing source archive the pipeline uploads), got {self.code_uri!r}"
            )
        for what, uri in (
            ("MONITOR_OUTPUT_URI", self.output_uri),
            ("MONITOR_GROUND_TRUTH_URI", self.ground_truth_uri or "s3://x"),
        ):
            if not uri.startswith("s3://"):
                raise ValueError(f"{what} must be an s3:// URI, got {uri!r}")
        if self.schedule_expression not in (CRON_HOURLY, CRON_DAILY):
            raise ValueError(
                f"MONITOR_SCHEDULE must be {CRON_HOURLY!r} (hourly) or {CRON_DAILY!r} (daily), "
                f"got {self.schedule_expression!r}"
            )
        if not 1 <= self.volume_size_gb <= 16384:
            raise ValueError(f"MONITOR_VOLUME_GB must be 1..16384, got {self.volume_size_gb}")
        if not 0 <= self.ground_truth_days <= 90:
            raise ValueError(
                f"MONITOR_GROUND_TRUTH_DAYS must be 0..90, got {self.ground_truth_days}"
            )

    @property
    def code_digest(self) -> str:
        match = _CODE_KEY.match(self.code_uri)
        assert match is not None  # checked in __post_init__
        return match.group(2)

    @property
    def max_runtime_seconds(self) -> int:
        # A window's job must end before the next one starts.
        return 1800 if self.schedule_expression == CRON_HOURLY else 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings | None:
        """None when the stage is not monitored (no MONITOR_ROLE_ARN)."""
        if not env.get("MONITOR_ROLE_ARN"):
            return None
        try:
            thresholds = json.loads(env.get("MONITOR_THRESHOLDS") or "{}")
            volume = int(env.get("MONITOR_VOLUME_GB") or 30)
            days = int(env.get("MONITOR_GROUND_TRUTH_DAYS") or 7)
        except ValueError as error:
            raise ValueError(f"monitoring environment: {error}") from None
        if not isinstance(thresholds, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in thresholds.values()
        ):
            raise ValueError(f"MONITOR_THRESHOLDS must be a JSON object of numbers: {thresholds}")
        return cls(
            role_arn=env["MONITOR_ROLE_ARN"],
            image_uri=env.get("MONITOR_IMAGE_URI", ""),
            code_uri=env.get("MONITOR_CODE_URI", ""),
            output_uri=env.get("MONITOR_OUTPUT_URI", ""),
            schedule_expression=env.get("MONITOR_SCHEDULE") or CRON_HOURLY,
            instance_type=env.get("MONITOR_INSTANCE_TYPE") or "ml.m5.large",
            volume_size_gb=volume,
            volume_kms_key_arn=env.get("MONITOR_VOLUME_KMS_KEY_ARN", ""),
            thresholds=thresholds,
            ground_truth_uri=env.get("MONITOR_GROUND_TRUTH_URI", ""),
            ground_truth_days=days,
        )


# cdk.json's threshold names -> processing/monitor.py's options.
MONITOR_OPTIONS = {
    "prediction_psi": "--psi-threshold",
    "brightness_shift": "--brightness-k",
    "decode_failure_rate": "--decode-failure-rate",
    "confidence_drop": "--confidence-drop",
}


def monitor_arguments(thresholds: Mapping[str, float]) -> list[str]:
    """monitor.py's threshold options for the thresholds it judges by (the rest are alarms')."""
    return [
        item
        for name, option in MONITOR_OPTIONS.items()
        if name in thresholds
        for item in (option, repr(float(thresholds[name])))
    ]


def schedule_name(endpoint: str) -> str:
    """`<endpoint>-monitor`, within SageMaker's 63 characters (the stack's alarms use it too)."""
    name = endpoint[: 63 - len(SCHEDULE_SUFFIX)].rstrip("-") + SCHEDULE_SUFFIX
    if not _NAME_OK.match(name):
        raise ValueError(f"no monitoring schedule name can be made from endpoint {endpoint!r}")
    return name


def baseline_uri(package: Mapping[str, Any]) -> str | None:
    """The version's `baseline.json`, wherever Register recorded it (DriftCheckBaselines or
    ModelMetrics); None for a version registered without one."""
    for section in ("DriftCheckBaselines", "ModelMetrics"):
        for uri in _s3_uris(package.get(section) or {}):
            if uri.rstrip("/").rsplit("/", 1)[-1] == BASELINE_FILE:
                return uri
    return None


def _s3_uris(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in sorted(value.items()):
            if key == "S3Uri" and isinstance(item, str):
                yield item
            else:
                yield from _s3_uris(item)
    elif isinstance(value, list):
        for item in value:
            yield from _s3_uris(item)


def schedule_config(
    package: Mapping[str, Any],
    baseline: str,
    settings: Settings,
    *,
    endpoint: str,
    kms_key_arn: str = "",
    subnets: tuple[str, ...] = (),
    security_group_ids: tuple[str, ...] = (),
) -> dict:
    """The MonitoringScheduleConfig for `endpoint` serving `package`, digest included."""
    environment = {
        # Model Monitor passes these to a bring-your-own container as given.
        "publish_cloudwatch_metrics": "Enabled",
        "BINCOUNT_MODEL_PACKAGE_ARN": package["ModelPackageArn"],
        # monitor.py's own verdict (bincount_drift) judges by cdk.json's thresholds.
        "BINCOUNT_MONITOR_ARGS": json.dumps(monitor_arguments(settings.thresholds)),
        "BINCOUNT_CODE_URI": settings.code_uri,
        "BINCOUNT_CODE_SHA256": settings.code_digest,
    }
    if settings.ground_truth_uri:
        environment["BINCOUNT_GROUND_TRUTH_URI"] = settings.ground_truth_uri
        environment["BINCOUNT_GROUND_TRUTH_DAYS"] = str(settings.ground_truth_days)
    cluster: dict[str, Any] = {
        "InstanceCount": 1,
        "InstanceType": settings.instance_type,
        "VolumeSizeInGB": settings.volume_size_gb,
    }
    if settings.volume_kms_key_arn:
        cluster["VolumeKmsKeyId"] = settings.volume_kms_key_arn
    output: dict[str, Any] = {
        "MonitoringOutputs": [
            {
                "S3Output": {
                    "S3Uri": settings.output_uri,
                    "LocalPath": OUTPUT_PATH,
                    "S3UploadMode": "EndOfJob",
                }
            }
        ]
    }
    if kms_key_arn:
        output["KmsKeyId"] = kms_key_arn
    network: dict[str, Any] = {
        "EnableInterContainerTrafficEncryption": True,
        # The bootstrap reads its code from S3 (module docstring): never isolated.
        "EnableNetworkIsolation": False,
    }
    if subnets:
        network["VpcConfig"] = {
            "Subnets": list(subnets),
            "SecurityGroupIds": list(security_group_ids),
        }
    definition = {
        "BaselineConfig": {"StatisticsResource": {"S3Uri": baseline}},
        "MonitoringInputs": [
            {
                "EndpointInput": {
                    "EndpointName": endpoint,
                    "LocalPath": ENDPOINT_INPUT_PATH,
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                }
            }
        ],
        "MonitoringOutputConfig": output,
        "MonitoringResources": {"ClusterConfig": cluster},
        "MonitoringAppSpecification": {
            "ImageUri": settings.image_uri,
            "ContainerEntrypoint": entrypoint(),
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "Environment": environment,
        "NetworkConfig": network,
        "RoleArn": settings.role_arn,
    }
    config = {
        "ScheduleConfig": {"ScheduleExpression": settings.schedule_expression},
        "MonitoringJobDefinition": definition,
    }
    environment[DIGEST_ENV] = _digest(config)
    return config


def _digest(config: Mapping[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def ensure_schedule(
    package: Mapping[str, Any],
    sagemaker: Any,
    settings: Settings | None,
    *,
    endpoint: str,
    kms_key_arn: str = "",
    subnets: tuple[str, ...] = (),
    security_group_ids: tuple[str, ...] = (),
    tags: list[dict[str, str]] | None = None,
) -> str | None:
    """Keep `<endpoint>-monitor` on the live version's baseline. Returns what was done
    (`created`, `updated`, `unchanged`, `busy`, `stopped`, `no_baseline`, `deleted`), None when
    the stage is not monitored. Called with the endpoint InService on `package`."""
    if settings is None:
        return None
    name = schedule_name(endpoint)
    existing = describe_schedule(sagemaker, name)
    baseline = baseline_uri(package)
    if baseline is None:
        # A version registered before baselines existed: comparing it with another
        # version's baseline would raise false alarms.
        LOG.warning(
            json.dumps(
                {
                    "event": "monitoring_no_baseline",
                    "model_package_arn": package.get("ModelPackageArn", ""),
                    "schedule": name,
                }
            )
        )
        if existing is None:
            return "no_baseline"
        _delete_once(sagemaker, name)
        return "deleted"
    config = schedule_config(
        package,
        baseline,
        settings,
        endpoint=endpoint,
        kms_key_arn=kms_key_arn,
        subnets=subnets,
        security_group_ids=security_group_ids,
    )
    if existing is None:
        request: dict[str, Any] = {
            "MonitoringScheduleName": name,
            "MonitoringScheduleConfig": config,
        }
        if tags:
            request["Tags"] = tags
        if not _create_once(sagemaker.create_monitoring_schedule, **request):
            return "busy"
        return _logged("created", name, baseline)
    status = existing.get("MonitoringScheduleStatus", "")
    if status == "Pending":
        # Being created or updated: the next reconcile (event or schedule) looks again.
        return "busy"
    current = (
        existing.get("MonitoringScheduleConfig", {})
        .get("MonitoringJobDefinition", {})
        .get("Environment", {})
        .get(DIGEST_ENV)
    )
    if current == config["MonitoringJobDefinition"]["Environment"][DIGEST_ENV] and status in (
        "Scheduled",
        "Stopped",
    ):
        # Stopped by a person (StopMonitoringSchedule): theirs to start again.
        return "unchanged" if status == "Scheduled" else "stopped"
    sagemaker.update_monitoring_schedule(
        MonitoringScheduleName=name, MonitoringScheduleConfig=config
    )
    return _logged("updated", name, baseline)


def delete_schedule(
    sagemaker: Any,
    endpoint: str,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    timeout_seconds: float,
    poll_seconds: float = 5.0,
) -> bool:
    """Delete `<endpoint>-monitor` and wait until it is gone (the endpoint cannot be deleted
    while a schedule monitors it). False when there was none."""
    name = schedule_name(endpoint)
    if describe_schedule(sagemaker, name) is None:
        return False
    _delete_once(sagemaker, name)
    deadline = clock() + timeout_seconds
    while describe_schedule(sagemaker, name) is not None:
        if clock() >= deadline:
            raise RuntimeError(
                f"monitoring schedule {name} still exists {timeout_seconds:g} s after its "
                "deletion; delete the stack again once it is gone"
            )
        sleep(poll_seconds)
    LOG.info(json.dumps({"event": "monitoring_schedule_deleted", "schedule": name}))
    return True


def describe_schedule(sagemaker: Any, name: str) -> dict | None:
    try:
        return sagemaker.describe_monitoring_schedule(MonitoringScheduleName=name)
    except ClientError as error:
        if _missing(error):
            return None
        raise


def _delete_once(sagemaker: Any, name: str) -> None:
    try:
        sagemaker.delete_monitoring_schedule(MonitoringScheduleName=name)
    except ClientError as error:
        if not _missing(error):
            raise


def _create_once(create: Callable[..., Any], **request: Any) -> bool:
    try:
        create(**request)
    except ClientError as error:
        err = error.response.get("Error", {})
        # A concurrent reconcile created it first: its next pass compares and updates.
        if err.get("Code") in ("ResourceInUse", "ValidationException") and "exist" in err.get(
            "Message", ""
        ):
            return False
        raise
    return True


def _missing(error: ClientError) -> bool:
    err = error.response.get("Error", {})
    return err.get("Code") == "ResourceNotFound" or (
        err.get("Code") == "ValidationException"
        and ("Could not find" in err.get("Message", "") or "not found" in err.get("Message", ""))
    )


def _logged(action: str, name: str, baseline: str) -> str:
    LOG.info(
        json.dumps(
            {"event": f"monitoring_schedule_{action}", "schedule": name, "baseline": baseline}
        )
    )
    return action
