"""`python -m pipeline monitor run`: the monitoring job over a local endpoint's captured data.

The same `processing/monitor.py` the Monitoring Schedule runs on AWS, run here as a
subprocess with what Model Monitor would hand it:

- the capture: the endpoint config's DataCaptureConfig destination in the local store,
  `<destination>/<endpoint>/` (its variants and hour folders below, pipeline/local/capture.py);
- the baseline: the live version's, found as the deployer left it: endpoint -> endpoint
  config -> model (`BINCOUNT_MODEL_VERSION`, the model package ARN) -> the package's
  `DriftCheckBaselines.ModelDataQuality.Statistics` (Evaluate's baseline.json);
- ground truth, when there is any: `<settings prefix>/ground-truth/<endpoint>/` in the local
  store (JSON Lines, Model Monitor's merge format; README "Monitoring");
- the output: `<settings prefix>/monitoring/<endpoint>/<time>/` (report.json, report.png,
  statistics.json, constraint_violations.json, and the CloudWatch metric lines the job would
  publish under `cloudwatch/`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITOR_SCRIPT = REPO_ROOT / "processing" / "monitor.py"
DEFAULT_ENDPOINT = "bincount"
# Threshold arguments handed through to monitor.py unchanged.
THRESHOLDS = ("psi_threshold", "brightness_k", "decode_failure_rate", "confidence_drop")


class MonitoringError(RuntimeError):
    """What is missing for a monitoring run, with what to do about it."""


@dataclass
class MonitorInputs:
    endpoint_name: str
    package_arn: str
    baseline: Path
    capture_dir: Path
    ground_truth_dir: Path | None


def add_monitor_command(subparsers: argparse._SubParsersAction) -> None:
    """`monitor run` on `python -m pipeline`'s subparsers."""
    monitor = subparsers.add_parser(
        "monitor", help="model monitoring: run the monitoring job over captured requests"
    )
    actions = monitor.add_subparsers(dest="action", required=True)
    run = actions.add_parser(
        "run",
        help="judge a local endpoint's captured traffic against its live version's baseline",
    )
    run.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="local endpoint name")
    run.add_argument("--start-time", help="ISO 8601; default: the oldest captured record")
    run.add_argument("--end-time", help="ISO 8601, exclusive; default: the newest record")
    run.add_argument(
        "--ground-truth-dir",
        type=Path,
        help="ground-truth JSON Lines (default: the store's ground-truth/<endpoint>/ if any)",
    )
    run.add_argument("--output-dir", type=Path, help="default: the store's monitoring/<endpoint>/")
    run.add_argument("--baseline", type=Path, help="a baseline.json instead of the live version's")
    run.add_argument("--min-images", type=int, help="fewest images to judge (monitor.py: 100)")
    for name in THRESHOLDS:
        run.add_argument(
            "--" + name.replace("_", "-"), type=float, help="see processing/monitor.py"
        )
    run.set_defaults(func=cmd_monitor_run)


def cmd_monitor_run(args: argparse.Namespace) -> int:
    from pipeline.cli_support import CliError
    from pipeline.local.workspace import Workspace

    options = {name: getattr(args, name) for name in (*THRESHOLDS, "min_images")}
    try:
        report, output_dir = run_monitor(
            Workspace.default(),
            args.endpoint,
            start_time=args.start_time,
            end_time=args.end_time,
            ground_truth_dir=args.ground_truth_dir,
            output_dir=args.output_dir,
            baseline=args.baseline,
            options=options,
        )
    except MonitoringError as error:
        raise CliError(str(error)) from error
    print("\n".join(headline(report, output_dir)))
    return 0


def live_inputs(ws, endpoint_name: str, ground_truth_dir: Path | None = None) -> MonitorInputs:
    """Where the live version's baseline and the endpoint's captured data are."""
    sm = ws.sagemaker
    try:
        endpoint = sm.describe_endpoint(EndpointName=endpoint_name)
        config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        variant = config["ProductionVariants"][0]
        model = sm.describe_model(ModelName=variant["ModelName"])
    except ClientError as error:
        raise MonitoringError(
            f"no local endpoint {endpoint_name!r} to monitor "
            f"({error.response['Error']['Message']}); run `python -m pipeline quickstart` or "
            "approve a version first"
        ) from None
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    package_arn = (container.get("Environment") or {}).get("BINCOUNT_MODEL_VERSION", "")
    if not package_arn:
        raise MonitoringError(f"model {model['ModelName']} names no model package version")
    package = sm.describe_model_package(ModelPackageName=package_arn)
    source = (
        (package.get("DriftCheckBaselines") or {}).get("ModelDataQuality", {}).get("Statistics")
    )
    if not source:
        raise MonitoringError(
            f"{package_arn} has no monitoring baseline (DriftCheckBaselines): it was "
            "registered before monitoring existed; run the pipeline again and approve the new "
            "version"
        )
    baseline = ws.store.path(source["S3Uri"])
    if not baseline.is_file():
        raise MonitoringError(
            f"the baseline {source['S3Uri']} of {package_arn} is not in the store"
        )
    capture = config.get("DataCaptureConfig") or {}
    if not capture.get("DestinationS3Uri"):
        raise MonitoringError(
            f"endpoint config {config['EndpointConfigName']} captures no data (a serverless "
            "endpoint has no data capture, so nothing to monitor)"
        )
    capture_dir = ws.store.path(capture["DestinationS3Uri"]) / endpoint_name
    if ground_truth_dir is None:
        default = ws.store.path(ws.settings.s3_uri("ground-truth")) / endpoint_name
        ground_truth_dir = default if default.is_dir() else None
    return MonitorInputs(endpoint_name, package_arn, baseline, capture_dir, ground_truth_dir)


def run_monitor(
    ws,
    endpoint_name: str = DEFAULT_ENDPOINT,
    *,
    start_time: str | None = None,
    end_time: str | None = None,
    ground_truth_dir: Path | None = None,
    output_dir: Path | None = None,
    baseline: Path | None = None,
    options: dict | None = None,
) -> tuple[dict, Path]:
    """Run processing/monitor.py over the endpoint's capture; (report, output folder)."""
    inputs = live_inputs(ws, endpoint_name, ground_truth_dir)
    now = datetime.now(UTC)
    if output_dir is None:
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        output_dir = ws.store.path(ws.settings.s3_uri("monitoring")) / endpoint_name / stamp
    # Nothing captured yet is an empty window, not a missing input.
    inputs.capture_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(MONITOR_SCRIPT),
        "--capture-dir", str(inputs.capture_dir),
        "--baseline", str(baseline or inputs.baseline),
        "--output-dir", str(output_dir),
        "--endpoint-name", endpoint_name,
        "--monitoring-schedule-name", f"{endpoint_name}-local",
        "--publish-cloudwatch-metrics", "Enabled",
    ]  # fmt: skip
    if start_time:
        command += ["--start-time", start_time]
    if end_time:
        command += ["--end-time", end_time]
    if inputs.ground_truth_dir:
        command += ["--ground-truth-dir", str(inputs.ground_truth_dir)]
    for name, value in (options or {}).items():
        if value is not None:
            command += ["--" + name.replace("_", "-"), str(value)]
    env = {
        **os.environ,
        "BINCOUNT_CLOUDWATCH_METRICS_DIR": str(output_dir / "cloudwatch"),
        "MPLBACKEND": "Agg",
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise MonitoringError(f"the monitoring job failed (exit {result.returncode}): {message}")
    report = json.loads((output_dir / "report.json").read_text())
    report["model_package_arn"] = inputs.package_arn
    return report, output_dir


def headline(report: dict, output_dir: Path) -> list[str]:
    """A few lines: the window, each check and where the report is."""
    checks = report["checks"]
    lines = [
        f"monitoring {report['endpoint_name']} ({report.get('model_package_arn', '')}): "
        f"{report['records']} captured requests, {report['images']} images, "
        f"{report['decode_failures']} undecodable",
    ]
    for name, check in checks.items():
        value = check["value"]
        shown = "n/a" if value is None else f"{value:.3f}"
        status = check["status"].replace("_", " ")
        lines.append(f"  {name} {shown} (threshold {check['threshold']}): {status}")
    quality = report.get("model_quality")
    if quality:
        lines.append(
            f"  against ground truth: accuracy {quality['accuracy']:.3f}, MAE "
            f"{quality['mae']:.3f} on {quality['images']} images"
        )
    lines.append(f"  drift: {'YES' if report['drift'] else 'no'}; report: {output_dir}")
    return lines
