"""Killing `python -m pipeline run` ends its jobs and never leaves an execution "Executing".

Each test starts the real CLI in a subprocess on a one-step definition whose Processing job
(and a grandchild it starts) would sleep for minutes, waits for both to run, signals the
runner, and checks that the job's whole process group is gone and the record tells why.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.local import processes
from pipeline.local.runner import LocalRunner
from pipeline.local.store import HOME_ENV, read_json

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0

# The job: start a grandchild (as runproc.sh starts the script), note both pids, sleep.
JOB = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
"""


def definition(pid_file: Path) -> dict:
    return {
        "Version": "2020-12-01",
        "Metadata": {},
        "Parameters": [],
        "Steps": [
            {
                "Name": "Sleep",
                "Type": "Processing",
                "Arguments": {
                    "ProcessingResources": {
                        "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large"}
                    },
                    "AppSpecification": {
                        "ContainerEntrypoint": ["python3", "-c", JOB, str(pid_file)]
                    },
                    "RoleArn": "arn:aws:iam::000000000000:role/r",
                    "ProcessingOutputConfig": {"Outputs": []},
                },
            }
        ],
    }


def start_runner(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    home, pid_file = tmp_path / "home", tmp_path / "job.pids"
    definition_file = tmp_path / "definition.json"
    definition_file.write_text(json.dumps(definition(pid_file)))
    runner = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--definition", str(definition_file)],
        cwd=REPO,
        env={**os.environ, HOME_ENV: str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return runner, home, pid_file


def job_pids(runner: subprocess.Popen, pid_file: Path) -> list[int]:
    deadline = time.monotonic() + WAIT_S
    while not pid_file.exists():
        if runner.poll() is not None:
            pytest.fail(f"the runner ended first: {runner.stderr.read().decode()}")
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    return [int(p) for p in pid_file.read_text().split()]


def running(pid: int) -> bool:
    return processes.state(pid) not in (None, "Z", "X")


def wait_gone(pids: list[int]) -> list[int]:
    """The pids still running after a bounded wait (empty when all are gone)."""
    deadline = time.monotonic() + 15
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if running(p)]


def execution_file(home: Path) -> Path:
    (found,) = (home / "executions").glob("*/execution.json")
    return found


@pytest.fixture
def cleanup():
    pids: list[int] = []
    yield pids
    for pid in pids:  # only if a test failed half-way: never leave a sleeper behind
        if running(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("signal_number", "name"),
    [(signal.SIGINT, "SIGINT (Ctrl-C)"), (signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")],
)
def test_a_stop_signal_kills_the_job_group_and_records_stopped(
    tmp_path, cleanup, signal_number, name
):
    runner, home, pid_file = start_runner(tmp_path)
    cleanup.extend(job_pids(runner, pid_file))

    runner.send_signal(signal_number)

    assert runner.wait(timeout=WAIT_S) == 128 + signal_number
    assert f"stopped by {name}" in runner.stderr.read().decode()
    assert wait_gone(cleanup) == []
    record = read_json(execution_file(home))
    assert record["PipelineExecutionStatus"] == "Stopped"
    assert record["FailureReason"].startswith(f"stopped by {name}")
    assert record["Steps"][0]["StepStatus"] == "Stopped"


def test_sigkill_of_the_runner_kills_the_job_and_the_next_command_marks_it_failed(
    tmp_path, cleanup
):
    runner, home, pid_file = start_runner(tmp_path)
    cleanup.extend(job_pids(runner, pid_file))
    runner_pid = runner.pid

    runner.kill()
    runner.wait(timeout=WAIT_S)

    assert wait_gone(cleanup) == []  # the watchdog saw the runner's pipe close
    stored = read_json(execution_file(home))
    assert stored["PipelineExecutionStatus"] == "Executing"  # nobody could write it
    (record,) = LocalRunner(home, echo=lambda line: None).executions()
    assert record["PipelineExecutionStatus"] == "Failed"
    assert f"the runner (pid {runner_pid}) ended" in record["FailureReason"]
    assert "during step Sleep" in record["FailureReason"]
    assert record["Steps"][0]["StepStatus"] == "Failed"
    assert read_json(execution_file(home))["PipelineExecutionStatus"] == "Failed"  # stored


def test_an_execution_whose_runner_lives_stays_executing(tmp_path):
    """The check is by pid and start time: a live runner is never declared dead."""
    runner = LocalRunner(tmp_path, echo=lambda line: None)
    path = tmp_path / "executions" / "x" / "execution.json"
    path.parent.mkdir(parents=True)
    alive = processes.identity()
    reused = {**alive, "StartTicks": (alive["StartTicks"] or 0) + 1}  # same pid, other process
    for runner_identity, expected in ((alive, "Executing"), (reused, "Failed")):
        record = {
            "PipelineExecutionId": "x",
            "PipelineExecutionStatus": "Executing",
            "StartTime": "2026-01-01T00:00:00+00:00",
            "Runner": runner_identity,
            "Steps": [],
        }
        path.write_text(json.dumps(record))
        assert runner.execution("x")["PipelineExecutionStatus"] == expected
