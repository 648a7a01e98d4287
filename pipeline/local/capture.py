"""Data capture for local endpoints, in SageMaker's own layout and record shape.

An endpoint config's `DataCaptureConfig` (DestinationS3Uri, InitialSamplingPercentage,
CaptureOptions, CaptureContentTypeHeader) makes the local server write what SageMaker writes:
JSON Lines under `<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl`
(in the local object store), one record per invocation:

    {"captureData": {
        "endpointInput": {"observedContentType": "image/jpeg", "mode": "INPUT",
                          "data": "<base64>", "encoding": "BASE64"},
        "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                           "data": "<base64>", "encoding": "BASE64"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<caller's id>",
                       "inferenceTime": "2026-01-02T03:04:05.678Z"},
     "eventVersion": "0"}

A body is captured as JSON (or CSV) text only when its content type is listed in the
config's CaptureContentTypeHeader, else base64, as SageMaker does. `inferenceId` is there
when the caller sent one (`X-Amzn-SageMaker-Inference-Id`, InvokeEndpoint's InferenceId).
"""

from __future__ import annotations

import base64
import json
import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
# SageMaker's InferenceId: 1..64 characters.
MAX_INFERENCE_ID = 64


@dataclass
class CaptureSettings:
    """What the server needs from the endpoint config's DataCaptureConfig."""

    folder: Path  # <destination>/<endpoint>/<variant>
    percent: int = 100
    capture_input: bool = True
    capture_output: bool = True
    json_types: list[str] = field(default_factory=list)
    csv_types: list[str] = field(default_factory=list)

    @classmethod
    def from_config(
        cls, capture: dict[str, Any], destination: Path, endpoint_name: str, variant: str
    ) -> CaptureSettings | None:
        """From a DataCaptureConfig request; None when capture is off."""
        if not capture or capture.get("EnableCapture", True) is False:
            return None
        modes = {o.get("CaptureMode") for o in capture.get("CaptureOptions") or []}
        header = capture.get("CaptureContentTypeHeader") or {}
        return cls(
            folder=Path(destination) / endpoint_name / variant,
            percent=int(capture.get("InitialSamplingPercentage", 100)),
            capture_input=bool(modes & {"Input", "InputAndOutput"}),
            capture_output=bool(modes & {"Output", "InputAndOutput"}),
            json_types=list(header.get("JsonContentTypes") or []),
            csv_types=list(header.get("CsvContentTypes") or []),
        )

    def to_json(self) -> dict:
        return {**self.__dict__, "folder": str(self.folder)}

    @classmethod
    def from_json(cls, doc: dict) -> CaptureSettings:
        return cls(**{**doc, "folder": Path(doc["folder"])})


def encode_part(settings: CaptureSettings, mode: str, content_type: str, body: bytes) -> dict:
    """One endpointInput / endpointOutput entry."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    text_kind = (
        "JSON"
        if base in {t.lower() for t in settings.json_types}
        else "CSV"
        if base in {t.lower() for t in settings.csv_types}
        else None
    )
    if text_kind:
        try:
            return {
                "observedContentType": content_type,
                "mode": mode,
                "data": body.decode("utf-8"),
                "encoding": text_kind,
            }
        except UnicodeDecodeError:
            pass  # not text after all: base64, like any other body
    return {
        "observedContentType": content_type,
        "mode": mode,
        "data": base64.b64encode(body).decode("ascii"),
        "encoding": "BASE64",
    }


def capture_record(
    settings: CaptureSettings,
    request_type: str,
    request_body: bytes,
    response_type: str,
    response_body: bytes,
    inference_id: str | None = None,
    when: datetime | None = None,
    event_id: str | None = None,
) -> dict:
    """The record SageMaker writes for one invocation."""
    when = when or datetime.now(UTC)
    data: dict[str, Any] = {}
    if settings.capture_input:
        data["endpointInput"] = encode_part(settings, "INPUT", request_type, request_body)
    if settings.capture_output:
        data["endpointOutput"] = encode_part(settings, "OUTPUT", response_type, response_body)
    meta = {"eventId": event_id or str(uuid.uuid4())}
    if inference_id:
        meta["inferenceId"] = inference_id
    meta["inferenceTime"] = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return {"captureData": data, "eventMetadata": meta, "eventVersion": "0"}


def check_inference_id(value: str | None) -> str | None:
    """The header's value, or ValueError when SageMaker would refuse it (1..64 characters,
    printable ASCII)."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_INFERENCE_ID or not all(32 < ord(c) < 127 for c in value):
        raise ValueError(
            f"{INFERENCE_ID_HEADER} must be 1..{MAX_INFERENCE_ID} printable ASCII characters "
            "without spaces"
        )
    return value


class CaptureWriter:
    """Appends records of one server process to its file of the current hour. One write per
    whole line, under a lock (the server's worker threads share it), flushed at once, so a
    reader sees whole records; a new hour starts a new file, as SageMaker's do."""

    def __init__(self, settings: CaptureSettings, rng: random.Random | None = None):
        self.settings = settings
        self.rng = rng or random.Random()
        self.lock = threading.Lock()
        self._hour: str | None = None
        self._file: IO[str] | None = None

    def sampled(self) -> bool:
        return self.rng.random() * 100 < self.settings.percent

    def write(self, record: dict, when: datetime) -> Path:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        hour = when.strftime("%Y/%m/%d/%H")
        with self.lock:
            if hour != self._hour or self._file is None:
                self.close_locked()
                folder = self.settings.folder / hour
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{when.strftime('%M-%S')}-{when.microsecond // 1000:03d}-{uuid.uuid4()}"
                self._file = open(folder / f"{name}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
                self._hour = hour
            self._file.write(line)
            self._file.flush()
            return Path(self._file.name)

    def capture(
        self,
        request_type: str,
        request_body: bytes,
        response_type: str,
        response_body: bytes,
        inference_id: str | None = None,
    ) -> Path | None:
        """Capture one invocation (if sampled); the file written, or None."""
        if not self.sampled():
            return None
        when = datetime.now(UTC)
        record = capture_record(
            self.settings,
            request_type,
            request_body,
            response_type,
            response_body,
            inference_id=inference_id,
            when=when,
        )
        return self.write(record, when)

    def close_locked(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        with self.lock:
            self.close_locked()
