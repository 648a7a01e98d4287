"""Monitoring job: one window of an endpoint's captured traffic against the model's baseline.

Runs as SageMaker Model Monitor's bring-your-own container (the PyTorch DLC, on a Monitoring
Schedule) and locally (`python -m pipeline monitor run`) alike:

    python monitor.py [--capture-dir DIR] [--baseline FILE] [--output-dir DIR]
        [--ground-truth-dir DIR] [--endpoint-name NAME] [--start-time ISO8601]
        [--end-time ISO8601] [--publish-cloudwatch-metrics Enabled|Disabled]

Every option left out falls back to the environment Model Monitor gives the container
(`dataset_source`, `baseline_statistics`, `output_path`, `ground_truth_source`,
`sagemaker_endpoint_name`, `start_time`, `end_time`, `publish_cloudwatch_metrics`,
`sagemaker_monitoring_schedule_name`).

It streams the data-capture JSON Lines under the capture dir (`<endpoint>/<variant>/yyyy/mm/dd/
hh/*.jsonl`, records outside [start, end) skipped), decodes each captured image at a thumbnail
scale and each answer's predictions, and keeps running sums only. It writes to the output dir
`statistics.json` and `constraint_violations.json` (Model Monitor's shapes), `report.json` and
`report.png`, and with CloudWatch publishing Enabled the metric lines Model Monitor publishes
(`/opt/ml/output/metrics/cloudwatch/`, env BINCOUNT_CLOUDWATCH_METRICS_DIR elsewhere).

Exit 0 when the window was judged (violations or not; an empty window is a report saying so),
2 when it could not be (bad arguments, an unreadable baseline or ground truth, no capture dir).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import itertools
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from atomic_io import write_atomic
from baseline import BaselineError, load_baseline
from monitor_stats import (
    BRIGHTNESS_EDGES,
    BYTES_EDGES,
    CONTRAST_EDGES,
    ENTROPY_EDGES,
    SIDE_EDGES,
    STAT_SIDE,
    UNIT_EDGES,
    Summary,
    brightness_and_contrast,
    psi,
    thumbnail,
)
from PIL import Image

# --- Thresholds (each overridable by an argument) ----------------------------------------------
# PSI of the predicted-count distribution: the customary reading is < 0.1 stable, 0.1-0.2 a
# moderate shift, > 0.2 a significant one. Under no shift, PSI over K bins from n predictions
# is about chi-square(K-1)/n: 0.04 on average at n = 100 for our 5 counts, and above 0.2 with a
# chance near 1 in 2000, so 0.2 alarms on real shifts, not on sampling noise.
PSI_THRESHOLD = 0.2
# Brightness and contrast: the window's mean moved by more than k of the baseline's per-image
# standard deviations. Training already jitters brightness and contrast by +-20% of the range
# (training/augment.py), about one standard deviation of bin photos: a window whose typical
# image moved further than that shows the model light it never saw. At n >= 100 the window
# mean's own noise is a tenth of a standard deviation, so k = 1 is never noise.
BRIGHTNESS_K = 1.0
# Decode failures: healthy clients send decodable images; more than 2% broken is a client or
# camera fault (at >= 100 images that is at least 3 images, not one stray upload).
DECODE_FAILURE_RATE = 0.02
# Mean confidence: a drop of 0.15 (window mean against the test split's) is five times the
# window mean's noise at n = 100 (confidence std <= 0.3): the model is much less sure.
CONFIDENCE_DROP = 0.15
# Fewer images than this and nothing is judged (PSI on 20 predictions averages 0.2 by
# chance alone); the report still shows every figure.
MIN_IMAGES = 100

# Images beyond this many pixels are not decoded (the endpoint refuses them anyway).
MAX_PIXELS = 40_000_000
CLOUDWATCH_DIR = "/opt/ml/output/metrics/cloudwatch"
METRICS_FILE = "cloudwatch_metrics.jsonl"
# Where SageMaker publishes a real-time endpoint's monitoring metrics (the alarms' namespace).
NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"
IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
HOUR_PATH = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})(?:/|$)")


class MonitorError(RuntimeError):
    """The job cannot judge the window; the message names the input and the fault."""


# --- arguments ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None, env: dict | None = None) -> argparse.Namespace:
    env = dict(os.environ if env is None else env)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capture-dir", type=Path, default=_path(env.get("dataset_source")))
    p.add_argument("--baseline", type=Path, default=_path(env.get("baseline_statistics")))
    p.add_argument("--output-dir", type=Path, default=_path(env.get("output_path")))
    p.add_argument(
        "--ground-truth-dir",
        default=env.get("ground_truth_source") or None,
        help="a folder, or an s3:// prefix read with boto3 (the schedule's role reads it)",
    )
    p.add_argument("--endpoint-name", default=env.get("sagemaker_endpoint_name", ""))
    p.add_argument(
        "--monitoring-schedule-name", default=env.get("sagemaker_monitoring_schedule_name", "")
    )
    p.add_argument("--start-time", default=env.get("start_time"))
    p.add_argument("--end-time", default=env.get("end_time"))
    p.add_argument(
        "--publish-cloudwatch-metrics",
        default=env.get("publish_cloudwatch_metrics", "Disabled"),
        choices=["Enabled", "Disabled"],
    )
    p.add_argument("--psi-threshold", type=float, default=PSI_THRESHOLD)
    p.add_argument("--brightness-k", type=float, default=BRIGHTNESS_K)
    p.add_argument("--decode-failure-rate", type=float, default=DECODE_FAILURE_RATE)
    p.add_argument("--confidence-drop", type=float, default=CONFIDENCE_DROP)
    p.add_argument("--min-images", type=int, default=MIN_IMAGES)
    args = p.parse_args(argv)
    for name in ("capture_dir", "baseline", "output_dir"):
        if getattr(args, name) is None:
            flag = "--" + name.replace("_", "-")
            p.error(f"{flag} is required (or its Model Monitor environment variable)")
    for name in ("psi_threshold", "brightness_k", "decode_failure_rate", "confidence_drop"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            p.error(f"--{name.replace('_', '-')} must be a finite number >= 0, not {value}")
    if args.min_images < 1:
        p.error(f"--min-images must be >= 1, not {args.min_images}")
    try:
        args.start = parse_time(args.start_time) if args.start_time else None
        args.end = parse_time(args.end_time) if args.end_time else None
    except ValueError as error:
        p.error(str(error))
    if args.start and args.end and args.start >= args.end:
        p.error(f"--start-time {args.start_time} is not before --end-time {args.end_time}")
    return args


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def parse_time(text: str) -> datetime:
    """ISO 8601 -> aware UTC datetime ("Z" or an offset; none means UTC). Spaces are dropped:
    Model Monitor's documented example reads "2019-12-01T16: 20: 00Z"."""
    cleaned = re.sub(r"\s+", "", str(text))
    try:
        value = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {text!r} is not ISO 8601 (e.g. 2026-01-02T03:00:00Z)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- reading the capture ---------------------------------------------------------------------


def capture_files(capture_dir: Path, start: datetime | None, end: datetime | None) -> list[Path]:
    """Every *.jsonl under the capture dir, sorted, less those in hour folders (yyyy/mm/dd/hh)
    wholly outside the window (the records themselves are filtered again by time)."""
    files = []
    for path in sorted(capture_dir.rglob("*.jsonl")):
        match = HOUR_PATH.search(path.relative_to(capture_dir).parent.as_posix())
        if match and (start or end):
            hour = datetime(*map(int, match.groups()), tzinfo=UTC)
            if (end and hour >= end) or (start and hour + timedelta(hours=1) <= start):
                continue
        files.append(path)
    return files


def payload(part: dict) -> bytes:
    """The bytes of a captured endpointInput/endpointOutput ("BASE64", "JSON" or "CSV")."""
    data = part.get("data", "")
    if not isinstance(data, str):
        raise ValueError("its data is not a string")
    if str(part.get("encoding", "")).upper() == "BASE64":
        return base64.b64decode(data, validate=True)
    return data.encode("utf-8")


def request_images(content_type: str, body: bytes) -> list[bytes]:
    """The images of one request: a lone image, or the JSON batch's base64 instances."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind in IMAGE_TYPES:
        return [body]
    if kind != "application/json":
        raise ValueError(f"content type {content_type!r} is not an image request")
    doc = json.loads(body)
    items = doc.get("instances") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ValueError("the JSON body holds no instances list")
    images = []
    for item in items:
        text = item.get("b64") if isinstance(item, dict) else item
        images.append(base64.b64decode(text, validate=True) if isinstance(text, str) else b"")
    return images


def image_statistics(data: bytes) -> tuple[int, int, float, float]:
    """(width, height, brightness, contrast) of one encoded image; raises on anything that is
    not a decodable JPEG or PNG. JPEGs decode at their draft scale nearest STAT_SIDE."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ValueError(f"{width}x{height} is beyond {MAX_PIXELS} pixels")
        if image.format not in ("JPEG", "PNG"):
            raise ValueError(f"{image.format} is not JPEG or PNG")
        image.draft("RGB", (STAT_SIDE, STAT_SIDE))
        small = thumbnail(image.convert("RGB"))
    brightness, contrast = brightness_and_contrast(small[None])
    return width, height, float(brightness[0]), float(contrast[0])


def answer_predictions(body: bytes, classes: list[int]) -> list[tuple[int, np.ndarray]]:
    """(count, probabilities in `classes` order) per image of an endpoint answer; raises when
    the answer is not the serving contract's JSON (an error answer, a changed model)."""
    doc = json.loads(body)
    rows = doc.get("predictions") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ValueError("no predictions in the answer")
    out = []
    for row in rows:
        probabilities = row["probabilities"]
        vector = np.array([float(probabilities[str(c)]) for c in classes])
        out.append((int(row["count"]), vector))
    return out


def ground_truth_files(source: str | Path) -> Iterator[tuple[str, Iterator[str]]]:
    """(name, lines) of every *.jsonl under a folder or an s3:// prefix, sorted by name."""
    text = str(source)
    if not text.startswith("s3://"):
        folder = Path(text)
        if not folder.is_dir():
            raise MonitorError(f"ground truth folder {folder} does not exist")
        for path in sorted(folder.rglob("*.jsonl")):
            with path.open(encoding="utf-8") as f:
                yield str(path), f
        return
    import boto3  # in the PyTorch images; only needed for an S3 prefix

    bucket, _, prefix = text[len("s3://") :].partition("/")
    s3 = boto3.client("s3")
    keys = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".jsonl")]
        for key in sorted(keys):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            yield f"s3://{bucket}/{key}", (line.decode("utf-8") for line in body.iter_lines())
    except Exception as error:  # botocore's errors: access denied, no such bucket, network
        if isinstance(error, MonitorError):
            raise
        raise MonitorError(f"ground truth {text} could not be read: {error}") from None


def ground_truth(source: str | Path | None) -> dict[str, list[int]]:
    """inference id (or event id) -> true counts, from Model Monitor's ground-truth JSON
    Lines: {"groundTruthData": {"data": "3", "encoding": "CSV"}, "eventMetadata":
    {"eventId": "<id>"}, "eventVersion": "0"}. A batch request's labels are one CSV line
    ("3,1,4") or a JSON list, in the order of its instances."""
    labels: dict[str, list[int]] = {}
    if source is None:
        return labels
    for path, lines in ground_truth_files(source):
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                event = str(doc["eventMetadata"]["eventId"])
                truth = doc["groundTruthData"]
                data, encoding = str(truth["data"]), str(truth.get("encoding", "CSV"))
                if encoding.upper() == "JSON":
                    value = json.loads(data)
                    values = value if isinstance(value, list) else [value]
                elif encoding.upper() == "CSV":
                    values = [v for v in data.strip().split(",")]
                else:
                    raise ValueError(f"encoding {encoding!r} is not CSV or JSON")
                labels[event] = [int(str(v).strip()) for v in values]
            except (ValueError, KeyError, TypeError) as error:
                raise MonitorError(
                    f"ground truth {path} line {number} is not a ground-truth record "
                    f"({type(error).__name__}: {error})"
                ) from None
    return labels


# --- the window's statistics ---------------------------------------------------------------


@dataclass
class Quality:
    images: int = 0
    correct: int = 0
    abs_error: float = 0.0

    def add(self, truth: int, predicted: int) -> None:
        self.images += 1
        self.correct += int(truth == predicted)
        self.abs_error += abs(truth - predicted)

    def to_json(self) -> dict:
        n = self.images
        return {
            "images": n,
            "accuracy": self.correct / n if n else None,
            "mae": self.abs_error / n if n else None,
        }


class Window:
    """Running statistics of one window of captured records."""

    def __init__(self, classes: list[int], labels: dict[str, list[int]]):
        self.classes = classes
        self.labels = labels
        self.records = 0
        self.outside_window = 0
        self.malformed_records = 0
        self.images = 0
        self.decode_failures = 0
        self.unanswered_records = 0
        self.predicted = {str(c): 0 for c in classes}
        self.brightness = Summary(BRIGHTNESS_EDGES)
        self.contrast = Summary(CONTRAST_EDGES)
        self.jpeg_bytes = Summary(BYTES_EDGES)
        self.width = Summary(SIDE_EDGES)
        self.height = Summary(SIDE_EDGES)
        self.confidence = Summary(UNIT_EDGES)
        self.entropy = Summary(ENTROPY_EDGES)
        self.quality = Quality()
        self.quality_by_hour: dict[str, Quality] = {}
        self.ground_truth_unmatched_shape = 0
        self.first_time: str | None = None
        self.last_time: str | None = None

    def add(self, record: dict, start: datetime | None, end: datetime | None) -> None:
        try:
            capture = record["captureData"]
            meta = record["eventMetadata"]
            when_text = str(meta["inferenceTime"])
            when = parse_time(when_text)
        except (KeyError, TypeError, ValueError):
            self.malformed_records += 1
            return
        if (start and when < start) or (end and when >= end):
            self.outside_window += 1
            return
        self.records += 1
        iso = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.first_time = min(self.first_time or iso, iso)
        self.last_time = max(self.last_time or iso, iso)
        self._inputs(capture.get("endpointInput"))
        predictions = self._outputs(capture.get("endpointOutput"))
        key = str(meta.get("inferenceId") or meta.get("eventId") or "")
        truth = self.labels.get(key) if key else None
        if truth is not None and predictions is not None:
            if len(truth) != len(predictions):
                self.ground_truth_unmatched_shape += 1
                return
            hour = self.quality_by_hour.setdefault(iso[:13] + ":00:00Z", Quality())
            for label, (count, _) in zip(truth, predictions, strict=True):
                self.quality.add(label, count)
                hour.add(label, count)

    def _inputs(self, part: dict | None) -> None:
        if not isinstance(part, dict):
            return
        try:
            images = request_images(str(part.get("observedContentType", "")), payload(part))
        except (ValueError, binascii.Error, UnicodeError, RecursionError):
            # A body that holds no readable image at all counts as one failed image.
            self.images += 1
            self.decode_failures += 1
            return
        for data in images:
            self.images += 1
            try:
                width, height, brightness, contrast = image_statistics(data)
            except Exception:  # PIL raises many types for damaged data: each is a failure
                self.decode_failures += 1
                continue
            self.jpeg_bytes.add(len(data))
            self.width.add(width)
            self.height.add(height)
            self.brightness.add(brightness)
            self.contrast.add(contrast)

    def _outputs(self, part: dict | None) -> list[tuple[int, np.ndarray]] | None:
        if not isinstance(part, dict):
            self.unanswered_records += 1
            return None
        try:
            predictions = answer_predictions(payload(part), self.classes)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, RecursionError):
            self.unanswered_records += 1
            return None
        for count, probabilities in predictions:
            self.predicted[str(count)] = self.predicted.get(str(count), 0) + 1
            p = np.clip(probabilities, 0.0, 1.0)
            self.confidence.add(float(p.max()))
            with np.errstate(divide="ignore", invalid="ignore"):
                self.entropy.add(float(np.where(p > 0, -p * np.log(p), 0.0).sum()))
        return predictions


def read_window(
    files: list[Path], window: Window, start: datetime | None, end: datetime | None
) -> None:
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    window.malformed_records += 1
                    continue
                if isinstance(record, dict):
                    window.add(record, start, end)
                else:
                    window.malformed_records += 1


# --- judging -------------------------------------------------------------------------------


def shift(window_stat: Summary, baseline_stat: dict | None) -> float | None:
    """(window mean - baseline mean) in baseline standard deviations."""
    if not baseline_stat or window_stat.mean is None or baseline_stat.get("mean") is None:
        return None
    spread = float(baseline_stat.get("std") or 0.0)
    # A constant baseline (std 0) still has a scale: one grey level, one byte, one pixel.
    return (window_stat.mean - float(baseline_stat["mean"])) / max(spread, 1.0)


def judge(window: Window, baseline: dict, args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """(checks by name, violations in Model Monitor's shape)."""
    predicted_images = sum(window.predicted.values())
    expected = dict(baseline["predicted_counts"])
    keys = sorted(set(expected) | set(window.predicted), key=lambda k: (len(k), k))
    psi_value = None
    if predicted_images and sum(expected.values()):
        psi_value = psi(
            [expected.get(k, 0) for k in keys], [window.predicted.get(k, 0) for k in keys]
        )
    brightness_shift = shift(window.brightness, baseline["brightness"])
    contrast_shift = shift(window.contrast, baseline["contrast"])
    failure_rate = window.decode_failures / window.images if window.images else None
    baseline_confidence = baseline["confidence"].get("mean")
    confidence_drop = (
        baseline_confidence - window.confidence.mean
        if window.confidence.mean is not None and baseline_confidence is not None
        else None
    )
    k = args.brightness_k
    checks = {
        "prediction_psi": _check(
            "predicted_count", "baseline_drift_check", psi_value, args.psi_threshold,
            predicted_images, args.min_images,
            lambda v: v > args.psi_threshold,
            f"PSI of the predicted-count distribution against the baseline is {{v:.3f}}, "
            f"above {args.psi_threshold}",
        ),
        "brightness_shift": _check(
            "brightness", "baseline_drift_check", brightness_shift, k,
            window.brightness.n, args.min_images, lambda v: abs(v) > k,
            f"mean image brightness moved {{v:+.2f}} baseline standard deviations "
            f"(limit {k})",
        ),
        "contrast_shift": _check(
            "contrast", "baseline_drift_check", contrast_shift, k,
            window.contrast.n, args.min_images, lambda v: abs(v) > k,
            f"mean image contrast moved {{v:+.2f}} baseline standard deviations (limit {k}); "
            "blank or washed-out images lower it",
        ),
        "decode_failure_rate": _check(
            "image", "completeness_check", failure_rate, args.decode_failure_rate,
            window.images, args.min_images, lambda v: v > args.decode_failure_rate,
            f"{{v:.1%}} of the captured images could not be decoded "
            f"(limit {args.decode_failure_rate:.1%})",
        ),
        "confidence_drop": _check(
            "confidence", "baseline_drift_check", confidence_drop, args.confidence_drop,
            window.confidence.n, args.min_images, lambda v: v > args.confidence_drop,
            f"mean confidence fell {{v:.3f}} below the baseline's (limit {args.confidence_drop})",
        ),
    }  # fmt: skip
    violations = [
        {
            "feature_name": c["feature_name"],
            "constraint_check_type": c["constraint_check_type"],
            "description": c["description"],
        }
        for c in checks.values()
        if c["status"] == "violation"
    ]
    return checks, violations


def _check(feature, check_type, value, threshold, n, minimum, breached, text) -> dict:
    if value is None or n < minimum:
        status = "not_enough_data"
        description = f"{n} image(s) in the window; at least {minimum} are needed to judge"
    elif breached(value):
        status, description = "violation", text.format(v=value)
    else:
        status, description = "ok", ""
    return {
        "feature_name": feature,
        "constraint_check_type": check_type,
        "value": value,
        "threshold": threshold,
        "images": n,
        "status": status,
        "description": description,
    }


# --- outputs -------------------------------------------------------------------------------


def statistics_json(window: Window) -> dict:
    """Model Monitor's statistics.json shape (dataset item count, one entry per feature)."""

    def feature(name: str, summary: Summary, kind: str = "Fractional") -> dict:
        buckets = [
            {"lower_bound": lo, "upper_bound": hi, "count": c}
            for lo, hi, c in zip(
                summary.to_json()["histogram"]["edges"][:-1],
                summary.to_json()["histogram"]["edges"][1:],
                summary.counts,
                strict=True,
            )
        ]
        return {
            "name": name,
            "inferred_type": kind,
            "numerical_statistics": {
                "common": {"num_present": summary.n, "num_missing": window.images - summary.n},
                "mean": summary.mean,
                "sum": summary.total,
                "std_dev": summary.std,
                "min": summary.low if summary.n else None,
                "max": summary.high if summary.n else None,
                "distribution": {"kll": {"buckets": buckets}},
            },
        }

    predicted = {
        "name": "predicted_count",
        "inferred_type": "Integral",
        "string_statistics": {
            "common": {
                "num_present": sum(window.predicted.values()),
                "num_missing": window.images - sum(window.predicted.values()),
            },
            "distinct_count": float(sum(1 for v in window.predicted.values() if v)),
            "distribution": {
                "categorical": {
                    "buckets": [{"value": k, "count": v} for k, v in window.predicted.items()]
                }
            },
        },
    }
    return {
        "version": 0.0,
        "dataset": {"item_count": window.images},
        "features": [
            predicted,
            feature("confidence", window.confidence),
            feature("entropy", window.entropy),
            feature("brightness", window.brightness),
            feature("contrast", window.contrast),
            feature("jpeg_bytes", window.jpeg_bytes, "Integral"),
            feature("width", window.width, "Integral"),
            feature("height", window.height, "Integral"),
        ],
    }


def build_report(window: Window, baseline: dict, checks: dict, args, seconds: float) -> dict:
    n = window.images
    quality = window.quality.to_json() if window.quality.images else None
    return {
        "endpoint_name": args.endpoint_name,
        "monitoring_schedule_name": args.monitoring_schedule_name,
        "window": {
            "start": _iso(args.start),
            "end": _iso(args.end),
            "first_record": window.first_time,
            "last_record": window.last_time,
        },
        "empty": n == 0,
        "records": window.records,
        "records_outside_window": window.outside_window,
        "malformed_records": window.malformed_records,
        "unanswered_records": window.unanswered_records,
        "images": n,
        "decode_failures": window.decode_failures,
        "drift": any(c["status"] == "violation" for c in checks.values()),
        "checks": checks,
        "predicted_counts": window.predicted,
        "baseline_predicted_counts": baseline["predicted_counts"],
        "confidence": window.confidence.to_json(),
        "entropy": window.entropy.to_json(),
        "inputs": {
            name: {
                "window": getattr(window, name).to_json(),
                "baseline_mean": (baseline.get(name) or {}).get("mean"),
                "baseline_std": (baseline.get(name) or {}).get("std"),
                "shift_in_baseline_std": shift(getattr(window, name), baseline.get(name)),
            }
            for name in ("brightness", "contrast", "jpeg_bytes", "width", "height")
        },
        "model_quality": quality,
        "model_quality_by_hour": {
            hour: q.to_json() for hour, q in sorted(window.quality_by_hour.items())
        },
        "ground_truth_records": len(window.labels),
        "ground_truth_unmatched_shape": window.ground_truth_unmatched_shape,
        "baseline": {
            "file": str(args.baseline),
            "images": baseline.get("images"),
            "mean_confidence": baseline["confidence"].get("mean"),
        },
        "thresholds": {
            "psi": args.psi_threshold,
            "brightness_k": args.brightness_k,
            "decode_failure_rate": args.decode_failure_rate,
            "confidence_drop": args.confidence_drop,
            "min_images": args.min_images,
        },
        "seconds": round(seconds, 3),
        "note": "no captured records in the window" if n == 0 else "",
    }


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def metric_lines(report: dict, args, now: datetime) -> list[dict]:
    """CloudWatch metric data (the BYOC schema: PutMetricData's MetricDatum) for the alarms:
    figures only where the window had enough images to judge; bincount_drift always."""
    checks = report["checks"]
    values = {
        "bincount_drift": 1.0 if report["drift"] else 0.0,
        "bincount_mean_confidence": report["confidence"]["mean"],
    }
    judged = {
        "bincount_prediction_psi": "prediction_psi",
        "bincount_brightness_shift": "brightness_shift",
        "bincount_decode_failure_rate": "decode_failure_rate",
    }
    for metric, name in judged.items():
        if checks[name]["status"] != "not_enough_data":
            values[metric] = checks[name]["value"]
    if report["model_quality"]:
        values["bincount_accuracy"] = report["model_quality"]["accuracy"]
        values["bincount_mae"] = report["model_quality"]["mae"]
    stamp = (args.end or now).strftime("%Y-%m-%dT%H:%M:%SZ")
    dimensions = [
        {"Name": "Endpoint", "Value": args.endpoint_name or "unknown"},
        {"Name": "MonitoringSchedule", "Value": args.monitoring_schedule_name or "unknown"},
    ]
    return [
        {"MetricName": name, "Timestamp": stamp, "Dimensions": dimensions, "Value": float(v)}
        for name, v in values.items()
        if v is not None
    ]


def report_png(report: dict, baseline: dict) -> bytes | None:
    """Predicted counts, brightness and confidence against the baseline; accuracy by hour."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    keys = list(report["predicted_counts"])
    x = np.arange(len(keys))
    base = np.array([baseline["predicted_counts"].get(k, 0) for k in keys], dtype=float)
    seen = np.array([report["predicted_counts"][k] for k in keys], dtype=float)
    ax = axes[0][0]
    ax.bar(x - 0.2, base / max(base.sum(), 1), 0.4, label="baseline (test split)")
    ax.bar(x + 0.2, seen / max(seen.sum(), 1), 0.4, label="this window")
    ax.set_xticks(x, keys)
    psi_value = report["checks"]["prediction_psi"]["value"]
    title = "predicted count" + (f" (PSI {psi_value:.3f})" if psi_value is not None else "")
    ax.set_title(title)
    ax.legend()
    for ax, name, label in (
        (axes[0][1], "brightness", "brightness (mean luma)"),
        (axes[1][0], "confidence", "confidence (top probability)"),
    ):
        ours = report["inputs"][name]["window"] if name in report["inputs"] else report[name]
        theirs = baseline[name]["histogram"]
        edges = [float(e) for e in theirs["edges"]]
        centres = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
        width = (edges[1] - edges[0]) * 0.4
        b = np.array(theirs["counts"], dtype=float)
        w = np.array(ours["histogram"]["counts"], dtype=float)
        ax.bar(np.array(centres) - width / 2, b / max(b.sum(), 1), width, label="baseline")
        ax.bar(np.array(centres) + width / 2, w / max(w.sum(), 1), width, label="this window")
        ax.set_title(label)
        ax.legend()
    ax = axes[1][1]
    by_hour = report["model_quality_by_hour"]
    if by_hour:
        hours = list(by_hour)
        ax.plot(hours, [by_hour[h]["accuracy"] for h in hours], marker="o", label="accuracy")
        ax.plot(hours, [by_hour[h]["mae"] for h in hours], marker="s", label="MAE")
        ax.set_title("model quality against ground truth, by hour")
        ax.tick_params(axis="x", rotation=30)
        ax.legend()
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "no ground truth matched in this window", ha="center", va="center")
    fig.suptitle(
        f"{report['endpoint_name'] or 'endpoint'}: {report['images']} images, "
        f"drift {'YES' if report['drift'] else 'no'}"
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _json_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def run(args: argparse.Namespace) -> dict:
    started = time.monotonic()
    try:
        baseline = load_baseline(args.baseline)
    except BaselineError as error:
        raise MonitorError(str(error)) from None
    if not args.capture_dir.is_dir():
        raise MonitorError(f"capture folder {args.capture_dir} does not exist")
    labels = ground_truth(args.ground_truth_dir)
    classes = [int(c) for c in baseline["classes"]]
    window = Window(classes, labels)
    read_window(capture_files(args.capture_dir, args.start, args.end), window, args.start, args.end)
    checks, violations = judge(window, baseline, args)
    report = build_report(window, baseline, checks, args, time.monotonic() - started)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "statistics.json", _json_bytes(statistics_json(window)))
    write_atomic(out / "constraint_violations.json", _json_bytes({"violations": violations}))
    write_atomic(out / "report.json", _json_bytes(report))
    png = report_png(report, baseline)
    if png:
        write_atomic(out / "report.png", png)
    if args.publish_cloudwatch_metrics == "Enabled":
        folder = Path(os.environ.get("BINCOUNT_CLOUDWATCH_METRICS_DIR") or CLOUDWATCH_DIR)
        lines = metric_lines(report, args, datetime.now(UTC))
        text = "".join(json.dumps(line) + "\n" for line in lines)
        write_atomic(folder / METRICS_FILE, text.encode())
    return report


def summary_lines(report: dict) -> list[str]:
    lines = [
        f"window {report['window']['start'] or 'any'} .. {report['window']['end'] or 'any'}: "
        f"{report['records']} records, {report['images']} images, "
        f"{report['decode_failures']} decode failures"
    ]
    for name, check in report["checks"].items():
        value = check["value"]
        shown = "n/a" if value is None else f"{value:.4f}"
        lines.append(f"  {name}: {shown} (threshold {check['threshold']}) {check['status']}")
    quality = report["model_quality"]
    if quality:
        lines.append(
            f"  ground truth: {quality['images']} images, accuracy {quality['accuracy']:.3f}, "
            f"MAE {quality['mae']:.3f}"
        )
    lines.append("DRIFT" if report["drift"] else "no drift")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except MonitorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(report)))
    print(f"report: {args.output_dir / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
