"""Ordinal counting loss: cross-entropy plus a penalty on the softmax-expected count."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from model import expected_count
from torch import nn


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (mean 1 over present classes) so rare counts still matter."""
    freq = torch.bincount(labels, minlength=num_classes).float()
    weights = torch.where(freq > 0, freq.sum() / (num_classes * freq.clamp(min=1)), 0.0)
    present = weights > 0
    return weights / weights[present].mean() if present.any() else torch.ones(num_classes)


class OrdinalCountLoss(nn.Module):
    """CE(weights) + count_weight * SmoothL1(expected count, true count).

    Cross-entropy alone treats predicting 1 for a 5 like predicting 4; the expected-count
    term makes near misses cheaper than far ones.
    """

    def __init__(self, weights: torch.Tensor | None = None, count_weight: float = 0.5):
        super().__init__()
        self.register_buffer("weights", weights if weights is not None else torch.empty(0))
        self.count_weight = count_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        weight = self.weights if self.weights.numel() else None
        ce = F.cross_entropy(logits, target, weight=weight)
        if self.count_weight == 0:
            return ce
        true_count = (target + 1).float()  # class index i is count i + 1
        return ce + self.count_weight * F.smooth_l1_loss(expected_count(logits), true_count)
