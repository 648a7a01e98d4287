"""`python -m pipeline weights stage`: put the ImageNet weight files in the stack's bucket, or
the local store, for Train's `weights` channel (what the files are and where they go:
pipeline/weights.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli_support import CliError, cdk_context, load_config
from pipeline.weights import (
    StageError,
    imagenet_archs,
    obtain,
    pipeline_archs,
    stage_to_aws,
    stage_to_local,
)


def add_command(commands) -> None:
    weights = commands.add_parser(
        "weights", help="ImageNet weights for Train's `weights` channel (PretrainedWeights)"
    )
    actions = weights.add_subparsers(dest="action", required=True, metavar="ACTION")
    stage = actions.add_parser(
        "stage",
        help="put the ImageNet weight files in the stack's bucket (or the local store)",
        description=weights.__doc__.split("\n\n")[-1].strip(),
    )
    where = stage.add_mutually_exclusive_group()
    where.add_argument("--env", help="environment in cdk.json (default: bincount:environment)")
    where.add_argument(
        "--local", action="store_true", help="the local runner's store (BINCOUNT_HOME)"
    )
    stage.add_argument(
        "--arch",
        action="append",
        default=[],
        choices=imagenet_archs(),
        help="repeatable; default: every architecture the pipeline offers that has them "
        "(efficientnet_lite0's, from its PyPI package, serves the offline tests)",
    )
    stage.add_argument(
        "--from-dir", type=Path, help="take the files from this folder instead of downloading"
    )
    stage.add_argument("--region", help="default: the environment's region in cdk.json")
    stage.set_defaults(func=cmd_stage)


def cmd_stage(args: argparse.Namespace) -> int:
    archs = list(dict.fromkeys(args.arch)) or list(pipeline_archs())
    try:
        files = {}
        for arch in archs:
            path = obtain(arch, args.from_dir)
            files[path.name] = path
        if args.local:
            from pipeline.local.workspace import Workspace

            done = stage_to_local(files, Workspace.default())
        else:
            import boto3

            try:
                config = load_config(cdk_context(), args.env)
            except ValueError as error:
                raise CliError(str(error)) from error
            session = boto3.session.Session(region_name=args.region or config.region)
            done = stage_to_aws(
                files, session=session, stack_name=config.stack_name, prefix=config.s3_prefix
            )
    except StageError as error:
        raise CliError(str(error)) from error
    for uri, uploaded in done:
        print(f"{'staged' if uploaded else 'unchanged'}  {uri}")
    return 0
