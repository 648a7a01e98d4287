"""Statistics shared by the training-time baseline (baseline.py) and the monitor (monitor.py).

Everything is a running summary over fixed bins (count, sum, sum of squares, min, max and a
histogram), so a window of 10^5 images costs a few numbers, never a list of images, and the
baseline and a window are compared bin for bin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

# ITU-R 601 luma, the weights PIL's convert("L") uses: the baseline (numpy over decoded
# shards) and the monitor (over captured JPEGs) measure brightness the same way.
LUMA = (0.299, 0.587, 0.114)

# Brightness and contrast are measured on a STAT_SIDE x STAT_SIDE box-filtered thumbnail, in
# the baseline (from Prepare's S x S shards) and in the monitor (from the captured JPEG, decoded
# at the JPEG's cheapest draft scale): one scale for both, so within-image contrast, which
# shrinks as an image is scaled down, means the same in both, whatever S the model trained at;
# and decoding at 1/8 scale keeps the monitor at about a millisecond an image.
STAT_SIDE = 32

# Fixed bin edges, so that histograms of the baseline and of every window line up.
BRIGHTNESS_EDGES = [float(x) for x in range(0, 257, 16)]  # 0..256 in 16 levels
CONTRAST_EDGES = [float(x) for x in range(0, 129, 8)]  # luma std within an image
UNIT_EDGES = [i / 20 for i in range(21)]  # confidence in [0, 1]
ENTROPY_EDGES = [i * 0.1 for i in range(18)]  # nats; ln(5) = 1.609 is the most there is
BYTES_EDGES = [0.0, 5e3, 1e4, 2e4, 4e4, 8e4, 1.6e5, 3.2e5, 6.4e5, 1.28e6, 2.56e6, math.inf]
SIDE_EDGES = [0.0, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 4096, math.inf]

# Floor for an empty bin in PSI: ln(0) is undefined, and a bin nobody fell into in the
# baseline should cost a large but finite amount when the window fills it.
PSI_FLOOR = 1e-4


class Summary:
    """Running count/mean/std/min/max and a histogram over fixed edges."""

    def __init__(self, edges: Sequence[float]):
        self.edges = [float(e) for e in edges]
        self.counts = [0] * (len(self.edges) - 1)
        self.n = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.low = math.inf
        self.high = -math.inf

    def add(self, value: float) -> None:
        value = float(value)
        self.n += 1
        self.total += value
        self.total_sq += value * value
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        self.counts[self._bin(value)] += 1

    def add_many(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            return
        self.n += int(values.size)
        self.total += float(values.sum())
        self.total_sq += float(np.square(values).sum())
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        # Values past the last edge land in the last bin, below the first in the first.
        index = np.clip(
            np.searchsorted(self.edges, values, side="right") - 1, 0, len(self.counts) - 1
        )
        for i, c in enumerate(np.bincount(index, minlength=len(self.counts))):
            self.counts[i] += int(c)

    def _bin(self, value: float) -> int:
        index = int(np.searchsorted(self.edges, value, side="right")) - 1
        return min(max(index, 0), len(self.counts) - 1)

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def std(self) -> float | None:
        if not self.n:
            return None
        mean = self.total / self.n
        return math.sqrt(max(0.0, self.total_sq / self.n - mean * mean))

    def to_json(self) -> dict:
        return {
            "count": self.n,
            "mean": self.mean,
            "std": self.std,
            "min": self.low if self.n else None,
            "max": self.high if self.n else None,
            "sum": self.total,
            "histogram": {"edges": [_finite(e) for e in self.edges], "counts": list(self.counts)},
        }


def _finite(edge: float) -> float | str:
    """JSON has no infinity: the open last edge is written as the string "inf"."""
    return "inf" if math.isinf(edge) else edge


def luma(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] (or [H, W, 3]) -> float32 luma of the same leading shape, [.., H, W]."""
    rgb = np.asarray(images, dtype=np.float32)
    return rgb[..., 0] * LUMA[0] + rgb[..., 1] * LUMA[1] + rgb[..., 2] * LUMA[2]


def thumbnail(image: Image.Image) -> np.ndarray:
    """An RGB PIL image -> uint8 [STAT_SIDE, STAT_SIDE, 3], box-filtered (an average of the
    pixels each thumbnail pixel covers, so the mean brightness is kept)."""
    small = image.resize((STAT_SIDE, STAT_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def brightness_and_contrast(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: mean luma (0..255) and the luma's standard deviation within its thumbnail (a
    blank image has 0). uint8 [N, H, W, 3] -> two float64 [N]."""
    images = np.asarray(images, dtype=np.uint8)
    if images.shape[1:3] != (STAT_SIDE, STAT_SIDE):
        images = np.stack([thumbnail(Image.fromarray(im)) for im in images])
    y = luma(images)
    flat = y.reshape(y.shape[0], -1)
    return flat.mean(axis=1, dtype=np.float64), flat.std(axis=1, dtype=np.float64)


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of [N, K] probabilities."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=1)


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of `actual` against `expected` (counts or shares per bin):
    sum over bins of (a - e) * ln(a / e), shares floored at PSI_FLOOR."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError(f"psi needs two non-empty distributions of one shape: {e} vs {a}")
    e = np.maximum(e / e.sum(), PSI_FLOOR)
    a = np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))
