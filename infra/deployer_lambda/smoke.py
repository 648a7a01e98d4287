"""The smoke test: real bin photos through a live endpoint, answer shape and latency checked.

The photos in `smoke/` are real bins (the true count is after the underscore in the name),
but a model need not count them right: a smoke test asks whether the endpoint serves the
version it should, in the shape clients rely on, fast enough. Its accuracy was judged by the
pipeline's Evaluate step. Each answer must be HTTP 200, JSON with `predictions[0].count` in
1..5, `predictions[0].probabilities` summing to 1, and `model_version` equal to the model
package ARN the endpoint should serve (training/inference.py's response); over `rounds` passes
through the photos the median latency must be within the budget.

`run` returns a `SmokeResult` (passed, or failed with the reason), or raises `SmokeUnavailable`
when the endpoint could not be tested at all for a reason that passes (throttling, a cold
container not ready yet): that is no verdict on the version, and the next event tries again.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

PHOTOS = Path(__file__).resolve().parent / "smoke"
CONTENT_TYPE = "image/jpeg"
COUNTS = range(1, 6)
ROUNDS = 3
# Errors of sagemaker-runtime InvokeEndpoint that say nothing about the model version.
TRANSIENT = {
    "ThrottlingException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalDependencyException",
    "ModelNotReadyException",
}
# CustomerMetadataProperties values: at most 256 characters of [\p{L}\p{Z}\p{N}_.:/=+\-@]
# (botocore's CustomerMetadataValue); reasons are written with these only.
MAX_METADATA_VALUE = 256
_NOT_METADATA = re.compile(r"[^A-Za-z0-9 _.:/=+\-@]")


class SmokeUnavailable(RuntimeError):
    """The endpoint could not be tested now; not a verdict on the version."""


@dataclass(frozen=True)
class SmokeResult:
    passed: bool
    reason: str = ""
    p50_ms: float | None = None
    invocations: int = 0

    @property
    def status(self) -> str:
        """`passed` or `failed: <reason>`, fit for a CustomerMetadataProperties value."""
        return "passed" if self.passed else metadata_value(f"failed: {self.reason}")


def metadata_value(text: str) -> str:
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    flat = re.sub(r"\s+", " ", _NOT_METADATA.sub(" ", ascii_text)).strip()
    return flat[:MAX_METADATA_VALUE] or "none"


def photos(folder: Path = PHOTOS) -> list[tuple[str, bytes]]:
    found = sorted(folder.glob("*.jpg"))
    if not found:
        raise FileNotFoundError(f"no smoke-test photos in {folder}: the Lambda asset is incomplete")
    return [(path.name, path.read_bytes()) for path in found]


def run(
    runtime: Any,
    endpoint: str,
    expected_version: str,
    *,
    budget_ms: float,
    rounds: int = ROUNDS,
    images: Sequence[tuple[str, bytes]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> SmokeResult:
    """Invoke `endpoint` with every photo, `rounds` times; the first bad answer fails it."""
    images = list(images) if images is not None else photos()
    latencies: list[float] = []

    def failed(reason: str) -> SmokeResult:
        p50 = statistics.median(latencies) if latencies else None
        return SmokeResult(False, reason, p50, len(latencies))

    for _ in range(rounds):
        for name, body in images:
            started = clock()
            try:
                response = runtime.invoke_endpoint(
                    EndpointName=endpoint,
                    ContentType=CONTENT_TYPE,
                    Accept="application/json",
                    Body=body,
                )
                answer = _read(response.get("Body", b""))
            except ClientError as error:
                err = error.response.get("Error", {})
                code = err.get("Code", "")
                if code in TRANSIENT:
                    raise SmokeUnavailable(f"{code}: {err.get('Message', '')}") from error
                if code == "ModelError":
                    status = error.response.get("OriginalStatusCode", "error")
                    return failed(f"HTTP {status} for {name}: {err.get('Message', '')}")
                raise
            latencies.append((clock() - started) * 1000.0)
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)
            problem = (
                f"HTTP {status}" if status != 200 else answer_problem(answer, expected_version)
            )
            if problem:
                return failed(f"{name}: {problem}")
    p50 = statistics.median(latencies)
    if p50 > budget_ms:
        reason = f"p50 latency {p50:.0f} ms over the {budget_ms:.0f} ms budget"
        return SmokeResult(False, reason, p50, len(latencies))
    return SmokeResult(True, "", p50, len(latencies))


def answer_problem(raw: bytes, expected_version: str) -> str:
    """What is wrong with one answer's shape; '' when nothing is. Worded with the characters
    a metadata value may hold (no brackets, quotes or commas)."""
    try:
        answer = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return f"not JSON: {metadata_value(repr(raw[:60]))}"
    if not isinstance(answer, dict):
        return "not a JSON object"
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or not predictions or not isinstance(predictions[0], dict):
        return "no predictions.0"
    first = predictions[0]
    count = first.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count not in COUNTS:
        return f"predictions.0.count is {type(count).__name__} {count}: not a count in 1..5"
    probabilities = first.get("probabilities")
    if not isinstance(probabilities, dict) or not probabilities:
        return "no predictions.0.probabilities"
    values = list(probabilities.values())
    if not all(isinstance(p, int | float) and not isinstance(p, bool) for p in values):
        return "predictions.0.probabilities are not all numbers"
    if abs(sum(values) - 1.0) > 0.01:
        return f"predictions.0.probabilities sum to {sum(values):.3f} not 1"
    version = answer.get("model_version")
    if version != expected_version:
        return f"model_version is {version}: expected {expected_version}"
    return ""


def _read(body: Any) -> bytes:
    """botocore's StreamingBody, or bytes from a stand-in."""
    data = body.read() if hasattr(body, "read") else body
    return data.encode() if isinstance(data, str) else bytes(data)
