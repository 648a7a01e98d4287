"""The RELIABILITY figures for Prepare: each fault scenario run as a job would run it.

Runs processing/prepare.py in its own process against `prepare_fault_server.FaultyS3`, with
its peak RSS polled, for this checkout and optionally for an older copy of processing/
(`--before DIR`, e.g. `git show HEAD:processing/...` extracted there), and prints a Markdown
table. Not a test (no `test_` prefix): the tests assert, this measures.

    .venv/bin/python tests/reliability/prepare_figures.py [--per-class 200] [--before DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(HERE), str(REPO / "processing")]

from prepare_fault_server import FaultPlan, FaultyS3  # noqa: E402
from synthetic import generate  # noqa: E402

BUCKET = "faulty-bins"
TIME_LIMIT_S = 150  # the seed-era retries can take many minutes under faults; record that
SCENARIOS = {
    "no faults": FaultPlan(),
    "throttling 60%": FaultPlan(seed=3, rates={"slowdown": 0.6}),
    "throttling 60%, up to 6 in a row": FaultPlan(
        seed=3, rates={"slowdown": 0.6}, max_faults_per_key=6
    ),
    "5xx 30%": FaultPlan(seed=3, rates={"500": 0.1, "502": 0.1, "503": 0.1}),
    "truncated bodies 20%": FaultPlan(seed=3, rates={"truncate": 0.2}),
    "corrupted bodies 5%": FaultPlan(seed=3, rates={"corrupt": 0.05}),
    "connection resets 20%": FaultPlan(seed=3, rates={"reset": 0.2}),
    "all kinds 60%": FaultPlan(
        seed=3,
        rates={
            "slowdown": 0.15,
            "500": 0.05,
            "502": 0.05,
            "503": 0.05,
            "truncate": 0.1,
            "corrupt": 0.1,
            "reset": 0.1,
        },
    ),
    "scan, throttling 40% + resets (listing too)": FaultPlan(
        seed=5, rates={"slowdown": 0.4, "reset": 0.1, "truncate": 0.1}
    ),
    "403 on 10 images": FaultPlan(seed=1),
    "403 on the bucket": FaultPlan(deny_bucket=True),
    "source down (503/reset on every try)": FaultPlan(
        seed=2, rates={"503": 0.5, "reset": 0.5}, max_faults_per_key=10**6
    ),
}


def run(code: Path, new: bool, data, scenario: str, plan: FaultPlan, work: Path) -> dict:
    source_root = data.root
    scan = scenario.startswith("scan")
    if scenario == "403 on 10 images":
        ids = sorted(p.stem for p in (source_root / "bin-images").glob("*.jpg"))[:10]
        plan.forbidden = frozenset(f"data/bin-images/{i}.jpg" for i in ids)
    out = work / "out"
    args = [
        "--source", f"s3://{BUCKET}/data",
        "--file-list", "scan" if scan else str(source_root / "file_list.json"),
        "--image-size", "64", "--shard-size", "256", "--workers", "16",
        "--output-dir", str(out),
    ]  # fmt: skip
    if new:
        args += ["--backoff-seconds", "0.01", "--max-skip-fraction", "0.05"]
    with FaultyS3.from_folder(BUCKET, source_root, "data/", plan=plan, page_size=100) as server:
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL_S3": server.endpoint,
            "AWS_ACCESS_KEY_ID": "figures",
            "AWS_SECRET_ACCESS_KEY": "figures",
            "AWS_DEFAULT_REGION": "us-east-1",
            "SM_RESOURCE_CONFIG_PATH": str(work / "none.json"),
        }
        env.pop("AWS_SESSION_TOKEN", None)
        started = time.perf_counter()
        with open(work / "log.txt", "w") as log:
            proc = subprocess.Popen(
                [sys.executable, str(code / "prepare.py"), *args],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            watched, peak = psutil.Process(proc.pid), 0
            while proc.poll() is None:
                if time.perf_counter() - started > TIME_LIMIT_S:
                    proc.kill()
                    proc.wait()
                    break
                try:
                    peak = max(peak, watched.memory_info().rss)
                except psutil.NoSuchProcess:
                    break
                time.sleep(0.02)
        seconds = time.perf_counter() - started
        figures = server.figures()
    stats_path = out / "report" / "stats-algo-1.json"
    stats = json.loads(stats_path.read_text()) if proc.returncode == 0 else {}
    skipped = stats.get("skipped", {})
    deliberate = set(data.bad_ids()) | {k.split("/")[-1][:-4] for k in plan.forbidden}
    skipped_ids = set()
    if proc.returncode == 0:
        rows = (out / "report" / "skipped-algo-1.csv").read_text().splitlines()[1:]
        skipped_ids = {row.split(",")[0] for row in rows}
    selected = len(data.ids) + len(data.corrupt) + len(data.truncated)
    if not scan:
        selected += len(data.missing_metadata)
    last = (work / "log.txt").read_text().strip().splitlines()[-1:] or [""]
    if seconds > TIME_LIMIT_S:
        last = [f"still running after {TIME_LIMIT_S} s: killed"]
    return {
        "faults": figures["faults_total"] + len(plan.forbidden) * (not plan.deny_bucket),
        "delivered": stats.get("usable", 0),
        "selected": selected,
        "skipped": sum(skipped.values()),
        "silent": len(skipped_ids - deliberate),
        "exit": proc.returncode,
        "requests": figures["requests"],
        "retries": stats.get("retries", "-"),
        "rss_mib": peak / 2**20,
        "seconds": seconds,
        "cause": "" if proc.returncode == 0 else last[0][:110],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--before", type=Path, help="an older processing/ to compare with")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="prepare-figures-") as tmp:
        root = Path(tmp) / "data"
        data = generate(root, per_class=args.per_class, seed=11, corrupt=2, truncated=2,
                        missing_metadata=2, file_list=root / "file_list.json")  # fmt: skip
        print(f"{len(data.ids)} good images, {len(data.bad_ids())} deliberately bad\n")
        print(
            "| scenario | code | faults | expected | delivered | skipped (of which lost to "
            "transient faults) | exit | requests | retries | peak RSS MiB | s | cause |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        versions = [("after", REPO / "processing", True)]
        if args.before:
            versions.insert(0, ("before", args.before, False))
        for scenario, plan in SCENARIOS.items():
            for label, code, new in versions:
                work = Path(tmp) / f"{label}-{len(os.listdir(tmp))}"
                work.mkdir()
                row = run(code, new, data, scenario, plan, work)
                print(
                    f"| {scenario} | {label} | {row['faults']} | {row['selected']} | "
                    f"{row['delivered']} | {row['skipped']} ({row['silent']}) | {row['exit']} | "
                    f"{row['requests']} | {row['retries']} | {row['rss_mib']:.0f} | "
                    f"{row['seconds']:.1f} | {row['cause']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
