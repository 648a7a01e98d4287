"""The monitoring baseline, written at training time by Evaluate next to evaluation.json.

    baseline = build_baseline(images_batches, probabilities, report_dir)
    write_baseline(output_dir / "baseline.json", baseline)

What the monitor (monitor.py) compares each window of captured traffic against: the test
split's predicted-count distribution, confidence and entropy (the model under test on data
it never trained on), the test images' brightness and contrast, and, from Prepare's
manifests when they carry them, the original JPEGs' bytes and sides. It is registered with
the model version (the model package's DriftCheckBaselines), so a deployed schedule always
compares against the baseline of the version it watches.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from atomic_io import write_atomic
from monitor_stats import (
    BRIGHTNESS_EDGES,
    BYTES_EDGES,
    CONTRAST_EDGES,
    ENTROPY_EDGES,
    SIDE_EDGES,
    UNIT_EDGES,
    Summary,
    brightness_and_contrast,
    entropy,
)

KIND = "bincount-monitoring-baseline"
FORMAT_VERSION = 1
BASELINE_FILE = "baseline.json"


class BaselineError(ValueError):
    """The inputs cannot make a baseline; the message says which and why."""


def build_baseline(
    images_batches: Iterable[np.ndarray],
    probabilities: np.ndarray,
    report_dir: Path | str | None,
    classes: list[int] | None = None,
) -> dict:
    """The baseline as a JSON-ready dict.

    images_batches: uint8 NHWC batches of the test split, in the order of `probabilities`.
    probabilities: [N, K] predicted probabilities, column i for count classes[i] (default
    1..K). report_dir: Prepare's report folder (manifest-*.csv) or None.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
        raise BaselineError(f"probabilities must be a non-empty [N, K] array, not {probs.shape}")
    if not np.all(np.isfinite(probs)):
        raise BaselineError("probabilities hold non-finite values")
    classes = list(classes) if classes is not None else list(range(1, probs.shape[1] + 1))
    if len(classes) != probs.shape[1]:
        raise BaselineError(f"{len(classes)} classes for {probs.shape[1]} probability columns")

    brightness, contrast = Summary(BRIGHTNESS_EDGES), Summary(CONTRAST_EDGES)
    images = 0
    image_size = None
    for batch in images_batches:
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            raise BaselineError(
                f"image batches must be uint8 [N, H, W, 3], not {batch.dtype} {batch.shape}"
            )
        image_size = image_size or [int(batch.shape[1]), int(batch.shape[2])]
        mean, spread = brightness_and_contrast(batch)
        brightness.add_many(mean)
        contrast.add_many(spread)
        images += batch.shape[0]
    if images != probs.shape[0]:
        raise BaselineError(
            f"{images} test images but {probs.shape[0]} rows of probabilities: they must be "
            "the same images in the same order"
        )

    predicted = np.asarray(classes)[probs.argmax(axis=1)]
    confidence, spread_of = Summary(UNIT_EDGES), Summary(ENTROPY_EDGES)
    confidence.add_many(probs.max(axis=1))
    spread_of.add_many(entropy(probs))
    return {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "images": images,
        "image_size": image_size,
        "classes": classes,
        "predicted_counts": {str(c): int(np.sum(predicted == c)) for c in classes},
        "confidence": confidence.to_json(),
        "entropy": spread_of.to_json(),
        "brightness": brightness.to_json(),
        "contrast": contrast.to_json(),
        **manifest_statistics(report_dir),
    }


def manifest_statistics(report_dir: Path | str | None) -> dict:
    """bytes/width/height of the original JPEGs over every manifest row (all splits: one
    sample of the source the endpoint will see). Older manifests lack those columns: the
    statistics are then None and the monitor reports those inputs without a comparison."""
    out: dict = {"jpeg_bytes": None, "width": None, "height": None, "manifest_rows": 0}
    if report_dir is None:
        return out
    manifests = sorted(Path(report_dir).glob("manifest-*.csv"))
    summaries = {"bytes": Summary(BYTES_EDGES), "width": Summary(SIDE_EDGES)}
    summaries["height"] = Summary(SIDE_EDGES)
    rows = 0
    for manifest in manifests:
        with manifest.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            present = [c for c in summaries if c in (reader.fieldnames or [])]
            for line, row in enumerate(reader, start=2):
                rows += 1
                for column in present:
                    text = (row.get(column) or "").strip()
                    if not text:
                        continue
                    try:
                        summaries[column].add(float(text))
                    except ValueError:
                        raise BaselineError(
                            f"{manifest.name} line {line}: {column} {text!r} is not a number"
                        ) from None
    out["manifest_rows"] = rows
    for column, key in (("bytes", "jpeg_bytes"), ("width", "width"), ("height", "height")):
        if summaries[column].n:
            out[key] = summaries[column].to_json()
    return out


def write_baseline(path: Path | str, baseline: dict) -> Path:
    """baseline.json (temp name + rename)."""
    path = Path(path)
    write_atomic(path, (json.dumps(baseline, indent=2) + "\n").encode())
    return path


def load_baseline(path: Path | str) -> dict:
    """A baseline.json, checked; BaselineError naming the file and what is wrong."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"baseline {path} does not exist") from None
    except (OSError, UnicodeError, ValueError) as error:
        raise BaselineError(f"baseline {path} is not readable JSON: {error}") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise BaselineError(f"{path} is not a bincount monitoring baseline (kind {KIND!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BaselineError(
            f"{path} has format_version {doc.get('format_version')!r}; this monitor reads "
            f"{FORMAT_VERSION}"
        )
    for key in ("classes", "predicted_counts", "confidence", "entropy", "brightness", "contrast"):
        if key not in doc:
            raise BaselineError(f"baseline {path} lacks {key!r}")
    return doc
