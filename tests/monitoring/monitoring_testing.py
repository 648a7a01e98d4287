"""Bin-like images, endpoint answers and captured traffic for the monitoring tests."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from baseline import build_baseline, write_baseline
from PIL import Image

from pipeline.local.capture import CaptureSettings, CaptureWriter, capture_record

CLASSES = [1, 2, 3, 4, 5]
# The fake model's answer shares per count, and how sure it is.
SHARES = [0.15, 0.25, 0.3, 0.2, 0.1]
START = datetime(2026, 3, 4, 5, 0, 0, tzinfo=UTC)


def bin_photos(rng: np.random.Generator, n: int, side: int = 96) -> np.ndarray:
    """uint8 [n, side, side, 3]: a lit background (its level varies by photo) with a few
    darker and lighter boxes on it, so brightness and contrast vary like photos'."""
    out = np.empty((n, side, side, 3), dtype=np.uint8)
    for i in range(n):
        level = rng.uniform(95, 165)
        image = np.full((side, side, 3), level) + rng.normal(0, 6, (side, side, 3))
        for _ in range(rng.integers(2, 6)):
            x, y = rng.integers(0, side - 20, 2)
            w, h = rng.integers(10, 30, 2)
            image[y : y + h, x : x + w] += rng.uniform(-70, 70)
        out[i] = np.clip(image, 0, 255).astype(np.uint8)
    return out


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decoded(data: bytes, size: int = 64) -> np.ndarray:
    """The JPEG decoded and resized the way Prepare writes its shards."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (size * 4 // 5, size * 4 // 5))
        rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def probabilities(rng: np.random.Generator, n: int, shares=SHARES, sure: float = 0.8):
    """[n, 5] answers: the predicted count drawn from `shares`, `sure` of the mass on it."""
    predicted = rng.choice(len(shares), size=n, p=np.asarray(shares) / sum(shares))
    probs = np.full((n, 5), (1 - sure) / 4)
    probs[np.arange(n), predicted] = sure
    return probs


def answer(probs: np.ndarray) -> bytes:
    """The serving contract's JSON answer for these rows."""
    predictions = [
        {
            "count": CLASSES[int(np.argmax(row))],
            "probabilities": {str(c): float(p) for c, p in zip(CLASSES, row, strict=True)},
        }
        for row in probs
    ]
    return json.dumps({"predictions": predictions, "model_version": "v1"}).encode()


def write_test_baseline(folder: Path, rng: np.random.Generator, n: int = 400) -> Path:
    """baseline.json from n bin photos as Evaluate would see them (decoded shards)."""
    photos = np.stack([decoded(jpeg(p)) for p in bin_photos(rng, n)])
    batches = [photos[i : i + 64] for i in range(0, n, 64)]
    baseline = build_baseline(batches, probabilities(rng, n), None)
    return write_baseline(folder / "baseline.json", baseline)


class Traffic:
    """Captured records written into SageMaker's layout under `root/<endpoint>/AllTraffic`."""

    def __init__(self, root: Path, endpoint: str = "ep"):
        self.settings = CaptureSettings(folder=root / endpoint / "AllTraffic")
        self.writer = CaptureWriter(self.settings)
        self.when = START

    def request(
        self,
        images: list[bytes],
        probs: np.ndarray | None,
        batch: bool,
        inference_id: str | None = None,
        event_id: str | None = None,
        when: datetime | None = None,
    ) -> dict:
        import base64

        if batch:
            body = json.dumps(
                {"instances": [{"b64": base64.b64encode(i).decode()} for i in images]}
            ).encode()
            kind = "application/json"
        else:
            (body,) = images
            kind = "image/jpeg"
        if probs is None:
            response, response_type = b"the image is not a readable JPEG or PNG", "text/plain"
        else:
            response, response_type = answer(probs), "application/json"
        when = when or self.when
        self.when = when + timedelta(seconds=7)
        record = capture_record(
            self.settings, kind, body, response_type, response,
            inference_id=inference_id, when=when, event_id=event_id,
        )  # fmt: skip
        self.writer.write(record, when)
        return record

    def photos(
        self, rng: np.random.Generator, images: np.ndarray, probs: np.ndarray, batch: int = 8
    ) -> None:
        """Half as lone image/jpeg requests, half as JSON batches."""
        encoded = [jpeg(i) for i in images]
        half = len(encoded) // 2
        for i in range(half):
            self.request([encoded[i]], probs[i : i + 1], batch=False)
        for first in range(half, len(encoded), batch):
            last = min(first + batch, len(encoded))
            self.request(encoded[first:last], probs[first:last], batch=True)

    def close(self) -> None:
        self.writer.close()
