"""`python -m pipeline <command>`: the definition offline, and executions on AWS.

- `definition [--out FILE] [--stage] [settings]`: print (or write) the definition JSON; no
  AWS credentials needed. `--stage` also writes the files it points at (packaging.stage_files).
- `start [--env ENV] [--region R] [--param NAME=VALUE ...] [--wait]`: start an execution of
  the deployed pipeline; names and values are checked against the parameters that pipeline
  declares. `--wait` follows it step by step (Train epoch by epoch) until it ends.
- `status [EXECUTION_ARN] [--json]`: each step of that execution (default: the newest).
- `doctor [--aws] [--env ENV] [--region R] [--json]`: preflight checks before deploying
  (credentials, region, CDK bootstrap, Service Quotas); see pipeline.doctor.
- `weights stage [--env ENV | --local] [--arch A ...] [--from-dir DIR]`: put the ImageNet
  weight files in the bucket's weights/imagenet/ (or the local store); see pipeline.weights.

The local runner's commands (`run`, `executions`, ...) come from pipeline.local.cli. Every
command sets `func` (args -> exit code or None) through `set_defaults`.

AWS commands take `--env dev|prod`: the pipeline name (`bincount-<env>`) and region come
from that cdk.json environment (boto3 reads AWS_DEFAULT_REGION, not AWS_REGION; `--region`
overrides). Exit codes: 0 done, 1 a runtime failure (an execution failed, an AWS error, a
missing resource), 2 a usage error (bad option, parameter value or unknown name).
The same CLI is installed as `bincount` (pyproject's [project.scripts]).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from pipeline import doctor, parameters, presets, weights_stage
from pipeline.cli_support import (
    NO_REGION,
    RUNTIME_ERROR,
    USAGE_ERROR,
    CliError,
    CommandFailed,
    add_env_options,
    aws_client,
    environment,
    run_command,
)
from pipeline.settings import ParameterDefaults, Settings


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("bincount")
    except PackageNotFoundError:  # a checkout used without `pip install -e .`
        import tomllib

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        return tomllib.loads(pyproject.read_text())["project"]["version"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # argparse: --help, --version (0) or a usage error (2)
        return done.code if isinstance(done.code, int) else USAGE_ERROR
    return run_command(args)


def _prog() -> str:
    return "bincount" if Path(sys.argv[0]).name == "bincount" else "python -m pipeline"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=_prog(), description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"bincount {version()}")
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
    start.add_argument(
        "--wait",
        action="store_true",
        help="follow the execution step by step (Train epoch by epoch) until it ends; "
        "exit 1 unless it Succeeded",
    )
    start.add_argument(
        "--poll-seconds", type=float, default=30.0, help="with --wait: seconds between looks"
    )
    start.add_argument(
        "--preset",
        help="start from a named set of parameter values (see `presets`); --param overrides",
    )
    start.set_defaults(func=cmd_start)

    listed = commands.add_parser(
        "presets", help="named parameter sets (e.g. abid-full) with a time and cost estimate"
    )
    listed.add_argument("name", nargs="?", help="default: every preset")
    listed.add_argument("--json", action="store_true", help="the presets' values as JSON")
    listed.set_defaults(func=cmd_presets)

    status = commands.add_parser("status", help="show each step of an execution and its state")
    _add_aws_options(status)
    status.add_argument("execution_arn", nargs="?", help="default: the newest execution")
    status.add_argument("--json", action="store_true", help="the execution and steps as JSON")
    status.set_defaults(func=cmd_status)

    doctor.add_command(commands)
    weights_stage.add_command(commands)
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


def _add_aws_options(parser: argparse.ArgumentParser, pipeline: bool = True) -> None:
    """--env and --region (every AWS command), and --pipeline-name where a pipeline is named."""
    add_env_options(parser)
    if pipeline:
        parser.add_argument(
            "--pipeline-name", default=None, help="default: the environment's, bincount-<env>"
        )


def pipeline_name(args: argparse.Namespace) -> str:
    """--pipeline-name, else the pipeline the environment's stack makes (bincount-<env>)."""
    return args.pipeline_name or environment(args).resource_prefix


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
        help="a parameter default, named as --param names it (or by its settings name), "
        "e.g. --default Epochs=5",
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
    for given, raw in (_split_pair(pair, "--default") for pair in pairs):
        # The pipeline parameter's name, as --param spells it (Epochs, LearningRate), or the
        # settings field's (epochs, learning_rate).
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", given).lower()
        if name not in types:
            raise CliError(f"unknown --default {given!r}; known: {', '.join(sorted(types))}")
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
    client = aws_client("sagemaker", args)
    name = pipeline_name(args)
    try:
        pairs = presets.overrides(args.preset, args.param)
    except ValueError as error:
        raise CliError(str(error)) from error
    declared = declared_parameters(_deployed_definition(client, name))
    overrides = parse_parameter_overrides(pairs, declared)
    request: dict[str, object] = {
        "PipelineName": name,
        "PipelineParameters": [{"Name": k, "Value": v} for k, v in overrides.items()],
    }
    if args.display_name:
        request["PipelineExecutionDisplayName"] = args.display_name
    arn = _call(client.start_pipeline_execution, **request)["PipelineExecutionArn"]
    print(arn)
    if not args.wait:
        return 0
    from pipeline.progress import follow_execution

    sys.stdout.flush()
    ended = _call(
        follow_execution,
        client,
        aws_client("logs", args),
        arn,
        echo=lambda line: print(line, flush=True),
        poll_seconds=args.poll_seconds,
    )
    status = ended["PipelineExecutionStatus"]
    print(
        f"execution {status}"
        + (f": {ended['FailureReason']}" if ended.get("FailureReason") else "")
    )
    return 0 if status == "Succeeded" else RUNTIME_ERROR


def cmd_presets(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else sorted(presets.PRESETS)
    unknown = [n for n in names if n not in presets.PRESETS]
    if unknown:
        raise CliError(f"unknown preset {unknown[0]!r}; known: {', '.join(presets.PRESETS)}")
    if args.json:
        print(
            json.dumps(
                {name: dict(presets.PRESETS[name].parameters) for name in names},
                indent=2,
                sort_keys=True,
            )
        )
        return 0
    print("\n\n".join(presets.describe(name) for name in names))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    client = aws_client("sagemaker", args)
    arn = args.execution_arn or _newest_execution(client, pipeline_name(args))
    execution = _call(client.describe_pipeline_execution, PipelineExecutionArn=arn)
    steps = []
    pages = client.get_paginator("list_pipeline_execution_steps").paginate(
        PipelineExecutionArn=arn, SortOrder="Ascending"
    )
    for page in _call(list, pages):
        steps.extend(page["PipelineExecutionSteps"])
    if args.json:
        print(json.dumps({"Execution": execution, "Steps": steps}, indent=2, default=str))
        return 0
    print(f"{arn}  {execution['PipelineExecutionStatus']}")
    if execution.get("FailureReason"):
        print(f"  failure: {execution['FailureReason']}")
    if not steps:
        print("  (no steps started yet)")
        return 0
    width = max(len("STEP"), *(len(s["StepName"]) for s in steps))
    print(f"  {'STEP':<{width}}  STATUS")
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


def _call(method, *args, **kwargs):
    """An AWS call whose error is the command's failure (exit 1), one line."""
    from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

    try:
        return method(*args, **kwargs)
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        raise CommandFailed(message) from error
    except NoRegionError as error:
        raise CliError(NO_REGION) from error
    except BotoCoreError as error:
        raise CommandFailed(str(error)) from error


def _deployed_definition(client, pipeline_name: str) -> dict:
    try:
        described = _call(client.describe_pipeline, PipelineName=pipeline_name)
    except CommandFailed as error:
        region = client.meta.region_name
        raise CommandFailed(
            f"pipeline {pipeline_name!r} in {region}: {error} (deployed? `make deploy ENV=...`; "
            "or pass --env, --pipeline-name, --region)"
        ) from error
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
        raise CommandFailed(f"pipeline {pipeline_name!r} has no executions yet")
    return summaries[0]["PipelineExecutionArn"]
