"""What every command of `python -m pipeline` shares, below the commands themselves: the two
kinds of error and their exit codes, running a parsed command, and the cdk.json environment
and AWS client options (`--env`, `--region`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from infra.config import ENVIRONMENTS_KEY, SELECTED_KEY, StackConfig
from pipeline.settings import REPO_ROOT

CDK_JSON = REPO_ROOT / "cdk.json"
USAGE_ERROR = 2
RUNTIME_ERROR = 1


class CliError(Exception):
    """A mistake in what the user asked for: printed without a traceback, exit code 2."""


class CommandFailed(Exception):
    """The command was fine but could not be done (AWS said no, something is missing, an
    execution failed): printed without a traceback, exit code 1."""


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command. Errors are one `error: ...` line without a traceback: a
    user's mistake (CliError, no region) exits 2, a failure to do it (CommandFailed, an AWS
    error, no credentials, no connection) exits 1."""
    from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

    code = RUNTIME_ERROR
    try:
        return int(args.func(args) or 0)
    except CliError as error:
        message, code = str(error), USAGE_ERROR
    except CommandFailed as error:
        message = str(error)
    except ClientError as error:
        details = error.response.get("Error", {})
        message = f"{details.get('Code', 'error')}: {details.get('Message', error)}"
    except NoRegionError:
        message, code = NO_REGION, USAGE_ERROR
    except BotoCoreError as error:  # NoCredentialsError, EndpointConnectionError, ...
        message = str(error)
    print(f"error: {message}", file=sys.stderr)
    return code


NO_REGION = (
    "no AWS region: pass --region or --env (cdk.json's region), or set AWS_DEFAULT_REGION "
    "(boto3 does not read AWS_REGION)"
)


def cdk_context(path: Path = CDK_JSON) -> dict:
    """cdk.json's context, read directly: importing app.py would start the CDK's Node runtime."""
    return json.loads(path.read_text())["context"]


def load_config(context: dict, env: str | None) -> StackConfig:
    """The StackConfig of `env` (default: cdk.json's selected environment); ValueError if none."""
    selected = env or context.get(SELECTED_KEY)
    return StackConfig.from_context(
        {ENVIRONMENTS_KEY: context.get(ENVIRONMENTS_KEY), SELECTED_KEY: selected}
    )


def add_env_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env", help="the cdk.json environment (dev, prod; default: bincount:environment)"
    )
    parser.add_argument(
        "--region",
        default=None,
        help="default: the environment's region in cdk.json, else AWS_DEFAULT_REGION or your "
        "AWS config (boto3 does not read AWS_REGION)",
    )


def environment(args: argparse.Namespace):
    """The cdk.json environment `--env` names (StackConfig); CliError for an unknown one."""
    try:
        return load_config(cdk_context(), getattr(args, "env", None))
    except ValueError as error:
        raise CliError(str(error)) from error


def aws_region(args: argparse.Namespace) -> str | None:
    """--region, else the environment's region in cdk.json (where the stack is), else None
    (boto3's own chain: AWS_DEFAULT_REGION, the profile)."""
    return getattr(args, "region", None) or environment(args).region or None


def aws_client(service: str, args: argparse.Namespace):
    import boto3
    from botocore.exceptions import NoRegionError

    try:
        return boto3.client(service, region_name=aws_region(args))
    except NoRegionError as error:
        raise CliError(NO_REGION) from error
