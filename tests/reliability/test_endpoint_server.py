"""The local endpoint server under hostile or heavy traffic, on 127.0.0.1 only, bounded.

Bursts of simultaneous clients are answered (not reset), stalled uploads hold neither
threads nor the model and are cut off, malformed Content-Length headers get a 400, and a
slow request decoding does not make the next one wait behind it.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from pipeline.local import processes
from pipeline.local.endpoints import http_request

REPO = Path(__file__).resolve().parents[2]
IDLE_TIMEOUT_S = 2

# input_fn sleeps for {"sleep": s}: a request slow to decode, as 64 large PNGs were.
HANDLER = """
import json, time


class Refused(Exception):
    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def model_fn(model_dir):
    return {}


def input_fn(body, content_type):
    data = json.loads(body or b"{}")
    time.sleep(float(data.get("sleep", 0.005)))
    return data


def predict_fn(data, model):
    return {"ok": True}


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        data = HANDLER.encode()
        info = tarfile.TarInfo("code/inference.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(pid, port) of one server for the module; killed at the end."""
    root = tmp_path_factory.mktemp("server")
    workdir = root / "work"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.local.serve",
            "--model-data",
            str(archive(root / "model.tar.gz")),
            "--workdir",
            str(workdir),
            "--idle-timeout",
            str(IDLE_TIMEOUT_S),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (workdir / "port").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield proc.pid, int((workdir / "port").read_text())
    proc.kill()
    proc.wait()


def raw(port: int, head: bytes, body: bytes = b"", timeout: float = 10) -> bytes:
    """The status line of the answer to a hand-made request ('' if the server said nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head + b"\r\n" + body)
        data = s.recv(4096)
    return data.split(b"\r\n", 1)[0]


def post_head(*headers: bytes) -> bytes:
    return b"POST /invocations HTTP/1.1\r\nHost: local\r\nContent-Type: application/json\r\n" + (
        b"".join(h + b"\r\n" for h in headers)
    )


def threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads")))


@pytest.mark.parametrize(
    "headers",
    [
        (b"Content-Length: abc",),
        (b"Content-Length: -2",),
        (b"Content-Length: 2", b"Content-Length: 2"),
        (b"Content-Length: 2", b"Content-Length: 3"),
    ],
    ids=["not-a-number", "negative", "repeated", "conflicting"],
)
def test_a_bad_content_length_is_answered_400(server, headers):
    _, port = server
    assert raw(port, post_head(*headers), b"{}") == b"HTTP/1.1 400 Bad Request"


def burst(port: int, clients: int) -> list[object]:
    """One request from each of `clients` threads released at once; statuses or errors."""
    start = threading.Barrier(clients)
    results: list[object] = []

    def client():
        start.wait()
        try:
            results.append(http_request(port, "POST", "/invocations", b"{}", timeout=30)[0])
        except OSError as error:
            results.append(type(error).__name__)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_burst_of_simultaneous_clients_is_answered_not_reset(server):
    _, port = server
    for _ in range(3):
        assert burst(port, 64) == [200] * 64


def test_stalled_uploads_hold_no_thread_and_are_cut_off(server):
    pid, port = server
    before = threads_of(pid)
    stalled = []
    try:
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(post_head(b"Content-Length: 100000") + b"\r\n" + b"{" * 10)
            stalled.append(s)
        # Served beside them, at once: they hold no worker.
        assert http_request(port, "POST", "/invocations", b"{}", timeout=10)[0] == 200
        assert threads_of(pid) <= before + 1
        # Cut off after the idle timeout: every stalled connection is closed by the server.
        for s in stalled:
            s.settimeout(IDLE_TIMEOUT_S * 10)
            assert s.recv(4096) == b""
    finally:
        for s in stalled:
            s.close()


def test_a_request_slow_to_decode_does_not_hold_the_next_one(server):
    """Decoding runs beside other requests; only prediction takes the model in turn."""
    _, port = server
    finished: list[str] = []

    def slow():
        http_request(port, "POST", "/invocations", json.dumps({"sleep": 3}).encode(), timeout=30)
        finished.append("slow")

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)  # the slow request is decoding
    assert http_request(port, "POST", "/invocations", b"{}", timeout=30)[0] == 200
    finished.append("fast")
    thread.join()
    assert finished == ["fast", "slow"]


def test_an_oversized_body_gets_a_413_answer(server):
    _, port = server
    status, _, body = http_request(port, "POST", "/invocations", b"0" * (6 * 2**20 + 1))
    assert status == 413
    assert b"exceeds the limit" in body


def test_the_server_is_alive_after_all_that(server):
    pid, port = server
    assert processes.state(pid) not in (None, "Z")
    assert http_request(port, "GET", "/ping")[0] == 200
