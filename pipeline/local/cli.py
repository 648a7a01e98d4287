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

from pipeline.cli_support import (
    CliError,
    CommandFailed,
    add_env_options,
    aws_client,
    run_command,
)
from pipeline.local.endpoints import EndpointError, EndpointStopped
from pipeline.local.listings import (
    all_endpoints,
    all_packages,
    format_execution,
    live_arns,
    readable_answer,
)
from pipeline.parameters import split_pair
from pipeline.progress import lambda_outcome

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
    run.add_argument(
        "--logs",
        action="store_true",
        help="stream the jobs' whole logs (toolkit included) instead of one line per epoch",
    )
    run.add_argument(
        "--definition", type=Path, help="run this definition JSON instead of building one"
    )
    run.set_defaults(func=cmd_run)

    executions = subparsers.add_parser("executions", help="local executions")
    ex_sub = executions.add_subparsers(dest="action", required=True)
    ex_list = ex_sub.add_parser("list", help="list executions, newest first")
    ex_list.add_argument("--json", action="store_true", help="the records as a JSON list")
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
    m_list.add_argument("--json", action="store_true", help="the versions as a JSON list")
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
    add_env_options(e_list)
    e_list.add_argument("--json", action="store_true", help="the endpoints as a JSON list")
    e_list.set_defaults(func=cmd_endpoints_list)
    e_invoke = e_sub.add_parser("invoke", help="send an image to an endpoint")
    e_invoke.add_argument("name")
    e_invoke.add_argument("image", type=Path)
    e_invoke.add_argument("--content-type", help="default: from the file name (image/jpeg, ...)")
    e_invoke.add_argument("--accept", default="application/json")
    e_invoke.add_argument("--aws", action="store_true", help="invoke the AWS endpoint")
    add_env_options(e_invoke)
    e_invoke.add_argument(
        "--json", action="store_true", help="print the endpoint's answer as it came (JSON)"
    )
    e_invoke.set_defaults(func=cmd_endpoints_invoke)
    e_start = e_sub.add_parser("start", help="start a stopped local endpoint's server")
    e_start.add_argument("name")
    e_start.set_defaults(func=cmd_endpoints_start)
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

    from pipeline.local.monitoring import add_monitor_command

    add_monitor_command(subparsers)

    from pipeline.local.report import add_report_command

    add_report_command(subparsers)


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
    add_env_options(p)


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
    if "SourceUri" in params:  # at once: an unreachable source is one line, before any work
        check_source(params["SourceUri"])
    definition = args.definition.read_text() if args.definition else ws.definition()
    params = with_local_source(ws, params, declared_names(definition))
    try:
        # Flushed line by line: progress must show when stdout is a pipe or a file too.
        record = ws.runner(echo=lambda line: print(line, flush=True), stream_logs=args.logs).run(
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


def declared_names(definition: str) -> set[str]:
    """The parameter names a definition JSON declares (none when it is not one: the runner
    says what is wrong with it)."""
    try:
        return {p["Name"] for p in json.loads(definition).get("Parameters", [])}
    except (ValueError, TypeError, KeyError, AttributeError):
        return set()


def with_local_source(ws: Any, params: dict[str, str], declared: set[str]) -> dict[str, str]:
    """A local run reads the generated dataset unless SourceUri is given (the definition's
    default, s3://aft-vbi-pds, needs the internet; cmd_run checks a given one first). A
    definition without SourceUri (another pipeline's) runs with exactly the parameters given."""
    if "SourceUri" in params or "SourceUri" not in declared:
        return params
    # The quickstart's dataset (the same folder, so it is generated once for both), with its
    # CPU-sized values for what is not given.
    from pipeline.local import quickstart as q

    dataset = q.ensure_dataset(ws.home, q.GENERATED_PER_CLASS, q.GENERATED_SEED)
    recipe = {
        "ImageSize": str(q.GENERATED_IMAGE_SIZE),
        "LearningRate": str(q.GENERATED_LEARNING_RATE),
    }
    print(
        f"source: the generated dataset {dataset}, at the quickstart's CPU-sized "
        f"{', '.join(f'{k}={v}' for k, v in recipe.items() if k not in params)} "
        "(--param SourceUri=DIR|s3://... for another)",
        flush=True,
    )
    generated = {
        "SourceUri": str(dataset),
        "FileListUri": str(dataset / "file_list.json"),
        "PerClassCap": "0",
        **recipe,
    }
    return {**{k: v for k, v in generated.items() if k in declared}, **params}


def check_source(uri: str) -> None:
    """CliError for a local folder that is not there; CommandFailed for an S3 source this
    machine cannot list (offline, no such bucket, access denied), in seconds, not retried."""
    if not uri.startswith("s3://"):
        folder = Path(uri.removeprefix("file://")).expanduser()
        if not folder.is_dir():
            raise CliError(f"SourceUri {uri}: no such folder")
        return
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    signed = boto3.Session().get_credentials() is not None
    config = Config(
        connect_timeout=3,
        read_timeout=10,
        retries={"max_attempts": 1, "mode": "standard"},
        **({} if signed else {"signature_version": UNSIGNED}),
    )
    try:
        # The dataset's bucket is in us-east-1; S3 redirects a client in another region.
        s3 = boto3.client("s3", region_name="us-east-1", config=config)
        s3.list_objects_v2(Bucket=bucket, Prefix=prefix.strip("/"), MaxKeys=1)
    except (BotoCoreError, ClientError) as error:
        raise CommandFailed(
            f"SourceUri {uri} is unreachable from here ({error}); leave SourceUri out to run "
            "on the generated dataset, or pass --param SourceUri=DIR (a local copy)"
        ) from error


@quiet_on_closed_pipe
def cmd_executions_list(args: argparse.Namespace) -> int:
    records = _workspace().runner().executions()
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    if not records:
        print("no executions yet (python -m pipeline run)")
        return 0
    print(
        f"{'EXECUTION':<{len(records[0]['PipelineExecutionId'])}}  {'STATUS':<10} "
        f"{'SECONDS':>10}  STARTED"
    )
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


def _sagemaker(aws: bool, args: argparse.Namespace | None = None):
    if aws:
        return aws_client("sagemaker", args or argparse.Namespace())
    return _workspace().sagemaker


@quiet_on_closed_pipe
def cmd_models_list(args: argparse.Namespace) -> int:
    sm = _sagemaker(args.aws, args)
    live = live_arns(sm)
    selected = _selected_stages(args)
    if args.json:
        rows = [
            {
                "Stage": stage.name,
                "ModelPackageGroupName": stage.group,
                "ModelPackageVersion": p["ModelPackageVersion"],
                "ModelApprovalStatus": p["ModelApprovalStatus"],
                "CreationTime": f"{p['CreationTime']:%Y-%m-%dT%H:%M:%S%z}",
                "ModelPackageArn": p["ModelPackageArn"],
                "LiveOn": live.get(p["ModelPackageArn"], []),
            }
            for stage in selected
            for p in all_packages(sm, stage.group)
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for stage in selected:
        packages = all_packages(sm, stage.group)
        title = f"stage {stage.name}: " if stage.name else ""
        if not packages:
            print(f"{title}no versions in model package group {stage.group!r}")
            continue
        if stage.name:
            print(f"{title}model package group {stage.group}")
        print(f"{'VER':<5} {'STATUS':<22} {'CREATED':<19}  ARN")
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
    except PromotionError as error:
        raise CommandFailed(str(error)) from error
    except ValueError as error:
        raise CliError(str(error)) from error
    print(
        f"{result['source_model_package_arn']} -> {result['model_package_arn']}: "
        f"{result['status']} (PendingManualApproval in {result['target_group']}; approve it "
        f"there: python -m pipeline models approve <version> --stage <next stage>)"
    )
    return 0


def _promote_on_aws(args: argparse.Namespace, stage: StageRef) -> int:
    """Invoke the stack's promoter Lambda for `stage` (named in the stack's outputs)."""
    config = _aws_environment(args)
    names = [s.name for s in config.stages]
    if stage.name not in names or names.index(stage.name) + 1 >= len(names):
        raise CliError(f"stage {stage.name!r} of {config.name} has no next stage to promote to")
    target = config.stages[names.index(stage.name) + 1]
    output = "PromoteTo" + "".join(part.title() for part in target.name.split("-"))
    stack = aws_client("cloudformation", args).describe_stacks(StackName=config.stack_name)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Stacks"][0].get("Outputs", [])}
    function = outputs.get(f"{output}FunctionName")
    if not function:
        raise CommandFailed(f"stack {config.stack_name} has no output {output}FunctionName")
    event = (
        {"model_package_arn": args.version}
        if args.version.startswith("arn:")
        else {"version": int(args.version.lstrip("vV"))}
    )
    answer = aws_client("lambda", args).invoke(
        FunctionName=function, Payload=json.dumps(event).encode()
    )
    payload = json.loads(answer["Payload"].read() or b"{}")
    if answer.get("FunctionError"):
        raise CommandFailed(f"promotion refused: {payload.get('errorMessage', payload)}")
    print(json.dumps(payload, sort_keys=True))
    return 0


def resolve_package_arn(sm: Any, group: str, version: str) -> str:
    if version.startswith("arn:"):
        return version
    number = version.lstrip("vV")
    if not number.isdigit():
        raise CliError(f"expected a version number or a model package ARN, got {version!r}")
    for p in all_packages(sm, group):
        if p["ModelPackageVersion"] == int(number):
            return p["ModelPackageArn"]
    raise CliError(f"model package group {group!r} has no version {number}")


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
        sm = _sagemaker(True, args)
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
        raise CommandFailed(
            f"{arn}: {args.status}, but the deployer refused: {error}\nlocally: python -m "
            f"pipeline endpoints delete {endpoint}, then approve again (the deployer creates "
            "the endpoint anew)"
        ) from error
    print(f"{arn}: {args.status}")
    # What it did first, then its whole answer (the endpoint, versions, follow-up passes).
    print(f"deployer{lambda_outcome(result)}  {json.dumps(result, sort_keys=True)}")
    return 0


# -- endpoints ----------------------------------------------------------------------------------


@quiet_on_closed_pipe
def cmd_endpoints_list(args: argparse.Namespace) -> int:
    sm = _sagemaker(args.aws, args)
    endpoints = all_endpoints(sm)
    servers = (
        {}
        if args.aws
        else {e["EndpointName"]: e for e in _workspace().sagemaker.endpoints.describe_servers()}
    )
    stage_of = {stage.endpoint_name: stage.name for stage in _stages(args)}
    rows = []
    for e in endpoints:
        status, extra = e["EndpointStatus"], ""
        server = servers.get(e["EndpointName"])
        if server is not None:
            status, extra = local_server_state(status, server)
        rows.append((e, stage_of.get(e["EndpointName"], "-"), status, extra.strip()))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "EndpointName": e["EndpointName"],
                        "Stage": stage,
                        "Status": status,
                        "LastModifiedTime": f"{e['LastModifiedTime']:%Y-%m-%dT%H:%M:%S%z}",
                        "Details": extra,
                    }
                    for e, stage, status, extra in rows
                ],
                indent=2,
            )
        )
        return 0
    if not rows:
        print("no endpoints")
        return 0
    print(f"{'ENDPOINT':<24} {'STAGE':<10} {'STATUS':<12} {'MODIFIED':<19}  DETAILS")
    for e, stage, status, extra in rows:
        print(
            f"{e['EndpointName']:<24} {stage:<10} {status:<12} "
            f"{e['LastModifiedTime']:%Y-%m-%d %H:%M:%S}  {extra}".rstrip()
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
    name = server["EndpointName"]
    if server["ServerState"] == "exited":
        pid = server["Server"]["Pid"]
        return "Stopped", f"  (server pid {pid} exited; invoke restarts it){details}"
    if server.get("Stopped"):
        return "Stopped", f"  (stopped; endpoints start {name}){details}"
    return "Stopped", f"  (no server; invoke starts one){details}"


def content_type_for(path: Path) -> str:
    guessed = mimetypes.guess_type(path.name)[0]
    return guessed or "application/octet-stream"


def cmd_endpoints_invoke(args: argparse.Namespace) -> int:
    if not args.image.is_file():
        raise CliError(f"no such file: {args.image}")
    body = args.image.read_bytes()
    content_type = args.content_type or content_type_for(args.image)
    if args.aws:
        response = aws_client("sagemaker-runtime", args).invoke_endpoint(
            EndpointName=args.name, Body=body, ContentType=content_type, Accept=args.accept
        )
        text = response["Body"].read().decode(errors="replace")
        print(text if args.json else readable_answer(text))
        return 0
    try:
        status, _, answer = _workspace().sagemaker.endpoints.invoke(
            args.name, body, content_type, args.accept, start_stopped=False
        )
    except EndpointStopped as error:
        raise CommandFailed(str(error)) from error
    except (EndpointError, ValueError) as error:
        raise CliError(str(error)) from error
    text = answer.decode(errors="replace")
    if status != 200:
        print(f"error: HTTP {status}: {text}", file=sys.stderr)
        return 1
    print(text if args.json else readable_answer(text))
    return 0


def cmd_endpoints_start(args: argparse.Namespace) -> int:
    endpoints = _workspace().sagemaker.endpoints
    try:
        record = endpoints.ensure_running(args.name, start_stopped=True)
    except EndpointError as error:
        raise (CliError if "Could not find" in str(error) else CommandFailed)(str(error)) from error
    print(f"{args.name}: serving on http://127.0.0.1:{record['Server']['Port']}")
    return 0


def cmd_endpoints_stop(args: argparse.Namespace) -> int:
    endpoints = _workspace().sagemaker.endpoints
    if args.all:
        stopped = endpoints.stop_all()
        print(f"stopped: {', '.join(stopped) or 'none were running'}")
        return 0
    if not args.name:
        raise CliError("name an endpoint or pass --all")
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
    from pipeline.settings import ARCHITECTURES

    # Checked before the dataset is generated; every other value is checked by the runner
    # against the definition before any step runs.
    if args.architecture not in ARCHITECTURES:
        raise CliError(
            f"--architecture {args.architecture!r}: Architecture must be one of "
            f"{', '.join(ARCHITECTURES)}"
        )
    try:
        return quickstart(args)
    except ValueError as error:
        # A parameter the definition refuses (--architecture vgg): the runner says which,
        # before any step runs.
        raise CliError(str(error)) from error


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m pipeline.local.cli`) with just the local commands."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.local.cli")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
