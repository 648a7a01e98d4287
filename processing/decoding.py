"""JPEG bytes -> uint8 [S, S, 3] RGB, using the JPEG decoder's own downscaling."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError


class BadImage(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_photo(data: bytes, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(size x size RGB pixels, the original (width, height)); BadImage(reason, detail) when
    that is impossible. The original sides are the header's, read before draft() scales."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            original = image.size
            # draft() makes libjpeg decode at 1/2, 1/4 or 1/8 scale: most of the speed. Asking
            # for 80% of the size lets a ~500x400 photo decode at half scale for 224 px (then
            # at most 1.25x upscaling on one side, invisible after the bilinear resize).
            floor = max(1, (size * 4) // 5)
            image.draft("RGB", (floor, floor))
            rgb = image.convert("RGB")
    except UnidentifiedImageError as err:
        raise BadImage("corrupt_image", "not a recognisable image file") from err
    except Exception as err:  # PIL raises many types for damaged files; all mean "skip"
        text = str(err) or type(err).__name__
        reason = "truncated_image" if "truncated" in text.lower() else "corrupt_image"
        raise BadImage(reason, text) from err
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8), original


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Decode and resize to size x size RGB; BadImage(reason, detail) when that is impossible."""
    return decode_photo(data, size)[0]
