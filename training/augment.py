"""Batched on-device augmentation for uint8 images, driven by an explicit generator.

Flips and small shifts do not change how many items a bin holds; brightness and contrast
jitter cover lighting. All of it runs as a few tensor ops per batch on whatever device
holds the batch, so augmentation never bottlenecks a GPU or spends CPU per image. Flips and
shifts move whole uint8 pixels (a quarter of float's bytes, no interpolation); the jitter,
its clipping and the normalisation are one multiply-add and one clamp, so that a CPU keeps up
too.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from image_transforms import IMAGENET_MEAN, IMAGENET_STD, resize_batch


def augment_batch(
    images: torch.Tensor,
    gen: torch.Generator,
    image_size: int | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    max_shift: float = 0.08,
    brightness: float = 0.2,
    contrast: float = 0.2,
) -> torch.Tensor:
    """uint8 NHWC -> randomly flipped, shifted and colour-jittered model input: float NCHW
    (channels_last in memory) at `image_size` (default: as given), normalised by mean/std.

    Equivalent to jittering x in [0, 1] as clamp((x - m) * gain + m + offset, 0, 1), m the
    image's mean, then normalising with `to_model_input`'s (x - mean) / std.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N, H, W, 3], got {images.dtype} {list(images.shape)}")
    n, height, width, _ = images.shape
    # Random numbers come from `gen` on the CPU (reproducible across devices), then move.
    flips = torch.randint(0, 2, (n, 2), generator=gen).bool()
    shifts = (torch.rand(n, 2, generator=gen) * 2 - 1) * max_shift  # fraction of the side
    gains = 1 + (torch.rand(n, generator=gen) * 2 - 1) * contrast
    offsets = (torch.rand(n, generator=gen) * 2 - 1) * brightness

    rows = _source_indices(height, flips[:, 1], shifts[:, 1])
    cols = _source_indices(width, flips[:, 0], shifts[:, 0])
    # Rows move as whole contiguous lines: one gather for the batch. Columns would be a
    # gather of 3-byte pixels; they move instead as a few slices per image (see _runs).
    lines = (rows + torch.arange(n)[:, None] * height).reshape(-1).to(images.device)
    by_row = images.reshape(n * height, width * 3).index_select(0, lines)
    by_row = by_row.view(n, height, width, 3)
    moved = torch.empty_like(images)
    for i, runs in enumerate(_runs(cols)):
        for start, end, lowest, forward in runs:
            piece = by_row[i, :, lowest : lowest + end - start]
            moved[i, :, start:end] = piece if forward else piece.flip(1)
    x = moved.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
    if image_size and x.shape[-2:] != (image_size, image_size):
        x = resize_batch(x.div_(255.0), image_size).mul_(255.0)
        x = x.contiguous(memory_format=torch.channels_last)

    # With x in 0..255: z = clamp(x * scale + shift, lo, hi), one scale and shift per image
    # and channel; the clamp to [0, 1] before normalising becomes per-channel bounds after.
    dev, dt = x.device, x.dtype
    gains = gains.to(dev, dt).view(n, 1, 1, 1)
    offsets = offsets.to(dev, dt).view(n, 1, 1, 1)
    m = torch.tensor(mean, device=dev, dtype=dt).view(1, 3, 1, 1)
    s = torch.tensor(std, device=dev, dtype=dt).view(1, 3, 1, 1)
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True) / 255
    scale = gains / (255 * s)
    shift = (image_mean * (1 - gains) + offsets - m) / s
    torch.addcmul(shift, x, scale, out=x)
    return x.clamp_(min=-m / s, max=(1 - m) / s)


def _source_indices(size: int, flip: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """[N, size] source pixel of each output pixel: mirrored where `flip`, moved by
    `shift` x size pixels, reflected back inside the image at the borders."""
    pos = torch.arange(size)
    src = torch.where(flip[:, None], size - 1 - pos, pos) + (shift * size).round().long()[:, None]
    if size == 1:
        return torch.zeros_like(src)
    period = 2 * (size - 1)
    src = src.remainder(period)
    return torch.where(src >= size, period - src, src)


def _runs(index: torch.Tensor) -> list[list[tuple[int, int, int, bool]]]:
    """For each row of `index` [N, W] (source positions stepping by +1 or -1, as
    _source_indices makes them): the stretches that step one way, as (start, end, lowest
    source, forward), so that each is copied as one slice (reversed when not forward)."""
    steps = index.diff(dim=1)
    turns = steps[:, 1:] != steps[:, :-1]
    out = []
    for row, turn in zip(index.tolist(), turns, strict=True):
        cuts = [0, *(turn.nonzero().flatten() + 2).tolist(), len(row)]
        out.append(
            [(a, b, min(row[a], row[b - 1]), row[b - 1] >= row[a]) for a, b in pairwise(cuts)]
        )
    return out
