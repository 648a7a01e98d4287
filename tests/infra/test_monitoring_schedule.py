"""The deployer's side of monitoring (infra/deployer_lambda/monitoring.py): the schedule request
SageMaker takes (checked against botocore's model with the strict validator), its life with the
live version (created, kept, moved to a new version's baseline, removed without a baseline,
deleted before the endpoint on teardown), and the container bootstrap, run for real against an
S3 server (moto) with a stand-in monitor.py."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

# tests/ is no package: tests/aws's validator and scenarios are imported by path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aws"))
import service_model as strict
from deployer_scenarios import MonitoringSchedules

from infra.deployer_lambda import monitoring
from infra.deployer_lambda.monitoring import Settings

ACCOUNT, REGION = "123456789012", "us-east-1"
BUCKET = "bincount-prod-databucket-1a2b3c"
CODE_URI = f"s3://{BUCKET}/bincount/code/0123456789abcdef/sourcedir.tar.gz"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"
IMAGE = f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-training:2.6.0-cpu-py312"


def settings(**changes) -> Settings:
    base = Settings(
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/bincount-prod-MonitoringProdRole-AbC",
        image_uri=IMAGE,
        code_uri=CODE_URI,
        output_uri=f"s3://{BUCKET}/monitoring/bincount",
        volume_kms_key_arn=KEY,
        thresholds={"prediction_psi": 0.2},
        ground_truth_uri=f"s3://{BUCKET}/ground-truth/bincount",
    )
    return dataclasses.replace(base, **changes)


def package(version: int, *, baseline: bool = True, where: str = "DriftCheckBaselines") -> dict:
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/bincount-prod/{version}"
    out = f"s3://{BUCKET}/bincount/executions/exec{version}/Evaluate/evaluation"
    found = {"ModelPackageArn": arn, "ModelPackageVersion": version}
    found["ModelMetrics"] = {
        "ModelQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": f"{out}/evaluation.json"}
        }
    }
    if baseline:
        uri = {"Statistics": {"ContentType": "application/json", "S3Uri": f"{out}/baseline.json"}}
        if where == "DriftCheckBaselines":
            found["DriftCheckBaselines"] = {"ModelDataQuality": uri}
        else:
            found["ModelMetrics"]["ModelDataQuality"] = uri
    return found


class Endpoints:
    """Just enough of SageMaker for MonitoringSchedules: endpoints that exist or not."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.deleted: list[str] = []

    def describe_endpoint(self, EndpointName: str) -> dict:
        if EndpointName not in self.names:
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "Could not find endpoint"}},
                "DescribeEndpoint",
            )
        return {"EndpointName": EndpointName, "EndpointStatus": "InService"}

    def delete_endpoint(self, EndpointName: str) -> None:
        self.names.discard(EndpointName)
        self.deleted.append(EndpointName)


class Validating:
    """Checks each monitoring request against the sagemaker model, then forwards it."""

    def __init__(self, target) -> None:
        self.target, self.calls = target, []

    def __getattr__(self, method):
        forward = getattr(self.target, method)

        def call(**request):
            operation = strict.operation_name("sagemaker", method)
            strict.validate("sagemaker", operation, request)
            self.calls.append((operation, request))
            return forward(**request)

        return call


def keep(sm, version: int, **kwargs) -> str | None:
    return monitoring.ensure_schedule(
        package(version, **kwargs), sm, settings(), endpoint="bincount", kms_key_arn=KEY
    )


# --- the request ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "network",
    [
        {},
        {"subnets": ("subnet-0123456789abcdef0",), "security_group_ids": ("sg-0123456789abcdef0",)},
    ],
)
@pytest.mark.parametrize("expression", [monitoring.CRON_HOURLY, monitoring.CRON_DAILY])
def test_the_schedule_request_is_one_sagemaker_accepts(network, expression):
    config = monitoring.schedule_config(
        package(3),
        f"s3://{BUCKET}/x/baseline.json",
        settings(schedule_expression=expression),
        endpoint="bincount",
        kms_key_arn=KEY,
        **network,
    )
    request = {"MonitoringScheduleName": "bincount-monitor", "MonitoringScheduleConfig": config}
    strict.validate("sagemaker", "CreateMonitoringSchedule", request)
    strict.validate("sagemaker", "UpdateMonitoringSchedule", request)
    definition = config["MonitoringJobDefinition"]
    assert definition["BaselineConfig"]["StatisticsResource"]["S3Uri"].endswith("/baseline.json")
    assert definition["MonitoringInputs"][0]["EndpointInput"]["EndpointName"] == "bincount"
    # The bootstrap reads S3: never isolated; in VPC mode inside the stage's subnets.
    assert definition["NetworkConfig"]["EnableNetworkIsolation"] is False
    assert ("VpcConfig" in definition["NetworkConfig"]) == bool(network)
    assert definition["Environment"]["publish_cloudwatch_metrics"] == "Enabled"
    assert definition["Environment"]["BINCOUNT_CODE_SHA256"] == "0123456789abcdef"
    # monitor.py judges by cdk.json's thresholds (only those it knows are its options).
    assert json.loads(definition["Environment"]["BINCOUNT_MONITOR_ARGS"]) == [
        "--psi-threshold",
        "0.2",
    ]
    # An hourly window's job ends before the next window starts.
    limit = 1800 if expression == monitoring.CRON_HOURLY else 3600
    assert definition["StoppingCondition"]["MaxRuntimeInSeconds"] == limit
    assert all(
        len(part) <= 256 for part in definition["MonitoringAppSpecification"]["ContainerEntrypoint"]
    )


def test_the_baseline_is_found_wherever_register_recorded_it():
    assert monitoring.baseline_uri(package(1)).endswith("/exec1/Evaluate/evaluation/baseline.json")
    assert monitoring.baseline_uri(package(1, where="ModelMetrics")).endswith("/baseline.json")
    # evaluation.json is not a baseline: a version without one has none.
    assert monitoring.baseline_uri(package(1, baseline=False)) is None


def test_schedule_names_fit_sagemaker_for_any_endpoint_name():
    assert monitoring.schedule_name("bincount") == "bincount-monitor"
    long = "a" * 55 + "-" + "b" * 7
    name = monitoring.schedule_name(long)
    assert len(name) <= 63 and name.endswith("-monitor") and "--" not in name
    strict.validate("sagemaker", "DescribeMonitoringSchedule", {"MonitoringScheduleName": name})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MONITOR_ROLE_ARN": "role"}, "MONITOR_ROLE_ARN must be an IAM role ARN"),
        ({"MONITOR_CODE_URI": f"s3://{BUCKET}/bincount/x.tar.gz"}, "MONITOR_CODE_URI must be"),
        ({"MONITOR_SCHEDULE": "rate(5 minutes)"}, "MONITOR_SCHEDULE must be"),
        ({"MONITOR_THRESHOLDS": "[1]"}, "MONITOR_THRESHOLDS must be a JSON object"),
        ({"MONITOR_VOLUME_GB": "many"}, "monitoring environment"),
    ],
)
def test_bad_monitoring_settings_are_refused_by_name(env, message):
    good = {
        "MONITOR_ROLE_ARN": settings().role_arn,
        "MONITOR_IMAGE_URI": IMAGE,
        "MONITOR_CODE_URI": CODE_URI,
        "MONITOR_OUTPUT_URI": f"s3://{BUCKET}/monitoring/bincount",
    }
    assert Settings.from_env(good) is not None
    assert Settings.from_env({}) is None  # not monitored
    with pytest.raises(ValueError, match=message):
        Settings.from_env({**good, **env})


# --- its life with the live version -------------------------------------------------------------


def test_the_schedule_follows_the_live_version_and_its_baseline():
    sm = Validating(MonitoringSchedules(Endpoints("bincount")))
    assert keep(sm, 1) == "created"
    assert keep(sm, 1) == "unchanged"  # every event reconciles: nothing to do
    schedule = sm.describe_monitoring_schedule(MonitoringScheduleName="bincount-monitor")
    assert "/exec1/" in json.dumps(
        schedule["MonitoringScheduleConfig"]["MonitoringJobDefinition"]["BaselineConfig"]
    )
    assert keep(sm, 2) == "updated"
    schedule = sm.describe_monitoring_schedule(MonitoringScheduleName="bincount-monitor")
    definition = schedule["MonitoringScheduleConfig"]["MonitoringJobDefinition"]
    assert "/exec2/" in definition["BaselineConfig"]["StatisticsResource"]["S3Uri"]
    assert definition["Environment"]["BINCOUNT_MODEL_PACKAGE_ARN"].endswith("/bincount-prod/2")
    # A version without a baseline: no schedule rather than one against another's baseline.
    assert keep(sm, 3, baseline=False) == "deleted"
    assert keep(sm, 3, baseline=False) == "no_baseline"
    operations = [op for op, _ in sm.calls if op != "DescribeMonitoringSchedule"]
    assert operations == [
        "CreateMonitoringSchedule",
        "UpdateMonitoringSchedule",
        "DeleteMonitoringSchedule",
    ]


def test_a_pending_or_stopped_schedule_is_left_alone():
    schedules = MonitoringSchedules(Endpoints("bincount"))
    assert keep(schedules, 1) == "created"
    schedules.schedules["bincount-monitor"]["MonitoringScheduleStatus"] = "Pending"
    assert keep(schedules, 2) == "busy"
    schedules.schedules["bincount-monitor"]["MonitoringScheduleStatus"] = "Stopped"
    assert keep(schedules, 1) == "stopped"  # a person stopped it: theirs to start
    schedules.schedules["bincount-monitor"]["MonitoringScheduleStatus"] = "Failed"
    assert keep(schedules, 1) == "updated"  # a failed one is submitted again


def test_no_schedule_without_an_endpoint_or_settings():
    with pytest.raises(ClientError, match="Could not find endpoint"):
        keep(MonitoringSchedules(Endpoints()), 1)
    assert monitoring.ensure_schedule(package(1), None, None, endpoint="bincount") is None


def test_teardown_deletes_the_schedule_and_waits_until_it_is_gone():
    schedules = MonitoringSchedules(Endpoints("bincount"))
    keep(schedules, 1)
    naps = []
    assert monitoring.delete_schedule(
        schedules, "bincount", sleep=naps.append, clock=lambda: 0.0, timeout_seconds=60
    )
    assert schedules.schedules == {}
    assert not monitoring.delete_schedule(
        schedules, "bincount", sleep=naps.append, clock=lambda: 0.0, timeout_seconds=60
    )


def test_teardown_gives_up_on_a_schedule_that_does_not_go():
    class Stuck(MonitoringSchedules):
        def delete_monitoring_schedule(self, MonitoringScheduleName):
            pass  # accepted, never gone

    schedules = Stuck(Endpoints("bincount"))
    keep(schedules, 1)
    ticks = iter(range(0, 1000, 10))
    with pytest.raises(RuntimeError, match="still exists 30 s after its deletion"):
        monitoring.delete_schedule(
            schedules,
            "bincount",
            sleep=lambda s: None,
            clock=lambda: next(ticks),
            timeout_seconds=30,
        )


# --- the container's bootstrap, for real ---------------------------------------------------------

FAKE_MONITOR = """
import json, os, sys
out = os.environ["BOOTSTRAP_TEST_OUT"]
truth = os.environ.get("ground_truth_source", "")
files = sorted(
    os.path.relpath(os.path.join(d, f), truth) for d, _, fs in os.walk(truth) for f in fs
) if truth else []
json.dump({"cwd": os.getcwd(), "argv": sys.argv, "truth": files,
           "endpoint": os.environ.get("sagemaker_endpoint_name")}, open(out, "w"))
"""


def _archive(files: dict[str, str]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


@pytest.fixture
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _bootstrap(
    tmp_path: Path, endpoint_url: str, body: bytes, digest: str
) -> subprocess.CompletedProcess:
    import boto3

    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "BINCOUNT_CODE_URI": f"s3://{BUCKET}/bincount/code/{digest}/sourcedir.tar.gz",
        "BINCOUNT_CODE_SHA256": digest,
        "BINCOUNT_CODE_DIR": str(tmp_path / "code"),
        "BINCOUNT_GROUND_TRUTH_URI": f"s3://{BUCKET}/ground-truth/bincount",
        "BINCOUNT_GROUND_TRUTH_DIR": str(tmp_path / "truth"),
        "BINCOUNT_GROUND_TRUTH_DAYS": "1",
        "BOOTSTRAP_TEST_OUT": str(tmp_path / "seen.json"),
        "BINCOUNT_MONITOR_ARGS": json.dumps(monitoring.monitor_arguments({"prediction_psi": 0.3})),
        # What Model Monitor sets for the window.
        "end_time": "2025-01-02T04:00:00Z",
        "start_time": "2025-01-02T03:00:00Z",
        "sagemaker_endpoint_name": "bincount",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"bincount/code/{digest}/sourcedir.tar.gz", Body=body)
    for key in ("2025/01/02/03/a.jsonl", "2025/01/01/23/b.jsonl", "2024/12/30/10/old.jsonl"):
        s3.put_object(Bucket=BUCKET, Key=f"ground-truth/bincount/{key}", Body=b"{}\n")
    entrypoint = monitoring.entrypoint()
    assert entrypoint[0] == "python3"
    return subprocess.run(
        [sys.executable, *entrypoint[1:]], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_bootstrap_unpacks_the_code_fetches_ground_truth_and_runs_monitor(tmp_path, s3_server):
    body = _archive({"monitor.py": FAKE_MONITOR, "helper.py": "X = 1\n"})
    digest = hashlib.sha256(body).hexdigest()[:16]
    done = _bootstrap(tmp_path, s3_server, body, digest)
    assert done.returncode == 0, done.stderr
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["cwd"] == str(tmp_path / "code")
    assert seen["argv"] == ["monitor.py", "--psi-threshold", "0.3"]
    assert seen["endpoint"] == "bincount"  # Model Monitor's environment reaches monitor.py
    # The window's day and the day before (BINCOUNT_GROUND_TRUTH_DAYS=1), nothing older.
    assert seen["truth"] == ["2025/01/01/23/b.jsonl", "2025/01/02/03/a.jsonl"]


def test_the_bootstrap_refuses_an_archive_that_does_not_match_its_digest(tmp_path, s3_server):
    body = _archive({"monitor.py": FAKE_MONITOR})
    done = _bootstrap(tmp_path, s3_server, body, "0" * 16)
    assert done.returncode != 0
    assert "does not match its digest: not run" in done.stderr
    assert not (tmp_path / "seen.json").exists()


def test_monitor_py_takes_the_threshold_options_the_schedule_passes():
    """The options come from cdk.json's names; processing/monitor.py must know each one."""
    import monitor

    from infra.config import MONITOR_THRESHOLDS

    # What Model Monitor's environment gives the job; the thresholds come as options.
    env = {"dataset_source": "/in", "baseline_statistics": "/b.json", "output_path": "/out"}
    args = monitor.parse_args(monitoring.monitor_arguments(MONITOR_THRESHOLDS), env=env)
    assert args.psi_threshold == MONITOR_THRESHOLDS["prediction_psi"]
    assert args.brightness_k == MONITOR_THRESHOLDS["brightness_shift"]
    assert args.decode_failure_rate == MONITOR_THRESHOLDS["decode_failure_rate"]
    assert args.confidence_drop == MONITOR_THRESHOLDS["confidence_drop"]
