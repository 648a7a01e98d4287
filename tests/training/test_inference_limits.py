"""What one request may cost, and images that decoded wrongly: 16-bit PNGs, batch errors."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from training_testing import Serving


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG of uint16 [H, W, C] (C = 1 grey, 3 RGB), written by hand: PIL cannot."""
    height, width, channels = array.shape
    colour_type = {1: 0, 3: 2}[channels]
    raw = b"".join(b"\0" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def batch(*images: bytes) -> bytes:
    instances = [{"b64": base64.b64encode(image).decode()} for image in images]
    return json.dumps({"instances": instances}).encode()


def grey_ramp(size: int = 64) -> np.ndarray:
    """uint16 [size, size] from 0 to 65535 across the columns."""
    return np.tile(np.linspace(0, 65535, size).astype(np.uint16), (size, 1))


def test_a_16_bit_grey_png_is_scaled_to_8_bits_not_clipped_to_white(serving: Serving):
    ramp = grey_ramp()
    decoded = serving.inference.decode_image(png16(ramp[..., None]), 64)
    expected = (ramp >> 8).astype(np.uint8)
    assert np.array_equal(decoded[..., 0], expected)
    assert np.array_equal(decoded[..., 0], decoded[..., 2])
    assert decoded.min() == 0  # clipping made every pixel above 255 white


def test_a_16_bit_png_decodes_like_its_8_bit_twin(serving: Serving):
    ramp = grey_ramp()
    rgb16 = np.stack([ramp, ramp // 2, 65535 - ramp], axis=-1)
    twin = (rgb16 >> 8).astype(np.uint8)
    for sixteen, eight in ((rgb16, twin), (ramp[..., None], twin[..., 0])):
        served = serving.inference.input_fn(png16(sixteen), "image/png")
        assert np.array_equal(served.numpy(), serving.inference.input_fn(png(eight), "image/png"))


@pytest.mark.parametrize("bad", [0, 1, 2])
def test_a_bad_image_in_a_batch_is_named_by_its_index(serving: Serving, bad: int):
    good = png(np.full((32, 32, 3), 90, np.uint8))
    images = [good, good, good]
    images[bad] = b"\x89PNG\r\n\x1a\nnot really"
    with pytest.raises(serving.error_type) as refused:
        serving.inference.input_fn(batch(*images), "application/json")
    assert refused.value.status_code == 400
    assert refused.value.message.startswith(f"image {bad} is not a readable JPEG or PNG")


def test_a_lone_bad_image_is_the_image(serving: Serving):
    with pytest.raises(serving.error_type) as refused:
        serving.inference.input_fn(b"\x89PNG\r\n\x1a\nnot really", "image/png")
    assert refused.value.message.startswith("the image is not a readable JPEG or PNG")


def test_a_request_over_the_pixel_budget_is_413_before_any_pixel_is_decoded(
    serving: Serving, monkeypatch
):
    inference = serving.inference
    side = 3000  # each image is under MAX_PIXELS; together they are far over the budget
    assert side * side <= inference.MAX_PIXELS
    big = png(np.zeros((side, side, 3), np.uint8))  # flat: a few kB each
    count = inference.MAX_REQUEST_PIXELS // (side * side) + 1

    def never(*args, **kwargs):
        raise AssertionError("decoded although the request was over budget")

    monkeypatch.setattr(inference, "finish_decode", never)
    with pytest.raises(serving.error_type) as refused:
        inference.input_fn(batch(*[big] * count), "application/json")
    assert refused.value.status_code == 413
    total = count * side * side
    assert f"decode to {total} pixels" in refused.value.message
    assert str(inference.MAX_REQUEST_PIXELS) in refused.value.message


def test_the_budget_counts_jpeg_pixels_at_the_draft_scale(serving: Serving):
    """A batch of large JPEGs decodes at 1/8 scale: its cost, not its header size, counts."""
    inference = serving.inference
    buf = io.BytesIO()
    Image.new("RGB", (4000, 4000), (10, 200, 30)).save(buf, format="JPEG")
    count = inference.MAX_REQUEST_PIXELS // (4000 * 4000) + 2  # over budget by header size
    images = inference.input_fn(batch(*[buf.getvalue()] * count), "application/json")
    assert images.shape[0] == count
