"""The local run (`make run`'s quickstart): seconds per step and in total.

Runs `python -m pipeline quickstart` in a fresh BINCOUNT_HOME (so nothing is cached), then a
second time in the same home (every job step cached), and reads the execution records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent


def quickstart(home: Path) -> tuple[float, dict]:
    env = {**os.environ, "BINCOUNT_HOME": str(home)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline", "quickstart"],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    records = sorted(home.glob("executions/*/execution.json"))
    return seconds, json.loads(records[-1].read_text())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bincount-bench-") as tmp:
        home = Path(tmp)
        cold_s, cold = quickstart(home)
        warm_s, warm = quickstart(home)
        report_uri = next(s for s in cold["Steps"] if s["StepName"] == "Evaluate")["PropertyFiles"][
            "EvaluationReport"
        ]
        # s3://bucket/key lives at <home>/s3/bucket/key in the local store.
        report = json.loads((home / "s3" / report_uri.removeprefix("s3://")).read_text())
        subprocess.run(
            [sys.executable, "-m", "pipeline", "endpoints", "stop", "--all"],
            cwd=REPO,
            env={**os.environ, "BINCOUNT_HOME": str(home)},
            check=True,
            stdout=subprocess.DEVNULL,
        )
    warm_steps = {s["StepName"]: s for s in warm["Steps"]}
    rows = [
        "| step | type | first run (s) | second run (s) |",
        "|---|---|---:|---:|",
    ]
    for step in cold["Steps"]:
        again = warm_steps.get(step["StepName"], {})
        first = f"{step['Seconds']:.1f}" if "Seconds" in step else step["StepStatus"]
        second = f"{again['Seconds']:.1f}" if "Seconds" in again else again.get("StepStatus", "")
        if again.get("Cached"):
            second += " (cached)"
        rows.append(f"| {step['StepName']} | {step['StepType']} | {first} | {second} |")
    rows.append(f"| **execution** | | {cold['Seconds']:.1f} | {warm['Seconds']:.1f} |")
    rows.append(f"| **`python -m pipeline quickstart`, wall** | | {cold_s:.1f} | {warm_s:.1f} |")
    accuracy = report["multiclass_classification_metrics"]["accuracy"]["value"]
    markdown = "\n".join(
        [
            "## Local run (`make run`: quickstart)",
            "",
            "Default quickstart (2,500 generated images, smallcnn at 64 px, 12 epochs); the first",
            "run in a fresh BINCOUNT_HOME includes generating the dataset, the second reuses it",
            "and hits the step cache for Prepare, Train and Evaluate. The wall time includes",
            "building the definition and invoking the endpoint twice.",
            "",
            *rows,
            "",
            f"Test accuracy of the first run: {accuracy:.3f} on {report['test_images']} images "
            f"(majority-class baseline {report['baseline']['accuracy']:.3f}); MAE "
            f"{report['counting_metrics']['mae']['value']:.3f} "
            f"(baseline {report['baseline']['mae']:.3f}).",
        ]
    )
    write_section("local_run", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
