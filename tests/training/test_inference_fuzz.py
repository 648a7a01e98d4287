"""Fuzzing the request path: whatever arrives, input_fn answers with a batch of images or a
ServingError of status 400, 413 or 415, quickly; never any other exception."""

from __future__ import annotations

import base64
import faulthandler
import io
import json
from datetime import timedelta

import inference
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from serving_errors import ServingError

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),  # a request that takes longer is a bug (or a bomb)
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples every run: a failure reproduces
)
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "image/jpeg",
            "image/png",
            "application/x-image",
            "application/json",
            "IMAGE/JPEG; q=1",
            "application/json; charset=utf-8",
            "text/plain",
            "",
        ]
    ),
    st.none(),
    st.text(max_size=40),
)


def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    out = []
    for fmt, mode in (("PNG", "RGB"), ("JPEG", "RGB"), ("PNG", "P"), ("PNG", "LA"), ("JPEG", "L")):
        buf = io.BytesIO()
        Image.fromarray(array).convert(mode).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


SEED_IMAGES = _seed_images()


@pytest.fixture(autouse=True)
def no_hang():
    """A request that never returns would stall the suite: abort with every thread's stack."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def check(body, content_type) -> None:
    try:
        images = inference.input_fn(body, content_type)
    except ServingError as exc:
        assert exc.status_code in {400, 413, 415}, exc
        assert exc.message
        return
    size = inference._serving_image_size
    assert images.dtype == torch.uint8
    assert images.ndim == 4 and images.shape[0] >= 1
    assert tuple(images.shape[1:]) == (size, size, 3)


@FUZZ
@given(body=st.binary(max_size=4096), content_type=CONTENT_TYPES)
def test_random_bytes_with_random_content_types(body: bytes, content_type):
    check(body, content_type)


@FUZZ
@given(body=st.text(max_size=500), content_type=CONTENT_TYPES)
def test_random_text_bodies(body: str, content_type):
    check(body, content_type)


@st.composite
def damaged_images(draw) -> bytes:
    """A real PNG or JPEG with some bytes overwritten, then possibly cut short."""
    data = bytearray(draw(st.sampled_from(SEED_IMAGES)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(1, len(data)))])


@FUZZ
@given(body=damaged_images(), content_type=st.sampled_from(["image/jpeg", "image/png"]))
def test_damaged_images(body: bytes, content_type: str):
    check(body, content_type)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children)
    ),
    max_leaves=12,
)
INSTANCE = st.one_of(
    st.builds(lambda d: {"b64": base64.b64encode(d).decode()}, damaged_images()),
    st.builds(lambda d: base64.b64encode(d).decode(), st.sampled_from(SEED_IMAGES)),
    st.builds(lambda v: {"b64": v}, JSON_VALUES),
    JSON_VALUES,
)


@FUZZ
@given(
    doc=st.one_of(
        st.builds(lambda xs: {"instances": xs}, st.lists(INSTANCE, max_size=4)),
        st.lists(INSTANCE, max_size=4),
        JSON_VALUES,
    )
)
def test_json_documents(doc):
    check(json.dumps(doc), "application/json")


@FUZZ
@given(accept=st.one_of(st.none(), st.text(max_size=40)))
def test_output_fn_answers_json_or_415(accept):
    prediction = {
        "probabilities": torch.full((1, 5), 0.2),
        "counts": [1],
        "version": "v",
        "classes": [1, 2, 3, 4, 5],
    }
    try:
        body, kind = inference.output_fn(prediction, accept)
    except ServingError as exc:
        assert exc.status_code == 415
        return
    assert kind == "application/json"
    assert json.loads(body)["predictions"][0]["count"] == 1
