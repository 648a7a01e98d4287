"""Processing jobs in sandboxes: /opt/ml paths rewritten, inputs in, outputs out, hosts sharded."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from pipeline.local.expressions import UnsupportedFeature
from pipeline.local.jobs import JobFailed, Jobs, base_env, rewrite, run_logged, wait_logged
from pipeline.local.store import ObjectStore

SCRIPT = """
import json, os, sys
from pathlib import Path

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
config = json.loads(Path(os.environ["SM_RESOURCE_CONFIG_PATH"]).read_text())
names = sorted(p.name for p in Path(args["--input"]).iterdir())
if "fail.txt" in names:
    sys.exit("refusing fail.txt")
out = Path(args["--output"]) / f"{config['current_host']}.json"
report = {"host": config["current_host"], "hosts": config["hosts"], "seen": names}
out.write_text(json.dumps(report))
"""


def test_rewrite_moves_only_container_paths(tmp_path):
    sandbox = tmp_path / "algo-1"
    assert rewrite("/opt/ml/processing/x", sandbox) == f"{sandbox}/opt/ml/processing/x"
    assert rewrite("--dir=/opt/ml/model", sandbox) == f"--dir={sandbox}/opt/ml/model"
    assert rewrite(["cd /opt/ml/code && ls", {"k": "/opt/ml"}], sandbox) == [
        f"cd {sandbox}/opt/ml/code && ls",
        {"k": f"{sandbox}/opt/ml"},
    ]
    untouched = ["s3://b/opt/ml/x", "/home/opt/ml", "/opt/mlflow"]
    assert rewrite(untouched, sandbox) == untouched
    once = rewrite("/opt/ml/a", sandbox)
    assert rewrite(once, sandbox) == once


def processing_args(count: int, distribution: str) -> dict:
    return {
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": count, "InstanceType": "x"}},
        "AppSpecification": {
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/job.py"],
            "ContainerArguments": [
                "--input",
                "/opt/ml/processing/data",
                "--output",
                "/opt/ml/processing/out",
            ],
        },
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": "s3://b/code/",
                    "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri": "s3://b/data",
                    "LocalPath": "/opt/ml/processing/data",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": distribution,
                },
            },
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "out",
                    "S3Output": {"S3Uri": "s3://b/results", "LocalPath": "/opt/ml/processing/out"},
                }
            ]
        },
    }


@pytest.fixture
def store(tmp_path) -> ObjectStore:
    store = ObjectStore(tmp_path / "s3")
    store.put_bytes(SCRIPT.encode(), "s3://b/code/job.py")
    for name in ("a.txt", "b.txt", "c.txt"):
        store.put_bytes(name.encode(), f"s3://b/data/{name}")
    return store


def results(store: ObjectStore) -> dict[str, dict]:
    return {rel: json.loads(p.read_text()) for rel, p in store.objects("s3://b/results")}


def test_sharded_inputs_split_across_hosts_and_outputs_land_in_the_store(store, tmp_path):
    jobs = Jobs(store, tmp_path / "exec")
    result = jobs.run_processing("Step", "job-1", processing_args(2, "ShardedByS3Key"))
    assert results(store) == {
        "algo-1.json": {
            "host": "algo-1",
            "hosts": ["algo-1", "algo-2"],
            "seen": ["a.txt", "c.txt"],
        },
        "algo-2.json": {"host": "algo-2", "hosts": ["algo-1", "algo-2"], "seen": ["b.txt"]},
    }
    assert result.properties["ProcessingJobStatus"] == "Completed"
    assert result.properties["ProcessingJobArn"].endswith(":processing-job/job-1")
    assert all(Path(log).is_file() for log in result.logs)


def test_replicated_inputs_reach_every_host(store, tmp_path):
    Jobs(store, tmp_path / "exec").run_processing("S", "j", processing_args(2, "FullyReplicated"))
    assert {r["host"]: r["seen"] for r in results(store).values()} == {
        "algo-1": ["a.txt", "b.txt", "c.txt"],
        "algo-2": ["a.txt", "b.txt", "c.txt"],
    }


def test_a_failing_job_reports_its_host_exit_code_and_log_tail(store, tmp_path):
    store.put_bytes(b"x", "s3://b/data/fail.txt")
    with pytest.raises(JobFailed, match=r"(?s)algo-1 exited with code 1.*refusing fail\.txt"):
        Jobs(store, tmp_path / "exec").run_processing(
            "S", "j", processing_args(1, "FullyReplicated")
        )
    assert not store.objects("s3://b/results")


def test_missing_inputs_and_unsupported_inputs_are_named(store, tmp_path):
    args = processing_args(1, "FullyReplicated")
    args["ProcessingInputs"][1]["S3Input"]["S3Uri"] = "s3://b/nothing"
    with pytest.raises(JobFailed, match="input 'data': no objects at s3://b/nothing"):
        Jobs(store, tmp_path / "exec").run_processing("S", "j", args)
    args = processing_args(1, "FullyReplicated")
    args["ProcessingInputs"][1]["S3Input"]["S3DataType"] = "ManifestFile"
    with pytest.raises(UnsupportedFeature, match="S3DataType 'ManifestFile'"):
        Jobs(store, tmp_path / "exec").run_processing("S", "j", args)


def test_a_succeeded_jobs_sandbox_is_removed_and_its_logs_kept(store, tmp_path):
    result = Jobs(store, tmp_path / "exec").run_processing(
        "S", "j", processing_args(2, "FullyReplicated")
    )
    job_dir = tmp_path / "exec" / "jobs" / "S"
    assert sorted(p.name for p in job_dir.iterdir()) == ["algo-1.log", "algo-2.log"]
    assert all(Path(log).is_file() for log in result.logs)
    assert len(store.objects("s3://b/results")) == 2


def test_a_failed_jobs_sandbox_is_kept(store, tmp_path):
    store.put_bytes(b"x", "s3://b/data/fail.txt")
    with pytest.raises(JobFailed):
        Jobs(store, tmp_path / "exec").run_processing(
            "S", "j", processing_args(1, "FullyReplicated")
        )
    assert (tmp_path / "exec/jobs/S/algo-1/opt/ml/processing/data/fail.txt").is_file()


# Starts a grandchild that outlives a plain kill of its parent and keeps the stdout pipe open.
SPAWNER = """
import subprocess, sys
child = subprocess.Popen(["sleep", "30"])
open(sys.argv[1], "w").write(str(child.pid))
print("started", flush=True)
child.wait()
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in {"Z", "X"}


@pytest.mark.parametrize("echoed", [False, True])
def test_a_timeout_kills_the_whole_process_group_in_both_modes(tmp_path, echoed):
    lines: list[str] = []
    pid_file = tmp_path / "grandchild.pid"
    proc = run_logged(
        [sys.executable, "-c", SPAWNER, str(pid_file)],
        base_env(),
        tmp_path,
        tmp_path / "job.log",
        timeout=2,
        echo=lines.append if echoed else None,
    )
    assert wait_logged(proc) == -9
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # reaped by init shortly after the kill
        if not _alive(grandchild):
            break
        time.sleep(0.1)
    assert not _alive(grandchild)
    assert "started" in (tmp_path / "job.log").read_text()
    assert lines == (["started"] if echoed else [])


TRAIN_SCRIPT = """
import os
from pathlib import Path

Path(os.environ["SM_MODEL_DIR"], "model.txt").write_text("trained from " + os.getcwd())
"""


def training_args(submit: str, *, isolated: bool, code_channel: bool) -> dict:
    channels = [
        {
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3Uri": "s3://b/data", "S3DataType": "S3Prefix"}},
        }
    ]
    if code_channel:
        channels.append(
            {
                "ChannelName": "code",
                "DataSource": {
                    "S3DataSource": {
                        "S3Uri": "s3://b/code/sourcedir.tar.gz",
                        "S3DataType": "S3Prefix",
                    }
                },
            }
        )
    return {
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "HyperParameters": {"sagemaker_program": "train.py", "sagemaker_submit_directory": submit},
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1},
        "EnableNetworkIsolation": isolated,
    }


@pytest.fixture
def code_archive(store, tmp_path):
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        body = TRAIN_SCRIPT.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    store.put_bytes(raw.getvalue(), "s3://b/code/sourcedir.tar.gz")
    return "s3://b/code/sourcedir.tar.gz"


def test_isolated_training_runs_code_delivered_as_an_input_channel(store, tmp_path, code_archive):
    """As on SageMaker: an isolated container gets its code only through a channel."""
    args = training_args(
        "/opt/ml/input/data/code/sourcedir.tar.gz", isolated=True, code_channel=True
    )
    result = Jobs(store, tmp_path / "exec").run_training("Train", "job-1", args)
    model = result.properties["ModelArtifacts"]["S3ModelArtifacts"]
    assert model == "s3://b/out/job-1/output/model.tar.gz" and store.objects(model)


def test_isolated_training_cannot_download_its_code(store, tmp_path, code_archive):
    args = training_args(code_archive, isolated=True, code_channel=False)
    with pytest.raises(JobFailed, match="EnableNetworkIsolation is on, so the container cannot"):
        Jobs(store, tmp_path / "exec").run_training("Train", "job-1", args)
    args = training_args(
        "/opt/ml/input/data/code/sourcedir.tar.gz", isolated=True, code_channel=False
    )
    with pytest.raises(JobFailed, match="is not delivered by any input channel"):
        Jobs(store, tmp_path / "exec").run_training("Train", "job-2", args)
