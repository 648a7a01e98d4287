"""Writes SM_MODEL_DIR in the layout SageMaker's PyTorch inference container serves:
model.pt, model.json, code/inference.py and the modules it imports, code/requirements.txt
(from serving_requirements.txt: a requirements.txt in training/ would be pip-installed by the
training toolkit on every Train).

Nothing is written for weights that are not finite, or whose outputs on a probe batch (the
validation images, when the trainer has them) are not: a diverged model is never exported."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from atomic_files import write_atomic
from divergence import nonfinite_names
from image_transforms import IMAGENET_MEAN, IMAGENET_STD, to_model_input
from model import COUNTS, NUM_CLASSES, build_model

HERE = Path(__file__).resolve().parent
# code/<name> in the model dir: inference.py and everything it imports from this folder, and
# the serving requirements; nothing else is served.
SERVING_FILES = (
    "inference.py",
    "model.py",
    "image_transforms.py",
    "serving_errors.py",
    "serving_runtime.py",
    "omp_policy.py",
    # model.py imports it only to load ImageNet weights in training; shipped so that every
    # import model.py can reach resolves inside code/ too.
    "weights.py",
    "requirements.txt",
)
# Where a served file comes from in training/ when its name there differs.
SERVING_SOURCES = {"requirements.txt": "serving_requirements.txt"}
PROBE_IMAGES = 16  # enough to meet an overflow; a CPU forward of them takes about a second


class NotExportable(ValueError):
    """Weights, or outputs on the probe batch, that are NaN or infinite."""


def probe_outputs(
    state_dict: dict[str, torch.Tensor], arch: str, image_size: int, images: torch.Tensor
) -> torch.Tensor:
    """The model's logits, in eval mode on the CPU, for uint8 NHWC `images`."""
    net = build_model(arch, pretrained=False, num_classes=NUM_CLASSES)
    net.load_state_dict(state_dict)
    net.eval()
    with torch.inference_mode():
        return net(to_model_input(images[:PROBE_IMAGES].cpu(), image_size))


def check_finite(
    state_dict: dict[str, torch.Tensor], arch: str, image_size: int, probe: torch.Tensor | None
) -> None:
    """NotExportable unless the weights and their outputs on `probe` (or, without one, on a
    fixed random batch) are all finite."""
    bad = nonfinite_names(state_dict)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise NotExportable(f"the weights hold NaN or infinite values ({shown})")
    if probe is None:
        gen = torch.Generator().manual_seed(0)
        shape = (4, image_size, image_size, 3)
        probe = torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
    logits = probe_outputs(state_dict, arch, image_size, probe)
    if not bool(torch.isfinite(logits).all()):
        raise NotExportable(
            f"its outputs on {len(logits)} probe images are NaN or infinite "
            "although its weights are finite"
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
    probe: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Write the served artefacts into `model_dir`; returns model.json's content.

    `probe`: uint8 [N, S, S, 3] images the model must answer with finite outputs (the first
    PROBE_IMAGES are used). NotExportable, with nothing written, otherwise."""
    state_dict = {k: v.detach().cpu() for k, v in state_dict.items()}
    check_finite(state_dict, arch, image_size, probe)
    model_dir.mkdir(parents=True, exist_ok=True)
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
        write_atomic(code / name, serving_source(name).read_bytes())
    return meta


def serving_source(name: str) -> Path:
    """The file in training/ that becomes code/`name`."""
    return HERE / SERVING_SOURCES.get(name, name)
