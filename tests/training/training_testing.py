"""Helpers for the training and serving tests: `train.py` run the way SageMaker's training
toolkit runs it, and the serving code imported from a model dir's code/ folder."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from model_export import SERVING_FILES

REPO = Path(__file__).resolve().parents[2]
TRAIN_PY = REPO / "training" / "train.py"
METRICS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_mae",
    "lr",
    "images_per_s",
    "data_wait_s",
)
# Exactly the pattern the pipeline's metric definitions give SageMaker, one per metric.
METRIC_REGEX = r"\b{name}=([-+0-9.eE]+|nan|inf)"
# A small run: 6 epochs of 320 images at 32 px take a few CPU seconds and learn to count.
EPOCHS = 6
HYPERPARAMETERS = {
    "epochs": str(EPOCHS),
    "arch": "smallcnn",
    "batch_size": "32",
    "learning_rate": "0.003",
    "pretrained": "false",
    "seed": "7",
    "patience": "0",
    "num_threads": "1",
    # The shared splits are 320 and 80 images: below the production minimums on purpose.
    "min_train_images": "8",
    "min_validation_images": "8",
}
# The same minimums for tests that call train.main() with their own small splits.
SMALL_SPLITS = ["--min_train_images", "8", "--min_validation_images", "8"]


@dataclass
class TrainingRun:
    """One `train.py` process and the folders it was given."""

    root: Path
    model_dir: Path
    output_dir: Path
    checkpoint_dir: Path
    returncode: int
    stdout: str
    stderr: str

    def metric(self, name: str) -> list[float]:
        """Every value SageMaker's metric definition for `name` would scrape from stdout."""
        return [float(v) for v in re.findall(METRIC_REGEX.format(name=name), self.stdout)]


def sm_environment(
    root: Path, train: Path, validation: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment SageMaker's training toolkit gives a single-host CPU job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "BINCOUNT_"))}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TRAINING_JOB_NAME"):
        env.pop(name, None)
    env.update(
        SM_CHANNEL_TRAIN=str(train),
        SM_CHANNEL_VALIDATION=str(validation),
        SM_MODEL_DIR=str(root / "model"),
        SM_OUTPUT_DATA_DIR=str(root / "output" / "data"),
        SM_NUM_GPUS="0",
        SM_HOSTS='["algo-1"]',
        SM_CURRENT_HOST="algo-1",
        # No pretrained weights from a developer's cache, and none fetched.
        TORCH_HOME=str(root / "torch-home"),
        PYTHONUNBUFFERED="1",
        **(extra or {}),
    )
    return env


def run_train(
    root: Path,
    data: Path,
    hyperparameters: dict[str, str] | None = None,
    *extra_args: str,
    checkpoint_dir: Path | None = None,
) -> TrainingRun:
    """`python train.py --name value ...` in its own process, as the toolkit launches it."""
    root.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = checkpoint_dir or root / "checkpoints"
    args: list[str] = []
    for name, value in {**HYPERPARAMETERS, **(hyperparameters or {})}.items():
        args += [f"--{name}", value]
    args += ["--checkpoint_dir", str(checkpoint_dir), *extra_args]
    proc = subprocess.run(
        [sys.executable, str(TRAIN_PY), *args],
        env=sm_environment(root, data / "train", data / "validation"),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return TrainingRun(
        root=root,
        model_dir=root / "model",
        output_dir=root / "output" / "data",
        checkpoint_dir=checkpoint_dir,
        returncode=proc.returncode,
        stdout=proc.stdout,
        stderr=proc.stderr,
    )


@dataclass
class Serving:
    """inference.py as the container imports it, and the error type it raises."""

    inference: ModuleType
    error_type: type[Exception]
    model_dir: Path


def import_serving_code(code_dir: Path) -> Serving:
    """Import inference.py from `code_dir` with its own sibling modules, as SageMaker's
    inference toolkit does (code/ first on sys.path), then give back the previous modules so
    the rest of the session keeps training/'s copies."""
    names = [Path(f).stem for f in SERVING_FILES if f.endswith(".py")]
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    sys.path.insert(0, str(code_dir))
    try:
        inference = importlib.import_module("inference")
        errors = sys.modules["serving_errors"]
        for name in (n for n in names if n in sys.modules):  # weights.py: training only
            module_file = Path(sys.modules[name].__file__ or "").resolve()
            assert module_file.parent == code_dir.resolve(), f"{name} came from {module_file}"
        return Serving(inference, errors.ServingError, code_dir.parent)
    finally:
        sys.path.remove(str(code_dir))
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
