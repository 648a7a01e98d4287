"""The monitoring job's throughput and memory over one window of captured traffic.

A window of RECORDS captured invocations in SageMaker's data-capture layout (lone
`image/jpeg` requests of bin-photo-sized JPEGs, 500x400, with their JSON answers, base64 as
SageMaker captures them) is judged by `processing/monitor.py` as a whole process (start-up,
the report's plot and every output included), against a baseline of 1,000 test images.
Peak RSS shows that memory does not grow with the window (records are streamed).

    .venv/bin/python -m bench monitor
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent
RECORDS = (2_000, 10_000)
DISTINCT_PHOTOS = 200  # encoded once, repeated: decoding cost is per record all the same


def photo(rng: np.random.Generator) -> bytes:
    level = rng.uniform(90, 170)
    image = np.full((400, 500, 3), level) + rng.normal(0, 4, (400, 500, 3))
    for _ in range(rng.integers(2, 7)):
        x, y = rng.integers(0, 400, 2)
        image[y : y + 90, x : x + 120] += rng.uniform(-70, 70)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def write_window(folder: Path, records: int, photos: list[bytes]) -> int:
    sys.path[:0] = [str(REPO)]
    from pipeline.local.capture import CaptureSettings, capture_record

    settings = CaptureSettings(folder=folder / "ep" / "AllTraffic")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    answer = {"predictions": [{"count": 3, "probabilities": {"1": 0.05, "2": 0.1, "3": 0.7,
              "4": 0.1, "5": 0.05}}], "model_version": "bench"}  # fmt: skip
    body = json.dumps(answer).encode()
    hour = settings.folder / "2026/01/01/00"
    hour.mkdir(parents=True)
    size = 0
    with open(hour / "00-00-000-bench.jsonl", "w", encoding="utf-8") as f:
        for i in range(records):
            when = start + timedelta(seconds=i * 3600 / records)
            data = photos[i % len(photos)]
            size += len(data)
            record = capture_record(
                settings, "image/jpeg", data, "application/json", body, when=when
            )
            f.write(json.dumps(record) + "\n")
    return size


def write_baseline(path: Path) -> None:
    sys.path[:0] = [str(REPO / "processing")]
    from baseline import build_baseline, write_baseline

    rng = np.random.default_rng(0)
    images = rng.integers(60, 200, (1000, 64, 64, 3), dtype=np.uint8)
    probs = np.full((1000, 5), 0.05)
    probs[np.arange(1000), rng.integers(0, 5, 1000)] = 0.8
    write_baseline(path, build_baseline([images[i : i + 250] for i in range(0, 1000, 250)],
                                        probs, None))  # fmt: skip


def main() -> None:
    rng = np.random.default_rng(1)
    photos = [photo(rng) for _ in range(DISTINCT_PHOTOS)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        root = Path(tmp)
        write_baseline(root / "baseline.json")
        for records in RECORDS:
            capture = root / f"capture-{records}"
            jpeg_bytes = write_window(capture, records, photos)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, str(REPO / "processing" / "monitor.py"),
                 "--capture-dir", str(capture), "--baseline", str(root / "baseline.json"),
                 "--output-dir", str(root / f"out-{records}")],
                check=True, capture_output=True, env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
            )  # fmt: skip
            seconds = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            capture_mb = sum(p.stat().st_size for p in capture.rglob("*.jsonl")) / 2**20
            report = json.loads((root / f"out-{records}" / "report.json").read_text())
            assert report["images"] == records, report
            rows.append(
                f"| {records:,} | {jpeg_bytes / records / 1024:.0f} KB | {capture_mb:.0f} MB | "
                f"{seconds:.1f} s | {records / seconds:,.0f} | {cpu:.1f} s | "
                f"{after.ru_maxrss / 1024:.0f} MB |"
            )
            print(rows[-1], flush=True)
    write_section(
        "monitor",
        "## Monitoring job (processing/monitor.py)\n\n"
        "One window of captured `image/jpeg` invocations (500x400 JPEGs, base64 in the capture "
        "as SageMaker writes it) judged as one process, outputs and plot included:\n\n"
        "| records | JPEG | capture on disk | wall | records/s | CPU | peak RSS (children) |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        "Peak RSS is the largest of the job runs so far in this process: flat from the "
        "small window to the large one, as records are streamed. One process, one core: "
        "a window of 10^5 records takes about ten times the 10^4 figure.",
    )


if __name__ == "__main__":
    main()
