"""`python -m pipeline <command>`: the definition offline, and executions on AWS.

- `definition [--out FILE] [--stage] [settings]`: print (or write) the definition JSON; no
  AWS credentials needed. `--stage` also writes the files it points at (packaging.stage_files).
- `start [--param NAME=VALUE ...]`: start an execution of the deployed pipeline; names and
  values are checked against the parameters that pipeline declares.
- `status [EXECUTION_ARN]`: each step of that execution (default: the newest) and its state.
- `doctor [--aws] [--env ENV] [--region R] [--json]`: preflight checks before deploying
  (credentials, region, CDK bootstrap, Service Quotas); see pipeline.doctor.

The local runner's commands (`run`, `executions`, ...) come from pipeline.local.cli. Every
command sets `func` (args -> exit code or None) through `set_defaults`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from pipeline import doctor, parameters
from pipeline.settings import ParameterDefaults, Settings


class CliError(Exception):
    """A mistake in what the user asked for: printed without a traceback, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; a user's mistake (a CliError, or an AWS error answering what
    was asked) is printed as `error: ...` with exit code 2, without a traceback."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return int(args.func(args) or 0)
    except CliError as error:
        message = str(error)
    except ClientError as error:
        details = error.response.get("Error", {})
        message = f"{details.get('Code', 'error')}: {details.get('Message', error)}"
    except BotoCoreError as error:  # NoRegionError, NoCredentialsError, ProfileNotFound, ...
        message = str(error)
    print(f"error: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    definition = commands.add_parser("definition", help="print the pipeline definition JSON")
    _add_settings_options(definition)
    definition.add_argument("--out", type=Path, help="write the JSON to this file instead")
    definition.add_argument(
        "--stage", action="store_true", help="also write the files the definition points at"
    )
    definition.set_defaults(func=cmd_definition)

    start = commands.add_parser("start", help="start an execution of the deployed pipeline")
    _add_aws_options(start)
    start.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a pipeline parameter (repeatable), e.g. --param Epochs=5",
    )
    start.add_argument("--display-name", help="execution display name")
    start.set_defaults(func=cmd_start)

    status = commands.add_parser("status", help="show each step of an execution and its state")
    _add_aws_options(status)
    status.add_argument("execution_arn", nargs="?", help="default: the newest execution")
    status.set_defaults(func=cmd_status)

    doctor.add_command(commands)
    _add_local_commands(commands)
    return parser


def _add_local_commands(commands) -> None:
    """The local runner's commands, once pipeline/local/cli.py exists."""
    try:
        import pipeline.local.cli as local_cli
    except ModuleNotFoundError as error:
        if error.name != "pipeline.local.cli":
            raise
        return
    local_cli.add_commands(commands)


# --- settings from the command line ----------------------------------------------------------

_SETTINGS_OPTIONS = {
    "pipeline_name": "--pipeline-name",
    "region": "--region",
    "bucket": "--bucket",
    "prefix": "--prefix",
    "role_arn": "--role-arn",
    "job_role_arn": "--job-role-arn",
    "model_package_group_name": "--model-package-group",
    "deployer_function_arn": "--deployer-arn",
    "kms_key": "--kms-key",
}


def _add_aws_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipeline-name", default=Settings.pipeline_name)
    parser.add_argument(
        "--region",
        default=None,
        help="default: AWS_REGION / AWS_DEFAULT_REGION / your AWS config",
    )


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (see pipeline/settings.py)")
    for name, flag in _SETTINGS_OPTIONS.items():
        group.add_argument(
            flag, dest=name, default=None, help=f"default: {getattr(Settings, name)}"
        )
    group.add_argument("--staging-dir", type=Path, default=None)
    group.add_argument("--subnet", dest="subnets", action="append", default=[])
    group.add_argument("--security-group", dest="security_group_ids", action="append", default=[])
    group.add_argument("--network-isolation", action="store_true", default=None)
    group.add_argument("--spot", action="store_true", default=None, help="managed spot training")
    group.add_argument(
        "--default",
        dest="defaults",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter default by its settings name, e.g. --default epochs=5",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    changes: dict[str, object] = {
        name: getattr(args, name)
        for name in (*_SETTINGS_OPTIONS, "staging_dir", "network_isolation", "spot")
        if getattr(args, name) is not None
    }
    if args.subnets:
        changes["subnets"] = tuple(args.subnets)
    if args.security_group_ids:
        changes["security_group_ids"] = tuple(args.security_group_ids)
    changes["defaults"] = _parameter_defaults(args.defaults)
    try:
        return Settings(**changes)
    except (TypeError, ValueError) as error:
        raise CliError(str(error)) from error


def _parameter_defaults(pairs: list[str]) -> ParameterDefaults:
    types = {f.name: type(getattr(ParameterDefaults(), f.name)) for f in fields(ParameterDefaults)}
    values: dict[str, object] = {}
    for name, raw in (_split_pair(pair, "--default") for pair in pairs):
        if name not in types:
            raise CliError(f"unknown --default {name!r}; known: {', '.join(sorted(types))}")
        try:
            values[name] = types[name](raw)
        except ValueError as error:
            raise CliError(f"--default {name}: {raw!r} is not a {types[name].__name__}") from error
    return ParameterDefaults(**values)


def _split_pair(pair: str, option: str) -> tuple[str, str]:
    try:
        return parameters.split_pair(pair, option)
    except ValueError as error:
        raise CliError(str(error)) from error


# --- commands --------------------------------------------------------------------------------


def cmd_definition(args: argparse.Namespace) -> int:
    from pipeline.definition import build
    from pipeline.packaging import write_staged

    settings = settings_from_args(args)
    built = build(settings)
    text = built.definition
    if args.stage:
        written = write_staged(built.staged, settings.staging_dir)
        print(f"staged {len(written)} files under {settings.staging_dir}", file=sys.stderr)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    client = _sagemaker(args.region)
    declared = declared_parameters(_deployed_definition(client, args.pipeline_name))
    overrides = parse_parameter_overrides(args.param, declared)
    request: dict[str, object] = {
        "PipelineName": args.pipeline_name,
        "PipelineParameters": [{"Name": k, "Value": v} for k, v in overrides.items()],
    }
    if args.display_name:
        request["PipelineExecutionDisplayName"] = args.display_name
    arn = _call(client.start_pipeline_execution, **request)["PipelineExecutionArn"]
    print(arn)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    client = _sagemaker(args.region)
    arn = args.execution_arn or _newest_execution(client, args.pipeline_name)
    execution = _call(client.describe_pipeline_execution, PipelineExecutionArn=arn)
    print(f"{arn}  {execution['PipelineExecutionStatus']}")
    if execution.get("FailureReason"):
        print(f"  failure: {execution['FailureReason']}")
    steps = []
    pages = client.get_paginator("list_pipeline_execution_steps").paginate(
        PipelineExecutionArn=arn, SortOrder="Ascending"
    )
    for page in _call(list, pages):
        steps.extend(page["PipelineExecutionSteps"])
    if not steps:
        print("  (no steps started yet)")
    width = max((len(s["StepName"]) for s in steps), default=0)
    for step in steps:
        line = f"  {step['StepName']:<{width}}  {step['StepStatus']}"
        if step.get("FailureReason"):
            line += f"  ({step['FailureReason']})"
        print(line)
    return 0


# --- helpers ---------------------------------------------------------------------------------


def declared_parameters(definition: dict) -> dict[str, dict]:
    """{name: parameter} as a definition declares them."""
    return {p["Name"]: p for p in definition.get("Parameters", [])}


def parse_parameter_overrides(pairs: Sequence[str], declared: dict[str, dict]) -> dict[str, str]:
    """Check NAME=VALUE pairs against the declared parameters; values stay strings for the API."""
    try:
        return parameters.parse_overrides(pairs, declared)
    except ValueError as error:
        raise CliError(str(error)) from error


def _sagemaker(region: str | None):
    import boto3
    from botocore.exceptions import NoRegionError

    try:
        return boto3.client("sagemaker", region_name=region)
    except NoRegionError as error:
        raise CliError("no AWS region: pass --region or set AWS_REGION") from error


def _call(method, *args, **kwargs):
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return method(*args, **kwargs)
    except ClientError as error:
        raise CliError(error.response.get("Error", {}).get("Message", str(error))) from error
    except BotoCoreError as error:
        raise CliError(str(error)) from error


def _deployed_definition(client, pipeline_name: str) -> dict:
    described = _call(client.describe_pipeline, PipelineName=pipeline_name)
    return json.loads(described["PipelineDefinition"])


def _newest_execution(client, pipeline_name: str) -> str:
    summaries = _call(
        client.list_pipeline_executions,
        PipelineName=pipeline_name,
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=1,
    )["PipelineExecutionSummaries"]
    if not summaries:
        raise CliError(f"pipeline {pipeline_name!r} has no executions yet")
    return summaries[0]["PipelineExecutionArn"]
