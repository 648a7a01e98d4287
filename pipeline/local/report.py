"""`python -m pipeline report [EXECUTION_ID]`: a local execution's evaluation report page.

Evaluate writes `report.html` beside `evaluation.json` (processing/report_page.py). Locally
this command rebuilds it with what only the registry knows: every version of the group with
its test accuracy and MAE, which one is live, and which one this execution registered. The
same `processing/report_page.py` runs as a subprocess over the execution's Evaluate output
and Prepare's test shards in the local store; the page goes to
`<home>/executions/<id>/report.html` (the store's copy, what the registry points at, stays as
Evaluate wrote it). The path is printed; `--open` opens it in the default browser.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import webbrowser
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT_SCRIPT = REPO_ROOT / "processing" / "report_page.py"
PAGE = "report.html"


class ReportCommandError(RuntimeError):
    """Why no page could be made for the execution, with what to do about it."""


def add_report_command(subparsers: argparse._SubParsersAction) -> None:
    """`report` on `python -m pipeline`'s subparsers."""
    report = subparsers.add_parser(
        "report",
        help="a local execution's evaluation report page (default: the newest execution)",
    )
    report.add_argument("execution_id", nargs="?", help="default: the newest execution")
    report.add_argument("--open", action="store_true", help="open the page in a web browser")
    report.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.cli_support import CliError
    from pipeline.local.workspace import Workspace

    try:
        page = build_report(Workspace.default(), args.execution_id)
    except ReportCommandError as error:
        raise CliError(str(error)) from error
    print(page)
    if args.open:
        webbrowser.open(page.as_uri())
    return 0


def _steps(record: dict) -> dict[str, dict]:
    return {s["StepName"]: s for s in record.get("Steps", [])}


def _output_uri(step: dict, name: str) -> str | None:
    for output in step.get("Properties", {}).get("ProcessingOutputConfig", {}).get("Outputs", []):
        if output.get("OutputName") == name and "S3Output" in output:
            return output["S3Output"]["S3Uri"]
    return None


def find_execution(ws, execution_id: str | None) -> dict:
    runner = ws.runner(echo=lambda line: None)
    if execution_id:
        try:
            return runner.execution(execution_id)
        except FileNotFoundError as error:
            raise ReportCommandError(
                f"{error}; `python -m pipeline executions list` shows them"
            ) from None
    records = runner.executions()
    if not records:
        raise ReportCommandError("no executions yet: run `python -m pipeline run` first")
    return records[0]


def evaluation_inputs(ws, record: dict) -> tuple[Path, Path]:
    """(Evaluate's output folder, Prepare's test shards) of the execution, in the store."""
    execution_id = record["PipelineExecutionId"]
    steps = _steps(record)
    evaluate = steps.get("Evaluate", {})
    if evaluate.get("StepStatus") != "Succeeded":
        status = evaluate.get("StepStatus", "not run")
        raise ReportCommandError(
            f"execution {execution_id} has no evaluation to report: its Evaluate step is "
            f"{status} (execution {record.get('PipelineExecutionStatus')})"
        )
    evaluation_uri = _output_uri(evaluate, "evaluation")
    test_uri = _output_uri(steps.get("Prepare", {}), "test")
    if not evaluation_uri or not test_uri:
        raise ReportCommandError(
            f"execution {execution_id}: the record names no Evaluate 'evaluation' or Prepare "
            "'test' output"
        )
    evaluation_dir, test_dir = ws.store.path(evaluation_uri), ws.store.path(test_uri)
    for what, folder, uri in (
        ("evaluation", evaluation_dir / "evaluation.json", evaluation_uri),
        ("test split", test_dir, test_uri),
    ):
        if not folder.exists():
            raise ReportCommandError(
                f"execution {execution_id}: its {what} ({uri}) is no longer in the store ({folder})"
            )
    return evaluation_dir, test_dir


def _metrics_of(ws, package: dict) -> tuple[float, float] | None:
    """(accuracy, MAE) from the version's evaluation.json; None when it cannot be read."""
    source = (package.get("ModelMetrics") or {}).get("ModelQuality", {}).get("Statistics", {})
    try:
        report = json.loads(ws.store.path(source["S3Uri"]).read_text(encoding="utf-8"))
        return (
            float(report["multiclass_classification_metrics"]["accuracy"]["value"]),
            float(report["counting_metrics"]["mae"]["value"]),
        )
    except (KeyError, ValueError, TypeError, OSError):
        return None


def version_history(ws, group: str, current_arn: str | None) -> list[dict[str, Any]]:
    """Every version of `group` that has an evaluation, oldest first, as report_page.py's
    --history: {version, accuracy, mae, live, current}."""
    from pipeline.local.listings import all_packages, live_arns

    sm = ws.sagemaker
    live = live_arns(sm)
    history = []
    for summary in all_packages(sm, group):
        arn = summary["ModelPackageArn"]
        try:
            package = sm.describe_model_package(ModelPackageName=arn)
        except ClientError:
            continue  # deleted meanwhile
        metrics = _metrics_of(ws, package)
        if metrics is None:
            continue
        history.append(
            {
                "version": f"v{summary['ModelPackageVersion']}",
                "accuracy": metrics[0],
                "mae": metrics[1],
                "live": arn in live,
                "current": arn == current_arn,
            }
        )
    return history


def build_report(ws, execution_id: str | None = None) -> Path:
    """Rebuild the execution's report page with the registry's history; its path."""
    record = find_execution(ws, execution_id)
    execution_id = record["PipelineExecutionId"]
    evaluation_dir, test_dir = evaluation_inputs(ws, record)
    register = _steps(record).get("Register", {})
    registered = register.get("Properties", {}) if register.get("StepStatus") == "Succeeded" else {}
    group = registered.get("ModelPackageGroupName") or ws.settings.model_package_group_name
    history = version_history(ws, group, registered.get("ModelPackageArn"))

    out_dir = ws.runner(echo=lambda line: None).executions_dir / execution_id
    out_dir.mkdir(parents=True, exist_ok=True)
    history_file = out_dir / "report-history.json"
    history_file.write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")
    page = out_dir / PAGE
    command = [
        sys.executable,
        str(REPORT_SCRIPT),
        "--evaluation-dir", str(evaluation_dir),
        "--test-dir", str(test_dir),
        "--history", str(history_file),
        "--execution-id", execution_id,
        "--output", str(page),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ReportCommandError(
            f"the report page for execution {execution_id} could not be built "
            f"(exit {result.returncode}): {message}"
        )
    return page
