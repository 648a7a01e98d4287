"""The local commands of `python -m pipeline`: run, executions, models, endpoints, quickstart.

`add_commands(subparsers)` is called by pipeline/cli.py. The registry and endpoint commands
work on the local home folder by default and against AWS with `--aws` (boto3 clients; there,
approving a version lets EventBridge trigger the deployer, as the stack wires it).
"""

from __future__ import annotations

import argparse
import functools
import json
import mimetypes
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline.cli import CliError, run_command
from pipeline.local.endpoints import EndpointError
from pipeline.parameters import split_pair

EVENT_DETAIL_TYPE = "SageMaker Model Package State Change"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register the local runner's commands on `python -m pipeline`'s subparsers."""
    run = subparsers.add_parser(
        "run", help="run the pipeline locally (the same definition as on AWS)"
    )
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a pipeline parameter (repeatable), e.g. --param Epochs=3",
    )
    run.add_argument("--no-cache", action="store_true", help="ignore cached step results")
    run.add_argument("--logs", action="store_true", help="stream the jobs' logs")
    run.add_argument(
        "--definition", type=Path, help="run this definition JSON instead of building one"
    )
    run.set_defaults(func=cmd_run)

    executions = subparsers.add_parser("executions", help="local executions")
    ex_sub = executions.add_subparsers(dest="action", required=True)
    ex_list = ex_sub.add_parser("list", help="list executions, newest first")
    ex_list.set_defaults(func=cmd_executions_list)
    ex_show = ex_sub.add_parser("show", help="show one execution (default: the newest)")
    ex_show.add_argument("execution_id", nargs="?")
    ex_show.add_argument("--json", action="store_true", help="print the whole record")
    ex_show.set_defaults(func=cmd_executions_show)

    models = subparsers.add_parser(
        "models", help="model registry: list, approve, reject, promote (per stage)"
    )
    m_sub = models.add_subparsers(dest="action", required=True)
    m_list = m_sub.add_parser("list", help="versions of every stage's group (or of --stage)")
    _registry_args(m_list)
    m_list.set_defaults(func=cmd_models_list)
    m_promote = m_sub.add_parser(
        "promote",
        help="copy an Approved, smoke-tested version of --stage into the next stage's group "
        "(PendingManualApproval: that stage's approvers decide)",
    )
    m_promote.add_argument("version", help="version number or model package ARN")
    _registry_args(m_promote)
    m_promote.set_defaults(func=cmd_models_promote)
    for action, status in (("approve", "Approved"), ("reject", "Rejected")):
        p = m_sub.add_parser(action, help=f"set a version {status} (deploys / rolls back)")
        p.add_argument("version", help="version number or model package ARN")
        p.add_argument("--description", default="", help="ApprovalDescription")
        p.add_argument(
            "--endpoint",
            help="local: the endpoint the deployer manages (default: the stack's, bincount); "
            "on AWS it is the stack's configuration",
        )
        _registry_args(p)
        p.set_defaults(func=cmd_models_set_status, status=status)

    endpoints = subparsers.add_parser("endpoints", help="endpoints: list, invoke, stop, delete")
    e_sub = endpoints.add_subparsers(dest="action", required=True)
    e_list = e_sub.add_parser("list", help="list endpoints")
    e_list.add_argument("--aws", action="store_true", help="list the AWS account's endpoints")
    e_list.add_argument("--env", help="with --aws: the cdk.json environment whose stages to show")
    e_list.set_defaults(func=cmd_endpoints_list)
    e_invoke = e_sub.add_parser("invoke", help="send an image to an endpoint")
    e_invoke.add_argument("name")
    e_invoke.add_argument("image", type=Path)
    e_invoke.add_argument("--content-type", help="default: from the file name (image/jpeg, ...)")
    e_invoke.add_argument("--accept", default="application/json")
    e_invoke.add_argument("--aws", action="store_true", help="invoke the AWS endpoint")
    e_invoke.set_defaults(func=cmd_endpoints_invoke)
    e_stop = e_sub.add_parser("stop", help="stop local endpoint servers")
    e_stop.add_argument("name", nargs="?")
    e_stop.add_argument("--all", action="store_true", help="stop every local endpoint")
    e_stop.set_defaults(func=cmd_endpoints_stop)
    e_delete = e_sub.add_parser(
        "delete",
        help="delete a local endpoint: its server, record and folders (the deployer creates "
        "it again on the next approval or Deploy step)",
    )
    e_delete.add_argument("name")
    e_delete.set_defaults(func=cmd_endpoints_delete)

    quick = subparsers.add_parser(
        "quickstart",
        help="generate a small dataset, run the whole pipeline locally, invoke the endpoint",
    )
    from pipeline.local.quickstart import add_arguments

    add_arguments(quick)
    quick.set_defaults(func=cmd_quickstart)


def quiet_on_closed_pipe(func):
    """A listing piped into `head` stops being read: end quietly, as `ls | head` does,
    instead of a BrokenPipeError traceback (from the print, or from the flush at exit)."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            result = func(args)
            sys.stdout.flush()
            return result
        except BrokenPipeError:
            # Python flushes stdout again at exit: point it at /dev/null so that is silent.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0

    return wrapper


def _registry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stage",
        help="the stage whose model package group to use (default: the first; locally staging "
        "then prod, on AWS the environment's stages from cdk.json)",
    )
    p.add_argument("--group", help="a model package group by name, instead of --stage")
    p.add_argument("--aws", action="store_true", help="use the AWS account's registry (boto3)")
    p.add_argument(
        "--env", help="with --aws: the cdk.json environment (default: bincount:environment)"
    )


@dataclass(frozen=True)
class StageRef:
    """A stage as the registry commands see it: locally from pipeline.local.stages, on AWS
    from cdk.json's environment (the groups and endpoints the stack made)."""

    name: str
    group: str
    endpoint_name: str


def _stages(args: argparse.Namespace) -> list[StageRef]:
    if getattr(args, "aws", False):
        config = _aws_environment(args)
        return [StageRef(s.name, config.group_name(s), s.endpoint_name) for s in config.stages]
    from pipeline.local.stages import STAGES

    return [StageRef(s.name, s.group, s.endpoint_name) for s in STAGES]


def _aws_environment(args: argparse.Namespace):
    from pipeline.doctor import cdk_context, load_config

    try:
        return load_config(cdk_context(), getattr(args, "env", None))
    except ValueError as error:
        raise CliError(str(error)) from error


def _selected_stages(args: argparse.Namespace) -> list[StageRef]:
    """--group alone, --stage's, or (list) every stage / (others) the first one."""
    if args.group:
        return [StageRef(args.stage or "", args.group, "")]
    stages = _stages(args)
    if args.stage:
        chosen = [s for s in stages if s.name == args.stage]
        if not chosen:
            raise CliError(f"no stage {args.stage!r}; stages: {', '.join(s.name for s in stages)}")
        return chosen
    return stages if args.action == "list" else stages[:1]


def _workspace():
    from pipeline.local.workspace import Workspace

    return Workspace.default()


def parse_params(items: list[str]) -> dict[str, str]:
    """NAME=VALUE pairs; names, types and EnumValues are checked against the definition by
    the runner (pipeline.parameters, the same checker `start` uses)."""
    params = {}
    for item in items:
        try:
            name, value = split_pair(item, "--param")
        except ValueError as error:
            raise CliError(str(error)) from error
        params[name] = value
    return params


# -- run / executions ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.local.runner import ExecutionFailed, ExecutionStopped

    params = parse_params(args.param)
    ws = _workspace()
    if args.definition and not args.definition.is_file():
        raise CliError(f"no such definition file: {args.definition}")
    definition = args.definition.read_text() if args.definition else ws.definition()
    try:
        record = ws.runner(stream_logs=args.logs).run(
            definition, params, use_cache=not args.no_cache
        )
    except ExecutionFailed as failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1
    except ExecutionStopped as stopped:
        print(f"STOPPED: {stopped}", file=sys.stderr)
        return 128 + stopped.signal_number
    except ValueError as error:
        # Bad parameters or a definition the runner cannot execute: refused before any step.
        raise CliError(str(error)) from error
    print(format_execution(record))
    return 0


def format_execution(record: dict) -> str:
    lines = [
        f"execution {record['PipelineExecutionId']}: {record['PipelineExecutionStatus']}"
        + (f" in {record['Seconds']:.1f} s" if "Seconds" in record else ""),
        f"  started {record['StartTime']}",
    ]
    for step in record.get("Steps", []):
        extra = ""
        if step.get("Cached"):
            extra = f" (cached from {step['CacheHitResult']['SourcePipelineExecutionId']})"
        if step.get("Outcome"):
            extra = f" -> {step['Outcome']} ({'; '.join(step.get('Conditions', []))})"
        if step.get("Reason"):
            extra = f" ({step['Reason']})"
        seconds = f"{step['Seconds']:7.1f} s" if "Seconds" in step else " " * 9
        lines.append(
            f"  {step['StepName']:<20} {step['StepType']:<14} {step['StepStatus']:<12} "
            f"{seconds}{extra}"
        )
    if record.get("FailureReason"):
        lines.append(f"  failure: {record['FailureReason']}")
    return "\n".join(lines)


@quiet_on_closed_pipe
def cmd_executions_list(args: argparse.Namespace) -> int:
    records = _workspace().runner().executions()
    if not records:
        print("no executions yet (python -m pipeline run)")
    for r in records:
        seconds = f"{r['Seconds']:8.1f} s" if "Seconds" in r else " " * 10
        print(
            f"{r['PipelineExecutionId']}  {r['PipelineExecutionStatus']:<10} {seconds}  "
            f"{r['StartTime']}"
        )
    return 0


@quiet_on_closed_pipe
def cmd_executions_show(args: argparse.Namespace) -> int:
    runner = _workspace().runner()
    if args.execution_id:
        try:
            record = runner.execution(args.execution_id)
        except FileNotFoundError as error:
            raise CliError(str(error)) from error
    else:
        records = runner.executions()
        if not records:
            print("no executions yet", file=sys.stderr)
            return 1
        record = records[0]
    print(json.dumps(record, indent=2) if args.json else format_execution(record))
    return 0


# -- models -------------------------------------------------------------------------------------


def _sagemaker(aws: bool):
    if aws:
        import boto3

        return boto3.client("sagemaker")
    return _workspace().sagemaker


def _all_packages(sm: Any, group: str) -> list[dict]:
    packages, token = [], None
    while True:
        kwargs = {
            "ModelPackageGroupName": group,
            "SortBy": "CreationTime",
            "SortOrder": "Ascending",
        }
        if token:
            kwargs["NextToken"] = token
        page = sm.list_model_packages(**kwargs)
        packages += page.get("ModelPackageSummaryList", [])
        token = page.get("NextToken")
        if not token:
            return packages


@quiet_on_closed_pipe
def cmd_models_list(args: argparse.Namespace) -> int:
    sm = _sagemaker(args.aws)
    live = _live_arns(sm)
    for stage in _selected_stages(args):
        packages = _all_packages(sm, stage.group)
        title = f"stage {stage.name}: " if stage.name else ""
        if not packages:
            print(f"{title}no versions in model package group {stage.group!r}")
            continue
        if stage.name:
            print(f"{title}model package group {stage.group}")
        for p in packages:
            where = (
                f"  live on {', '.join(live[p['ModelPackageArn']])}"
                if p["ModelPackageArn"] in live
                else ""
            )
            print(
                f"v{p['ModelPackageVersion']:<4} {p['ModelApprovalStatus']:<22} "
                f"{p['CreationTime']:%Y-%m-%d %H:%M:%S}  {p['ModelPackageArn']}{where}"
            )
    return 0


def cmd_models_promote(args: argparse.Namespace) -> int:
    (stage,) = _selected_stages(args)
    if args.aws:
        return _promote_on_aws(args, stage)
    from infra.deployer_lambda.promotion import PromotionError

    try:
        result = _workspace().promote(args.version, from_stage=stage.name or None)
    except (PromotionError, ValueError) as error:
        raise CliError(str(error)) from error
    print(
        f"{result['source_model_package_arn']} -> {result['model_package_arn']}: "
        f"{result['status']} (PendingManualApproval in {result['target_group']}; approve it "
        f"there: python -m pipeline models approve <version> --stage <next stage>)"
    )
    return 0


def _promote_on_aws(args: argparse.Namespace, stage: StageRef) -> int:
    """Invoke the stack's promoter Lambda for `stage` (named in the stack's outputs)."""
    import boto3

    config = _aws_environment(args)
    names = [s.name for s in config.stages]
    if stage.name not in names or names.index(stage.name) + 1 >= len(names):
        raise CliError(f"stage {stage.name!r} of {config.name} has no next stage to promote to")
    target = config.stages[names.index(stage.name) + 1]
    output = "PromoteTo" + "".join(part.title() for part in target.name.split("-"))
    stack = boto3.client("cloudformation").describe_stacks(StackName=config.stack_name)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Stacks"][0].get("Outputs", [])}
    function = outputs.get(f"{output}FunctionName")
    if not function:
        raise CliError(f"stack {config.stack_name} has no output {output}FunctionName")
    event = (
        {"model_package_arn": args.version}
        if args.version.startswith("arn:")
        else {"version": int(args.version.lstrip("vV"))}
    )
    answer = boto3.client("lambda").invoke(
        FunctionName=function, Payload=json.dumps(event).encode()
    )
    payload = json.loads(answer["Payload"].read() or b"{}")
    if answer.get("FunctionError"):
        raise CliError(f"promotion refused: {payload.get('errorMessage', payload)}")
    print(json.dumps(payload, sort_keys=True))
    return 0


def _live_arns(sm: Any) -> dict[str, list[str]]:
    """Model package ARN -> endpoints serving it (from the deployer's tag on the config)."""
    from infra.deployer_lambda.deployer import PACKAGE_TAG

    live: dict[str, list[str]] = {}
    for e in _all_endpoints(sm):
        try:
            # An endpoint deleted or half-made meanwhile serves nothing: skip just that one.
            described = sm.describe_endpoint(EndpointName=e["EndpointName"])
            config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
            tags = sm.list_tags(ResourceArn=config["EndpointConfigArn"]).get("Tags", [])
        except ClientError:
            continue
        for tag in tags:
            if tag["Key"] == PACKAGE_TAG:
                live.setdefault(tag["Value"], []).append(e["EndpointName"])
    return live


def _all_endpoints(sm: Any) -> list[dict]:
    """Every page of ListEndpoints (boto3's client and the local stand-in alike)."""
    endpoints, token = [], None
    while True:
        page = sm.list_endpoints(**({"NextToken": token} if token else {}))
        endpoints += page.get("Endpoints", [])
        token = page.get("NextToken")
        if not token:
            return endpoints


def resolve_package_arn(sm: Any, group: str, version: str) -> str:
    if version.startswith("arn:"):
        return version
    number = version.lstrip("vV")
    if not number.isdigit():
        raise SystemExit(f"expected a version number or a model package ARN, got {version!r}")
    for p in _all_packages(sm, group):
        if p["ModelPackageVersion"] == int(number):
            return p["ModelPackageArn"]
    raise SystemExit(f"model package group {group!r} has no version {number}")


def state_change_event(package: dict, region: str, account: str) -> dict:
    """The EventBridge event SageMaker emits when a package's approval status changes."""
    detail = {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in package.items()
        if k
        in {
            "ModelPackageGroupName",
            "ModelPackageVersion",
            "ModelPackageArn",
            "ModelPackageName",
            "ModelApprovalStatus",
            "ModelPackageStatus",
            "CreationTime",
            "LastModifiedTime",
            "InferenceSpecification",
            "ApprovalDescription",
        }
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": EVENT_DETAIL_TYPE,
        "source": "aws.sagemaker",
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [package["ModelPackageArn"]],
        "detail": detail,
    }


def set_approval(
    ws: Any, arn: str, status: str, description: str = "", endpoint_name: str | None = None
) -> dict:
    """Update the local registry, then deliver the state-change event to the deployer, as
    EventBridge does on AWS. Returns the deployer's result."""
    from pipeline.local.sagemaker_client import ACCOUNT, REGION

    request = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
    if description:
        request["ApprovalDescription"] = description
    ws.sagemaker.update_model_package(**request)
    package = ws.sagemaker.describe_model_package(ModelPackageName=arn)
    return ws.deploy_handler(state_change_event(package, REGION, ACCOUNT), endpoint_name)


def cmd_models_set_status(args: argparse.Namespace) -> int:
    if args.aws:
        sm = _sagemaker(True)
        (stage,) = _selected_stages(args)
        arn = resolve_package_arn(sm, stage.group, args.version)
        request = {"ModelPackageArn": arn, "ModelApprovalStatus": args.status}
        if args.description:
            request["ApprovalDescription"] = args.description
        sm.update_model_package(**request)
        print(f"{arn}: {args.status} (EventBridge delivers the change to the deployer)")
        return 0
    from infra.deployer_lambda.deployer import DeployError

    ws = _workspace()
    (stage,) = _selected_stages(args)
    arn = resolve_package_arn(ws.sagemaker, stage.group, args.version)
    endpoint = args.endpoint or stage.endpoint_name or None
    try:
        result = set_approval(ws, arn, args.status, args.description, endpoint)
    except DeployError as error:
        endpoint = endpoint or ws.deployer_config().endpoint_name
        raise CliError(
            f"{arn}: {args.status}, but the deployer refused: {error}\nlocally: python -m "
            f"pipeline endpoints delete {endpoint}, then approve again (the deployer creates "
            "the endpoint anew)"
        ) from error
    print(f"{arn}: {args.status}")
    print(f"deployer: {json.dumps(result, sort_keys=True)}")
    return 0


# -- endpoints ----------------------------------------------------------------------------------


@quiet_on_closed_pipe
def cmd_endpoints_list(args: argparse.Namespace) -> int:
    sm = _sagemaker(args.aws)
    endpoints = _all_endpoints(sm)
    if not endpoints:
        print("no endpoints")
    servers = (
        {}
        if args.aws
        else {e["EndpointName"]: e for e in _workspace().sagemaker.endpoints.describe_servers()}
    )
    stage_of = {stage.endpoint_name: stage.name for stage in _stages(args)}
    for e in endpoints:
        status, extra = e["EndpointStatus"], ""
        server = servers.get(e["EndpointName"])
        if server is not None:
            status, extra = local_server_state(status, server)
        stage = stage_of.get(e["EndpointName"], "-")
        print(
            f"{e['EndpointName']:<24} {stage:<10} {status:<12} "
            f"{e['LastModifiedTime']:%Y-%m-%d %H:%M:%S}{extra}"
        )
    return 0


def local_server_state(status: str, server: dict) -> tuple[str, str]:
    """(status to show, details) for a local endpoint: InService only while its server runs."""
    details = ""
    if server.get("InterruptedDeploy"):
        details = f"  [{server['InterruptedDeploy']['Reason']}]"
    if status == "Failed":
        return status, f"  {server.get('FailureReason', '')[:200]}{details}"
    if server["ServerState"] == "running":
        run = server["Server"]
        return status, f"  http://127.0.0.1:{run['Port']} (pid {run['Pid']}){details}"
    if status != "InService":
        return status, details
    if server["ServerState"] == "exited":
        pid = server["Server"]["Pid"]
        return "Stopped", f"  (server pid {pid} exited; invoke restarts it){details}"
    return "Stopped", f"  (no server; invoke starts one){details}"


def content_type_for(path: Path) -> str:
    guessed = mimetypes.guess_type(path.name)[0]
    return guessed or "application/octet-stream"


def cmd_endpoints_invoke(args: argparse.Namespace) -> int:
    if not args.image.is_file():
        raise SystemExit(f"no such file: {args.image}")
    body = args.image.read_bytes()
    content_type = args.content_type or content_type_for(args.image)
    if args.aws:
        import boto3

        response = boto3.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=args.name, Body=body, ContentType=content_type, Accept=args.accept
        )
        print(response["Body"].read().decode(errors="replace"))
        return 0
    try:
        status, _, answer = _workspace().sagemaker.endpoints.invoke(
            args.name, body, content_type, args.accept
        )
    except (EndpointError, ValueError) as error:
        raise CliError(str(error)) from error
    text = answer.decode(errors="replace")
    if status != 200:
        print(f"HTTP {status}: {text}", file=sys.stderr)
        return 1
    print(text)
    return 0


def cmd_endpoints_stop(args: argparse.Namespace) -> int:
    endpoints = _workspace().sagemaker.endpoints
    if args.all:
        stopped = endpoints.stop_all()
        print(f"stopped: {', '.join(stopped) or 'none were running'}")
        return 0
    if not args.name:
        raise SystemExit("name an endpoint or pass --all")
    try:
        stopped = endpoints.stop(args.name)
    except (EndpointError, ValueError) as error:
        raise CliError(str(error)) from error
    print(f"{args.name}: {'stopped' if stopped else 'was not running'}")
    return 0


def cmd_endpoints_delete(args: argparse.Namespace) -> int:
    sm = _workspace().sagemaker
    try:
        sm.delete_endpoint(EndpointName=args.name)
    except ValueError as error:
        raise CliError(str(error)) from error
    print(f"{args.name}: deleted (server stopped, record and server folders removed)")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from pipeline.local.quickstart import quickstart

    return quickstart(args)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m pipeline.local.cli`) with just the local commands."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.local.cli")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
