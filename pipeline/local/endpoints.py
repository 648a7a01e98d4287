"""Local endpoints: model, endpoint config and endpoint records, and their server processes.

Each endpoint is served by a detached `python -m pipeline.local.serve` process on 127.0.0.1
whose pid and port live in the endpoint's record. `ensure_running` restarts a server that is
gone (after a reboot, a crash) from the record alone; one stopped on purpose (`endpoints
stop`) stays stopped for `endpoints invoke` until `endpoints start` or a deploy.

Nothing is left behind by a process killed mid-deploy. A deploy holds the endpoint's lock
from "Creating"/"Updating" until the record names the new server, and names its server
folder in the record (`PendingServer`) before starting it. A lock is released when its
holder dies, so whoever next finds the lock free and the record still busy knows the deploy
was abandoned: `recover` puts the endpoint back in service on the config that last served
(the interruption noted in `InterruptedDeploy`) and kills every server under
`servers/<endpoint>/` that the record does not name (found by command line in /proc).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.local import processes
from pipeline.local.capture import INFERENCE_ID_HEADER, CaptureSettings
from pipeline.local.store import ObjectStore, locked, read_json, try_locked, write_json

SERVER_MODULE = "pipeline.local.serve"
START_TIMEOUT_S = 120.0
REPO_ROOT = Path(__file__).resolve().parents[2]

# Popen handles of servers started by this process, so they are reaped when stopped.
_children: dict[int, subprocess.Popen] = {}


# A deploy in progress: these hold the endpoint's lock while they last.
IN_PROGRESS = {"Creating", "Updating"}


class EndpointError(RuntimeError):
    """A local endpoint could not be started, reached or stopped."""


class EndpointStopped(EndpointError):
    """The endpoint was stopped on purpose (`endpoints stop`) and not started since."""


class EndpointBusy(EndpointError):
    """Another process is deploying this endpoint right now (it holds the lock)."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _is_our_server(pid: int, workdir: str) -> bool:
    """A live process with this pid that is the server we started for `workdir`."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    state = processes.state(pid)
    if state is None or state in {"Z", "X"}:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return SERVER_MODULE.encode() in cmdline and workdir.encode() in cmdline


def _workdir_of(argv: list[str]) -> str | None:
    """The --workdir of a server's command line; None for any other process."""
    if SERVER_MODULE not in argv or "--workdir" not in argv:
        return None
    index = argv.index("--workdir") + 1
    return argv[index] if index < len(argv) else None


def http_request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None, timeout=60.0
) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


class Endpoints:
    """Records under `<home>/endpoints/{models,configs,endpoints}/<name>.json`, servers under
    `<home>/endpoints/servers/<endpoint>/<start time>/`."""

    def __init__(self, root: Path, store: ObjectStore):
        self.root = Path(root)
        self.store = store

    def record_path(self, kind: str, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid {kind} name {name!r}")
        return self.root / kind / f"{name}.json"

    def get(self, kind: str, name: str) -> dict | None:
        path = self.record_path(kind, name)
        return read_json(path) if path.exists() else None  # type: ignore[return-value]

    def put(self, kind: str, name: str, record: dict) -> None:
        write_json(self.record_path(kind, name), record)

    def names(self, kind: str) -> list[str]:
        return sorted(p.stem for p in (self.root / kind).glob("*.json"))

    # -- servers ------------------------------------------------------------------------------

    def model_of_config(self, config_name: str) -> tuple[dict, dict]:
        """The endpoint config and its (first production variant's) model records."""
        config = self.get("configs", config_name)
        if config is None:
            raise EndpointError(f"endpoint config {config_name!r} does not exist")
        variants = config.get("ProductionVariants") or []
        if not variants:
            raise EndpointError(f"endpoint config {config_name!r} has no ProductionVariants")
        model = self.get("models", variants[0]["ModelName"])
        if model is None:
            raise EndpointError(f"model {variants[0]['ModelName']!r} does not exist")
        return config, model

    def servers_dir(self, endpoint_name: str) -> Path:
        return self.root / "servers" / endpoint_name

    def _new_workdir(self, endpoint_name: str) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        return self.servers_dir(endpoint_name) / stamp

    def start_server(self, endpoint_name: str, config_name: str, workdir: Path) -> dict:
        """Start a server for the config's model in `workdir`; returns {pid, port, workdir,
        ...} once it answers /ping. Raises EndpointError with the server log's tail if it dies
        (its folder removed: nothing of a refused model stays). An interruption (Ctrl-C, a
        signal turned into an exception) kills the half-started server on its way out."""
        config, model = self.model_of_config(config_name)
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        model_data = container.get("ModelDataUrl")
        if not model_data:
            raise EndpointError(f"model {model['ModelName']!r} has no ModelDataUrl")
        archive = self.store.path(model_data)
        if not archive.is_file():
            raise EndpointError(f"model data {model_data} not found in the local store ({archive})")
        workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **{k: str(v) for k, v in (container.get("Environment") or {}).items()}}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        extra = self._capture_args(endpoint_name, config, workdir)
        with open(workdir / "server.log", "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    SERVER_MODULE,
                    "--model-data",
                    str(archive),
                    "--workdir",
                    str(workdir),
                    *extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
                start_new_session=True,
            )
        _children[proc.pid] = proc
        try:
            port = self._await_ready(proc, endpoint_name, model_data, workdir)
        except BaseException:
            self._kill(proc.pid, str(workdir))
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return {
            "Pid": proc.pid,
            "StartTicks": processes.start_ticks(proc.pid),
            "Port": port,
            "Workdir": str(workdir),
            "ModelName": model["ModelName"],
            "ModelDataUrl": model_data,
            "StartedAt": _now(),
        }

    def _capture_args(self, endpoint_name: str, config: dict, workdir: Path) -> list[str]:
        """`--data-capture FILE` when the config captures data: SageMaker's layout under the
        local store's copy of its DestinationS3Uri."""
        capture = config.get("DataCaptureConfig") or {}
        if not capture.get("DestinationS3Uri"):
            return []
        variant = config["ProductionVariants"][0].get("VariantName") or "AllTraffic"
        settings = CaptureSettings.from_config(
            capture, self.store.path(capture["DestinationS3Uri"]), endpoint_name, variant
        )
        if settings is None:
            return []
        path = workdir / "data-capture.json"
        write_json(path, settings.to_json())
        return ["--data-capture", str(path)]

    def _await_ready(
        self, proc: subprocess.Popen, endpoint_name: str, model_data: str, workdir: Path
    ) -> int:
        """The server's port once it answers /ping 200; EndpointError otherwise."""
        deadline = time.monotonic() + START_TIMEOUT_S
        port_file = workdir / "port"
        while not port_file.exists():
            if proc.poll() is not None:
                _children.pop(proc.pid, None)
                tail = (workdir / "server.log").read_text(errors="replace")[-3000:]
                # The error itself first: the record keeps only the reason's first 1 kB.
                last = (tail.strip().splitlines() or ["no output"])[-1]
                raise EndpointError(
                    f"endpoint {endpoint_name!r}: server exited with code {proc.returncode} "
                    f"while loading {model_data}: {last}\n{tail}"
                )
            if time.monotonic() > deadline:
                raise EndpointError(
                    f"endpoint {endpoint_name!r}: server not ready in {START_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.1)
        try:
            port = int(port_file.read_text())
            status, _, body = http_request(port, "GET", "/ping", timeout=30)
        except Exception as error:
            # The server is up but unreachable (or wrote a bad port): it must not be left behind.
            raise EndpointError(f"endpoint {endpoint_name!r}: /ping failed: {error}") from error
        if status != 200:
            raise EndpointError(
                f"endpoint {endpoint_name!r}: /ping answered {status}: {body[:200]!r}"
            )
        return port

    def _kill(self, pid: int, workdir: str, timeout: float = 10.0) -> bool:
        """SIGTERM (then SIGKILL) the server `pid` if it is still ours; True if it was running."""
        if not _is_our_server(pid, workdir):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_our_server(pid, workdir):
            child = _children.get(pid)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=0.1)
            else:
                time.sleep(0.1)
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
        # A process's command line empties while it exits, before it is gone: wait for the end
        # (bounded), so that "stopped" means no longer running.
        gone_by = time.monotonic() + timeout
        while processes.state(pid) not in (None, "Z", "X") and time.monotonic() < gone_by:
            time.sleep(0.02)
        _children.pop(pid, None)
        return True

    def stop_server(self, server: dict | None, remove_files: bool = True) -> bool:
        if not server:
            return False
        was_running = self._kill(int(server["Pid"]), server["Workdir"])
        if remove_files:
            shutil.rmtree(server["Workdir"], ignore_errors=True)
        return was_running

    def is_running(self, endpoint: dict) -> bool:
        server = endpoint.get("Server")
        return bool(server) and _is_our_server(int(server["Pid"]), server["Workdir"])

    # -- recovery -----------------------------------------------------------------------------

    def recover(self, endpoint_name: str) -> dict | None:
        """The endpoint record, repaired if a deploy was abandoned (see the module docstring).
        When another process is deploying right now, its record is returned as it stands."""
        path = self.record_path("endpoints", endpoint_name)
        with try_locked(path) as held:
            if not held:
                return self.get("endpoints", endpoint_name)
            return self._repair(endpoint_name)

    def _repair(self, endpoint_name: str) -> dict | None:
        """Under the endpoint's lock: finish what a dead process left half done."""
        record = self.get("endpoints", endpoint_name)
        changed = False
        if record is not None:
            status = record.get("EndpointStatus")
            pending = record.pop("PendingServer", None)
            if status in IN_PROGRESS or pending:
                # The lock is ours, so whoever set this status is gone mid-deploy.
                target = (pending or {}).get("ConfigName", record.get("EndpointConfigName"))
                by = (pending or {}).get("By", {}).get("Pid", "?")
                record["InterruptedDeploy"] = {
                    "EndpointConfigName": target,
                    "Reason": f"{status or 'a deploy'} was interrupted: the process doing it "
                    f"(pid {by}) ended before the server answered; the endpoint stays on "
                    f"{record.get('EndpointConfigName')}",
                    "At": _now(),
                }
                record["EndpointStatus"] = "InService"
                changed = True
            elif status == "OutOfService" and not record.get("FailureReason"):
                # `endpoints stop` of earlier versions: stopped is in service (a server starts
                # on the next invoke or deploy), not broken.
                record["EndpointStatus"] = "InService"
                changed = True
        self._reap_orphans(endpoint_name, record)
        if changed and record is not None:
            record["LastModifiedTime"] = _now()
            self.put("endpoints", endpoint_name, record)
        return record

    def _reap_orphans(self, endpoint_name: str, record: dict | None) -> bool:
        """Kill every server of this endpoint that the record does not name, and remove the
        folders of servers that no longer run; True when anything was found."""
        folder = self.servers_dir(endpoint_name)
        server = (record or {}).get("Server") or {}
        kept = server.get("Workdir")
        found = False
        for pid, argv in processes.command_lines():
            workdir = _workdir_of(argv)
            if workdir and Path(workdir).parent == folder and workdir != kept:
                found |= self._kill(pid, workdir)
        for child in list(_children.values()):
            workdir = _workdir_of([str(a) for a in child.args])
            if workdir and Path(workdir).parent == folder and workdir != kept:
                found |= self._kill(child.pid, workdir)
        if folder.is_dir():
            for stale in folder.iterdir():
                if str(stale) != kept:
                    shutil.rmtree(stale, ignore_errors=True)
                    found = True
        return found

    # -- deploying ----------------------------------------------------------------------------

    def create(self, record: dict) -> dict:
        """Write a new endpoint's record and start its server, under one lock (no moment
        exists when the record says Creating and nobody holds the lock)."""
        name = record["EndpointName"]
        path = self.record_path("endpoints", name)
        with locked(path):
            if path.exists():
                raise FileExistsError(name)
            self._repair(name)
            record = {**record, "EndpointStatus": "Creating", "Server": None}
            self.put("endpoints", name, record)
            return self._deploy_locked(record, record["EndpointConfigName"])

    def deploy(
        self,
        endpoint_name: str,
        config_name: str,
        only_if_stopped: bool = False,
        wait: bool = True,
    ) -> dict:
        """Serve `config_name` on `endpoint_name`: start the new server, then stop the old one
        (a blue/green swap), and record it. Returns the endpoint record. With
        `only_if_stopped`, a server found running once the lock is held is kept (another
        process restarted it meanwhile). With `wait=False`, a deploy already under way in
        another process raises EndpointBusy instead of waiting for it."""
        path = self.record_path("endpoints", endpoint_name)
        with contextlib.ExitStack() as stack:
            if wait:
                stack.enter_context(locked(path))
            elif not stack.enter_context(try_locked(path)):
                raise EndpointBusy(f"endpoint {endpoint_name!r} is being deployed by another call")
            record = self._repair(endpoint_name)
            if record is None:
                raise EndpointError(f"endpoint {endpoint_name!r} has no record")
            if only_if_stopped and self._serving(record):
                return record
            return self._deploy_locked(record, config_name)

    def _deploy_locked(self, record: dict, config_name: str) -> dict:
        name = record["EndpointName"]
        previous = record.get("Server")
        if record.get("EndpointStatus") != "Creating":
            record["EndpointStatus"] = "Updating" if previous else "Creating"
        workdir = self._new_workdir(name)
        # Named before it starts: if this process dies, the next one finds and reaps it.
        record["PendingServer"] = {
            "Workdir": str(workdir),
            "ConfigName": config_name,
            "By": processes.identity(),
        }
        self.put("endpoints", name, record)
        try:
            server = self.start_server(name, config_name, workdir)
        except Exception as error:
            record.pop("PendingServer", None)
            record["EndpointStatus"] = "InService" if previous else "Failed"
            record["FailureReason"] = str(error)[:1024]
            self.put("endpoints", name, record)
            raise
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): the half-started server is gone (start_server);
            # the endpoint stays on what served before. A first deploy keeps its config and
            # starts its server on the next invoke.
            record.pop("PendingServer", None)
            record["EndpointStatus"] = "InService"
            record["InterruptedDeploy"] = {
                "EndpointConfigName": config_name,
                "Reason": "the deploy was interrupted before the server answered",
                "At": _now(),
            }
            self.put("endpoints", name, record)
            raise
        record.pop("PendingServer", None)
        record.pop("FailureReason", None)
        record.pop("InterruptedDeploy", None)
        record.pop("Stopped", None)
        record.update(
            EndpointConfigName=config_name,
            EndpointStatus="InService",
            Server=server,
            LastModifiedTime=_now(),
        )
        self.put("endpoints", name, record)
        self.stop_server(previous)
        return record

    def wait_idle(self, endpoint_name: str) -> None:
        """Return once no deploy of this endpoint is under way (its lock is free)."""
        with locked(self.record_path("endpoints", endpoint_name)):
            pass

    def ensure_running(self, endpoint_name: str, start_stopped: bool = True) -> dict:
        """The endpoint record, with its server restarted from the record if it is gone. An
        endpoint stopped on purpose (`stop`) is started only with `start_stopped`; otherwise
        it is an EndpointStopped error, as invoking a deleted endpoint is on AWS."""
        record = self.recover(endpoint_name)
        if record is None:
            raise EndpointError(f'Could not find endpoint "{endpoint_name}".')
        if not start_stopped and record.get("Stopped") and not self._serving(record):
            raise EndpointStopped(
                f'endpoint "{endpoint_name}" is stopped (since {record["Stopped"]["At"]}); '
                f"start it: python -m pipeline endpoints start {endpoint_name}"
            )
        if not self._serving(record):
            # Checked again under the endpoint's lock: of two callers finding it stopped,
            # only the first restarts it; the second uses that server.
            record = self.deploy(endpoint_name, record["EndpointConfigName"], only_if_stopped=True)
        return record

    def _serving(self, record: dict) -> bool:
        return record.get("EndpointStatus") == "InService" and self.is_running(record)

    def invoke(
        self,
        endpoint_name: str,
        body: bytes,
        content_type: str,
        accept: str = "application/json",
        inference_id: str | None = None,
        start_stopped: bool = True,
    ) -> tuple[int, str, bytes]:
        record = self.ensure_running(endpoint_name, start_stopped)
        headers = {"Content-Type": content_type, "Accept": accept}
        if inference_id:
            headers[INFERENCE_ID_HEADER] = inference_id
        return http_request(
            int(record["Server"]["Port"]), "POST", "/invocations", body=body, headers=headers
        )

    def stop(self, endpoint_name: str) -> bool:
        """Stop the endpoint's server. The endpoint stays in service on its config, scaled to
        zero, and marked Stopped: `endpoints start` or the next deploy starts a server (internal
        callers, e.g. the smoke test, may start it on invoke). True if a server was running."""
        path = self.record_path("endpoints", endpoint_name)
        with locked(path):
            record = self._repair(endpoint_name)
            if record is None:
                raise EndpointError(f'Could not find endpoint "{endpoint_name}".')
            was_running = self.stop_server(record.get("Server"))
            record["Server"] = None
            # On purpose, unlike a crash: `endpoints invoke` refuses until it is started.
            record.setdefault("Stopped", {"At": _now()})
            record["LastModifiedTime"] = _now()
            self.put("endpoints", endpoint_name, record)
        return was_running

    def stop_all(self) -> list[str]:
        """Stop every endpoint server; names of those that were running."""
        return [name for name in self.names("endpoints") if self.stop(name)]

    def delete(self, endpoint_name: str) -> bool:
        """Stop the server and remove the endpoint's record and server folders; False when
        there was no such endpoint (orphaned servers of that name are reaped all the same)."""
        path = self.record_path("endpoints", endpoint_name)
        with locked(path):
            record = self.get("endpoints", endpoint_name)
            if record is not None:
                self.stop_server(record.get("Server"))
                path.unlink()
            self._reap_orphans(endpoint_name, None)
            shutil.rmtree(self.servers_dir(endpoint_name), ignore_errors=True)
        return record is not None

    def describe_servers(self) -> list[dict[str, Any]]:
        """Every endpoint record (repaired) with `Running` and `ServerState`: running,
        stopped (none recorded) or exited (recorded, but the process is gone)."""
        out = []
        for name in self.names("endpoints"):
            record = self.recover(name) or {}
            running = self.is_running(record)
            state = "running" if running else ("exited" if record.get("Server") else "stopped")
            out.append({"EndpointName": name, "Running": running, "ServerState": state, **record})
        return out
