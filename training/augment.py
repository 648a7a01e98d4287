"""Batched on-device augmentation for uint8 images, driven by an explicit generator.

Random resized crops (the recipe of the best published result on this dataset), flips both
ways and brightness/contrast jitter: none of them changes how many items a bin holds as long
as the crop keeps most of the bin, so crops take 60-100% of the area by default, not
torchvision's 8-100%. The crop, the flips and the resize to the model's size are one affine
grid and one `grid_sample` for the whole batch; the jitter, its clipping and the
normalisation are one multiply-add and one clamp. A few tensor ops per batch on whatever
device holds it: augmentation never bottlenecks a GPU, nor spends CPU per image.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from image_transforms import IMAGENET_MEAN, IMAGENET_STD


def augment_batch(
    images: torch.Tensor,
    gen: torch.Generator,
    image_size: int | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    scale: tuple[float, float] = (0.6, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    brightness: float = 0.2,
    contrast: float = 0.2,
) -> torch.Tensor:
    """uint8 NHWC -> a random crop of `scale` of the area with aspect `ratio`, flipped at
    random both ways, resized to `image_size` (default: as given) and colour-jittered, as
    model input: float NCHW (channels_last in memory), normalised by mean/std.

    The jitter is clamp((x - m) * gain + m + offset, 0, 1) on x in [0, 1], m the image's mean,
    then `to_model_input`'s (x - mean) / std.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N, H, W, 3], got {images.dtype} {list(images.shape)}")
    n, height, width, _ = images.shape
    out_h, out_w = (image_size, image_size) if image_size else (height, width)
    # Random numbers come from `gen` on the CPU (reproducible across devices), then move.
    area = scale[0] + torch.rand(n, generator=gen) * (scale[1] - scale[0])
    log_ratio = math.log(ratio[0]) + torch.rand(n, generator=gen) * math.log(ratio[1] / ratio[0])
    aspect = log_ratio.exp()
    # Crop sides as fractions of the image's; a side past 1 is cut back (the area shrinks).
    crop_w = (area * aspect).sqrt().clamp(max=1.0)
    crop_h = (area / aspect).sqrt().clamp(max=1.0)
    centre = (torch.rand(n, 2, generator=gen) * 2 - 1) * torch.stack([1 - crop_w, 1 - crop_h], 1)
    flips = 1 - 2 * torch.randint(0, 2, (n, 2), generator=gen)  # -1 (drawn 1) mirrors
    gains = 1 + (torch.rand(n, generator=gen) * 2 - 1) * contrast
    offsets = (torch.rand(n, generator=gen) * 2 - 1) * brightness

    # One small host tensor of every draw, copied to the device once and asynchronously
    # (a pageable copy per constant would make the CPU wait for the GPU each time).
    draws = torch.stack(
        [crop_w * flips[:, 0], crop_h * flips[:, 1], centre[:, 0], centre[:, 1], gains, offsets],
        dim=1,
    )
    dev = images.device
    if dev.type == "cuda":
        draws = draws.pin_memory().to(dev, non_blocking=True)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 1, 1] = draws[:, 0], draws[:, 1]
    theta[:, 0, 2], theta[:, 1, 2] = draws[:, 2], draws[:, 3]
    x = images.permute(0, 3, 1, 2).float()
    grid = F.affine_grid(theta, [n, 3, out_h, out_w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    x = x.contiguous(memory_format=torch.channels_last)

    # With x in 0..255: z = clamp(x * scale + shift, lo, hi), one scale and shift per image
    # and channel; the clamp to [0, 1] before normalising becomes per-channel bounds after.
    dt = x.dtype
    gains = draws[:, 4].to(dt).view(n, 1, 1, 1)
    offsets = draws[:, 5].to(dt).view(n, 1, 1, 1)
    m, s = _mean_std(mean, std, dev, dt)
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True) / 255
    per_pixel = gains / (255 * s)
    shift = (image_mean * (1 - gains) + offsets - m) / s
    torch.addcmul(shift, x, per_pixel, out=x)
    return x.clamp_(min=-m / s, max=(1 - m) / s)


@functools.cache
def _mean_std(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalisation constants on `device`, made once (not copied over every batch)."""
    m = torch.tensor(mean, dtype=dtype).view(1, 3, 1, 1).to(device)
    s = torch.tensor(std, dtype=dtype).view(1, 3, 1, 1).to(device)
    return m, s
