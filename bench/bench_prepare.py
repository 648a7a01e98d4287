"""Prepare's throughput against the seed's loop, its CPU and the server's, and peak memory.

Both read the same generated dataset from one local S3 endpoint: `bench/s3_server.py`, a
minimal asyncio S3 in its own process with 20 ms added to every request (about S3's
first-byte latency in-region) and little CPU of its own (reported, per 1,000 images), so
the figures are the client's, not the server's. The seed's loop is one boto3
`download_file` at a time, then a PIL decode of each file; Prepare is `processing/prepare.py`
as the pipeline runs it, timed as a whole process (start-up, selection, writing included).
The 10k-image dataset is generated once into a cache folder.

    .venv/bin/python -m bench prepare
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent
PREPARE = REPO / "processing" / "prepare.py"
CACHE = Path(os.environ.get("BINCOUNT_HOME", REPO / ".bincount")) / "bench-cache"
BUCKET = "bench-bins"
LATENCY_MS = 20
IMAGE_SIZE = 224
SEED_SAMPLE = 300  # the seed's loop is slow: time it on a sample, as images/s
SIZES = (1_000, 10_000)
REPEATS = 3  # runs of each way at 1,000 images (the median is reported)
GOAL = 20.0  # x the seed's loop (issue 13)


class Server:
    """bench/s3_server.py in its own process; `cpu()` is its CPU seconds so far."""

    def __init__(self, root: Path, latency_ms: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.s3_server", "--root", str(root), "--bucket", BUCKET,
             "--latency-ms", str(latency_ms)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "port":
            self.stop()
            raise RuntimeError(f"the bench S3 server did not start (said {line!r})")
        self.endpoint = f"http://127.0.0.1:{line[1]}"
        self.watched = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        times = self.watched.cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self.proc.stdin.close()  # the server stops when its stdin closes
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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


def sub_list(root: Path, total: int, out: Path) -> Path:
    """The first `total / 5` images of each class of the dataset's list."""
    listing = json.loads((root / "file_list.json").read_text())
    take = {k: v[: total // 5] for k, v in listing.items()}
    out.write_text(json.dumps(take))
    return out


@dataclass
class Run:
    what: str
    images: int  # usable images written
    wall_s: float  # the whole process
    phase_rate: float  # Prepare's own fetch+decode+write images/s (stats.json)
    cpu_s: float  # the process and its workers
    server_cpu_s: float
    peak_rss: int
    requests: int

    @property
    def rate(self) -> float:
        return self.images / self.wall_s


def decode_ms(root: Path, n: int = 200) -> float:
    """CPU ms to decode one of these JPEGs to IMAGE_SIZE as Prepare does (its floor)."""
    sys.path.insert(0, str(REPO / "processing"))
    from decoding import decode_photo

    blobs = [p.read_bytes() for p in sorted((root / "bin-images").glob("*.jpg"))[:n]]
    started = time.process_time()
    for blob in blobs:
        decode_photo(blob, IMAGE_SIZE)
    return (time.process_time() - started) / len(blobs) * 1000


def median_run(tries: list[Run]) -> Run:
    return sorted(tries, key=lambda r: r.rate)[len(tries) // 2]


def run_prepare(what: str, source: str, listing: Path | str, out: Path, env: dict,
                server: Server | None, *extra: str) -> Run:  # fmt: skip
    """One whole Prepare process, measured."""
    server_before = server.cpu() if server else 0.0
    seconds, peak, cpu, _ = run_measured(
        [sys.executable, str(PREPARE), "--source", source, "--file-list", str(listing),
         "--min-count", "1", "--max-count", "5", "--per-class-cap", "0", "--val-ratio", "0.1",
         "--test-ratio", "0.1", "--image-size", str(IMAGE_SIZE), "--shard-size", "512",
         "--workers", "64", "--output-dir", str(out), *extra],
        env,
    )  # fmt: skip
    server_cpu = (server.cpu() - server_before) if server else 0.0
    stats = json.loads((out / "report" / "stats-algo-1.json").read_text())
    run = Run(what, stats["usable"], seconds, stats["images_per_s"], cpu, server_cpu, peak,
              stats["requests"])  # fmt: skip
    print(
        f"{what}: {run.images} images in {seconds:.1f} s = {run.rate:.0f} images/s whole "
        f"process, CPU {cpu:.1f} s (server {server_cpu:.1f} s), peak {peak / 2**20:.0f} MiB",
        flush=True,
    )
    return run


def run_measured(command: list[str], env: dict) -> tuple[float, int, float, str]:
    """Wall seconds, peak RSS of the process tree (polled every 20 ms), CPU seconds of the
    process and every child it waited for, and the output of a subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, env=env, stdout=err, stderr=subprocess.STDOUT)
        watched = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                tree = [watched, *watched.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        err.seek(0)
        log = err.read()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode:
        raise RuntimeError(f"{command[1]} failed ({proc.returncode}):\n{log[-3000:]}")
    return seconds, peak, cpu, log


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


def main() -> None:
    root = dataset(per_class=SIZES[-1] // 5)
    started = time.perf_counter()
    server = Server(root, LATENCY_MS)
    print(f"serving {root} from {server.endpoint} ({time.perf_counter() - started:.0f} s to "
          "load)", flush=True)  # fmt: skip
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SM_RESOURCE_CONFIG_PATH": "/nonexistent/resourceconfig.json",
    }
    env.pop("AWS_SESSION_TOKEN", None)
    s3 = f"s3://{BUCKET}"
    runs: list[Run] = []
    load_before = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
            work = Path(tmp)
            sample = sub_list(root, SEED_SAMPLE, work / "seed-list.json")
            server_before = server.cpu()
            seed_s, seed_rss, seed_cpu, seed_log = run_measured(
                [sys.executable, "-c", SEED_WAY, BUCKET, str(sample), str(work / "seed"),
                 str(IMAGE_SIZE)],
                env,
            )  # fmt: skip
            seed_server_cpu = server.cpu() - server_before
            seed_loop_s = float(seed_log.strip().splitlines()[-1] or seed_s)
            seed_rate = SEED_SAMPLE / seed_loop_s
            print(f"seed's loop: {seed_rate:.1f} images/s", flush=True)
            # The 1,000-image runs are short, so the shared machine's load swings them: each
            # way runs REPEATS times, interleaved, and the median is reported with the range.
            small = sub_list(root, SIZES[0], work / "list-small.json")
            ways = [
                ("prepare.py", s3, server, ()),
                ("prepare.py --processes 1", s3, server, ("--processes", "1")),
                ("prepare.py --validate-metadata (2 GETs an image)", s3, server,
                 ("--validate-metadata",)),
                ("prepare.py from a local folder (no S3)", str(root), None, ()),
            ]  # fmt: skip
            tries: dict[str, list[Run]] = {what: [] for what, *_ in ways}
            for attempt in range(REPEATS):
                for n, (what, source, serving, extra) in enumerate(ways):
                    out = work / f"out-{attempt}-{n}"
                    tries[what].append(run_prepare(what, source, small, out, env, serving,
                                                   *extra))  # fmt: skip
            runs = [median_run(t) for t in tries.values()]
            spans = {what: (min(r.rate for r in t), max(r.rate for r in t))
                     for what, t in tries.items()}  # fmt: skip
            for total in SIZES[1:]:
                listing = sub_list(root, total, work / f"list-{total}.json")
                runs.insert(1, run_prepare("prepare.py", s3, listing, work / f"out-{total}", env,
                                           server))  # fmt: skip
    finally:
        server.stop()
    load_after = os.getloadavg()[0]
    decoding = decode_ms(root)
    lines = [
        "## Prepare throughput, CPU and memory",
        "",
        f"Prepare vs the seed's loop, {IMAGE_SIZE} px, from a local S3 with {LATENCY_MS} ms per "
        "request (`bench/s3_server.py`), 64 concurrent requests, one worker process per core. "
        "images/s is over the **whole process** (start-up, selection, fetching, decoding, "
        "writing shards and reports) for Prepare; the seed's is its loop alone (start-up not "
        "counted, in its favour). CPU s per 1,000 images: the client's (Prepare and its "
        "workers) and the S3 server's.",
        "",
        "| images | way | images/s (whole process) | speed-up | wall s | fetch phase images/s "
        "| client CPU s / 1k img | server CPU s / 1k img | requests | peak RSS MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {SEED_SAMPLE} | seed: sequential download_file + PIL | {seed_rate:.1f} | 1.0x "
        f"| {seed_loop_s:.1f} | | {seed_cpu / SEED_SAMPLE * 1000:.1f} "
        f"| {seed_server_cpu / SEED_SAMPLE * 1000:.2f} | | {seed_rss / 2**20:.0f} |",
    ]
    for r in runs:
        low, high = spans.get(r.what, (0, 0)) if r.images <= SIZES[0] else (0, 0)
        rate = f"{r.rate:.0f} [{low:.0f}-{high:.0f}]" if high else f"{r.rate:.0f}"
        server_cell = (
            f"{r.server_cpu_s / r.images * 1000:.2f}" if r.what.find("folder") < 0 else "-"
        )
        lines.append(
            f"| {r.images} | {r.what} | {rate} | **{r.rate / seed_rate:.1f}x** "
            f"| {r.wall_s:.1f} | {r.phase_rate:.0f} | {r.cpu_s / r.images * 1000:.2f} "
            f"| {server_cell} | {r.requests} | {r.peak_rss / 2**20:.0f} |"
        )
    main_runs = [r for r in runs if r.what == "prepare.py"]
    ratios = ", ".join(f"{r.rate / seed_rate:.1f}x at {r.images:,}" for r in main_runs)
    met = all(r.rate / seed_rate >= GOAL for r in main_runs)
    cpu_ms = max(r.cpu_s / r.images * 1000 for r in main_runs)
    idle_rate = 2 / (cpu_ms / 1000)
    lines += [
        "",
        f"Goal (issue 13): >= {GOAL:.0f}x the seed's loop, whole process, at 1,000 and 10,000 "
        f"images. This run: {ratios}: **{'met' if met else 'not met'}**. Prepare is CPU-bound "
        f"here and the seed's loop latency-bound: Prepare spends {cpu_ms:.1f} ms of CPU an "
        f"image (fetch, check, decode, write; the decode alone is {decoding:.1f} ms), the "
        f"seed's loop {seed_cpu / SEED_SAMPLE * 1000:.1f} ms. By arithmetic, not measured: "
        f"with the 2 cores to itself Prepare's CPU would allow ~{idle_rate:.0f} images/s "
        f"(~{idle_rate / seed_rate:.0f}x), while on the shared machine it gets what the load "
        "(below) leaves it.",
        "",
        "What made the difference (issue 13): plain GETs over one urllib3 pool, signed with "
        "botocore's SigV4 signer, instead of boto3's `get_object` (whose client plumbing cost "
        "more GIL time than decoding); one worker process per core, each with its own threads "
        "and connections, so no single GIL caps the job (on 2 busy cores that shows little; "
        "it is what lets a 16-core instance use 16 cores); a file list's labels trusted, so "
        "one request an image instead of two (`--validate-metadata` reads the metadata too); "
        "shards written as plain .npy. The S3 server here costs "
        f"{min(r.server_cpu_s / r.images for r in main_runs) * 1000:.2f} s of CPU per 1,000 "
        "images (moto's cost ~3.3 s), so it is not what is measured.",
        "",
        "Memory: one shard buffer per split (3 x 512 images x "
        f"{IMAGE_SIZE}x{IMAGE_SIZE}x3 bytes = {3 * 512 * IMAGE_SIZE**2 * 3 / 2**20:.0f} MiB, "
        "touched as it fills) plus the fetch window, and each worker process's own "
        "libraries; peak RSS is summed over the process tree (forked workers share pages, "
        "so this overstates it).",
        "",
        f"Method: at 1,000 images the median of {REPEATS} runs of each way, interleaved, "
        "[range] of images/s; one run at 10,000 and of the seed's loop; the same generated "
        "JPEGs (~45 KB, ~500x400) for all; the server loads them into memory once; CPU from "
        "getrusage (the process and the workers it waited for) and psutil (the server); peak "
        "RSS polled every 20 ms. The machine is shared: load average "
        f"{load_before:.1f} before the runs, {load_after:.1f} after (on 2 cores, above 2 means "
        "every process got a fraction of a core). Prepare is CPU-bound here, the seed's loop "
        "latency-bound, so a busy machine narrows the ratio; CPU seconds per image are what "
        "compares across machines.",
    ]
    write_section("prepare", "\n".join(lines))


if __name__ == "__main__":
    main()
