"""Local endpoints: model, endpoint config and endpoint records, and their server processes.

Each endpoint is served by a detached `python -m pipeline.local.serve` process on 127.0.0.1
whose pid and port live in the endpoint's record. `ensure_running` restarts a server that is
gone (after a reboot, say) from the record alone.
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

from pipeline.local.store import ObjectStore, locked, read_json, write_json

SERVER_MODULE = "pipeline.local.serve"
START_TIMEOUT_S = 120.0
REPO_ROOT = Path(__file__).resolve().parents[2]

# Popen handles of servers started by this process, so they are reaped when stopped.
_children: dict[int, subprocess.Popen] = {}


class EndpointError(RuntimeError):
    """A local endpoint could not be started, reached or stopped."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _proc_state(pid: int) -> str | None:
    """The process state letter from /proc (None when there is no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _is_our_server(pid: int, workdir: str) -> bool:
    """A live process with this pid that is the server we started for `workdir`."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    state = _proc_state(pid)
    if state is None or state in {"Z", "X"}:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return SERVER_MODULE.encode() in cmdline and workdir.encode() in cmdline


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

    def start_server(self, endpoint_name: str, config_name: str) -> dict:
        """Start a server for the config's model; returns {pid, port, workdir, ...} once it is
        answering /ping. Raises EndpointError with the server log's tail if it dies."""
        _, model = self.model_of_config(config_name)
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        model_data = container.get("ModelDataUrl")
        if not model_data:
            raise EndpointError(f"model {model['ModelName']!r} has no ModelDataUrl")
        archive = self.store.path(model_data)
        if not archive.is_file():
            raise EndpointError(f"model data {model_data} not found in the local store ({archive})")
        workdir = (
            self.root / "servers" / endpoint_name / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        )
        workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **{k: str(v) for k, v in (container.get("Environment") or {}).items()}}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
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
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
                start_new_session=True,
            )
        _children[proc.pid] = proc
        deadline = time.monotonic() + START_TIMEOUT_S
        port_file = workdir / "port"
        while not port_file.exists():
            if proc.poll() is not None:
                _children.pop(proc.pid, None)
                tail = (workdir / "server.log").read_text(errors="replace")[-3000:]
                raise EndpointError(
                    f"endpoint {endpoint_name!r}: server exited with code {proc.returncode} "
                    f"while loading {model_data}:\n{tail}"
                )
            if time.monotonic() > deadline:
                self._kill(proc.pid, str(workdir))
                raise EndpointError(
                    f"endpoint {endpoint_name!r}: server not ready in {START_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.1)
        try:
            port = int(port_file.read_text())
            status, _, body = http_request(port, "GET", "/ping", timeout=30)
        except Exception as error:
            # The server is up but unreachable (or wrote a bad port): it must not be left behind.
            self._kill(proc.pid, str(workdir))
            raise EndpointError(f"endpoint {endpoint_name!r}: /ping failed: {error}") from error
        if status != 200:
            self._kill(proc.pid, str(workdir))
            raise EndpointError(
                f"endpoint {endpoint_name!r}: /ping answered {status}: {body[:200]!r}"
            )
        return {
            "Pid": proc.pid,
            "Port": port,
            "Workdir": str(workdir),
            "ModelName": model["ModelName"],
            "ModelDataUrl": model_data,
            "StartedAt": _now(),
        }

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

    def deploy(self, endpoint_name: str, config_name: str, only_if_stopped: bool = False) -> dict:
        """Serve `config_name` on `endpoint_name`: start the new server, then stop the old one
        (a blue/green swap), and record it. Returns the endpoint record. With
        `only_if_stopped`, a server found running once the lock is held is kept (another
        process restarted it meanwhile)."""
        path = self.record_path("endpoints", endpoint_name)
        with locked(path):
            record = self.get("endpoints", endpoint_name)
            if record is None:
                raise EndpointError(f"endpoint {endpoint_name!r} has no record")
            if only_if_stopped and self._serving(record):
                return record
            previous = record.get("Server")
            record["EndpointStatus"] = "Updating" if previous else "Creating"
            self.put("endpoints", endpoint_name, record)
            try:
                server = self.start_server(endpoint_name, config_name)
            except Exception as error:
                record["EndpointStatus"] = "InService" if previous else "Failed"
                record["FailureReason"] = str(error)[:1024]
                self.put("endpoints", endpoint_name, record)
                raise
            record.update(
                EndpointConfigName=config_name,
                EndpointStatus="InService",
                Server=server,
                LastModifiedTime=_now(),
            )
            record.pop("FailureReason", None)
            self.put("endpoints", endpoint_name, record)
        self.stop_server(previous)
        return record

    def ensure_running(self, endpoint_name: str) -> dict:
        """The endpoint record, with its server restarted from the record if it is gone."""
        record = self.get("endpoints", endpoint_name)
        if record is None:
            raise EndpointError(f'Could not find endpoint "{endpoint_name}".')
        if not self._serving(record):
            # Checked again under the endpoint's lock: of two callers finding it stopped,
            # only the first restarts it; the second uses that server.
            record = self.deploy(endpoint_name, record["EndpointConfigName"], only_if_stopped=True)
        return record

    def _serving(self, record: dict) -> bool:
        return record.get("EndpointStatus") != "OutOfService" and self.is_running(record)

    def invoke(
        self, endpoint_name: str, body: bytes, content_type: str, accept: str = "application/json"
    ) -> tuple[int, str, bytes]:
        record = self.ensure_running(endpoint_name)
        return http_request(
            int(record["Server"]["Port"]),
            "POST",
            "/invocations",
            body=body,
            headers={"Content-Type": content_type, "Accept": accept},
        )

    def stop(self, endpoint_name: str) -> bool:
        """Stop the endpoint's server (the record stays; invoke starts it again)."""
        path = self.record_path("endpoints", endpoint_name)
        with locked(path):
            record = self.get("endpoints", endpoint_name)
            if record is None:
                raise EndpointError(f'Could not find endpoint "{endpoint_name}".')
            was_running = self.stop_server(record.get("Server"))
            record["Server"] = None
            record["EndpointStatus"] = "OutOfService"
            self.put("endpoints", endpoint_name, record)
        return was_running

    def stop_all(self) -> list[str]:
        """Stop every endpoint server; names of those that were running."""
        return [name for name in self.names("endpoints") if self.stop(name)]

    def delete(self, endpoint_name: str) -> None:
        self.stop(endpoint_name)
        self.record_path("endpoints", endpoint_name).unlink()
        shutil.rmtree(self.root / "servers" / endpoint_name, ignore_errors=True)

    def describe_servers(self) -> list[dict[str, Any]]:
        out = []
        for name in self.names("endpoints"):
            record = self.get("endpoints", name) or {}
            out.append({"EndpointName": name, "Running": self.is_running(record), **record})
        return out
