"""A local endpoint: SageMaker's inference container contract over a model.tar.gz.

    python -m pipeline.local.serve --model-data model.tar.gz --workdir DIR [--port 0]

Unpacks the archive, loads the model through its own `code/inference.py` (`model_fn`,
`input_fn`, `predict_fn`, `output_fn`) and answers `GET /ping` and `POST /invocations` on
127.0.0.1. The request's Content-Type goes to `input_fn`, its Accept to `output_fn` (both
default to application/json, as in SageMaker's toolkit). An error carrying an integer
`status_code` is answered with that code and its message; any other error with 500. Once the
model is loaded the chosen port is written to `<workdir>/port` (temp name + rename).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

DEFAULT_TYPE = "application/json"
# SageMaker real-time invocations accept payloads up to 6 MB.
MAX_BODY_BYTES = 6 * 1024 * 1024
# A refused body is read and dropped up to this size before answering 413.
DRAIN_LIMIT = 64 * 1024 * 1024


def unpack_model(archive: Path, dest: Path) -> Path:
    """Extract model.tar.gz into `dest` (fresh); refuses members that leave it."""
    if dest.exists():
        shutil.rmtree(dest)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    with tarfile.open(archive, "r:*") as tar:
        tar.extractall(tmp, filter="data")
    tmp.rename(dest)
    return dest


def load_handler(model_dir: Path) -> ModuleType:
    """Import `code/inference.py` from the model dir with its own folder on sys.path."""
    code_dir = model_dir / "code"
    script = code_dir / "inference.py"
    if not script.is_file():
        raise FileNotFoundError(f"model archive has no code/inference.py (looked in {code_dir})")
    sys.path.insert(0, str(code_dir))
    spec = importlib.util.spec_from_file_location("inference", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["inference"] = module
    spec.loader.exec_module(module)
    missing = [
        f for f in ("model_fn", "input_fn", "predict_fn", "output_fn") if not hasattr(module, f)
    ]
    if missing:
        raise AttributeError(f"{script} lacks {', '.join(missing)}")
    return module


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler_module: ModuleType, model: object, max_body: int):
        super().__init__(address, InvocationHandler)
        self.handler_module = handler_module
        self.model = model
        self.max_body = max_body
        # One request at a time through the model, as one worker of the toolkit would do.
        self.model_lock = threading.Lock()


class InvocationHandler(BaseHTTPRequestHandler):
    server: ModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send(self, code: int, body: bytes | str, content_type: str = "text/plain") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _discard(self, length: int) -> None:
        """Read a refused body (up to a bound) so the client sees the answer, not a reset."""
        left = min(length, DRAIN_LIMIT)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                return
            left -= len(chunk)

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._send(200, "")
        else:
            self._send(404, f"no such path {self.path}; use GET /ping or POST /invocations")

    def do_POST(self) -> None:
        if self.path != "/invocations":
            self._send(404, f"no such path {self.path}; use POST /invocations")
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._send(411, "a Content-Length header is required")
            return
        if int(length) > self.server.max_body:
            self._discard(int(length))
            self.close_connection = True
            self._send(
                413, f"request body of {length} bytes exceeds the limit of {self.server.max_body}"
            )
            return
        body = self.rfile.read(int(length))
        content_type = self.headers.get("Content-Type") or DEFAULT_TYPE
        accept = self.headers.get("Accept") or DEFAULT_TYPE
        if accept == "*/*":
            accept = DEFAULT_TYPE
        module = self.server.handler_module
        try:
            with self.server.model_lock:
                data = module.input_fn(body, content_type)
                prediction = module.predict_fn(data, self.server.model)
                result = module.output_fn(prediction, accept)
        except Exception as error:
            code = getattr(error, "status_code", None)
            if isinstance(code, int) and 400 <= code < 600:
                message = getattr(error, "message", None) or str(error)
                self._send(code, str(message))
            else:
                traceback.print_exc()
                self._send(500, f"internal error: {type(error).__name__}: {error}")
            return
        response_type = accept
        if isinstance(result, tuple) and len(result) == 2:
            result, response_type = result
        if isinstance(result, (dict, list)):
            result = json.dumps(result)
        self._send(200, result if isinstance(result, (bytes, str)) else str(result), response_type)


def write_port(workdir: Path, port: int) -> None:
    tmp = workdir / ".port.tmp"
    tmp.write_text(str(port))
    os.replace(tmp, workdir / "port")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-data", required=True, type=Path, help="model.tar.gz")
    parser.add_argument("--workdir", required=True, type=Path, help="folder to unpack into")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "port").unlink(missing_ok=True)
    model_dir = unpack_model(args.model_data, args.workdir / "model")
    module = load_handler(model_dir)
    model = module.model_fn(str(model_dir))
    server = ModelServer(("127.0.0.1", args.port), module, model, args.max_body_bytes)
    write_port(args.workdir, server.server_address[1])
    print(f"serving {args.model_data} on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
