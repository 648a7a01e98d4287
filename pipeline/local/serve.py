"""A local endpoint: SageMaker's inference container contract over a model.tar.gz.

    python -m pipeline.local.serve --model-data model.tar.gz --workdir DIR [--port 0]

Unpacks the archive, loads the model through its own `code/inference.py` (`model_fn`,
`input_fn`, `predict_fn`, `output_fn`) and answers `GET /ping` and `POST /invocations` on
127.0.0.1, served by waitress: HTTP parsing (a bad or repeated Content-Length is a 400, a
body over the limit a 413), a bounded worker pool, a real listen backlog and idle timeouts
come from a maintained server rather than hand-written HTTP. The request's Content-Type goes
to `input_fn`, its Accept to `output_fn` (both default to application/json, as in SageMaker's
toolkit). An error carrying an integer
`status_code` is answered with that code and its message; any other error with 500. Once the
model is loaded the chosen port is written to `<workdir>/port` (temp name + rename).
With `--data-capture FILE` (capture settings the endpoint record's DataCaptureConfig gave,
pipeline/local/capture.py) every invocation the model answered, and its answer, is captured
in SageMaker's data-capture layout; an `X-Amzn-SageMaker-Inference-Id` header becomes the
record's `inferenceId`, as InvokeEndpoint's InferenceId does.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import traceback
from http import HTTPStatus
from pathlib import Path
from types import ModuleType

import waitress

from pipeline.local.capture import CaptureSettings, CaptureWriter, check_inference_id

DEFAULT_TYPE = "application/json"
# SageMaker real-time invocations accept payloads up to 6 MB.
MAX_BODY_BYTES = 6 * 1024 * 1024
# Bodies up to this size are read (spooled to a temp file past 512 KB) before a 413, so the
# client sees the answer rather than a reset; larger ones are cut off by waitress itself.
DRAIN_LIMIT = 64 * 1024 * 1024
# Worker threads: requests being decoded, predicted or encoded at once. Connections beyond
# them (up to CONNECTION_LIMIT) are buffered by waitress's event loop, not given a thread,
# so stalled uploads cost a socket each, never a worker.
WORKER_THREADS = 4
CONNECTION_LIMIT = 512
# Kernel queue of connections not yet accepted: a burst of clients waits there, not reset.
LISTEN_BACKLOG = 1024
# A connection silent this long (a stalled upload, an idle keep-alive) is closed.
CHANNEL_TIMEOUT_S = 30


def unpack_model(archive: Path, dest: Path) -> Path:
    """Extract model.tar.gz into `dest` (fresh); refuses members that leave it."""
    if dest.exists():
        shutil.rmtree(dest)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(tmp, filter="data")
        tmp.rename(dest)
    except BaseException:
        # A refused archive (a member leaving the folder, a damaged stream) leaves nothing.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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


class InvocationApp:
    """The WSGI application: /ping and /invocations over the model's own handler functions.

    Decoding (input_fn) and encoding (output_fn) run on the server's worker threads side by
    side; only predict_fn holds the model, one request at a time, as one toolkit worker would.
    """

    def __init__(
        self,
        handler_module: ModuleType,
        model: object,
        max_body: int = MAX_BODY_BYTES,
        capture: CaptureWriter | None = None,
    ):
        self.handler_module = handler_module
        self.model = model
        self.max_body = max_body
        self.model_lock = threading.Lock()
        self.capture = capture

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if path == "/ping" and method == "GET":
            return _answer(start_response, 200, "")
        if path == "/invocations" and method == "POST":
            return self._invoke_captured(environ, start_response)
        if path in ("/ping", "/invocations"):
            return _answer(start_response, 405, f"{method} {path} is not allowed")
        return _answer(
            start_response, 404, f"no such path {path}; use GET /ping or POST /invocations"
        )

    def _invoke_captured(self, environ: dict, start_response) -> list[bytes]:
        """_invoke, with the request and its answer captured when capture is on."""
        try:
            inference_id = check_inference_id(environ.get("HTTP_X_AMZN_SAGEMAKER_INFERENCE_ID"))
        except ValueError as error:
            return _answer(start_response, 400, str(error))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if self.capture is None or length > self.max_body:
            # Too large: refused before the model sees it, so nothing to capture.
            return self._invoke(environ, start_response)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        answer: dict = {}

        def recording(status: str, headers: list, exc_info=None):
            answer["type"] = dict(headers).get("Content-Type", "")
            return start_response(status, headers, exc_info)

        chunks = self._invoke(environ, recording)
        try:
            self.capture.capture(
                environ.get("CONTENT_TYPE") or DEFAULT_TYPE,
                body,
                answer.get("type", ""),
                b"".join(chunks),
                inference_id,
            )
        except OSError as error:
            # As on SageMaker, a capture that cannot be written never fails the invocation.
            print(f"data capture failed: {error}", file=sys.stderr, flush=True)
        return chunks

    def _invoke(self, environ: dict, start_response) -> list[bytes]:
        # The server has read and bounded the whole body already (Content-Length checked,
        # chunked bodies reassembled), so this read never waits on the client.
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > self.max_body:
            return _answer(
                start_response,
                413,
                f"request body of {length} bytes exceeds the limit of {self.max_body}",
            )
        body = environ["wsgi.input"].read(length) if length else b""
        content_type = environ.get("CONTENT_TYPE") or DEFAULT_TYPE
        accept = environ.get("HTTP_ACCEPT") or DEFAULT_TYPE
        if accept == "*/*":
            accept = DEFAULT_TYPE
        module = self.handler_module
        try:
            data = module.input_fn(body, content_type)
            with self.model_lock:
                prediction = module.predict_fn(data, self.model)
            result = module.output_fn(prediction, accept)
        except Exception as error:
            code = getattr(error, "status_code", None)
            if isinstance(code, int) and 400 <= code < 600:
                message = getattr(error, "message", None) or str(error)
                return _answer(start_response, code, str(message))
            traceback.print_exc()
            return _answer(start_response, 500, f"internal error: {type(error).__name__}: {error}")
        response_type = accept
        if isinstance(result, tuple) and len(result) == 2:
            result, response_type = result
        if isinstance(result, (dict, list)):
            result = json.dumps(result)
        body_out = result if isinstance(result, (bytes, str)) else str(result)
        return _answer(start_response, 200, body_out, response_type)


def _answer(
    start_response, code: int, body: bytes | str, content_type: str = "text/plain"
) -> list[bytes]:
    data = body.encode() if isinstance(body, str) else body
    reason = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "Error"
    start_response(
        f"{code} {reason}",
        [("Content-Type", content_type), ("Content-Length", str(len(data)))],
    )
    return [data]


def create_server(app: InvocationApp, port: int = 0, idle_timeout: int = CHANNEL_TIMEOUT_S):
    """A waitress server on 127.0.0.1 (not started): see the module docstring for its limits."""
    return waitress.create_server(
        app,
        host="127.0.0.1",
        port=port,
        threads=WORKER_THREADS,
        backlog=LISTEN_BACKLOG,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=idle_timeout,
        # How often idle connections are looked for (waitress's default is every 30 s).
        cleanup_interval=max(1, idle_timeout // 2),
        max_request_body_size=max(DRAIN_LIMIT, app.max_body + 1),
        # poll(), not select(): select cannot watch file descriptors above 1024.
        asyncore_use_poll=True,
        ident="bincount-local-endpoint",
        expose_tracebacks=False,
    )


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
    parser.add_argument(
        "--data-capture", type=Path, help="capture settings (JSON, pipeline/local/capture.py)"
    )
    parser.add_argument(
        "--idle-timeout",
        type=int,
        default=CHANNEL_TIMEOUT_S,
        help="seconds a silent connection (a stalled upload) is kept",
    )
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "port").unlink(missing_ok=True)
    model_dir = unpack_model(args.model_data, args.workdir / "model")
    module = load_handler(model_dir)
    model = module.model_fn(str(model_dir))
    capture = None
    if args.data_capture:
        settings = CaptureSettings.from_json(json.loads(args.data_capture.read_text()))
        capture = CaptureWriter(settings)
    app = InvocationApp(module, model, args.max_body_bytes, capture)
    server = create_server(app, args.port, args.idle_timeout)
    port = server.effective_port
    write_port(args.workdir, port)
    print(f"serving {args.model_data} on http://127.0.0.1:{port}", flush=True)
    try:
        server.run()
    finally:
        server.close()
        if capture:
            capture.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
