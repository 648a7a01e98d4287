"""Numbers that have gone wrong: a loss, weights or outputs that are NaN or infinite.

Training stops at the first one (an all-NaN model must never be exported with exit 0), and
model_export refuses weights or outputs that are not finite.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


class TrainingDiverged(RuntimeError):
    """The loss, the weights or the validation outputs became NaN or infinite."""


def nonfinite_names(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return [
        name
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def remedy(learning_rate: float) -> str:
    """What to change: the learning rate first, the data second."""
    return f"lower the learning rate (LearningRate, was {learning_rate:g}) or check the data"
