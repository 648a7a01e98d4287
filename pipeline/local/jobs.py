"""Processing and training jobs as local processes, the way SageMaker's containers run them.

Each job host gets a sandbox folder standing for the container's filesystem: every `/opt/ml`
path of the request (input and output locations, entrypoint, arguments, hyperparameters, the
entrypoint script's own text) is rewritten to `<sandbox>/opt/ml`. Inputs are copied in from the
local object store before the job, outputs copied back after it.

Processing runs the request's ContainerEntrypoint + ContainerArguments (for the SDK's
FrameworkProcessor that is its generated runproc.sh, which unpacks the code archive and runs
the script). Training runs SageMaker's own training toolkit (`train`, from sagemaker-training)
with SAGEMAKER_BASE_DIR set to the sandbox, then packs the model dir into
`<S3OutputPath>/<job name>/output/model.tar.gz`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.local.expressions import UnsupportedFeature
from pipeline.local.job_watchdog import JobWatchdog
from pipeline.local.sagemaker_client import ACCOUNT, REGION
from pipeline.local.store import ObjectStore, write_json

CONTAINER_ROOT = "/opt/ml"
_PATH_IN_TEXT = re.compile(r"(?<![\w./-])/opt/ml(?=/|\b|$)")


class JobFailed(RuntimeError):
    """A job's process failed; the message carries its failure reason and log location."""

    def __init__(self, message: str, log: Path | None = None):
        super().__init__(message)
        self.log = log


@dataclass
class JobResult:
    """Describe*-shaped properties of a finished job and where its logs are."""

    properties: dict[str, Any]
    logs: list[Path] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)


def rewrite(value: Any, sandbox: Path) -> Any:
    """Every `/opt/ml` path inside `value` (strings, nested lists/dicts) moved into `sandbox`."""
    if isinstance(value, str):
        return _PATH_IN_TEXT.sub(str(sandbox) + CONTAINER_ROOT, value)
    if isinstance(value, list):
        return [rewrite(v, sandbox) for v in value]
    if isinstance(value, dict):
        return {k: rewrite(v, sandbox) for k, v in value.items()}
    return value


def container_path(local_path: str, sandbox: Path) -> Path:
    if not local_path.startswith(CONTAINER_ROOT):
        raise UnsupportedFeature(
            f"container path {local_path!r} is outside {CONTAINER_ROOT}; the local runner maps "
            f"only {CONTAINER_ROOT} into its sandboxes"
        )
    return Path(rewrite(local_path, sandbox))


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def base_env() -> dict[str, str]:
    """The environment every job starts from: this one, with this venv's python first on PATH
    and pip kept off the network (the venv already holds every pinned package)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["PIP_NO_INDEX"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.pop("PYTHONPATH", None)
    return env


def run_logged(
    command: list[str],
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    timeout: float | None,
    echo: Callable[[str], None] | None = None,
    watchdog: JobWatchdog | None = None,
) -> subprocess.Popen:
    """Start `command` with stdout+stderr into `log` (and each line to `echo`, if given).

    The command leads a process group of its own (like a container), so that a timeout or an
    interruption ends it together with whatever it started (runproc.sh's script, the
    toolkit's workers), and a `watchdog` ends it if this process dies; with `echo`, a thread
    copies its output, so waiting never blocks past the deadline.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "wb")  # noqa: SIM115 - closed by wait_logged
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if echo else handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pump = None
    if echo and proc.stdout is not None:
        pump = threading.Thread(target=_pump, args=(proc.stdout, handle, echo), daemon=True)
        pump.start()
    if watchdog is not None:
        watchdog.track(proc.pid)
    proc._bincount_log = handle  # type: ignore[attr-defined]
    proc._bincount_pump = pump  # type: ignore[attr-defined]
    proc._bincount_watchdog = watchdog  # type: ignore[attr-defined]
    proc._bincount_deadline = time.monotonic() + timeout if timeout else None  # type: ignore[attr-defined]
    return proc


def _pump(stream, handle, echo: Callable[[str], None]) -> None:
    for raw in stream:
        handle.write(raw)
        echo(raw.decode(errors="replace").rstrip("\n"))


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_logged(proc: subprocess.Popen) -> int:
    """The exit code, or -9 when the deadline passed (the whole process group is killed).
    Interrupted (Ctrl-C, a signal raised as an exception), it kills the group, then re-raises."""
    handle = proc._bincount_log  # type: ignore[attr-defined]
    pump = proc._bincount_pump  # type: ignore[attr-defined]
    deadline = proc._bincount_deadline  # type: ignore[attr-defined]
    try:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            code = proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            code = -9
        finally:
            # As when a container ends: nothing the job started outlives it (nor holds its
            # pipe), whether it ended, timed out or this wait was interrupted.
            end_job(proc)
        if pump is not None:
            pump.join()
        return code
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        handle.close()


def end_job(proc: subprocess.Popen) -> None:
    """Kill the job's whole process group and reap its leader (idempotent)."""
    _kill_group(proc)
    proc.wait()
    watchdog = getattr(proc, "_bincount_watchdog", None)
    if watchdog is not None:
        watchdog.untrack(proc.pid)


def _discard(path: Path) -> None:
    """A succeeded job's sandbox (copies of its inputs, its outputs, now in the store) or
    archive: removed, so executions keep only their logs (`<job dir>/<host>.log`). A failed
    job's sandbox stays for inspection."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class Jobs:
    """Runs the jobs of one execution under `<execution dir>/jobs/<step>/`."""

    def __init__(
        self,
        store: ObjectStore,
        execution_dir: Path,
        echo: Callable[[str], None] | None = None,
        watchdog: JobWatchdog | None = None,
    ):
        self.store = store
        self.execution_dir = Path(execution_dir)
        self.echo = echo
        self.watchdog = watchdog

    def _job_dir(self, step: str) -> Path:
        path = self.execution_dir / "jobs" / step
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- inputs / outputs ---------------------------------------------------------------------

    def _copy_in(
        self, uri: str, dest: Path, host_index: int, host_count: int, sharded: bool, what: str
    ) -> None:
        found = self.store.objects(uri)
        if not found:
            raise JobFailed(f"{what}: no objects at {uri} (local store {self.store.path(uri)})")
        if sharded:
            found = found[host_index::host_count]
        dest.mkdir(parents=True, exist_ok=True)
        for rel, src in found:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            # A copy, not a link: a job that writes into its inputs must not change the store.
            shutil.copyfile(src, target)

    # -- processing ---------------------------------------------------------------------------

    def run_processing(self, step: str, job_name: str, args: Mapping[str, Any]) -> JobResult:
        cluster = args.get("ProcessingResources", {}).get("ClusterConfig", {})
        count = int(cluster.get("InstanceCount", 1))
        if count < 1:
            raise JobFailed(f"{step}: InstanceCount must be at least 1, got {count}")
        app = args.get("AppSpecification") or {}
        entrypoint = list(app.get("ContainerEntrypoint") or [])
        if not entrypoint:
            raise UnsupportedFeature(
                f"Processing step {step}: AppSpecification without ContainerEntrypoint "
                "(the image's own entrypoint cannot run outside its container)"
            )
        for item in args.get("ProcessingInputs", []):
            if "S3Input" not in item:
                raise UnsupportedFeature(
                    f"Processing step {step}: input {item.get('InputName')!r} is not an S3Input "
                    "(DatasetDefinition inputs are not supported locally)"
                )
            s3 = item["S3Input"]
            if s3.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise UnsupportedFeature(
                    f"Processing step {step}: input {item['InputName']!r} S3DataType "
                    f"{s3.get('S3DataType')!r} (only S3Prefix is supported locally)"
                )
            if (
                s3.get("S3InputMode", "File") != "File"
                or s3.get("S3CompressionType", "None") != "None"
            ):
                raise UnsupportedFeature(
                    f"Processing step {step}: input {item['InputName']!r} needs File mode without "
                    "compression locally"
                )
        hosts = [f"algo-{i + 1}" for i in range(count)]
        job_dir = self._job_dir(step)
        procs: list[tuple[str, Path, subprocess.Popen]] = []
        try:
            failures = self._run_hosts(step, args, app, entrypoint, hosts, job_dir, procs)
        except BaseException:
            # An interruption or an error while other hosts run: none of them outlives it.
            for _, _, proc in procs:
                end_job(proc)
            raise
        logs = [job_dir / f"{h}.log" for h in hosts]
        if failures:
            raise JobFailed(f"Processing job {job_name} failed: " + "\n".join(failures), logs[0])
        for _, sandbox, _ in procs:
            for output in args.get("ProcessingOutputConfig", {}).get("Outputs", []):
                local = container_path(output["S3Output"]["LocalPath"], sandbox)
                self.store.upload_dir(local, output["S3Output"]["S3Uri"])
        for _, sandbox, _ in procs:
            _discard(sandbox)
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/{job_name.lower()}"
        properties = {
            **{k: v for k, v in args.items() if k != "RoleArn"},
            "RoleArn": args.get("RoleArn", ""),
            "ProcessingJobName": job_name,
            "ProcessingJobArn": arn,
            "ProcessingJobStatus": "Completed",
            "ExitMessage": "",
        }
        return JobResult(properties=properties, logs=logs)

    def _run_hosts(
        self,
        step: str,
        args: Mapping[str, Any],
        app: Mapping[str, Any],
        entrypoint: list[str],
        hosts: list[str],
        job_dir: Path,
        procs: list[tuple[str, Path, subprocess.Popen]],
    ) -> list[str]:
        """Start one process per host (appended to `procs` as they start), wait for all;
        the failure lines of those that failed."""
        count = len(hosts)
        cluster = args.get("ProcessingResources", {}).get("ClusterConfig", {})
        instance_type = str(cluster.get("InstanceType", "local"))
        for index, host in enumerate(hosts):
            sandbox = job_dir / host
            config_dir = sandbox / "opt/ml/config"
            config_dir.mkdir(parents=True, exist_ok=True)
            resource_config = config_dir / "resourceconfig.json"
            write_json(
                resource_config,
                {
                    "current_host": host,
                    "current_instance_type": instance_type,
                    "hosts": hosts,
                    "network_interface_name": "lo",
                },
            )
            for item in args.get("ProcessingInputs", []):
                s3 = item["S3Input"]
                self._copy_in(
                    s3["S3Uri"],
                    container_path(s3["LocalPath"], sandbox),
                    index,
                    count,
                    s3.get("S3DataDistributionType") == "ShardedByS3Key",
                    f"{step} input {item['InputName']!r}",
                )
            for output in args.get("ProcessingOutputConfig", {}).get("Outputs", []):
                if "S3Output" not in output:
                    raise UnsupportedFeature(
                        f"Processing step {step}: output {output.get('OutputName')!r} "
                        "is not an S3Output"
                    )
                container_path(output["S3Output"]["LocalPath"], sandbox).mkdir(
                    parents=True, exist_ok=True
                )
            command = rewrite(entrypoint + list(app.get("ContainerArguments") or []), sandbox)
            command = [sys.executable if c in {"python", "python3"} else c for c in command]
            self._rewrite_scripts(command, sandbox)
            env = base_env()
            env.update({k: str(v) for k, v in (args.get("Environment") or {}).items()})
            env["SM_RESOURCE_CONFIG_PATH"] = str(resource_config)
            env["AWS_REGION"] = env.get("AWS_REGION", REGION)
            echo = (lambda line, h=host: self.echo(f"  [{step} {h}] {line}")) if self.echo else None
            timeout = (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
            procs.append(
                (
                    host,
                    sandbox,
                    run_logged(
                        command,
                        env,
                        sandbox,
                        job_dir / f"{host}.log",
                        timeout,
                        echo,
                        self.watchdog,
                    ),
                )
            )
        failures = []
        for host, _, proc in procs:
            code = wait_logged(proc)
            if code != 0:
                log = job_dir / f"{host}.log"
                failures.append(
                    f"{host} exited with code {code}{' (timed out)' if code == -9 else ''}; "
                    f"log {log}:\n{tail(log)}"
                )
        return failures

    def _rewrite_scripts(self, command: list[str], sandbox: Path) -> None:
        """Shell scripts the command runs from the sandbox (runproc.sh) refer to /opt/ml
        themselves: rewrite their text too."""
        for part in command:
            path = Path(part)
            if part.endswith(".sh") and path.is_file() and path.is_relative_to(sandbox):
                path.write_text(rewrite(path.read_text(), sandbox))

    # -- training -----------------------------------------------------------------------------

    def run_training(self, step: str, job_name: str, args: Mapping[str, Any]) -> JobResult:
        """Run the training toolkit on one host, as SageMaker's PyTorch container would."""
        algorithm, resources, hyperparameters = _training_request(step, args)
        job_dir = self._job_dir(step)
        sandbox = job_dir / "algo-1"
        base = sandbox / "opt/ml"
        config_dir = base / "input/config"
        for folder in (config_dir, base / "model", base / "output/data", base / "code"):
            folder.mkdir(parents=True, exist_ok=True)

        submit_uri, submit = self._submit_archive(step, hyperparameters, args, sandbox)
        hyperparameters = rewrite(hyperparameters, sandbox)
        hyperparameters["sagemaker_submit_directory"] = str(submit)
        hyperparameters.pop("sagemaker_s3_output", None)
        write_json(config_dir / "hyperparameters.json", hyperparameters)
        write_json(config_dir / "inputdataconfig.json", self._copy_channels(step, args, base))
        if not submit.is_file():
            raise JobFailed(
                f"Training step {step}: sagemaker_submit_directory {submit_uri} is not delivered "
                "by any input channel"
            )
        write_json(config_dir / "resourceconfig.json", _resource_config(resources))
        checkpoint = args.get("CheckpointConfig")
        checkpoint_dir = self._restore_checkpoint(step, checkpoint, sandbox) if checkpoint else None

        env = _training_env(job_name, args, base)
        log = job_dir / "algo-1.log"
        echo = (lambda line: self.echo(f"  [{step}] {line}")) if self.echo else None
        timeout = (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
        code = wait_logged(
            run_logged(_toolkit_command(), env, sandbox, log, timeout, echo, self.watchdog)
        )
        if checkpoint_dir is not None and checkpoint:
            self.store.upload_dir(checkpoint_dir, checkpoint["S3Uri"])
        if code != 0:
            # The toolkit's failure file only names the command; the log's tail has the error.
            raise JobFailed(
                f"Training job {job_name} failed (exit code {code}); log {log}:\n{tail(log, 30)}",
                log,
            )

        model_uri = self._store_model(step, job_name, args, base, job_dir)
        metrics = self._metrics(algorithm.get("MetricDefinitions") or [], log)
        for copy in (sandbox, job_dir / "model.tar.gz", job_dir / "output.tar.gz"):
            _discard(copy)
        properties = {
            **dict(args),
            "TrainingJobName": job_name,
            "TrainingJobArn": env["TRAINING_JOB_ARN"],
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": model_uri},
            "FinalMetricDataList": [
                {
                    "MetricName": name,
                    "Value": values[-1],
                    "Timestamp": datetime.now(UTC).isoformat(),
                }
                for name, values in metrics.items()
                if values
            ],
        }
        return JobResult(properties=properties, logs=[log], metrics=metrics)

    def _submit_archive(
        self, step: str, hyperparameters: Mapping[str, str], args: Mapping[str, Any], sandbox: Path
    ) -> tuple[str, Path]:
        """(sagemaker_submit_directory as given, the local file the toolkit will unpack)."""
        submit_uri = hyperparameters["sagemaker_submit_directory"]
        if not submit_uri.startswith("s3://"):
            # A container path, e.g. /opt/ml/input/data/code/sourcedir.tar.gz: an input channel
            # delivers it (checked once the channels are copied in).
            return submit_uri, container_path(submit_uri, sandbox)
        if args.get("EnableNetworkIsolation"):
            # As on SageMaker: the toolkit would download it, and the job has no network.
            raise JobFailed(
                f"Training step {step}: EnableNetworkIsolation is on, so the container cannot "
                f"download its code from {submit_uri}; deliver it as an input channel"
            )
        submit = self.store.path(submit_uri)
        if not submit.is_file():
            raise JobFailed(
                f"Training step {step}: code archive {submit_uri} is not in the local store "
                f"({submit})"
            )
        return submit_uri, submit

    def _copy_channels(self, step: str, args: Mapping[str, Any], base: Path) -> dict:
        """Copy every input channel into input/data/<channel>; returns inputdataconfig.json."""
        channels = {}
        for channel in args.get("InputDataConfig", []):
            name = channel["ChannelName"]
            source = channel.get("DataSource", {}).get("S3DataSource")
            if not source:
                raise UnsupportedFeature(
                    f"Training step {step}: channel {name!r} is not an S3DataSource"
                )
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise UnsupportedFeature(
                    f"Training step {step}: channel {name!r} "
                    f"S3DataType {source.get('S3DataType')!r}"
                )
            self._copy_in(
                source["S3Uri"], base / "input/data" / name, 0, 1, False, f"{step} channel {name!r}"
            )
            channels[name] = {
                "TrainingInputMode": channel.get("InputMode", "File"),
                "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
                "RecordWrapperType": channel.get("RecordWrapperType", "None"),
            }
        return channels

    def _restore_checkpoint(self, step: str, checkpoint: Mapping[str, Any], sandbox: Path) -> Path:
        """The container's checkpoint dir, filled from CheckpointConfig.S3Uri if it has any."""
        checkpoint_dir = container_path(
            checkpoint.get("LocalPath") or "/opt/ml/checkpoints", sandbox
        )
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        # Per execution (executions/<id>/checkpoints): resolved to a plain s3:// URI here.
        checkpoint_uri = checkpoint.get("S3Uri")
        if not isinstance(checkpoint_uri, str) or not checkpoint_uri.startswith("s3://"):
            raise JobFailed(
                f"Training step {step}: CheckpointConfig.S3Uri must resolve to an s3:// "
                f"URI, got {checkpoint_uri!r}"
            )
        if self.store.objects(checkpoint_uri):
            self.store.download(checkpoint["S3Uri"], checkpoint_dir)
        return checkpoint_dir

    def _store_model(
        self, step: str, job_name: str, args: Mapping[str, Any], base: Path, job_dir: Path
    ) -> str:
        """Pack model/ and output/data/ where SageMaker puts them; returns the model's URI."""
        output_path = str((args.get("OutputDataConfig") or {}).get("S3OutputPath", "")).rstrip("/")
        if not output_path.startswith("s3://"):
            raise JobFailed(
                f"Training step {step}: OutputDataConfig.S3OutputPath must be an s3:// URI"
            )
        model_uri = f"{output_path}/{job_name}/output/model.tar.gz"
        self._pack(base / "model", job_dir / "model.tar.gz")
        self.store.put_file(job_dir / "model.tar.gz", model_uri)
        self._pack(base / "output/data", job_dir / "output.tar.gz")
        self.store.put_file(
            job_dir / "output.tar.gz", f"{output_path}/{job_name}/output/output.tar.gz"
        )
        return model_uri

    @staticmethod
    def _pack(folder: Path, archive: Path) -> None:
        """tar.gz of a folder's contents (entries relative to it, as SageMaker packs them)."""
        tmp = archive.with_name(f".{archive.name}.tmp")
        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(folder.rglob("*")):
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
        tmp.replace(archive)

    @staticmethod
    def _metrics(definitions: list[Mapping[str, str]], log: Path) -> dict[str, list[float]]:
        """Every value each MetricDefinitions regex captures in the log, in order."""
        text = log.read_text(errors="replace") if log.is_file() else ""
        found: dict[str, list[float]] = {}
        for definition in definitions:
            values = []
            for m in re.finditer(definition["Regex"], text):
                try:
                    values.append(float(m.group(1)))
                except (IndexError, ValueError):
                    continue
            found[definition["Name"]] = values
        return found


def _training_request(
    step: str, args: Mapping[str, Any]
) -> tuple[Mapping[str, Any], Mapping[str, Any], dict[str, str]]:
    """(AlgorithmSpecification, ResourceConfig, hyperparameters as strings) of a request the
    local runner can train; UnsupportedFeature names what it cannot."""
    algorithm = args.get("AlgorithmSpecification") or {}
    if algorithm.get("ContainerEntrypoint") or algorithm.get("AlgorithmName"):
        raise UnsupportedFeature(
            f"Training step {step}: AlgorithmSpecification.ContainerEntrypoint/AlgorithmName; "
            "the local runner trains through the training toolkit (sagemaker_program + "
            "sagemaker_submit_directory hyperparameters)"
        )
    if algorithm.get("TrainingInputMode", "File") != "File":
        raise UnsupportedFeature(
            f"Training step {step}: TrainingInputMode {algorithm['TrainingInputMode']!r}"
        )
    resources = args.get("ResourceConfig") or {}
    count = int(resources.get("InstanceCount", 1))
    if count != 1:
        raise UnsupportedFeature(
            f"Training step {step}: InstanceCount={count}; the local runner trains on one host "
            "(run with TrainingInstanceCount=1)"
        )
    hyperparameters = {k: str(v) for k, v in (args.get("HyperParameters") or {}).items()}
    if (
        "sagemaker_program" not in hyperparameters
        or "sagemaker_submit_directory" not in hyperparameters
    ):
        raise UnsupportedFeature(
            f"Training step {step}: hyperparameters need sagemaker_program and "
            "sagemaker_submit_directory for the training toolkit"
        )
    return algorithm, resources, hyperparameters


def _resource_config(resources: Mapping[str, Any]) -> dict:
    """resourceconfig.json for one host."""
    # The toolkit resolves every host name before it starts: name this machine.
    host = socket.gethostname()
    instance_type = str(resources.get("InstanceType", "local"))
    return {
        "current_host": host,
        "hosts": [host],
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": instance_type,
                "hosts": [host],
            }
        ],
        "network_interface_name": "lo",
    }


def _training_env(job_name: str, args: Mapping[str, Any], base: Path) -> dict[str, str]:
    env = base_env()
    env.update({k: str(v) for k, v in (args.get("Environment") or {}).items()})
    env.update(
        SAGEMAKER_BASE_DIR=str(base),
        TRAINING_JOB_NAME=job_name,
        TRAINING_JOB_ARN=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{job_name.lower()}",
        AWS_REGION=env.get("AWS_REGION", REGION),
    )
    return env


def _toolkit_command() -> list[str]:
    """SageMaker's training toolkit (`train`), as the container's entrypoint runs it."""
    toolkit = Path(sys.executable).parent / "train"
    if toolkit.is_file():
        return [str(toolkit)]
    return [sys.executable, "-c", "from sagemaker_training.cli.train import main; main()"]
