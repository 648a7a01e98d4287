"""Local data capture in SageMaker's record shape and layout, and `monitor run` over it:
a local endpoint captures every invocation, and the monitoring job judges the capture
against the live version's registered baseline."""

from __future__ import annotations

import base64
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from monitoring_testing import bin_photos, jpeg, write_test_baseline

from pipeline.cli import main as cli_main
from pipeline.local.capture import (
    CaptureSettings,
    CaptureWriter,
    capture_record,
    check_inference_id,
)
from pipeline.local.monitoring import MonitoringError, run_monitor
from pipeline.local.workspace import Workspace

# SageMaker's documented capture record (Model Monitor "Capture data", the data-capture
# JSON Lines): these keys and no others.
RECORD_KEYS = {"captureData", "eventMetadata", "eventVersion"}
PART_KEYS = {"observedContentType", "mode", "data", "encoding"}
INFERENCE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
HOUR_FILE = re.compile(r"^\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl$")

# A serving handler with bincount's contract (image/jpeg or a JSON batch of base64 images in;
# {"predictions": [{"count", "probabilities"}], "model_version"} out) and no torch: it answers
# from the image's brightness, so darker traffic moves its answers too.
HANDLER = """
import base64, io, json, os
import numpy as np
from PIL import Image

class Refused(Exception):
    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code, self.message = status_code, message

def model_fn(model_dir):
    return {}

def input_fn(body, content_type):
    if content_type == "application/json":
        blobs = [base64.b64decode(i["b64"]) for i in json.loads(body)["instances"]]
    else:
        blobs = [body]
    try:
        return [np.asarray(Image.open(io.BytesIO(b)).convert("L")).mean() for b in blobs]
    except Exception as error:
        raise Refused(400, f"the image is not a readable JPEG or PNG: {error}")

def predict_fn(levels, model):
    return [min(5, max(1, int(level // 40))) for level in levels]

def output_fn(counts, accept):
    rows = []
    for count in counts:
        p = {str(c): (0.8 if c == count else 0.05) for c in range(1, 6)}
        rows.append({"count": count, "probabilities": p})
    version = os.environ.get("BINCOUNT_MODEL_VERSION")
    return json.dumps({"predictions": rows, "model_version": version}), "application/json"
"""


def test_capture_record_has_sagemakers_shape():
    settings = CaptureSettings(folder=Path("unused"), json_types=["application/json"])
    record = capture_record(
        settings, "image/jpeg", b"\xff\xd8jpeg", "application/json", b'{"predictions": []}',
        inference_id="order-17",
    )  # fmt: skip
    assert set(record) == RECORD_KEYS and record["eventVersion"] == "0"
    data = record["captureData"]
    assert set(data) == {"endpointInput", "endpointOutput"}
    assert set(data["endpointInput"]) == PART_KEYS == set(data["endpointOutput"])
    assert data["endpointInput"] == {
        "observedContentType": "image/jpeg",
        "mode": "INPUT",
        "data": base64.b64encode(b"\xff\xd8jpeg").decode(),
        "encoding": "BASE64",
    }
    # Listed in CaptureContentTypeHeader.JsonContentTypes: captured as text, "JSON".
    assert data["endpointOutput"]["encoding"] == "JSON"
    assert data["endpointOutput"]["data"] == '{"predictions": []}'
    assert data["endpointOutput"]["mode"] == "OUTPUT"
    meta = record["eventMetadata"]
    assert set(meta) == {"eventId", "inferenceId", "inferenceTime"}
    assert meta["inferenceId"] == "order-17"
    assert INFERENCE_TIME.match(meta["inferenceTime"])
    # Without content-type headers SageMaker base64-encodes everything; no id, no inferenceId.
    plain = capture_record(CaptureSettings(folder=Path("unused")), "a/b", b"x", "c/d", b"y")
    assert plain["captureData"]["endpointOutput"]["encoding"] == "BASE64"
    assert "inferenceId" not in plain["eventMetadata"]


def test_capture_settings_follow_the_data_capture_config(tmp_path):
    config = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 40,
        "DestinationS3Uri": "s3://b/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}],
    }
    settings = CaptureSettings.from_config(config, tmp_path / "capture", "ep", "AllTraffic")
    assert settings.folder == tmp_path / "capture" / "ep" / "AllTraffic"
    assert (settings.percent, settings.capture_input, settings.capture_output) == (40, True, False)
    record = capture_record(settings, "image/jpeg", b"x", "application/json", b"{}")
    assert set(record["captureData"]) == {"endpointInput"}
    assert (
        CaptureSettings.from_config({**config, "EnableCapture": False}, tmp_path, "e", "v") is None
    )
    assert CaptureSettings.from_json(json.loads(json.dumps(settings.to_json()))) == settings


def test_sampling_percentage_is_honoured(tmp_path):
    import random

    writer = CaptureWriter(CaptureSettings(folder=tmp_path, percent=25), random.Random(5))
    written = sum(writer.capture("image/jpeg", b"x", "application/json", b"{}") is not None
                  for _ in range(400))  # fmt: skip
    writer.close()
    assert 70 <= written <= 130
    lines = [ln for f in tmp_path.rglob("*.jsonl") for ln in f.read_text().splitlines()]
    assert len(lines) == written


def test_inference_ids_are_checked_like_sagemaker():
    assert check_inference_id(None) is None
    assert check_inference_id("abc-123") == "abc-123"
    for bad in ("", "x" * 65, "has space", "tab\t"):
        with pytest.raises(ValueError, match="X-Amzn-SageMaker-Inference-Id"):
            check_inference_id(bad)


def model_archive() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in {"code/inference.py": HANDLER}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.fixture
def live_endpoint(tmp_path, monkeypatch):
    """A local endpoint `ep` serving version 1 of group `g`, whose package carries the
    baseline as DriftCheckBaselines, with data capture on (as the deployer configures it)."""
    monkeypatch.setenv("BINCOUNT_HOME", str(tmp_path / "home"))
    ws = Workspace(tmp_path / "home")
    sm = ws.sagemaker
    baseline = write_test_baseline(tmp_path, np.random.default_rng(0))
    baseline_uri = "s3://bincount-local/executions/x/Evaluate/baseline.json"
    ws.store.put_bytes(baseline.read_bytes(), baseline_uri)
    model_uri = "s3://bincount-local/executions/x/Train/model.tar.gz"
    ws.store.put_bytes(model_archive(), model_uri)
    arn = sm.create_model_package(
        ModelPackageGroupName="g",
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [{"Image": "img", "ModelDataUrl": model_uri}],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        DriftCheckBaselines={
            "ModelDataQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": baseline_uri}
            }
        },
    )["ModelPackageArn"]
    sm.create_model(
        ModelName="m1",
        PrimaryContainer={
            "Image": "img",
            "ModelDataUrl": model_uri,
            "Environment": {"BINCOUNT_MODEL_VERSION": arn},
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName="c1",
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "m1"}],
        DataCaptureConfig={
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://bincount-local/data-capture",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        },
    )
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
    yield ws, arn
    sm.endpoints.stop_all()


def send(ws, photos: np.ndarray, batch: int = 10, prefix: str = "req") -> None:
    encoded = [jpeg(p) for p in photos]
    for i in range(0, len(encoded), batch):
        body = json.dumps(
            {"instances": [{"b64": base64.b64encode(e).decode()} for e in encoded[i : i + batch]]}
        ).encode()
        status, _, answer = ws.sagemaker.endpoints.invoke(
            "ep", body, "application/json", inference_id=f"{prefix}-{i}"
        )
        assert status == 200, answer


def test_the_local_endpoint_captures_every_invocation(live_endpoint):
    ws, arn = live_endpoint
    endpoints = ws.sagemaker.endpoints
    photo = jpeg(bin_photos(np.random.default_rng(2), 1)[0])
    assert endpoints.invoke("ep", photo, "image/jpeg", inference_id="one")[0] == 200
    status, _, message = endpoints.invoke("ep", b"garbage", "image/jpeg")
    assert status == 400
    port = endpoints.get("endpoints", "ep")["Server"]["Port"]
    from pipeline.local.endpoints import http_request

    status, _, message = http_request(
        port, "POST", "/invocations", b"x",
        {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Inference-Id": "x" * 65},
    )  # fmt: skip
    assert status == 400 and b"Inference-Id" in message
    root = ws.store.path("s3://bincount-local/data-capture") / "ep" / "AllTraffic"
    (capture,) = root.rglob("*.jsonl")
    assert HOUR_FILE.match(capture.relative_to(root).as_posix())
    first, second = (json.loads(line) for line in capture.read_text().splitlines())
    for record in (first, second):
        assert set(record) == RECORD_KEYS
        assert set(record["captureData"]["endpointInput"]) == PART_KEYS
        assert INFERENCE_TIME.match(record["eventMetadata"]["inferenceTime"])
    assert first["eventMetadata"]["inferenceId"] == "one"
    assert base64.b64decode(first["captureData"]["endpointInput"]["data"]) == photo
    answer = json.loads(base64.b64decode(first["captureData"]["endpointOutput"]["data"]))
    assert answer["model_version"] == arn
    # The refused request is captured with the error it got; the id the endpoint refused
    # never reached the model, so nothing of it is captured.
    assert "inferenceId" not in second["eventMetadata"]
    refused = base64.b64decode(second["captureData"]["endpointOutput"]["data"])
    assert refused.startswith(b"the image is not a readable JPEG or PNG")


def test_monitor_run_judges_the_capture_against_the_live_versions_baseline(live_endpoint, capsys):
    ws, arn = live_endpoint
    rng = np.random.default_rng(3)
    send(ws, bin_photos(rng, 120))
    truth = ws.store.path(ws.settings.s3_uri("ground-truth", "ep", "2026/01/01/00"))
    truth.mkdir(parents=True)
    (truth / "labels.jsonl").write_text(
        json.dumps(
            {
                "groundTruthData": {"data": ",".join(["3"] * 10), "encoding": "CSV"},
                "eventMetadata": {"eventId": "req-0"},
                "eventVersion": "0",
            }
        )
        + "\n"
    )
    report, output_dir = run_monitor(ws, "ep")
    assert report["model_package_arn"] == arn
    assert report["images"] == 120 and report["records"] == 12
    assert report["checks"]["brightness_shift"]["status"] == "ok"
    assert report["checks"]["contrast_shift"]["status"] == "ok"
    assert report["model_quality"]["images"] == 10
    assert (output_dir / "report.png").is_file()
    assert (output_dir / "cloudwatch" / "cloudwatch_metrics.jsonl").is_file()
    assert output_dir.is_relative_to(ws.store.path(ws.settings.s3_uri("monitoring", "ep")))

    # Much darker traffic: the CLI's headline says drift, with the brightness figure.
    send(ws, (bin_photos(rng, 150).astype(np.float32) * 0.3).astype(np.uint8), prefix="dark")
    assert cli_main(["monitor", "run", "--endpoint", "ep", "--min-images", "100"]) == 0
    out = capsys.readouterr().out
    assert "brightness_shift" in out and "violation" in out
    assert "drift: YES" in out


def test_monitor_run_without_an_endpoint_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BINCOUNT_HOME", str(tmp_path))
    with pytest.raises(MonitoringError, match="no local endpoint 'nope'"):
        run_monitor(Workspace(tmp_path), "nope")
    assert cli_main(["monitor", "run", "--endpoint", "nope"]) == 2
    assert "error: no local endpoint 'nope'" in capsys.readouterr().err


def test_the_quickstarts_monitoring_report(live_endpoint, tmp_path):
    """The quickstart's last part: generated images sent with inference ids, their counts
    written as ground truth, one monitoring report over what was captured since it began."""
    from datetime import UTC, datetime

    from synthetic import generate

    from pipeline.local.quickstart import TRAFFIC_PER_COUNT, monitor_traffic

    ws, arn = live_endpoint
    dataset = tmp_path / "dataset"
    generate(dataset, per_class=TRAFFIC_PER_COUNT, seed=1, file_list=dataset / "file_list.json")
    began = datetime.now(UTC).replace(microsecond=0)
    lines = monitor_traffic(ws, dataset, "ep", began)
    text = "\n".join(lines)
    assert f"sent {5 * TRAFFIC_PER_COUNT} generated images" in text
    assert f"monitoring ep ({arn}): 3 captured requests, {5 * TRAFFIC_PER_COUNT} images" in text
    assert "prediction_psi" in text and "brightness_shift" in text
    # The fake model answers from brightness, not counts: the merge finds every label.
    assert f"on {5 * TRAFFIC_PER_COUNT} images" in text
    report_dir = text.rsplit("report: ", 1)[1].strip()
    assert json.loads((Path(report_dir) / "report.json").read_text())["records"] == 3
