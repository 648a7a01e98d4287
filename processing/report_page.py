"""The evaluation report page: one self-contained HTML file an approver reads.

Evaluate writes `report.html` beside `evaluation.json` (and `curves.json`/`curves.png`, the
training curves it found in the model archive); the Register step records its S3 URI with the
model version. It can also be rebuilt from an Evaluate output folder (the local
`python -m pipeline report` does, adding the registry's earlier versions):

    python report_page.py --evaluation-dir DIR --test-dir DIR [--history FILE] \
        [--execution-id ID] [--output DIR/report.html]

The page holds: the headline metrics against the majority baseline and the previous live
version, the confusion matrix row-normalised (each true count's row sums to 100%), the
training curves with the best epoch marked, the worst misclassified test images (the most
confident wrong answers) with their true and predicted counts, and the accuracy/MAE trend
across versions. Every image is inline (base64 data: URIs) and there is no external CSS,
script or font, so the file opens anywhere, from S3, a mail or a laptop, offline.

numpy, matplotlib and Pillow only (the processing container's). Without matplotlib the page
still stands, with its tables and images and a note where each plot would be.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from atomic_io import write_atomic
from shards import ShardError, read_shard, shard_stems

WORST_IMAGES = 12  # misclassified test images shown
THUMBNAIL = 144  # px, the gallery's square thumbnails
# A job named by SageMaker Pipelines (or the local runner): pipelines-<execution id>-<step>...
PIPELINE_JOB = re.compile(r"^pipelines-([a-z0-9]+)-", re.IGNORECASE)


class ReportError(ValueError):
    """An input the page cannot be built from, said plainly."""


@dataclass
class Predictions:
    """predictions.csv's columns, in the test shards' order."""

    ids: list[str]
    truth: np.ndarray  # int, the true counts
    predicted: np.ndarray  # int, the predicted counts
    probabilities: np.ndarray  # float [N, classes]
    classes: list[int]


# --- inputs ---------------------------------------------------------------------------------


def read_predictions(path: Path) -> Predictions:
    """predictions.csv as Evaluate writes it: id,label,predicted,p1..pK."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise ReportError(f"cannot read predictions {path}: {exc}") from None
    if not rows or rows[0][:3] != ["id", "label", "predicted"] or len(rows[0]) < 4:
        raise ReportError(f"{path}: expected a header id,label,predicted,p1..., got {rows[:1]}")
    header = rows[0]
    try:
        classes = [int(name[1:]) for name in header[3:]]
        body = rows[1:]
        ids = [r[0] for r in body]
        truth = np.array([int(r[1]) for r in body], dtype=np.int64)
        predicted = np.array([int(r[2]) for r in body], dtype=np.int64)
        probabilities = np.array([[float(x) for x in r[3:]] for r in body], dtype=np.float64)
    except (ValueError, IndexError) as exc:
        raise ReportError(f"{path}: malformed row ({exc})") from None
    if body and probabilities.shape != (len(body), len(classes)):
        raise ReportError(f"{path}: rows do not all have {len(classes)} probabilities")
    probabilities = probabilities.reshape(len(body), len(classes))
    return Predictions(ids, truth, predicted, probabilities, classes)


def read_curves(folder: Path) -> list[dict[str, Any]] | None:
    """The per-epoch training history (curves.json) in `folder`; None when there is none."""
    path = folder / "curves.json"
    if not path.is_file():
        return None
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path} is not readable JSON: {exc}") from None
    return check_curves(history, str(path))


def check_curves(history: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(history, list):
        raise ReportError(f"{where}: training curves must be a list of epochs")
    for i, epoch in enumerate(history):
        if not isinstance(epoch, dict) or not isinstance(epoch.get("epoch"), int):
            raise ReportError(f"{where}: entry {i} has no integer 'epoch'")
    return history


def read_history(path: Path) -> list[dict[str, Any]]:
    """Earlier versions: a JSON list of {version, accuracy, mae, live[, current]}."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"--history {path} is not readable JSON: {exc}") from None
    return check_history(data, f"--history {path}")


def check_history(data: Any, where: str = "history") -> list[dict[str, Any]]:
    if not isinstance(data, list):
        raise ReportError(f"{where}: expected a JSON list of versions, got {type(data).__name__}")
    checked = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ReportError(f"{where}: entry {i} is not an object")
        version = entry.get("version")
        if not isinstance(version, (str, int)) or isinstance(version, bool) or version == "":
            raise ReportError(f"{where}: entry {i} needs a 'version' (string or number)")
        for key, low, high in (("accuracy", 0.0, 1.0), ("mae", 0.0, math.inf)):
            value = entry.get(key)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not math.isfinite(value)
                or not low <= value <= high
            ):
                raise ReportError(
                    f"{where}: entry {i} ({version}): '{key}' must be a number in "
                    f"[{low}, {high}], got {value!r}"
                )
        for key in ("live", "current"):
            if not isinstance(entry.get(key, False), bool):
                raise ReportError(f"{where}: entry {i} ({version}): '{key}' must be true or false")
        checked.append(
            {
                "version": str(version),
                "accuracy": float(entry["accuracy"]),
                "mae": float(entry["mae"]),
                "live": entry.get("live", False),
                "current": entry.get("current", False),
            }
        )
    return checked


def execution_from_job_name(name: str) -> str | None:
    """The execution id in a pipeline job's name (`pipelines-<id>-<Step>-...`), else None."""
    match = PIPELINE_JOB.match(name or "")
    return match.group(1) if match else None


def execution_from_environment(config_dir: Path = Path("/opt/ml/config")) -> str | None:
    """The execution running this processing job: SageMaker describes the job to its container
    in processingjobconfig.json, whose job name Pipelines composes from the execution id."""
    path = config_dir / "processingjobconfig.json"
    try:
        name = json.loads(path.read_text(encoding="utf-8")).get("ProcessingJobName", "")
    except (OSError, ValueError, AttributeError):
        return None
    return execution_from_job_name(name)


def best_epoch(curves: Sequence[dict[str, Any]]) -> int | None:
    """The epoch Train exported: best validation accuracy, then lowest MAE (train.py's rule)."""
    scored = [c for c in curves if "val_acc" in c and "val_mae" in c]
    if not scored:
        return None
    return max(scored, key=lambda c: (c["val_acc"], -c["val_mae"]))["epoch"]


def worst_misclassified(p: Predictions, limit: int = WORST_IMAGES) -> list[int]:
    """Rows of the most confident wrong answers: highest probability on a wrong class first
    (ties by id, so the page is deterministic)."""
    wrong = np.flatnonzero(p.truth != p.predicted)
    if not len(wrong):
        return []
    confidence = p.probabilities[wrong].max(axis=1)
    order = sorted(range(len(wrong)), key=lambda k: (-confidence[k], p.ids[wrong[k]]))
    return [int(wrong[k]) for k in order[:limit]]


def thumbnails(test_dir: Path, rows: Sequence[int], ids: Sequence[str]) -> dict[int, bytes]:
    """PNG thumbnails of the given prediction rows, read from the test shards' pixels.

    Rows number the images across the shards in name order (Evaluate's order); each row's id
    is checked against the shard's, so predictions from other shards are refused."""
    from PIL import Image

    wanted = sorted(set(rows))
    found: dict[int, bytes] = {}
    offset = 0
    for stem in shard_stems(test_dir):
        if len(found) == len(wanted):
            break
        try:
            images, labels, shard_ids = read_shard(stem)
        except ShardError as exc:
            raise ReportError(f"test {exc}") from None
        for row in wanted:
            if offset <= row < offset + len(labels):
                if str(shard_ids[row - offset]) != ids[row]:
                    raise ReportError(
                        f"predictions row {row} is image {ids[row]!r} but the test shards hold "
                        f"{str(shard_ids[row - offset])!r} there: predictions and shards differ"
                    )
                picture = Image.fromarray(np.array(images[row - offset]))
                resample = Image.NEAREST if picture.width < THUMBNAIL else Image.BILINEAR
                buf = io.BytesIO()
                picture.resize((THUMBNAIL, THUMBNAIL), resample).save(buf, format="PNG")
                found[row] = buf.getvalue()
        offset += len(labels)
        del images  # unmap
    missing = [r for r in wanted if r not in found]
    if missing:
        raise ReportError(
            f"the test shards in {test_dir} hold {offset} images; predictions name row "
            f"{missing[0]} ({ids[missing[0]]!r}): predictions and shards differ"
        )
    return found


# --- plots ----------------------------------------------------------------------------------


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None where matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig, plt) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def plot_title(what: str, execution_id: str | None, version: str | None) -> str:
    """Every plot names what it shows, the execution and the model version."""
    # One line each: a pipeline's model version alone is ~50 characters.
    return f"{what}\nexecution {execution_id or 'unknown'}\nmodel {version or 'unknown'}"


def row_normalised(confusion: dict[str, dict[str, int]]) -> tuple[list[str], np.ndarray, Any]:
    """(labels, counts, row fractions): each true count's row divided by its support."""
    labels = list(confusion)
    counts = np.array([[int(confusion[t].get(q, 0)) for q in labels] for t in labels])
    support = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    return labels, counts, fractions


def confusion_plot(confusion: dict, title: str) -> bytes | None:
    """The matrix coloured and labelled by row percentage (the count below it): per-class
    recall reads down the diagonal whatever each class's size."""
    plt = _pyplot()
    if plt is None:
        return None
    labels, counts, fractions = row_normalised(confusion)
    fig, ax = plt.subplots(figsize=(5.8, 5.6))
    ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    for (i, j), fraction in np.ndenumerate(fractions):
        colour = "white" if fraction > 0.5 else "black"
        text = f"{100 * fraction:.0f}%\n({counts[i, j]})"
        ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted count")
    ax.set_ylabel("true count (row = 100%)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _png(fig, plt)


def curves_plot(curves: Sequence[dict[str, Any]], best: int | None, title: str) -> bytes | None:
    """Loss, accuracy and MAE per epoch, the exported (best) epoch marked on each."""
    plt = _pyplot()
    if plt is None or not curves:
        return None
    from matplotlib.ticker import MaxNLocator

    epochs = [c["epoch"] for c in curves]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    panels = (
        ("loss", ("train_loss", "val_loss")),
        ("accuracy", ("train_acc", "val_acc")),
        ("count MAE", ("val_mae",)),
    )
    for ax, (name, keys) in zip(axes, panels, strict=True):
        for key in keys:
            if all(key in c for c in curves):
                ax.plot(epochs, [c[key] for c in curves], marker="o", label=key)
        if best is not None:
            ax.axvline(best, color="tab:red", linestyle="--", label=f"best epoch {best}")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig, plt)


def trend_plot(points: Sequence[dict[str, Any]], title: str) -> bytes | None:
    """Accuracy and MAE version by version; the live version and this one marked."""
    plt = _pyplot()
    if plt is None or not points:
        return None
    x = range(len(points))
    names = [p["version"] for p in points]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, key, label in ((axes[0], "accuracy", "test accuracy"), (axes[1], "mae", "test MAE")):
        values = [p[key] for p in points]
        ax.plot(x, values, marker="o", color="tab:blue")
        for i, p in enumerate(points):
            if p["live"]:
                ax.plot(i, p[key], marker="*", markersize=15, color="tab:green", linestyle="")
                ax.annotate("live", (i, p[key]), textcoords="offset points", xytext=(0, 8))
            if p["current"]:
                ax.plot(i, p[key], marker="o", markersize=11, color="tab:red", linestyle="")
                ax.annotate("this", (i, p[key]), textcoords="offset points", xytext=(0, -15))
        ax.set_xticks(list(x), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig, plt)


# --- the page -------------------------------------------------------------------------------


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def trend_points(history: Sequence[dict[str, Any]], report: dict) -> list[dict[str, Any]]:
    """The history, with this evaluation appended as "this run" unless an entry is it."""
    points = [dict(h) for h in history]
    if not any(p["current"] for p in points):
        points.append(
            {
                "version": "this run",
                "accuracy": _accuracy(report),
                "mae": _mae(report),
                "live": False,
                "current": True,
            }
        )
    return points


def previous_live(history: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest live version that is not this one."""
    live = [h for h in history if h["live"] and not h["current"]]
    return live[-1] if live else None


def _accuracy(report: dict) -> float:
    return float(report["multiclass_classification_metrics"]["accuracy"]["value"])


def _mae(report: dict) -> float:
    return float(report["counting_metrics"]["mae"]["value"])


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def _figure(png: bytes | None, alt: str, missing: str) -> str:
    if png is None:
        return f'<p class="note">{html.escape(missing)}</p>'
    return f'<img class="plot" alt="{html.escape(alt)}" src="{data_uri(png)}">'


STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1160px;
 color:#1d2430;padding:0 16px}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid
 #d8dde6;padding-bottom:.2em}
.meta{color:#56617a}table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #d8dde6;padding:4px 10px;text-align:right}th{background:#f2f4f8}
td:first-child,th:first-child{text-align:left}.better{color:#18794e}.worse{color:#b42318}
.plot{max-width:100%;height:auto;display:block;margin:.5em 0}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.gallery figure{margin:0;width:160px;
 font-size:.8em;text-align:center}.gallery img{width:144px;height:144px;image-rendering:pixelated;
 border:1px solid #d8dde6}.note{color:#56617a;font-style:italic}
"""


def headline_rows(report: dict, live: dict[str, Any] | None) -> str:
    baseline = report.get("baseline", {})
    low, high = report.get("accuracy_confidence_interval_95", [None, None])
    counting = report["counting_metrics"]
    rows = [
        ("accuracy", _accuracy(report), baseline.get("accuracy"), live and live["accuracy"], 1),
        ("count MAE", _mae(report), baseline.get("mae"), live and live["mae"], -1),
        ("count RMSE", counting["rmse"]["value"], baseline.get("rmse"), None, -1),
        ("within-one accuracy", counting["within_one_accuracy"]["value"], None, None, 1),
        (
            "weighted F1",
            report["multiclass_classification_metrics"]["weighted_f1"]["value"],
            None,
            None,
            1,
        ),
    ]
    out = []
    for name, value, base, previous, sign in rows:
        cls = ""
        if previous is not None:
            delta = sign * (value - previous)
            cls = "better" if delta > 0 else "worse" if delta < 0 else ""
        extra = ""
        if name == "accuracy" and low is not None:
            extra = f" <small>(95% interval {low:.3f} to {high:.3f})</small>"
        out.append(
            f'<tr><td>{name}</td><td class="{cls}">{_fmt(float(value))}{extra}</td>'
            f"<td>{_fmt(None if base is None else float(base))}</td>"
            f"<td>{_fmt(None if previous is None else float(previous))}</td></tr>"
        )
    return "\n".join(out)


def build_page(
    report: dict,
    predictions: Predictions,
    test_dir: Path,
    curves: Sequence[dict[str, Any]] | None = None,
    history: Sequence[dict[str, Any]] = (),
    execution_id: str | None = None,
    best: int | None = None,
) -> tuple[str, dict[str, bytes]]:
    """(the HTML page, its plots as PNG by name: confusion, curves, trend — those drawn)."""
    model = report.get("model") or {}
    version = model.get("version")
    history = check_history(list(history))
    if curves is not None:
        curves = check_curves(list(curves), "training curves")
        best = best if best is not None else best_epoch(curves)
    metrics = report["multiclass_classification_metrics"]
    drawn = {
        "confusion": confusion_plot(
            metrics["confusion_matrix"],
            plot_title("Test confusion matrix, row-normalised", execution_id, version),
        ),
        "curves": curves_plot(
            curves or [], best, plot_title("Training curves", execution_id, version)
        ),
        "trend": trend_plot(
            trend_points(history, report),
            plot_title("Accuracy and MAE by model version", execution_id, version),
        ),
    }
    plots = {k: v for k, v in drawn.items() if v is not None}
    live = previous_live(history)
    no_matplotlib = "matplotlib is not installed where this page was built: plot left out"

    labels, counts, fractions = row_normalised(metrics["confusion_matrix"])
    per_class = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{100 * fractions[i, i]:.0f}%</td>"
        f"<td>{int(counts[i].sum())}</td></tr>"
        for i, t in enumerate(labels)
    )
    weakest = min(
        (i for i in range(len(labels)) if counts[i].sum()),
        key=lambda i: fractions[i, i],
        default=None,
    )
    weakest_line = (
        f"<p>Weakest class: count {html.escape(labels[weakest])} at "
        f"{100 * fractions[weakest, weakest]:.0f}% correct.</p>"
        if weakest is not None
        else ""
    )

    rows = worst_misclassified(predictions)
    pictures = thumbnails(test_dir, rows, predictions.ids) if rows else {}
    classes = predictions.classes
    gallery = "".join(
        f'<figure><img alt="test image {html.escape(predictions.ids[r])}" '
        f'src="{data_uri(pictures[r])}"><figcaption>{html.escape(predictions.ids[r])}<br>'
        f"true {int(predictions.truth[r])} · predicted {int(predictions.predicted[r])} "
        f"(p={predictions.probabilities[r][classes.index(int(predictions.predicted[r]))]:.2f})"
        f"</figcaption></figure>"
        for r in rows
    )
    if not rows:
        gallery = '<p class="note">No test image was misclassified.</p>'

    if curves is None:
        curves_html = (
            '<p class="note">This model archive carries no training curves (curves.json).</p>'
        )
    else:
        note = f"<p>Best epoch (the one exported): {best}.</p>" if best is not None else ""
        curves_html = note + _figure(plots.get("curves"), "training curves", no_matplotlib)

    trend_note = (
        ""
        if history
        else '<p class="note">No earlier versions were given: the trend shows this run only.</p>'
    )
    live_head = f"previous live ({html.escape(live['version'])})" if live else "previous live"
    live_note = "" if live else '<p class="note">No live version to compare with.</p>'
    majority = html.escape(str(report.get("baseline", {}).get("majority_class", "?")))
    title = f"Evaluation: execution {execution_id or 'unknown'}, model {version or 'unknown'}"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>Evaluation report</h1>
<p class="meta">execution <b id="execution">{html.escape(execution_id or "unknown")}</b> ·
model version <b id="model-version">{html.escape(str(version or "unknown"))}</b> ·
{html.escape(str(model.get("arch", "?")))} at {html.escape(str(model.get("image_size", "?")))} px
· {int(report.get("test_images", len(predictions.ids)))} test images</p>

<h2>Headline metrics</h2>
<table id="headline"><tr><th>metric</th><th>this model</th>
<th>majority baseline (count {majority})</th>
<th>{live_head}</th></tr>
{headline_rows(report, live)}
</table>{live_note}

<h2>Confusion matrix</h2>
{_figure(plots.get("confusion"), "confusion matrix, row-normalised", no_matplotlib)}
<table id="per-class"><tr><th>true count</th><th>correct</th><th>test images</th></tr>
{per_class}</table>{weakest_line}

<h2>Training curves</h2>
{curves_html}

<h2>Worst misclassified test images</h2>
<p>The most confident wrong answers: highest predicted probability on a wrong count.</p>
<div class="gallery" id="worst">{gallery}</div>

<h2>Version trend</h2>
{trend_note}{_figure(plots.get("trend"), "accuracy and MAE by version", no_matplotlib)}
</body></html>
"""
    return page, plots


def write_report_files(
    output_dir: Path,
    report: dict,
    predictions: Predictions,
    test_dir: Path,
    curves: Sequence[dict[str, Any]] | None = None,
    history: Sequence[dict[str, Any]] = (),
    execution_id: str | None = None,
    best: int | None = None,
    page_name: str = "report.html",
) -> Path:
    """Write curves.json and curves.png (when there are curves) and the page; its path."""
    page, plots = build_page(report, predictions, test_dir, curves, history, execution_id, best)
    if curves is not None:
        text = json.dumps(list(curves), indent=2) + "\n"
        write_atomic(output_dir / "curves.json", text.encode())
        if "curves" in plots:
            write_atomic(output_dir / "curves.png", plots["curves"])
    target = output_dir / page_name
    write_atomic(target, page.encode("utf-8"))
    return target


def resolve_execution(execution_id: str | None, version: str | None) -> str | None:
    """The execution the page names: the one given, else this processing job's (from its
    config on SageMaker), else the one whose Train made the model (its version names the
    training job)."""
    import os

    if execution_id:
        return execution_id
    resource_config = os.environ.get("SM_RESOURCE_CONFIG_PATH")
    config_dir = Path(resource_config).parent if resource_config else Path("/opt/ml/config")
    return execution_from_environment(config_dir) or execution_from_job_name(version or "")


def publish_report(
    output_dir: Path,
    report: dict,
    predictions: Predictions,
    test_dir: Path,
    curves: Sequence[dict[str, Any]] | None,
    meta: dict,
    execution_id: str | None = None,
    history: Path | None = None,
) -> Path:
    """Evaluate's one call: report.html (and curves.json/png) in `output_dir`."""
    return write_report_files(
        output_dir,
        report,
        predictions,
        test_dir,
        curves,
        read_history(history) if history else [],
        resolve_execution(execution_id, meta.get("version")),
        meta.get("best_epoch") if isinstance(meta.get("best_epoch"), int) else None,
    )


# --- command line ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--evaluation-dir",
        type=Path,
        required=True,
        help="Evaluate's output: evaluation.json, predictions.csv, curves.json",
    )
    p.add_argument("--test-dir", type=Path, required=True, help="Prepare's test shards")
    p.add_argument("--history", type=Path, help="JSON list of {version, accuracy, mae, live}")
    p.add_argument("--execution-id", help="the pipeline execution named on the page")
    p.add_argument("--output", type=Path, help="the page (default: EVALUATION_DIR/report.html)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        evaluation = args.evaluation_dir / "evaluation.json"
        try:
            report = json.loads(evaluation.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReportError(f"cannot read {evaluation}: {exc}") from None
        predictions = read_predictions(args.evaluation_dir / "predictions.csv")
        history = read_history(args.history) if args.history else []
        curves = read_curves(args.evaluation_dir)
        output = args.output or args.evaluation_dir / "report.html"
        page, _ = build_page(report, predictions, args.test_dir, curves, history, args.execution_id)
        write_atomic(output, page.encode("utf-8"))
    except ReportError as exc:
        print(f"report_page: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"report_page: evaluation.json lacks {exc}", file=sys.stderr)
        return 2
    print(f"report_page: {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
