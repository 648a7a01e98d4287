"""The local run (`make run`'s quickstart): seconds to the endpoint's answer, per step and in
total.

Runs `make run` (the install already done) in a fresh BINCOUNT_HOME (so nothing is cached),
then a second time in the same home (every job step cached), timing each to the endpoint's
first answer (the line it prints) and to its end (after the monitoring report), and reads the
execution records.
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
ANSWER = "endpoint answer for "  # how quickstart.py prints each answer
GOAL_S = 45.0  # issue 13: `make run` to the endpoint's answer


def quickstart(home: Path) -> tuple[float, float, dict]:
    """(seconds to the first answer, seconds to the end, the execution record)."""
    env = {**os.environ, "BINCOUNT_HOME": str(home)}
    started = time.perf_counter()
    answered = None
    with subprocess.Popen(
        ["make", "-s", "run"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    ) as proc:
        for line in proc.stdout:
            if answered is None and line.startswith(ANSWER):
                answered = time.perf_counter() - started
    seconds = time.perf_counter() - started
    if proc.returncode != 0 or answered is None:
        raise SystemExit(
            f"bench local_run: make run failed (exit {proc.returncode}) or never answered"
        )
    records = sorted(home.glob("executions/*/execution.json"))
    return answered, seconds, json.loads(records[-1].read_text())


def main() -> None:
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bincount-bench-") as tmp:
        home = Path(tmp)
        cold_answer_s, cold_s, cold = quickstart(home)
        warm_answer_s, warm_s, warm = quickstart(home)
        report_uri = next(s for s in cold["Steps"] if s["StepName"] == "Evaluate")["PropertyFiles"][
            "EvaluationReport"
        ]
        # s3://bucket/key lives at <home>/s3/bucket/key in the local store.
        report = json.loads((home / "s3" / report_uri.removeprefix("s3://")).read_text())
        cold_params = dict(cold["Parameters"])
        listing = json.loads(Path(cold_params["FileListUri"]).read_text())
        cold_params["images"] = f"{sum(len(ids) for ids in listing.values()):,}"
        subprocess.run(
            [sys.executable, "-m", "pipeline", "endpoints", "stop", "--all"],
            cwd=REPO,
            env={**os.environ, "BINCOUNT_HOME": str(home)},
            check=True,
            stdout=subprocess.DEVNULL,
        )
    load.append(os.getloadavg()[0])
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
    rows.append(
        f"| **`make run` to the endpoint's first answer** | | **{cold_answer_s:.1f}** | "
        f"{warm_answer_s:.1f} |"
    )
    rows.append(
        f"| `make run`, to its end (monitoring report included) | | {cold_s:.1f} | {warm_s:.1f} |"
    )
    accuracy = report["multiclass_classification_metrics"]["accuracy"]["value"]
    markdown = "\n".join(
        [
            "## Local run (`make run`: quickstart)",
            "",
            f"Default quickstart ({cold_params['images']} generated images, smallcnn at "
            f"{cold_params['ImageSize']} px, {cold_params['Epochs']} epochs, learning rate "
            f"{cold_params['LearningRate']}); the first run in a fresh BINCOUNT_HOME includes",
            "generating the dataset (while the definition is built), the second reuses it and",
            "hits the step cache for Prepare, Train and Evaluate. Wall times are `make run`'s",
            "own, the install already done: to the endpoint's first answer, and to the end.",
            "",
            *rows,
            "",
            f"Test accuracy of the first run: {accuracy:.3f} on {report['test_images']} images "
            f"(majority-class baseline {report['baseline']['accuracy']:.3f}); MAE "
            f"{report['counting_metrics']['mae']['value']:.3f} "
            f"(baseline {report['baseline']['mae']:.3f}).",
            "",
            f"Goal (issue 13): <= {GOAL_S:.0f} s from `make run` to the endpoint's answer, "
            f"accuracy as before (0.90). This run: {cold_answer_s:.1f} s, accuracy "
            f"{accuracy:.3f}: "
            + ("**met**." if cold_answer_s <= GOAL_S and accuracy >= 0.90 else "**not met**."),
            "",
            f"1-minute load average before and after: {load[0]:.1f}, {load[1]:.1f} (on "
            f"{os.cpu_count()} CPUs).",
        ]
    )
    write_section("local_run", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
