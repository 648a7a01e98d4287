"""Evaluate step: judge the trained model on the held-out test split.

Runs as a SageMaker Processing script (and locally the same way):

    python evaluate.py --model-dir /opt/ml/processing/model --test-dir /opt/ml/processing/test \
        --output-dir /opt/ml/processing/evaluation --min-test-images 200

The model is loaded through its own `code/inference.py` (model_fn, predict_fn), so what is
judged is exactly what will serve. Writes `evaluation.json` in SageMaker's model-quality format
(what the quality gate reads and the registry shows), `confusion_matrix.png`,
`predictions.csv` and `report.html`, the page an approver reads (report_page.py), with the
training curves from the model archive beside it (`curves.json`, `curves.png`). A test
split smaller than --min-test-images is refused (exit 2) before the
model is loaded: on a handful of images any accuracy, 1.0 included, means nothing, and the
report states the test-set size and the accuracy's 95% confidence interval.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import math
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import exit_message
import numpy as np
from atomic_io import write_atomic
from baseline import build_baseline, write_baseline
from prepare_stats import StatsError, merge_host_stats
from report_page import (
    Predictions,
    ReportError,
    plot_title,
    publish_report,
    read_curves,
    resolve_execution,
)
from shards import ShardError, read_shard, shard_stems

# Smallest test split the gate may judge on (pipeline MinTestImages): at 200 images the
# accuracy's 95% interval is at most about +-0.07 wide each side (Wilson, near 0.5, where it
# is widest: 0.98/sqrt(n)), fine enough to tell a model from the AccuracyThreshold.
MIN_TEST_IMAGES = 200
Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile


class EvaluationError(RuntimeError):
    """What is wrong with the model or the test split, said plainly."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, required=True, help="model.tar.gz, or its contents")
    p.add_argument("--test-dir", type=Path, required=True, help="Prepare's test shards")
    p.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="Prepare's report folder: its stats-<host>.json are merged into stats.json",
    )
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument(
        "--min-test-images",
        type=int,
        default=MIN_TEST_IMAGES,
        help="refuse to judge a model on fewer test images (pipeline parameter MinTestImages)",
    )
    p.add_argument(
        "--execution-id",
        default=None,
        help="the pipeline execution named in report.html (default: from the job's name)",
    )
    p.add_argument(
        "--history",
        type=Path,
        default=None,
        help="earlier versions for report.html: JSON list of {version, accuracy, mae, live}",
    )
    args = p.parse_args(argv)
    for name in ("batch_size", "min_test_images"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            p.error(f"{flag} must be at least 1, got {getattr(args, name)}")
    return args


# --- the model, through its serving code ---------------------------------------------------


def unpack_model(model_dir: Path, scratch: Path) -> Path:
    """The folder holding model.json: `model_dir` itself, or `model.tar.gz` unpacked."""
    if (model_dir / "model.json").is_file():
        return model_dir
    archives = sorted(model_dir.glob("*.tar.gz")) if model_dir.is_dir() else []
    if len(archives) != 1:
        found = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else "nothing"
        raise EvaluationError(
            f"{model_dir} holds neither model.json nor exactly one model.tar.gz (found: {found})"
        )
    try:
        with tarfile.open(archives[0]) as tar:
            tar.extractall(scratch, filter="data")  # refuses absolute paths and links out
    except (tarfile.TarError, OSError) as exc:
        raise EvaluationError(f"{archives[0]} is not a readable model archive: {exc}") from None
    if not (scratch / "model.json").is_file():
        raise EvaluationError(f"{archives[0]} has no model.json at its top level")
    return scratch


def load_serving_code(model_root: Path) -> ModuleType:
    """Import the model's own code/inference.py (and its sibling imports) as the server would."""
    code = model_root / "code"
    entry = code / "inference.py"
    if not entry.is_file():
        raise EvaluationError(f"{model_root} has no code/inference.py to load the model with")
    sys.path.insert(0, str(code))
    spec = importlib.util.spec_from_file_location("bincount_model_inference", entry)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the test split ------------------------------------------------------------------------


def find_test_shards(test_dir: Path) -> list[Path]:
    stems = shard_stems(test_dir)
    if not stems:
        raise EvaluationError(
            f"no test shards (*.labels.npy with *.images.npy) in {test_dir}: did Prepare write "
            "a test split?"
        )
    return stems


def count_test_images(shards: list[Path]) -> int:
    """Images in the test shards, from their labels alone (no pixels read)."""
    total = 0
    for stem in shards:
        try:
            total += len(read_shard(stem)[1])
        except ShardError as exc:
            raise EvaluationError(f"test {exc}") from None
    return total


def require_test_images(shards: list[Path], minimum: int) -> int:
    count = count_test_images(shards)
    if count < minimum:
        raise EvaluationError(
            f"the test split has {count} image{'s' if count != 1 else ''}, fewer than the "
            f"{minimum} required to judge a model: lower --min-test-images (MinTestImages) only "
            "if that is intended, or give Prepare more data (PerClassCap, the file list, the "
            "split ratios)"
        )
    return count


def predict_split(serving: ModuleType, model: Any, shards: list[Path], batch_size: int):
    """(ids, true counts, predicted counts, probabilities) over every shard, batch by batch.

    Each shard's pixels are memory-mapped and read a batch at a time, then unmapped: memory
    stays at one batch however large the test split."""
    import torch

    ids: list[str] = []
    truth: list[int] = []
    predicted: list[int] = []
    probabilities: list[np.ndarray] = []
    for stem in shards:
        try:
            images, labels, shard_ids = read_shard(stem)
        except ShardError as exc:
            raise EvaluationError(f"test {exc}") from None
        for start in range(0, len(labels), batch_size):
            batch = torch.from_numpy(np.array(images[start : start + batch_size]))
            out = serving.predict_fn(batch, model)
            predicted.extend(int(c) for c in out["counts"])
            probabilities.append(out["probabilities"].numpy())
        del images  # unmap before the next shard
        truth.extend(int(c) for c in labels)
        ids.extend(str(i) for i in shard_ids)
    return ids, np.asarray(truth), np.asarray(predicted), np.concatenate(probabilities)


def test_batches(shards: list[Path], batch_size: int):
    """The test images again, uint8 NHWC, in predict_split's order (from the page cache)."""
    for stem in shards:
        images, labels, _ = read_shard(stem)
        for start in range(0, len(labels), batch_size):
            yield np.array(images[start : start + batch_size])
        del images


# --- metrics -------------------------------------------------------------------------------


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def wilson_interval(successes: int, n: int, z: float = Z_95) -> list[float]:
    """[low, high] of the Wilson score interval for a binomial proportion: unlike the normal
    approximation it stays inside [0, 1] and is honest at 0/n and n/n (1/1 gives [0.21, 1])."""
    if not n:
        return [0.0, 1.0]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def classification_metrics(truth: np.ndarray, pred: np.ndarray, classes: list[int]) -> dict:
    """SageMaker's `multiclass_classification_metrics`, weighted by each class's support."""
    n = len(truth)
    accuracy = _ratio((truth == pred).sum(), n)
    support = {c: int((truth == c).sum()) for c in classes}
    precision = recall = f1 = 0.0
    for c in classes:
        tp = int(((pred == c) & (truth == c)).sum())
        p = _ratio(tp, (pred == c).sum())
        r = _ratio(tp, support[c])
        w = _ratio(support[c], n)
        precision += w * p
        recall += w * r
        f1 += w * _ratio(2 * p * r, p + r)
    confusion = {
        str(t): {str(q): int(((truth == t) & (pred == q)).sum()) for q in classes} for t in classes
    }
    return {
        "accuracy": {
            "value": accuracy,
            # Binomial standard error of the accuracy over n test images.
            "standard_deviation": math.sqrt(accuracy * (1 - accuracy) / n) if n else 0.0,
        },
        "weighted_precision": {"value": precision},
        "weighted_recall": {"value": recall},
        "weighted_f1": {"value": f1},
        "confusion_matrix": confusion,
    }


def counting_metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    error = (pred - truth).astype(np.float64)
    return {
        "rmse": {"value": float(np.sqrt((error**2).mean()))},
        "mae": {"value": float(np.abs(error).mean())},
        "within_one_accuracy": {"value": float((np.abs(error) <= 1).mean())},
    }


def majority_baseline(truth: np.ndarray, classes: list[int]) -> dict:
    """Always answering the test split's most common count: what the model must beat."""
    majority = max(classes, key=lambda c: ((truth == c).sum(), -c))
    error = (majority - truth).astype(np.float64)
    return {
        "majority_class": int(majority),
        "accuracy": float((truth == majority).mean()),
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
    }


def build_report(truth: np.ndarray, pred: np.ndarray, classes: list[int], meta: dict) -> dict:
    return {
        "multiclass_classification_metrics": classification_metrics(truth, pred, classes),
        "counting_metrics": counting_metrics(truth, pred),
        "per_class_accuracy": {
            str(c): _ratio(((truth == c) & (pred == c)).sum(), (truth == c).sum()) for c in classes
        },
        "baseline": majority_baseline(truth, classes),
        "test_images": len(truth),
        # Where the true accuracy lies, 95% of the time: what the gate's decision is worth.
        "accuracy_confidence_interval_95": wilson_interval(int((truth == pred).sum()), len(truth)),
        "model": {k: meta.get(k) for k in ("arch", "image_size", "version")},
    }


# --- outputs -------------------------------------------------------------------------------


def confusion_png(confusion: dict, accuracy: float, title: str = "") -> bytes | None:
    """The matrix as a picture; None where the image lacks matplotlib (the report still stands)."""
    try:
        import matplotlib
    except ImportError:
        print("evaluate: matplotlib is not installed here; skipping confusion_matrix.png")
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(confusion)
    grid = np.array([[confusion[t][q] for q in labels] for t in labels])
    # Coloured by share of each true count's row: a weak class shows even when it is rare.
    share = grid / np.maximum(grid.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.6))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(grid):
        colour = "white" if share[i, j] > 0.5 else "black"
        ax.text(j, i, f"{share[i, j]:.0%}\n{value}", ha="center", va="center", color=colour)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted count")
    ax.set_ylabel("true count")
    ax.set_title(title or f"Test confusion matrix (accuracy {accuracy:.3f})", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def predictions_csv(ids, truth, pred, probabilities, classes) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "label", "predicted", *(f"p{c}" for c in classes)])
    for row in zip(ids, truth, pred, probabilities, strict=True):
        writer.writerow([row[0], int(row[1]), int(row[2]), *(f"{p:.5f}" for p in row[3])])
    return buf.getvalue().encode()


def evaluate(
    model_dir: Path,
    test_dir: Path,
    output_dir: Path,
    batch_size: int = 256,
    min_test_images: int = MIN_TEST_IMAGES,
    report_dir: Path | None = None,
    execution_id: str | None = None,
    history: Path | None = None,
) -> dict:
    """Write evaluation.json, confusion_matrix.png, predictions.csv (and, given Prepare's
    report folder, the execution's merged stats.json); return the report."""
    started = time.perf_counter()
    shards = find_test_shards(test_dir)
    require_test_images(shards, min_test_images)
    try:
        stats = merge_host_stats(report_dir) if report_dir is not None else None
    except StatsError as exc:
        raise EvaluationError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="bincount-model-") as scratch:
        root = unpack_model(model_dir, Path(scratch))
        meta = json.loads((root / "model.json").read_text(encoding="utf-8"))
        curves = read_curves(root)  # Train's curves travel in model.tar.gz (curves.py)
        serving = load_serving_code(root)
        model = serving.model_fn(str(root))
        ids, truth, pred, probabilities = predict_split(serving, model, shards, batch_size)
    classes = [int(c) for c in meta["counts"]]
    unknown = sorted(set(truth.tolist()) - set(classes))
    if unknown:
        raise EvaluationError(f"test labels {unknown} are outside the model's counts {classes}")
    report = build_report(truth, pred, classes, meta)
    report["seconds"] = round(time.perf_counter() - started, 3)

    output_dir.mkdir(parents=True, exist_ok=True)
    metrics = report["multiclass_classification_metrics"]
    accuracy = metrics["accuracy"]["value"]
    version = meta.get("version")
    png = confusion_png(
        metrics["confusion_matrix"],
        accuracy,
        plot_title(
            f"Test confusion matrix (accuracy {accuracy:.3f})",
            resolve_execution(execution_id, version),
            version,
        ),
    )
    if png is not None:
        write_atomic(output_dir / "confusion_matrix.png", png)
    write_atomic(
        output_dir / "predictions.csv", predictions_csv(ids, truth, pred, probabilities, classes)
    )
    if stats is not None:
        write_atomic(output_dir / "stats.json", (json.dumps(stats, indent=2) + "\n").encode())
    # What the monitoring job compares an endpoint's traffic with: this model's predictions and
    # the test images' statistics (and, from Prepare's manifests, their JPEG sizes).
    baseline = build_baseline(
        test_batches(shards, batch_size), probabilities, report_dir, classes=classes
    )
    write_baseline(output_dir / "baseline.json", baseline)
    # The page an approver reads (report.html), and the training curves beside it.
    publish_report(
        output_dir,
        report,
        Predictions(ids, truth, pred, probabilities, classes),
        test_dir,
        curves,
        meta,
        execution_id,
        history,
    )
    # Last, so a report on disk always comes with its plot and predictions.
    write_atomic(output_dir / "evaluation.json", (json.dumps(report, indent=2) + "\n").encode())
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = evaluate(
            args.model_dir,
            args.test_dir,
            args.output_dir,
            args.batch_size,
            args.min_test_images,
            args.report_dir,
            args.execution_id,
            args.history,
        )
    except (EvaluationError, ReportError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    accuracy = report["multiclass_classification_metrics"]["accuracy"]["value"]
    low, high = report["accuracy_confidence_interval_95"]
    baseline = report["baseline"]
    print(
        f"evaluate: {report['test_images']} test images: accuracy={accuracy:.4f} "
        f"(95% interval {low:.4f}..{high:.4f}) "
        f"mae={report['counting_metrics']['mae']['value']:.4f} "
        f"(majority baseline: count {baseline['majority_class']}, "
        f"accuracy={baseline['accuracy']:.4f} mae={baseline['mae']:.4f}) -> {args.output_dir}"
    )
    return 0


if __name__ == "__main__":
    # A failure's reason also goes to /opt/ml/output/message: Studio shows it for the step.
    raise SystemExit(exit_message.run(main))
