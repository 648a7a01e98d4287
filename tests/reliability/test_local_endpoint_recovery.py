"""Local endpoints recover from whatever a killed or racing process left behind.

A deploy killed half-way (SIGKILL, while its new server loads) leaves no server that no
record names and no endpoint stuck in Creating/Updating; `endpoints stop --all` does not
stop `models approve` from working; `endpoints delete` exists; `endpoints list` never calls a
dead server InService; a refused model archive leaves no folder; two approvals at once end
on one version, the newest.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from local_models import deployable_archive

from pipeline.local import cli, processes
from pipeline.local.endpoints import SERVER_MODULE
from pipeline.local.store import HOME_ENV, read_json
from pipeline.local.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0

# model_fn waits while the model's "hold" file exists: a server caught loading.
HANDLER = """
import json, os, time


def model_fn(model_dir):
    with open(os.path.join(model_dir, "model.json")) as f:
        meta = json.load(f)
    deadline = time.monotonic() + 120
    while meta.get("hold") and os.path.exists(meta["hold"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return meta


def input_fn(body, content_type):
    return json.loads(body)


def predict_fn(data, model):
    return {"scale": model["scale"], "version": os.environ.get("BINCOUNT_MODEL_VERSION")}


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""

# What a `models approve` or Deploy step does in the process that gets killed.
KILLED = """
import sys
from pathlib import Path
from pipeline.local.sagemaker_client import LocalSageMakerClient

sm = LocalSageMakerClient(Path(sys.argv[1]))
action, config = sys.argv[2], sys.argv[3]
if action == "create":
    sm.create_endpoint(EndpointName="ep", EndpointConfigName=config)
else:
    sm.update_endpoint(EndpointName="ep", EndpointConfigName=config)
"""


def model_archive(scale: int, hold: Path | None = None, members: dict | None = None) -> bytes:
    files = members or {
        "model.json": json.dumps({"scale": scale, "hold": str(hold) if hold else ""}),
        "code/inference.py": HANDLER,
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    workspace = Workspace(tmp_path / "home")
    yield workspace
    workspace.sagemaker.endpoints.stop_all()
    for pid in server_pids(workspace.home):  # a test that failed half-way leaves none
        os.kill(pid, signal.SIGKILL)


def deployable(ws, name: str, scale: int, hold: Path | None = None) -> str:
    return deployable_archive(ws.sagemaker, name, model_archive(scale, hold))


def register(ws, scale: int, status: str = "PendingManualApproval", hold=None) -> str:
    uri = f"s3://bincount-local/packages/{scale}/model.tar.gz"
    ws.sagemaker.store.put_bytes(model_archive(scale, hold), uri)
    return ws.sagemaker.create_model_package(
        ModelPackageGroupName=ws.settings.model_package_group_name,
        ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": uri}]},
    )["ModelPackageArn"]


def server_pids(home: Path) -> list[int]:
    """Every endpoint server process whose folder is under this home."""
    return [
        pid
        for pid, argv in processes.command_lines()
        if SERVER_MODULE in argv and any(a.startswith(str(home)) for a in argv)
    ]


def scale_served(ws, endpoint: str = "ep") -> int:
    status, _, body = ws.sagemaker.endpoints.invoke(endpoint, b"{}", "application/json")
    assert status == 200, body
    return json.loads(body)["scale"]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def kill_mid_deploy(ws, action: str, config: str) -> int:
    """Run create/update in a subprocess, SIGKILL it while its new server loads; the pid
    of the server it left behind."""
    before = set(server_pids(ws.home))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(ws.home), action, config],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_for(lambda: set(server_pids(ws.home)) - before, "the new server to start loading")
    finally:
        proc.kill()
        proc.wait()
    (orphan,) = set(server_pids(ws.home)) - before
    return orphan


def alive(pid: int) -> bool:
    return processes.state(pid) not in (None, "Z", "X")


@pytest.mark.parametrize("first", [True, False], ids=["creating", "updating"])
def test_a_deploy_killed_half_way_is_recovered_by_the_next_command(ws, tmp_path, first):
    hold = tmp_path / "hold"
    hold.touch()
    sm = ws.sagemaker
    if not first:
        sm.create_endpoint(EndpointName="ep", EndpointConfigName=deployable(ws, "m1", 1))
    held = deployable(ws, "m2", 2, hold)

    orphan = kill_mid_deploy(ws, "create" if first else "update", held)

    stored = read_json(sm.endpoints.record_path("endpoints", "ep"))
    assert stored["EndpointStatus"] == ("Creating" if first else "Updating")
    assert stored["PendingServer"]["ConfigName"] == held  # named before it started
    assert alive(orphan)

    described = sm.describe_endpoint(EndpointName="ep")  # any command recovers it

    assert described["EndpointStatus"] == "InService"
    assert not alive(orphan)
    record = sm.endpoints.get("endpoints", "ep")
    assert "PendingServer" not in record
    assert "was interrupted" in record["InterruptedDeploy"]["Reason"]
    if first:
        assert described["EndpointConfigName"] == held  # its server starts on invoke
    else:
        assert described["EndpointConfigName"] == "m1"
        assert scale_served(ws) == 1  # the old server served throughout
    hold.unlink()
    sm.update_endpoint(EndpointName="ep", EndpointConfigName=held)  # not wedged
    assert scale_served(ws) == 2
    assert server_pids(ws.home) == [sm.endpoints.get("endpoints", "ep")["Server"]["Pid"]]
    leftovers = {p.name for p in sm.endpoints.servers_dir("ep").iterdir()}
    assert leftovers == {Path(sm.endpoints.get("endpoints", "ep")["Server"]["Workdir"]).name}


def test_stop_all_then_approve_deploys_locally(ws, capsys):
    register(ws, 1, "Approved")
    assert cli.main(["models", "approve", "1", "--endpoint", "ep"]) == 0
    assert scale_served(ws) == 1
    assert cli.main(["endpoints", "stop", "--all"]) == 0
    register(ws, 2)

    assert cli.main(["models", "approve", "2", "--endpoint", "ep"]) == 0

    assert '"status": "deployed"' in capsys.readouterr().out
    assert ws.sagemaker.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"
    assert scale_served(ws) == 2


def test_endpoints_delete_removes_everything_and_approve_creates_it_again(ws, capsys):
    register(ws, 1, "Approved")
    assert cli.main(["models", "approve", "1", "--endpoint", "ep"]) == 0
    scale_served(ws)

    assert cli.main(["endpoints", "delete", "ep"]) == 0

    assert ws.sagemaker.list_endpoints() == {"Endpoints": []}
    assert server_pids(ws.home) == []
    assert not ws.sagemaker.endpoints.servers_dir("ep").exists()
    assert cli.main(["endpoints", "delete", "ep"]) == 1  # nothing to delete: a runtime failure
    assert 'Could not find endpoint "ep"' in capsys.readouterr().err
    assert cli.main(["models", "approve", "1", "--endpoint", "ep"]) == 0
    assert scale_served(ws) == 1


def test_endpoints_list_does_not_call_a_dead_server_in_service(ws, capsys):
    ws.sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName=deployable(ws, "m1", 1))
    pid = ws.sagemaker.endpoints.get("endpoints", "ep")["Server"]["Pid"]
    capsys.readouterr()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), "the server to die")

    assert cli.main(["endpoints", "list"]) == 0

    line = capsys.readouterr().out.strip()
    assert "InService" not in line
    assert "Stopped" in line
    assert f"server pid {pid} exited; invoke restarts it" in line
    assert scale_served(ws) == 1  # and invoke does


def test_a_refused_model_archive_leaves_no_folder_behind(ws):
    sm = ws.sagemaker
    uri = "s3://bincount-local/models/evil/model.tar.gz"
    sm.store.put_bytes(model_archive(0, members={"../escape.txt": "x"}), uri)
    sm.create_model(ModelName="evil", PrimaryContainer={"Image": "img", "ModelDataUrl": uri})
    sm.create_endpoint_config(
        EndpointConfigName="evil",
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "evil"}],
    )

    sm.create_endpoint(EndpointName="ep", EndpointConfigName="evil")

    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointStatus"] == "Failed"
    assert "outside the destination" in described["FailureReason"]
    servers = sm.endpoints.servers_dir("ep")
    assert not servers.exists() or list(servers.iterdir()) == []
    assert not (ws.home / "escape.txt").exists()


def test_two_approvals_at_once_end_on_the_newest_version(ws, tmp_path):
    cli.set_approval(ws, register(ws, 1), "Approved", endpoint_name="ep")
    assert scale_served(ws) == 1
    hold = tmp_path / "hold"
    hold.touch()
    slow, newest = register(ws, 2, hold=hold), register(ws, 3)
    results = {}

    def approve(name, arn):
        results[name] = cli.set_approval(ws, arn, "Approved", endpoint_name="ep")

    first = threading.Thread(target=approve, args=("slow", slow))
    first.start()
    # The first approval's new server is loading (held) when the second approval comes.
    record = ws.sagemaker.endpoints.record_path("endpoints", "ep")
    wait_for(lambda: read_json(record).get("EndpointStatus") == "Updating", "the first update")
    threading.Timer(1.0, hold.unlink).start()
    approve("newest", newest)
    first.join(timeout=WAIT_S)

    assert results["newest"]["after_concurrent_deploy"] is True
    assert scale_served(ws) == 3
    live = ws.sagemaker.endpoints.get("endpoints", "ep")
    assert live["EndpointStatus"] == "InService"
    assert server_pids(ws.home) == [live["Server"]["Pid"]]
