"""Pixel preprocessing shared by training and serving, so both see images the same way.

Images travel as uint8 RGB; the model sees float NCHW normalised with ImageNet statistics
(the pretrained ResNets expect them, and they do no harm to a model trained from scratch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_model_input(
    images: torch.Tensor,
    image_size: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 [N, H, W, 3] (any device) -> normalised float [N, 3, S, S] on the same device."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N, H, W, 3], got {images.dtype} {list(images.shape)}")
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    x = resize_batch(x, image_size)
    return normalise(x, mean, std, channels_last, inplace=True)


def resize_batch(x: torch.Tensor, image_size: int) -> torch.Tensor:
    """Square-resize float NCHW in [0, 1] when its size differs from the model's."""
    if x.shape[-2:] == (image_size, image_size):
        return x
    return F.interpolate(
        x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
    ).clamp_(0.0, 1.0)


def normalise(
    x: torch.Tensor,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    channels_last: bool = False,
    inplace: bool = False,
) -> torch.Tensor:
    """Float NCHW in [0, 1] -> (x - mean) / std, optionally in channels_last memory order
    (`inplace`: overwrite x, which the caller no longer needs)."""
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    # In place on a batch the caller made for the purpose: a fresh batch-sized tensor costs
    # more (page faults) than the arithmetic.
    x = x.sub_(m).div_(s) if inplace else (x - m) / s
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
