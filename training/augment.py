"""Batched on-device augmentation for uint8 images, driven by an explicit generator.

Flips and small shifts do not change how many items a bin holds; brightness and contrast
jitter cover lighting. All of it runs as a few tensor ops per batch on whatever device
holds the batch, so augmentation never bottlenecks a GPU or spends CPU per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment_batch(
    x: torch.Tensor,
    gen: torch.Generator,
    max_shift: float = 0.08,
    brightness: float = 0.2,
    contrast: float = 0.2,
) -> torch.Tensor:
    """Float NCHW in [0, 1] -> randomly flipped, shifted and colour-jittered copy."""
    n = x.shape[0]
    # Random numbers come from `gen` on the CPU (reproducible across devices), then move.
    flips = torch.randint(0, 2, (n, 2), generator=gen).float() * 2 - 1
    shifts = (torch.rand(n, 2, generator=gen) * 2 - 1) * max_shift * 2  # grid units span 2
    gains = 1 + (torch.rand(n, generator=gen) * 2 - 1) * contrast
    offsets = (torch.rand(n, generator=gen) * 2 - 1) * brightness

    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = flips[:, 0]
    theta[:, 1, 1] = flips[:, 1]
    theta[:, :, 2] = shifts
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    gains = gains.to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1)
    offsets = offsets.to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * gains + mean + offsets).clamp_(0.0, 1.0)
