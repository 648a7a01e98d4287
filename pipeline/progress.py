"""Per-epoch progress of a Train step, shared by the local `run` and `start --wait` on AWS.

training/train.py prints one metric line per epoch (`epoch=N train_loss=... val_acc=...`,
its METRIC_LINE); both sides read those lines, locally from the job's log file while it
grows, on AWS from the training job's CloudWatch log stream, and print one short line each:

    Train epoch 2/3  loss 1.2034  val acc 0.412  ETA 0:01:05

The ETA is the mean epoch time so far times the epochs left (early stopping may end sooner).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

_PAIR = re.compile(r"(\w+)=(\S+)")
TERMINAL = {"Succeeded", "Failed", "Stopped"}
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def parse_epoch_line(line: str) -> dict[str, float] | None:
    """The fields of a metric line (floats), or None for any other log line."""
    start = line.find("epoch=")
    if start < 0 or (start > 0 and line[start - 1].isalnum()):
        return None
    fields: dict[str, float] = {}
    for name, raw in _PAIR.findall(line[start:]):
        try:
            fields[name] = float(raw)
        except ValueError:
            continue
    return fields if "epoch" in fields and "train_loss" in fields else None


def format_eta(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class EpochProgress:
    """Turns metric lines into progress lines; `clock` is injectable for tests."""

    def __init__(
        self,
        step: str,
        total_epochs: int | None,
        started: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.step = step
        self.total = total_epochs if total_epochs and total_epochs > 0 else None
        self.clock = clock
        self.started = clock() if started is None else started
        self.first_epoch: int | None = None

    def line(self, fields: Mapping[str, float]) -> str:
        epoch = int(fields["epoch"])
        # A resumed job (spot, checkpoint) starts at a later epoch: time only this run's.
        if self.first_epoch is None:
            self.first_epoch = epoch
        done = epoch - self.first_epoch + 1
        elapsed = self.clock() - self.started
        of = f"/{self.total}" if self.total else ""
        text = f"{self.step} epoch {epoch}{of}  loss {fields['train_loss']:.4f}"
        if "val_acc" in fields:
            text += f"  val acc {fields['val_acc']:.3f}"
        if self.total:
            left = max(0, self.total - epoch)
            text += f"  ETA {format_eta(elapsed / done * left)}" if left else "  (last epoch)"
        return text


def lambda_outcome(response: Any) -> str:
    """`: <status> (<reason>)` of a Lambda step's answer (the deployer's: deployed, skipped,
    busy, ...), or '' when it has no status."""
    if not isinstance(response, Mapping) or not response.get("status"):
        return ""
    reason = response.get("reason") or ""
    return f": {response['status']}" + (f" ({reason})" if reason else "")


def total_epochs(hyperparameters: Mapping[str, Any] | None) -> int | None:
    """The `epochs` hyperparameter (a string, as SageMaker passes them), or None."""
    try:
        return int(str((hyperparameters or {}).get("epochs", "")).strip('"'))
    except ValueError:
        return None


class LogFollower(threading.Thread):
    """Reads complete lines appended to `path` (which may not exist yet) every `interval`
    seconds and hands each to `on_line`; `stop()` reads what is left and joins."""

    def __init__(self, path: Path, on_line: Callable[[str], None], interval: float = 0.5):
        super().__init__(daemon=True, name=f"follow {path.name}")
        self.path = Path(path)
        self.on_line = on_line
        self.interval = interval
        self._stopping = threading.Event()
        self._offset = 0
        self._partial = b""

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            self._read()
        self._read()

    def _read(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except OSError:
            return
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for raw in lines:
            self.on_line(raw.decode(errors="replace").rstrip("\r"))

    def stop(self) -> None:
        self._stopping.set()
        self.join()


@contextlib.contextmanager
def follow_epochs(
    log: Path, step: str, epochs: int | None, echo: Callable[[str], None]
) -> Iterator[EpochProgress]:
    """While the block runs, echo one progress line per epoch the job writes to `log`."""
    progress = EpochProgress(step, epochs)

    def on_line(line: str) -> None:
        fields = parse_epoch_line(line)
        if fields is not None:
            echo(f"[{_clock()}]   {progress.line(fields)}")

    follower = LogFollower(log, on_line)
    follower.start()
    try:
        yield progress
    finally:
        follower.stop()


# -- AWS: follow an execution step by step ------------------------------------------------------


def follow_execution(
    sagemaker: Any,
    logs: Any,
    arn: str,
    echo: Callable[[str], None] = print,
    poll_seconds: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Print each step's state changes and the Train job's epochs until the execution ends;
    returns DescribePipelineExecution's last answer."""
    seen: dict[str, str] = {}
    training: dict[str, dict] = {}  # job name -> {"progress", "next_ms", "seen"}
    while True:
        execution = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
        for step in _steps(sagemaker, arn):
            name, status = step["StepName"], step["StepStatus"]
            if seen.get(name) != status:
                seen[name] = status
                reason = f": {step['FailureReason']}" if step.get("FailureReason") else ""
                echo(f"[{_clock()}] {name} {status}{reason}")
            job_arn = (step.get("Metadata") or {}).get("TrainingJob", {}).get("Arn", "")
            if job_arn:
                job = job_arn.rsplit("/", 1)[-1]
                state = training.get(job)
                if state is None:
                    described = sagemaker.describe_training_job(TrainingJobName=job)
                    state = training[job] = {
                        "progress": EpochProgress(
                            name, total_epochs(described.get("HyperParameters")), clock=clock
                        ),
                        "next_ms": 0,
                        "seen": set(),
                    }
                for line in _new_epoch_lines(logs, job, state):
                    fields = parse_epoch_line(line)
                    if fields is not None:
                        echo(f"[{_clock()}]   {state['progress'].line(fields)}")
        if execution["PipelineExecutionStatus"] in TERMINAL:
            return execution
        sleep(poll_seconds)


def _steps(sagemaker: Any, arn: str) -> list[dict]:
    steps: list[dict] = []
    pages = sagemaker.get_paginator("list_pipeline_execution_steps").paginate(
        PipelineExecutionArn=arn, SortOrder="Ascending"
    )
    for page in pages:
        steps.extend(page["PipelineExecutionSteps"])
    return steps


def _new_epoch_lines(logs: Any, job: str, state: dict) -> list[str]:
    """Metric lines of the job's log streams (`<job>/algo-N-...`) since the last poll; the
    log group exists only once a job has logged, so its absence is "nothing yet"."""
    from botocore.exceptions import ClientError

    request = {
        "logGroupName": TRAINING_LOG_GROUP,
        "logStreamNamePrefix": f"{job}/",
        "filterPattern": '"epoch="',
        "startTime": state["next_ms"],
    }
    events: list[dict] = []
    try:
        for page in logs.get_paginator("filter_log_events").paginate(**request):
            events.extend(page.get("events", []))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return []
        raise
    lines = []
    for event in sorted(events, key=lambda e: (e["timestamp"], e.get("eventId", ""))):
        # Polls overlap at the boundary millisecond: an event id is printed once.
        key = event.get("eventId") or (event["timestamp"], event["message"])
        if key in state["seen"]:
            continue
        state["seen"].add(key)
        state["next_ms"] = max(state["next_ms"], event["timestamp"])
        # Several ranks log the same line: algo-1's stream only (rank 0 prints it).
        if "/algo-1" in event.get("logStreamName", f"{job}/algo-1"):
            lines.append(event["message"].rstrip("\n"))
    return lines


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S")
