"""Prepare's throughput against the seed's way, and its peak memory as the selection grows.

Both read the same generated dataset from one local S3 endpoint: moto's server on 127.0.0.1
with 20 ms added to every request (about S3's first-byte latency in-region). The seed's way
is one `s3.download_file` at a time, then a PIL decode of each file; Prepare is
`processing/prepare.py` as the pipeline runs it. Each runs in its own process (the server
keeps the bench's). The 10k-image dataset is generated once into a cache folder.

    .venv/bin/python -m bench prepare
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import psutil
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent
PREPARE = REPO / "processing" / "prepare.py"
CACHE = Path(os.environ.get("BINCOUNT_HOME", REPO / ".bincount")) / "bench-cache"
BUCKET = "bench-bins"
LATENCY_S = 0.020
IMAGE_SIZE = 224
SEED_SAMPLE = 300  # the seed's way is slow: time it on a sample, as images/s
SIZES = (1_000, 5_000, 10_000)


class SlowS3Server(ThreadedMotoServer):
    """moto's threaded server, each request delayed by `latency` seconds once switched on."""

    def __init__(self, latency: float) -> None:
        super().__init__("127.0.0.1", 0, verbose=False)
        self.latency = latency
        self.delaying = threading.Event()

    def _server_entry(self) -> None:
        # Pinned to S3: moto's per-request service lookup would cost a third of its capacity.
        app = create_backend_app("s3")
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

        def delayed(environ, start_response):
            if self.delaying.is_set():
                time.sleep(self.latency)
            return app(environ, start_response)

        self._server = make_server(
            self._ip_address, self._port, delayed, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


def dataset(per_class: int) -> Path:
    """The generated dataset (cached across runs): per_class images of each count 1..5."""
    sys.path.insert(0, str(REPO / "processing"))
    from synthetic import generate

    root = CACHE / f"synthetic-{per_class}x5-seed0"
    done = root / "file_list.json"
    if not done.is_file():
        print(f"generating {per_class * 5} images into {root} (once)", flush=True)
        generate(root, per_class=per_class, seed=0, file_list=done)
    return root


def upload(client, root: Path) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

    def put(path: Path) -> None:
        key = path.relative_to(root).as_posix()
        client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, files))


def sub_list(root: Path, total: int, out: Path) -> Path:
    """The first `total / 5` images of each class of the dataset's list."""
    listing = json.loads((root / "file_list.json").read_text())
    take = {k: v[: total // 5] for k, v in listing.items()}
    out.write_text(json.dumps(take))
    return out


def run_prepare(source: str, listing: Path, out: Path, env: dict, where: str) -> tuple:
    """(where, usable images, wall s, images/s of the fetch+decode+write phase, peak RSS)."""
    seconds, peak, _ = run_measured(
        [sys.executable, str(PREPARE), "--source", source, "--file-list", str(listing),
         "--min-count", "1", "--max-count", "5", "--per-class-cap", "0", "--val-ratio", "0.1",
         "--test-ratio", "0.1", "--image-size", str(IMAGE_SIZE), "--shard-size", "512",
         "--workers", "64", "--output-dir", str(out)],
        env,
    )  # fmt: skip
    stats = json.loads((out / "report" / "stats-algo-1.json").read_text())
    rate = stats["images_per_s"]
    print(
        f"prepare {stats['usable']} from {where}: {rate:.0f} images/s, peak {peak / 2**20:.0f} MiB"
    )
    return where, stats["usable"], seconds, rate, peak


def run_measured(command: list[str], env: dict) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes, polled every 20 ms) and output of a subprocess."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, env=env, stdout=err, stderr=subprocess.STDOUT)
        watched = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, watched.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        err.seek(0)
        log = err.read()
    if proc.returncode:
        raise RuntimeError(f"{command[1]} failed ({proc.returncode}):\n{log[-3000:]}")
    return seconds, peak, log


SEED_WAY = """
import json, os, sys, time
import boto3
from PIL import Image
bucket, listing, workdir = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
size = int(sys.argv[4])
s3 = boto3.client("s3")
started = time.perf_counter()
for count, paths in listing.items():
    os.makedirs(f"{workdir}/{count}", exist_ok=True)
    for path in paths:
        image_id = os.path.basename(path)[:-5]
        local = f"{workdir}/{count}/{image_id}.jpg"
        s3.download_file(bucket, f"bin-images/{image_id}.jpg", local)
        Image.open(local).convert("RGB").resize((size, size))
print(time.perf_counter() - started)
"""

# What the server itself can deliver: 64 threads doing nothing but GetObject on image keys.
SERVER_CEILING = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import boto3, botocore.config
bucket, listing = sys.argv[1], json.load(open(sys.argv[2]))
keys = [f"bin-images/{p.split('/')[-1][:-5]}.jpg" for paths in listing.values() for p in paths]
s3 = boto3.client("s3", config=botocore.config.Config(max_pool_connections=64))
get = lambda key: s3.get_object(Bucket=bucket, Key=key)["Body"].read()
with ThreadPoolExecutor(64) as pool:
    started = time.perf_counter()
    list(pool.map(get, keys))
print(len(keys) / (time.perf_counter() - started))
"""


def main() -> None:
    root = dataset(per_class=SIZES[-1] // 5)
    server = SlowS3Server(LATENCY_S)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SM_RESOURCE_CONFIG_PATH": "/nonexistent/resourceconfig.json",
    }
    env.pop("AWS_SESSION_TOKEN", None)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    client.create_bucket(Bucket=BUCKET)
    started = time.perf_counter()
    upload(client, root)
    print(f"uploaded {root} in {time.perf_counter() - started:.0f} s", flush=True)
    server.delaying.set()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
            work = Path(tmp)
            sample = sub_list(root, SEED_SAMPLE, work / "seed-list.json")
            seed_s, seed_rss, seed_log = run_measured(
                [sys.executable, "-c", SEED_WAY, BUCKET, str(sample), str(work / "seed"),
                 str(IMAGE_SIZE)],
                env,
            )  # fmt: skip
            seed_rate = SEED_SAMPLE / float(seed_log.strip().splitlines()[-1] or seed_s)
            print(f"seed's way: {seed_rate:.1f} images/s", flush=True)
            _, _, ceiling_log = run_measured(
                [sys.executable, "-c", SERVER_CEILING, BUCKET,
                 str(sub_list(root, 2000, work / "ceiling-list.json"))],
                env,
            )  # fmt: skip
            # Prepare makes two requests an image (metadata, then the image).
            ceiling = float(ceiling_log.strip().splitlines()[-1]) / 2
            print(f"server ceiling: {ceiling:.0f} images/s", flush=True)
            for total in SIZES:
                listing = sub_list(root, total, work / f"list-{total}.json")
                rows.append(
                    run_prepare(f"s3://{BUCKET}", listing, work / f"out-{total}", env, "S3")
                )
            # The same images from a local folder: what decoding and writing alone allow.
            listing = sub_list(root, SIZES[0], work / "local-list.json")
            rows.append(run_prepare(str(root), listing, work / "out-local", env, "folder"))
    finally:
        server.stop()
    lines = [
        "## Prepare throughput and memory",
        "",
        f"Prepare vs the seed's way, {IMAGE_SIZE}px, local S3 (moto) with {LATENCY_S * 1000:.0f} "
        "ms per request, 64 workers:",
        "",
        "| images | way | images/s | speed-up | wall s (process) | peak RSS MiB |",
        "|---:|---|---:|---:|---:|---:|",
        f"| {SEED_SAMPLE} | seed: sequential download_file + PIL | {seed_rate:.1f} | 1.0x "
        f"| {seed_s:.1f} | {seed_rss / 2**20:.0f} |",
    ]
    for where, usable, seconds, rate, peak in rows:
        lines.append(
            f"| {usable} | prepare.py from {where} | {rate:.0f} | {rate / seed_rate:.1f}x "
            f"| {seconds:.1f} | {peak / 2**20:.0f} |"
        )
    lines.append(
        f"| 2000 | the server's own ceiling (bare GetObject, 64 threads, / 2 requests an image) "
        f"| {ceiling:.0f} | {ceiling / seed_rate:.1f}x | | |"
    )
    lines += [
        "",
        "On this 2-core machine the local S3 server (moto, one Python process) is the ceiling: "
        "Prepare gets close to what it can serve at all, and from a local folder it shows "
        "what fetching concurrently leaves to decoding. On SageMaker, against S3 itself, "
        "the seed's way stays latency-bound (one request at a time) while Prepare scales "
        "with the instance's cores and `ProcessingInstanceCount`.",
        "",
        "Memory is bounded by design: one shard buffer per split (3 x 512 images x "
        f"{IMAGE_SIZE}x{IMAGE_SIZE}x3 bytes = {3 * 512 * IMAGE_SIZE**2 * 3 / 2**20:.0f} MiB, "
        "touched as it fills) plus the fetch window; once every split has filled one shard "
        "the peak stays flat however many images follow.",
        "",
        "Method: one run; both ways read the same generated JPEGs (~45 KB, ~500x400) from "
        "moto's ThreadedMotoServer on 127.0.0.1 with 20 ms slept per request, each in its own "
        "process; images/s is Prepare's own fetch+decode+write phase (stats.json) and the "
        "seed's download+decode loop; peak RSS polled every 20 ms with psutil.",
    ]
    write_section("prepare", "\n".join(lines))


if __name__ == "__main__":
    main()
