"""`make run`: the whole pipeline on this machine, from a generated dataset to a live endpoint.

1. generates a small synthetic dataset in the real bucket layout (processing/synthetic.py;
   reused when already there),
2. runs the pipeline definition locally with CPU-friendly overrides and
   ModelApprovalStatus=Approved (Prepare -> Train -> Evaluate -> QualityGate -> Register ->
   Deploy),
3. invokes the local endpoint with a real bin photo and a generated one,
4. prints the steps and their times, the evaluation against the majority-class baseline,
   the registry version, the endpoint's answers and where the report lives,
5. sends a few batches of generated images with inference ids (captured by the endpoint,
   their true counts written as ground truth) and runs the monitoring job over the traffic
   captured since the quickstart began: its headline figures and where its report is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.local.listings import readable_answer
from pipeline.local.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = REPO_ROOT / "processing" / "synthetic.py"
REAL_BINS = REPO_ROOT.parent / "shared" / "data" / "real-bins"


# The generated dataset, and the CPU-sized recipe the quickstart (and a local `run` without
# SourceUri) trains on it: the definition's 224 px and learning rate are sized for ResNet on
# the real photos on a GPU. 48 px at 0.005 trains in ~2/3 of the time 64 px at 0.003 took,
# as accurate on the generated test set (BENCHMARKS.md, "Local run").
GENERATED_PER_CLASS = 500
GENERATED_SEED = 0
GENERATED_IMAGE_SIZE = 48
GENERATED_LEARNING_RATE = 0.005


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--per-class",
        type=int,
        default=GENERATED_PER_CLASS,
        help="generated images per count 1..5",
    )
    parser.add_argument("--seed", type=int, default=GENERATED_SEED)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=GENERATED_IMAGE_SIZE)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=GENERATED_LEARNING_RATE)
    parser.add_argument("--architecture", default="smallcnn")
    parser.add_argument(
        "--threshold", type=float, default=0.4, help="AccuracyThreshold of the gate"
    )
    parser.add_argument("--no-cache", action="store_true", help="ignore cached step results")
    parser.add_argument("--logs", action="store_true", help="stream the jobs' logs")


def ensure_dataset(home: Path, per_class: int, seed: int) -> Path:
    """The generated dataset folder (bin-images/, metadata/, file_list.json), made once."""
    return DatasetJob(home, per_class, seed).wait()


class DatasetJob:
    """The generated dataset, made by processing/synthetic.py in a subprocess (on every core)
    while the caller does other work; `wait` returns its folder. Reused when already there."""

    def __init__(self, home: Path, per_class: int, seed: int) -> None:
        self.root = home / "datasets" / f"synthetic-{per_class}-seed{seed}"
        self.images = 5 * per_class  # counts 1..5
        self.proc: subprocess.Popen | None = None
        if (self.root / "file_list.json").is_file():
            print(f"dataset: reusing {self.root}")
            return
        # Made under a temp name and renamed: an interrupted run leaves no half dataset.
        self.tmp = self.root.with_name(f".{self.root.name}.tmp-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.started = time.monotonic()
        command = [
            sys.executable,
            str(SYNTHETIC),
            "--out", str(self.tmp),
            "--per-class", str(per_class),
            "--seed", str(seed),
            "--file-list", str(self.tmp / "file_list.json"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(command)

    def wait(self) -> Path:
        """The dataset's folder, once made; CalledProcessError when the generator failed."""
        if self.proc is None:
            return self.root
        try:
            code = self.proc.wait()
        except BaseException:  # interrupted (Ctrl-C): no half-made dataset left behind
            self.cancel()
            raise
        if code != 0:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise subprocess.CalledProcessError(code, self.proc.args)
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
        self.tmp.rename(self.root)
        seconds = time.monotonic() - self.started
        print(f"dataset: generated {self.images} images in {seconds:.1f} s -> {self.root}")
        return self.root

    def cancel(self) -> None:
        """Stop the generator (the caller failed first) and remove what it wrote."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def pick_images(dataset: Path) -> list[tuple[str, Path]]:
    """A real bin photo (when ../shared is there) and a generated image, with labels."""
    picks = []
    real = sorted(REAL_BINS.glob("*.jpg")) if REAL_BINS.is_dir() else []
    if real:
        picks.append(
            (f"real photo {real[0].name} (true count {real[0].stem.split('_')[-1]})", real[0])
        )
    else:
        print(f"(no real bin photos at {REAL_BINS}; invoking with a generated image only)")
    listing = json.loads((dataset / "file_list.json").read_text())
    count, entries = next(iter(sorted(listing.items())))
    ident = Path(entries[0]).stem
    picks.append(
        (
            f"generated image {ident}.jpg (true count {count})",
            dataset / "bin-images" / f"{ident}.jpg",
        )
    )
    return picks


def step(record: dict, name: str) -> dict:
    return next((s for s in record["Steps"] if s["StepName"] == name), {})


def summarize(ws: Workspace, record: dict, answers: list[tuple[str, str]], total_s: float) -> str:
    from pipeline.local.listings import format_execution

    lines = ["", "=" * 72, format_execution(record), ""]
    evaluate = step(record, "Evaluate")
    report_uri = (evaluate.get("PropertyFiles") or {}).get("EvaluationReport")
    if report_uri and ws.store.path(report_uri).is_file():
        report = json.loads(ws.store.path(report_uri).read_text())
        m = report.get("multiclass_classification_metrics", {})
        c = report.get("counting_metrics", {})
        b = report.get("baseline", {})
        lines += [
            f"evaluation on {report.get('test_images', '?')} test images:",
            f"  accuracy {m.get('accuracy', {}).get('value', float('nan')):.3f}"
            f"  (majority-class baseline {b.get('accuracy', float('nan')):.3f}, "
            f"always answering {b.get('majority_class', '?')}; chance 0.200)",
            f"  MAE {c.get('mae', {}).get('value', float('nan')):.3f}"
            f" (baseline {b.get('mae', float('nan')):.3f}),"
            f" RMSE {c.get('rmse', {}).get('value', float('nan')):.3f}"
            f" (baseline {b.get('rmse', float('nan')):.3f}),"
            f" within one {c.get('within_one_accuracy', {}).get('value', float('nan')):.3f}",
            f"  report and plots: {ws.store.path(report_uri).parent}",
        ]
    register = step(record, "Register").get("Properties") or {}
    if register:
        lines.append(
            f"registry: {register['ModelPackageGroupName']} "
            f"version {register['ModelPackageVersion']}"
            f" ({register['ModelApprovalStatus']}) {register['ModelPackageArn']}"
        )
    deploy = step(record, "Deploy").get("LambdaResponse")
    if deploy:
        lines.append(f"deployer: {deploy.get('status')} -> endpoint {deploy.get('endpoint_name')}")
        if deploy.get("smoke_test"):
            lines.append(f"staging smoke test: {deploy['smoke_test']}")
    for label, answer in answers:
        lines.append(f"endpoint answer for {label}: {answer}")
    lines += [
        f"total {total_s:.0f} s; home {ws.home}",
        "next: python -m pipeline models list | models promote 1 (to prod, pending) | "
        "endpoints list | endpoints invoke NAME IMAGE | endpoints stop --all",
    ]
    return "\n".join(lines)


def quickstart(args: argparse.Namespace) -> int:
    from pipeline.local.runner import ExecutionFailed, ExecutionStopped

    started = time.monotonic()
    # Seconds truncated: the monitoring window (from here) must hold this run's first request.
    began = datetime.now(UTC).replace(microsecond=0)
    ws = Workspace.default()
    print(f"bincount quickstart: everything under {ws.home}")
    # The dataset is generated while the definition is built: neither needs the other.
    job = DatasetJob(ws.home, args.per_class, args.seed)
    t0 = time.monotonic()
    try:
        definition = ws.definition()
    except BaseException:
        job.cancel()
        raise
    print(f"definition built and code staged in {time.monotonic() - t0:.1f} s")
    dataset = job.wait()
    params: dict[str, Any] = {
        "Architecture": args.architecture,
        "ImageSize": args.image_size,
        "Epochs": args.epochs,
        "BatchSize": args.batch_size,
        "LearningRate": args.learning_rate,
        "SourceUri": str(dataset),
        "FileListUri": str(dataset / "file_list.json"),
        "PerClassCap": 0,
        "AccuracyThreshold": args.threshold,
        "ModelApprovalStatus": "Approved",
    }
    try:
        record = ws.runner(stream_logs=args.logs).run(
            definition, params, use_cache=not args.no_cache
        )
    except ExecutionFailed as failed:
        print(summarize(ws, failed.record, [], time.monotonic() - started))
        print(f"\nquickstart FAILED: {failed}", file=sys.stderr)
        return 1
    except ExecutionStopped as stopped:
        print(f"\nquickstart STOPPED: {stopped}", file=sys.stderr)
        return 128 + stopped.signal_number
    # The endpoint the Deploy step's deployer put the version on (the first stage's).
    endpoint = (step(record, "Deploy").get("LambdaResponse") or {}).get("endpoint_name")
    if not endpoint:
        print(summarize(ws, record, [], time.monotonic() - started))
        print("\nquickstart FAILED: the Deploy step named no endpoint", file=sys.stderr)
        return 1
    answers = []
    for label, image in pick_images(dataset):
        status, _, body = ws.sagemaker.endpoints.invoke(
            endpoint, image.read_bytes(), "image/jpeg", "application/json"
        )
        text = body.decode(errors="replace")
        answers.append(
            (label, readable_answer(text) if status == 200 else f"HTTP {status}: {text}")
        )
    print(summarize(ws, record, answers, time.monotonic() - started))
    print("\n".join(monitor_traffic(ws, dataset, endpoint, began)))
    return 0


# Monitoring traffic: enough generated images for the monitor to judge (monitor.py's
# MIN_IMAGES is 100), sent as JSON batches of BATCH (the endpoint takes up to 64).
TRAFFIC_PER_COUNT = 24
BATCH = 40


def monitor_traffic(ws: Workspace, dataset: Path, endpoint: str, began: datetime) -> list[str]:
    """Invoke the endpoint with generated images (each batch with an inference id), write
    their true counts as ground truth, run the monitoring job over everything captured since
    `began`; lines to print."""
    import base64
    import uuid

    from pipeline.local.monitoring import MonitoringError, headline, run_monitor

    listing = json.loads((dataset / "file_list.json").read_text())
    images = [
        (int(count), dataset / "bin-images" / f"{Path(entry).stem}.jpg")
        for count, entries in sorted(listing.items())
        for entry in entries[-TRAFFIC_PER_COUNT:]
    ]
    truth_lines = []
    for first in range(0, len(images), BATCH):
        batch = images[first : first + BATCH]
        inference_id = f"quickstart-{uuid.uuid4()}"
        body = json.dumps(
            {"instances": [{"b64": base64.b64encode(p.read_bytes()).decode()} for _, p in batch]}
        ).encode()
        status, _, answer = ws.sagemaker.endpoints.invoke(
            endpoint, body, "application/json", inference_id=inference_id
        )
        if status != 200:
            return [f"monitoring skipped: the endpoint answered HTTP {status}: {answer[:200]!r}"]
        labels = ",".join(str(count) for count, _ in batch)
        truth_lines.append(
            json.dumps(
                {
                    "groundTruthData": {"data": labels, "encoding": "CSV"},
                    "eventMetadata": {"eventId": inference_id},
                    "eventVersion": "0",
                }
            )
        )
    hour = datetime.now(UTC).strftime("%Y/%m/%d/%H")
    truth_uri = (
        f"{ws.settings.s3_uri('ground-truth')}/{endpoint}/{hour}/quickstart-{uuid.uuid4()}.jsonl"
    )
    ws.store.put_bytes(("\n".join(truth_lines) + "\n").encode(), truth_uri)
    try:
        report, output_dir = run_monitor(
            ws, endpoint, start_time=began.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    except MonitoringError as error:
        return [f"monitoring could not run: {error}"]
    sent = f"sent {len(images)} generated images in batches; ground truth: {truth_uri}"
    return ["", sent, *headline(report, output_dir)]
