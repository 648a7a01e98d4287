"""Writes SM_MODEL_DIR in the layout SageMaker's PyTorch inference container serves:
model.pt, model.json, code/inference.py and the modules it imports, code/requirements.txt."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from atomic_files import write_atomic
from image_transforms import IMAGENET_MEAN, IMAGENET_STD
from model import COUNTS

HERE = Path(__file__).resolve().parent
# inference.py and everything it imports from this folder; nothing else is served.
SERVING_FILES = (
    "inference.py",
    "model.py",
    "image_transforms.py",
    "serving_errors.py",
    "requirements.txt",
)


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over parameter names and bytes: the same weights give the same version."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(name.encode())
        h.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def model_version(digest: str) -> str:
    """`<training job>-<digest[:12]>` on SageMaker, the bare digest prefix elsewhere."""
    job = os.environ.get("TRAINING_JOB_NAME", "")
    if not job and os.environ.get("SM_TRAINING_ENV"):
        try:
            job = json.loads(os.environ["SM_TRAINING_ENV"]).get("job_name", "") or ""
        except ValueError:
            job = ""
    return f"{job}-{digest[:12]}" if job else digest[:12]


def export_model_dir(
    model_dir: Path,
    state_dict: dict[str, torch.Tensor],
    arch: str,
    image_size: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the served artefacts into `model_dir`; returns model.json's content."""
    model_dir.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().cpu() for k, v in state_dict.items()}
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    write_atomic(model_dir / "model.pt", buf.getvalue())

    meta: dict[str, Any] = {
        "arch": arch,
        "image_size": image_size,
        "counts": list(COUNTS),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "version": model_version(weights_digest(state_dict)),
        **(extra or {}),
    }
    write_atomic(model_dir / "model.json", (json.dumps(meta, indent=2) + "\n").encode())

    code = model_dir / "code"
    code.mkdir(exist_ok=True)
    for name in SERVING_FILES:
        write_atomic(code / name, (HERE / name).read_bytes())
    return meta
