"""The counting networks: torchvision ResNets and a small CNN for CPU runs."""

from __future__ import annotations

import torch
from torch import nn

ARCHS = ("resnet18", "resnet34", "resnet50", "smallcnn")
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


def build_model(arch: str, pretrained: bool = False, num_classes: int = NUM_CLASSES) -> nn.Module:
    """The network `arch` with a `num_classes` head; ImageNet weights when asked and reachable."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    if arch == "smallcnn":
        if pretrained:
            print("pretrained: smallcnn has no ImageNet weights; training it from scratch")
        return SmallCNN(num_classes)

    import torchvision

    factory = getattr(torchvision.models, arch)
    net = None
    if pretrained:
        try:
            net = factory(weights="IMAGENET1K_V1")
        except Exception as exc:  # offline, proxy, corrupt cache: train from scratch instead
            first_line = (str(exc).splitlines() or [""])[0][:200]
            print(
                f"pretrained: could not load ImageNet weights for {arch} ({first_line}); "
                "training from scratch"
            )
    if net is None:
        net = factory(weights=None)
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return net


def expected_count(logits: torch.Tensor) -> torch.Tensor:
    """Softmax-weighted count per row: what the ordinal loss and MAE reason about."""
    counts = torch.tensor(COUNTS, dtype=torch.float32, device=logits.device)
    return logits.float().softmax(dim=1) @ counts
