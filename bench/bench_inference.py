"""Serving latency, batch throughput and memory: the handler as the endpoint runs it.

For smallcnn and resnet18 at 224 px, a model dir is exported the way train.py writes it
(untrained weights: the cost of a forward pass does not depend on their values), and a fresh
process imports `inference.py` from its `code/` folder, as SageMaker's inference toolkit does,
then times input_fn -> predict_fn -> output_fn on the three real bin photos (about 640x480
JPEG) and on JSON batches of 16 base64 images. The process's peak RSS is its VmHWM
(/proc/self/status) at its end.

    .venv/bin/python -m bench inference
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REAL_BINS = REPO.parent / "shared" / "data" / "real-bins"
ARCHS = ("smallcnn", "resnet18")
IMAGE_SIZE = 224
SINGLE_REQUESTS = 200
BATCH = 16
BATCH_REQUESTS = 12


def export_untrained(arch: str, model_dir: Path) -> None:
    sys.path.insert(0, str(REPO / "training"))
    from model import build_model
    from model_export import export_model_dir

    export_model_dir(model_dir, build_model(arch).state_dict(), arch, IMAGE_SIZE)


def photos() -> list[bytes]:
    found = sorted(REAL_BINS.glob("*.jpg"))
    if not found:
        raise SystemExit(f"bench inference: no real bin photos in {REAL_BINS}")
    return [p.read_bytes() for p in found]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def serve_and_measure(model_dir: Path) -> dict[str, float]:
    """In the worker process: load the model through its code/ folder and time requests."""
    sys.path.insert(0, str(model_dir / "code"))
    import inference  # the model dir's copy, as the endpoint imports it

    def rss_mib() -> float:
        """This process's peak RSS so far. VmHWM, not getrusage's ru_maxrss: Linux carries
        ru_maxrss over from the parent at fork, VmHWM starts afresh at exec."""
        status = Path("/proc/self/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(kib) / 1024

    rss_before = rss_mib()
    model = inference.model_fn(str(model_dir))
    rss_loaded = rss_mib()
    images = photos()

    def request(body, content_type: str) -> tuple[float, float]:
        started = time.perf_counter()
        batch = inference.input_fn(body, content_type)
        decoded = time.perf_counter()
        inference.output_fn(inference.predict_fn(batch, model), "application/json")
        done = time.perf_counter()
        return done - started, decoded - started

    for i in range(10):  # warm-up: allocator, thread pools, lazy inits
        request(images[i % len(images)], "image/jpeg")
    single = [request(images[i % len(images)], "image/jpeg") for i in range(SINGLE_REQUESTS)]

    body = json.dumps(
        {"instances": [{"b64": base64.b64encode(images[i % 3]).decode()} for i in range(BATCH)]}
    )
    request(body, "application/json")
    batches = [request(body, "application/json")[0] for _ in range(BATCH_REQUESTS)]
    totals = [t for t, _ in single]
    return {
        "p50_ms": percentile(totals, 50) * 1000,
        "p99_ms": percentile(totals, 99) * 1000,
        "decode_p50_ms": percentile([d for _, d in single], 50) * 1000,
        "batch_p50_ms": percentile(batches, 50) * 1000,
        "batch_images_per_s": BATCH * len(batches) / sum(batches),
        "rss_start_mib": rss_before,
        "rss_loaded_mib": rss_loaded,
        "rss_peak_mib": rss_mib(),
    }


def measure(arch: str, root: Path) -> dict[str, float]:
    model_dir = root / arch
    export_untrained(arch, model_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_inference", "--worker", str(model_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench inference: the {arch} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        for arch in ARCHS:
            results[arch] = measure(arch, Path(tmp))
            print(arch, results[arch], flush=True)
    from bench.report import write_section

    write_section("inference", report(results))


def report(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "## Serving (CPU)",
        "",
        "`inference.py` imported from an exported model dir's `code/` folder in a fresh "
        f"process, model at {IMAGE_SIZE} px, default torch threads. One request = "
        "input_fn -> predict_fn -> output_fn. Single images: the three real bin photos "
        f"(637x472, 472x362, 643x476 JPEG) in turn, {SINGLE_REQUESTS} requests after 10 "
        f"warm-up ones. Batch: a JSON body of {BATCH} base64 photos, {BATCH_REQUESTS} "
        "requests. RSS: that process's high-water mark (VmHWM), after importing torch and "
        "inference.py, after model_fn, and at the end (every request included).",
        "",
        "| model | one image p50 | p99 | of which decode p50 | batch of 16 p50 | "
        "batch throughput | RSS after imports | after model_fn | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arch, r in results.items():
        lines.append(
            f"| {arch} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
            f"{r['decode_p50_ms']:.1f} ms | {r['batch_p50_ms']:.0f} ms | "
            f"{r['batch_images_per_s']:.0f} images/s | {r['rss_start_mib']:.0f} MiB | "
            f"{r['rss_loaded_mib']:.0f} MiB | "
            f"{r['rss_peak_mib']:.0f} MiB |"
        )
    lines.append(
        "| GPU (either model) | not measured here (no GPU lent to this task) | | | | | | | |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(serve_and_measure(Path(sys.argv[2]))))
    else:
        main()
