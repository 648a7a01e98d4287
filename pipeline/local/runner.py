"""Execute a SageMaker pipeline definition (schema 2020-12-01) on this machine.

The very JSON that `pipeline.definition` builds is read as it is: parameters are typed and
resolved, steps ordered by their DependsOn and property references, Condition steps pick
their IfSteps or ElseSteps, Fail steps fail the execution with their resolved message.
Processing and Training steps run as local jobs (`pipeline.local.jobs`), RegisterModel and
Model steps against the local registry, Lambda steps call the project's own handlers.
Steps with CacheConfig reuse an earlier execution's results when their arguments (after
resolution) and the content of their inputs are unchanged, as SageMaker's step caching does.
Every execution leaves `<home>/executions/<id>/execution.json`.

An execution ends Succeeded, Failed or Stopped, never "Executing" forever. SIGINT (Ctrl-C),
SIGTERM and SIGHUP stop it: the running job's process group is killed and the record says
Stopped, naming the signal. A runner killed outright (SIGKILL, a crash, a reboot) cannot
write anything: a watchdog process (`pipeline.local.job_watchdog`) kills its jobs, and the
record, which names the runner's process (pid and start time), is marked Failed with the
reason by the next command that reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline.local import processes
from pipeline.local.expressions import (
    ResolutionError,
    Scope,
    UnsupportedFeature,
    check_expressions,
    describe_condition,
    evaluate,
    evaluate_condition,
    referenced_steps,
    resolve_parameters,
)
from pipeline.local.job_watchdog import JobWatchdog
from pipeline.local.jobs import JobFailed, Jobs
from pipeline.local.sagemaker_client import ACCOUNT, REGION, LocalSageMakerClient
from pipeline.local.store import ObjectStore, file_sha256, read_json, write_json
from pipeline.progress import follow_epochs, lambda_outcome, total_epochs

SCHEMA_VERSION = "2020-12-01"
STEP_TYPES = {"Processing", "Training", "Condition", "RegisterModel", "Model", "Lambda", "Fail"}
# Cache key attributes per step type, as SageMaker documents them.
CACHE_KEYS = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": (
        "AlgorithmSpecification",
        "CheckpointConfig",
        "DebugHookConfig",
        "DebugRuleConfigurations",
        "Environment",
        "HyperParameters",
        "InputDataConfig",
    ),
}
TOP_LEVEL_KEYS = {
    "Version",
    "Metadata",
    "Parameters",
    "Steps",
    "PipelineExperimentConfig",
    "MlflowConfig",
    "ParallelismConfiguration",
}
_DURATION = re.compile(
    r"^P?(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$",
    re.IGNORECASE,
)

LambdaHandler = Callable[[dict], dict]


class ExecutionFailed(RuntimeError):
    """The execution ended Failed; `record` is its execution record."""

    def __init__(self, message: str, record: dict):
        super().__init__(message)
        self.record = record


class ExecutionStopped(BaseException):
    """The execution was stopped by a signal (recorded as Stopped); `signal_number` is it and
    `record` the execution record. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way out mistakes it for a step's failure."""

    def __init__(self, message: str, record: dict, signal_number: int):
        super().__init__(message)
        self.record = record
        self.signal_number = signal_number


class _Signalled(BaseException):
    """Raised in the main thread by the SIGTERM/SIGHUP handler."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _stop_signals_raise():
    """While running, SIGTERM and SIGHUP raise _Signalled like SIGINT raises KeyboardInterrupt
    (the default would end the process at once, leaving its jobs and records behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_signalled(number, frame):
        raise _Signalled(number)

    previous = {sig: signal.signal(sig, raise_signalled) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def mark_abandoned(record: dict) -> bool:
    """An execution still "Executing" whose runner process is gone: marked Failed with the
    reason (and its running step too). True when the record was changed."""
    runner = record.get("Runner")
    if record.get("PipelineExecutionStatus") != "Executing" or not runner:
        return False
    if processes.is_alive(runner):
        return False
    now = datetime.now(UTC).isoformat()
    running = [s for s in record.get("Steps", []) if s.get("StepStatus") == "Executing"]
    reason = (
        f"the runner (pid {runner.get('Pid')}) ended without finishing the execution: it was "
        "killed (SIGKILL, out of memory) or the machine restarted"
    )
    if running:
        reason += f", during step {running[0]['StepName']}"
    for step in running:
        step.update(StepStatus="Failed", FailureReason=reason, EndTime=now)
    record.update(PipelineExecutionStatus="Failed", FailureReason=reason, EndTime=now)
    return True


def parse_duration(text: str) -> timedelta:
    """ISO 8601 durations as CacheConfig.ExpireAfter uses them: P30D, PT12H, 30dT5h, P1Y ..."""
    m = _DURATION.match(text.strip()) if text else None
    if not m or not any(m.groups()):
        raise ValueError(f"CacheConfig.ExpireAfter {text!r} is not an ISO 8601 duration")
    y, mo, w, d, h, mi, s = (int(g or 0) for g in m.groups())
    return timedelta(days=365 * y + 30 * mo + 7 * w + d, hours=h, minutes=mi, seconds=s)


def new_execution_id() -> str:
    """Sortable by start time, [a-z0-9] like SageMaker's, safe in S3 keys and job names."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(3)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass
class StepNode:
    definition: dict
    parent: str | None = None  # the Condition step whose branch holds this step
    branch: str | None = None  # "IfSteps" or "ElseSteps"
    depends: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.definition["Name"]

    @property
    def type(self) -> str:
        return self.definition["Type"]


def load_definition(definition: str | Mapping[str, Any]) -> dict:
    data = json.loads(definition) if isinstance(definition, str) else dict(definition)
    if not isinstance(data, dict):
        raise ValueError("pipeline definition must be a JSON object")
    version = data.get("Version")
    if version != SCHEMA_VERSION:
        raise UnsupportedFeature(
            f"definition Version {version!r} (the local runner reads {SCHEMA_VERSION})"
        )
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise UnsupportedFeature(f"definition top-level key(s) {', '.join(unknown)}")
    return data


def plan(definition: Mapping[str, Any]) -> list[StepNode]:
    """Every step (branch steps included) in an order that respects its dependencies.

    Raises UnsupportedFeature for step types and constructs the runner cannot execute, and
    ValueError for dangling references and cycles, before anything runs.
    """
    nodes: dict[str, StepNode] = {}

    def add(step: Mapping[str, Any], parent: str | None, branch: str | None) -> None:
        name, type_ = step.get("Name"), step.get("Type")
        if not name:
            raise ValueError(f"a step without a Name: {json.dumps(step)[:200]}")
        if type_ not in STEP_TYPES:
            raise UnsupportedFeature(
                f"step {name!r}: step type {type_!r} is not supported by the local runner "
                f"(supported: {', '.join(sorted(STEP_TYPES))})"
            )
        if name in nodes:
            raise ValueError(f"two steps named {name!r}")
        check_expressions(step.get("Arguments", {}), f"Steps.{name}.Arguments")
        nodes[name] = StepNode(dict(step), parent, branch)
        if type_ == "Condition":
            for key in ("IfSteps", "ElseSteps"):
                for child in step.get("Arguments", {}).get(key, []):
                    add(child, name, key)

    for step in definition.get("Steps", []):
        add(step, None, None)
    for node in nodes.values():
        arguments = dict(node.definition.get("Arguments", {}))
        if node.type == "Condition":
            arguments = {"Conditions": arguments.get("Conditions", [])}
            for cond in arguments["Conditions"]:
                _check_condition(cond, node.name)
        node.depends = set(node.definition.get("DependsOn", [])) | referenced_steps(arguments)
        if node.parent:
            node.depends.add(node.parent)
        missing = sorted(node.depends - set(nodes))
        if missing:
            raise ValueError(f"step {node.name!r} depends on unknown step(s) {', '.join(missing)}")
        for pf in node.definition.get("PropertyFiles", []):
            if node.type != "Processing":
                raise UnsupportedFeature(f"step {node.name!r}: PropertyFiles on a {node.type} step")
            outputs = {
                o.get("OutputName")
                for o in arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])
            }
            if pf.get("OutputName") not in outputs:
                raise ValueError(
                    f"step {node.name!r}: property file {pf.get('PropertyFileName')!r} names "
                    f"output {pf.get('OutputName')!r}, which the step does not have"
                )
    order: list[StepNode] = []
    done: set[str] = set()
    pending = list(nodes.values())
    while pending:
        ready = [n for n in pending if n.depends <= done]
        if not ready:
            raise ValueError(
                "dependency cycle among steps " + ", ".join(sorted(n.name for n in pending))
            )
        for n in ready:
            order.append(n)
            done.add(n.name)
        pending = [n for n in pending if n.name not in done]
    return order


def _check_condition(cond: Mapping[str, Any], step: str) -> None:
    type_ = cond.get("Type")
    known = {
        "Equals",
        "GreaterThan",
        "GreaterThanOrEqualTo",
        "LessThan",
        "LessThanOrEqualTo",
        "In",
        "Not",
        "Or",
    }
    if type_ not in known:
        raise UnsupportedFeature(
            f"step {step!r}: condition type {type_!r} is not supported "
            f"(supported: {', '.join(sorted(known))})"
        )
    check_expressions(cond, f"Steps.{step}.Conditions")
    if type_ == "Not":
        _check_condition(cond["Condition"], step)
    if type_ == "Or":
        for c in cond["Conditions"]:
            _check_condition(c, step)


class LocalRunner:
    """Runs executions with everything under one home folder."""

    def __init__(
        self,
        home: Path,
        lambdas: Mapping[str, LambdaHandler] | None = None,
        echo: Callable[[str], None] = print,
        stream_logs: bool = False,
    ):
        self.home = Path(home)
        self.store = ObjectStore(self.home / "s3")
        self.sagemaker = LocalSageMakerClient(self.home)
        self.lambdas = dict(lambdas or {})
        self.echo = echo
        self.stream_logs = stream_logs

    @property
    def executions_dir(self) -> Path:
        return self.home / "executions"

    # -- records ------------------------------------------------------------------------------

    def executions(self) -> list[dict]:
        """Every execution record, newest first."""
        found = []
        for path in self.executions_dir.glob("*/execution.json"):
            try:
                found.append(self._read_record(path))
            except (OSError, json.JSONDecodeError):
                continue
        return sorted(found, key=lambda r: r.get("StartTime", ""), reverse=True)

    def execution(self, execution_id: str) -> dict:
        path = self.executions_dir / execution_id / "execution.json"
        if not path.is_file():
            raise FileNotFoundError(f"no execution {execution_id!r} under {self.executions_dir}")
        return self._read_record(path)

    def _read_record(self, path: Path) -> dict:
        """A record as stored, or marked Failed first when its runner died mid-way."""
        record: dict = read_json(path)  # type: ignore[assignment]
        if mark_abandoned(record):
            write_json(path, record)
        return record

    # -- running ------------------------------------------------------------------------------

    def run(
        self,
        definition: str | Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
        pipeline_name: str = "bincount",
        use_cache: bool = True,
    ) -> dict:
        """Execute the definition; returns the execution record. Raises ExecutionFailed (with
        the record) when the execution fails, UnsupportedFeature/ValueError before any step
        runs when the definition or parameters cannot be executed."""
        data = load_definition(definition)
        values = resolve_parameters(data.get("Parameters", []), dict(parameters or {}))
        order = plan(data)

        execution_id = new_execution_id()
        execution_dir = self.executions_dir / execution_id
        started = datetime.now(UTC)
        pipeline_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{pipeline_name}"
        arn = f"{pipeline_arn}/execution/{execution_id}"
        scope = Scope(
            parameters=values,
            execution={
                "PipelineExecutionId": execution_id,
                "PipelineExecutionArn": arn,
                "PipelineName": pipeline_name,
                "PipelineArn": pipeline_arn,
                "StartDateTime": started.isoformat(),
                "CurrentDateTime": started.isoformat(),
            },
            read_json_uri=self._read_json_uri,
        )
        record: dict[str, Any] = {
            "PipelineExecutionId": execution_id,
            "PipelineExecutionArn": arn,
            "PipelineName": pipeline_name,
            "PipelineExecutionStatus": "Executing",
            "StartTime": started.isoformat(),
            "Runner": processes.identity(),
            "Parameters": values,
            "Steps": [
                {"StepName": n.name, "StepType": n.type, "StepStatus": "NotStarted"} for n in order
            ],
        }
        execution_dir.mkdir(parents=True, exist_ok=True)
        write_json(execution_dir / "definition.json", data)
        self._save(execution_dir, record)
        self.echo(f"execution {execution_id} ({len(order)} steps) under {execution_dir}")

        watchdog = JobWatchdog()
        jobs = Jobs(
            self.store,
            execution_dir,
            echo=self.echo if self.stream_logs else None,
            watchdog=watchdog,
        )
        try:
            with _stop_signals_raise():
                failure = self._run_steps(order, record, scope, jobs, execution_id, use_cache)
        except (KeyboardInterrupt, _Signalled) as interrupt:
            number = getattr(interrupt, "signal_number", signal.SIGINT)
            how = "SIGINT (Ctrl-C)" if number == signal.SIGINT else signal.Signals(number).name
            now = datetime.now(UTC).isoformat()
            for step in record["Steps"]:
                if step["StepStatus"] == "Executing":
                    step.update(StepStatus="Stopped", EndTime=now)
            record.update(
                PipelineExecutionStatus="Stopped",
                EndTime=now,
                Seconds=round((datetime.now(UTC) - started).total_seconds(), 2),
                FailureReason=f"stopped by {how}; its running job, if any, was killed",
            )
            self._save(execution_dir, record)
            self.echo(f"[{_clock()}] execution {execution_id} Stopped by {how}")
            raise ExecutionStopped(
                f"execution {execution_id} stopped by {how}", record, int(number)
            ) from None
        finally:
            watchdog.close()

        record["EndTime"] = datetime.now(UTC).isoformat()
        record["Seconds"] = round((datetime.now(UTC) - started).total_seconds(), 2)
        if failure is not None:
            record.update(PipelineExecutionStatus="Failed", FailureReason=failure[:4000])
            self._save(execution_dir, record)
            self.echo(f"[{_clock()}] execution {execution_id} Failed in {record['Seconds']:.1f} s")
            raise ExecutionFailed(failure, record)
        record["PipelineExecutionStatus"] = "Succeeded"
        self._save(execution_dir, record)
        self.echo(f"[{_clock()}] execution {execution_id} Succeeded in {record['Seconds']:.1f} s")
        return record

    def _run_steps(
        self,
        order: list[StepNode],
        record: dict,
        scope: Scope,
        jobs: Jobs,
        execution_id: str,
        use_cache: bool,
    ) -> str | None:
        """Run the steps in order, updating `record`; the failure reason, or None."""
        execution_dir = self.executions_dir / execution_id
        states: dict[str, str] = {}
        chosen_branch: dict[str, str] = {}
        failure: str | None = None
        for index, node in enumerate(order):
            step_record = record["Steps"][index]
            skip_reason = self._skip_reason(node, states, chosen_branch)
            if skip_reason:
                states[node.name] = "NotExecuted"
                step_record.update(StepStatus="NotExecuted", Reason=skip_reason)
                continue
            if failure is not None:
                states[node.name] = "NotStarted"
                continue
            t0 = time.monotonic()
            step_record.update(StepStatus="Executing", StartTime=datetime.now(UTC).isoformat())
            self._save(execution_dir, record)
            self.echo(f"[{_clock()}] {node.name} ({node.type}) started")
            scope.execution["CurrentDateTime"] = datetime.now(UTC).isoformat()
            try:
                outcome = self._execute(node, scope, jobs, execution_id, use_cache)
                step_record.update(outcome, StepStatus="Succeeded")
                states[node.name] = "Succeeded"
                if node.type == "Condition":
                    chosen_branch[node.name] = (
                        "IfSteps" if outcome["Outcome"] == "True" else "ElseSteps"
                    )
                if node.type == "Fail":
                    failure = outcome["FailureReason"]
                    states[node.name] = "Failed"
                    step_record["StepStatus"] = "Failed"
            except Exception as error:
                reason = f"{node.type} step {node.name} failed: {error}"
                if not isinstance(
                    error, (JobFailed, ResolutionError, UnsupportedFeature, ClientError)
                ):
                    step_record["Traceback"] = traceback.format_exc()
                step_record.update(StepStatus="Failed", FailureReason=reason[:4000])
                if isinstance(error, JobFailed) and error.log:
                    step_record["Logs"] = [str(error.log)]
                states[node.name] = "Failed"
                failure = reason
            seconds = time.monotonic() - t0
            step_record.update(EndTime=datetime.now(UTC).isoformat(), Seconds=round(seconds, 2))
            self._save(execution_dir, record)
            self.echo(self._end_line(node, step_record, seconds))

        return failure

    @staticmethod
    def _skip_reason(node: StepNode, states: Mapping[str, str], chosen: Mapping[str, str]) -> str:
        if node.parent and chosen.get(node.parent) and chosen[node.parent] != node.branch:
            return f"{node.parent} chose {chosen[node.parent]}"
        skipped = sorted(d for d in node.depends if states.get(d) == "NotExecuted")
        if skipped:
            return f"depends on {', '.join(skipped)}, which did not run"
        return ""

    @staticmethod
    def _end_line(node: StepNode, step_record: Mapping[str, Any], seconds: float) -> str:
        status = step_record["StepStatus"]
        line = f"[{_clock()}] {node.name} {status} in {seconds:.1f} s"
        if step_record.get("Cached"):
            source = step_record["CacheHitResult"]["SourcePipelineExecutionId"]
            line += f" (cached: reused execution {source})"
        if node.type == "Condition":
            line += f": {'; '.join(step_record.get('Conditions', []))} -> {step_record['Outcome']}"
        if status == "Failed":
            line += f": {step_record.get('FailureReason', '')}"
        if status == "Succeeded" and node.type == "Lambda":
            # "Succeeded" says only that the function answered: say what it did (the
            # deployer may have skipped a version pending approval).
            line += lambda_outcome(step_record.get("LambdaResponse"))
        return line

    def _save(self, execution_dir: Path, record: dict) -> None:
        write_json(execution_dir / "execution.json", _jsonable(record))

    def _read_json_uri(self, uri: str) -> Any:
        path = self.store.path(uri)
        if not path.is_file():
            raise ResolutionError(f"no JSON document at {uri} (local store {path})")
        try:
            return read_json(path)
        except json.JSONDecodeError as error:
            raise ResolutionError(f"{uri} is not valid JSON: {error}") from None

    # -- steps --------------------------------------------------------------------------------

    def _execute(
        self, node: StepNode, scope: Scope, jobs: Jobs, execution_id: str, use_cache: bool
    ) -> dict:
        where = f"Steps.{node.name}"
        if node.type == "Condition":
            conditions = node.definition.get("Arguments", {}).get("Conditions", [])
            results = [
                evaluate_condition(c, scope, f"{where}.Conditions[{i}]")
                for i, c in enumerate(conditions)
            ]
            outcome = "True" if all(results) else "False"
            scope.steps[node.name] = {"Outcome": outcome}
            return {
                "Outcome": outcome,
                "Conditions": [describe_condition(c, scope) for c in conditions],
                "Properties": {"Outcome": outcome},
            }
        if node.type == "Fail":
            message = evaluate(
                node.definition.get("Arguments", {}).get("ErrorMessage", ""), scope, where
            )
            return {"FailureReason": str(message), "ErrorMessage": str(message)}
        arguments = evaluate(node.definition.get("Arguments", {}), scope, f"{where}.Arguments")
        if node.type in ("Processing", "Training"):
            return self._execute_job(node, arguments, scope, jobs, execution_id, use_cache)
        if node.type == "RegisterModel":
            response = self.sagemaker.create_model_package(**arguments)
            properties = _jsonable(
                self.sagemaker.describe_model_package(ModelPackageName=response["ModelPackageArn"])
            )
            scope.steps[node.name] = properties
            return {"Properties": properties}
        if node.type == "Model":
            name = (
                arguments.get("ModelName") or f"pipelines-{execution_id}-{node.name}".lower()[:63]
            )
            response = self.sagemaker.create_model(**{**arguments, "ModelName": name})
            properties = _jsonable(self.sagemaker.describe_model(ModelName=name))
            properties["ModelArn"] = response["ModelArn"]
            scope.steps[node.name] = properties
            return {"Properties": properties}
        if node.type == "Lambda":
            return self._execute_lambda(node, arguments, scope)
        raise UnsupportedFeature(f"step {node.name!r}: step type {node.type!r}")

    def _execute_lambda(self, node: StepNode, arguments: dict, scope: Scope) -> dict:
        arn = node.definition.get("FunctionArn", "")
        name = arn.rsplit(":", 1)[-1] if arn.startswith("arn:") else arn
        handler = self.lambdas.get(arn) or self.lambdas.get(name)
        if handler is None:
            raise UnsupportedFeature(
                f"Lambda step {node.name}: function {arn!r} has no local handler "
                f"(known: {', '.join(sorted(self.lambdas)) or 'none'})"
            )
        response = _jsonable(handler(json.loads(json.dumps(arguments))))
        if not isinstance(response, dict):
            raise ResolutionError(
                f"Lambda step {node.name}: function returned {type(response).__name__}, "
                "not an object"
            )
        outputs = {}
        for spec in node.definition.get("OutputParameters", []):
            key, type_ = spec["OutputName"], spec.get("OutputType", "String")
            if key not in response:
                raise ResolutionError(
                    f"Lambda step {node.name}: function result has no output {key!r}"
                )
            value = response[key]
            outputs[key] = str(value) if type_ == "String" else value
        properties = {"OutputParameters": outputs}
        scope.steps[node.name] = properties
        return {"Properties": properties, "LambdaResponse": response}

    def _execute_job(
        self,
        node: StepNode,
        arguments: dict,
        scope: Scope,
        jobs: Jobs,
        execution_id: str,
        use_cache: bool,
    ) -> dict:
        cache = node.definition.get("CacheConfig") or {}
        key = self._cache_key(node, arguments, execution_id) if cache.get("Enabled") else None
        if key and use_cache:
            hit = self._cache_lookup(
                node.name, key, parse_duration(cache.get("ExpireAfter") or "P3650D")
            )
            if hit is not None:
                scope.steps[node.name] = hit["Properties"]
                scope.property_files[node.name] = hit.get("PropertyFiles", {})
                return {
                    "Properties": hit["Properties"],
                    "PropertyFiles": hit.get("PropertyFiles", {}),
                    "Metrics": hit.get("Metrics", {}),
                    "CacheKey": key,
                    "Cached": True,
                    "CacheHitResult": {
                        "SourcePipelineExecutionId": hit["ExecutionId"],
                        "SourcePipelineExecutionArn": hit["ExecutionArn"],
                    },
                }
        job_name = f"pipelines-{execution_id}-{node.name}".lower()[:63]
        if node.type == "Processing":
            result = jobs.run_processing(node.name, job_name, arguments)
        elif self.stream_logs:
            result = jobs.run_training(node.name, job_name, arguments)
        else:
            # Quiet by default: one line per epoch from the job's log, not the whole log.
            epochs = total_epochs(arguments.get("HyperParameters"))
            log = self.executions_dir / execution_id / "jobs" / node.name / "algo-1.log"
            with follow_epochs(log, node.name, epochs, self.echo):
                result = jobs.run_training(node.name, job_name, arguments)
        properties = _jsonable(result.properties)
        property_files = {}
        outputs = {
            o["OutputName"]: o["S3Output"]["S3Uri"]
            for o in arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])
            if "S3Output" in o
        }
        for pf in node.definition.get("PropertyFiles", []):
            property_files[pf["PropertyFileName"]] = (
                outputs[pf["OutputName"]].rstrip("/") + "/" + pf["FilePath"].lstrip("/")
            )
        scope.steps[node.name] = properties
        scope.property_files[node.name] = property_files
        return {
            "Properties": properties,
            "PropertyFiles": property_files,
            "Metrics": result.metrics,
            "Logs": [str(p) for p in result.logs],
            "CacheKey": key,
            "Cached": False,
        }

    def _cache_key(
        self, node: StepNode, arguments: Mapping[str, Any], execution_id: str = ""
    ) -> str:
        """SageMaker's cache key attributes for the step type, plus the content of every
        object the step reads and of every local file or folder its arguments name (so changed
        data or code never hits a stale cache). The execution's own id (in the per-execution
        CheckpointConfig.S3Uri) does not count: it differs every time by design."""
        keyed = {name: arguments.get(name) for name in CACHE_KEYS[node.type]}
        checkpoint = keyed.get("CheckpointConfig")
        if execution_id and isinstance(checkpoint, Mapping):
            # Only there: inputs may name an earlier execution's outputs (a cached step's).
            uri = str(checkpoint.get("S3Uri", ""))
            keyed["CheckpointConfig"] = {
                **checkpoint,
                "S3Uri": uri.replace(f"/{execution_id}/", "/<PipelineExecutionId>/"),
            }
        contents = {}
        for uri in sorted(_input_uris(node.type, arguments)):
            contents[uri] = self.store.content_hash(uri) if self.store.objects(uri) else "missing"
        local = {path: local_fingerprint(Path(path)) for path in _local_paths(node.type, arguments)}
        payload = json.dumps(
            {"type": node.type, "arguments": keyed, "contents": contents, "local": local},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def _cache_lookup(self, step: str, key: str, expire_after: timedelta) -> dict | None:
        oldest = datetime.now(UTC) - expire_after
        for execution in self.executions():
            for s in execution.get("Steps", []):
                if (
                    s.get("StepName") == step
                    and s.get("StepStatus") == "Succeeded"
                    and s.get("CacheKey") == key
                    and datetime.fromisoformat(s.get("EndTime", "1970-01-01T00:00:00+00:00"))
                    >= oldest
                    and self._outputs_present(s.get("Properties", {}))
                ):
                    source = s.get("CacheHitResult") or {}
                    return {
                        **s,
                        "ExecutionId": source.get(
                            "SourcePipelineExecutionId", execution["PipelineExecutionId"]
                        ),
                        "ExecutionArn": source.get(
                            "SourcePipelineExecutionArn", execution["PipelineExecutionArn"]
                        ),
                    }
        return None

    def _outputs_present(self, properties: Mapping[str, Any]) -> bool:
        uris = [
            o["S3Output"]["S3Uri"]
            for o in properties.get("ProcessingOutputConfig", {}).get("Outputs", [])
            if "S3Output" in o
        ]
        model = properties.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        if model:
            uris.append(model)
        return all(self.store.objects(u) for u in uris)


def _input_uris(step_type: str, arguments: Mapping[str, Any]) -> list[str]:
    if step_type == "Processing":
        return [
            i["S3Input"]["S3Uri"] for i in arguments.get("ProcessingInputs", []) if "S3Input" in i
        ]
    uris = [
        c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in arguments.get("InputDataConfig", [])
        if "S3DataSource" in c.get("DataSource", {})
    ]
    submit = (arguments.get("HyperParameters") or {}).get("sagemaker_submit_directory")
    if isinstance(submit, str) and submit.startswith("s3://"):
        uris.append(submit)
    return uris


def _local_paths(step_type: str, arguments: Mapping[str, Any]) -> list[str]:
    """Absolute paths of existing local files/folders named in the step's arguments
    (ContainerArguments, hyperparameters): SourceUri or FileListUri given as a local path."""
    if step_type == "Processing":
        values = (arguments.get("AppSpecification") or {}).get("ContainerArguments") or []
    else:
        values = list((arguments.get("HyperParameters") or {}).values())
    found = set()
    for value in values:
        if not isinstance(value, str) or not value.startswith("/") or value.startswith("/opt/ml"):
            continue
        if Path(value).exists():
            found.add(value)
    return sorted(found)


def local_fingerprint(path: Path) -> Any:
    """A file's sha256, or a folder's sorted (relative path, size, mtime_ns) per file."""
    if path.is_file():
        return file_sha256(path)
    entries = []
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            entries.append([p.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns])
    return entries


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S")
