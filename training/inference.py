"""SageMaker PyTorch serving handler: model_fn, input_fn, predict_fn, output_fn.

Requests:
- `image/jpeg`, `image/png`, `application/x-image`: the body is one image.
- `application/json`: `{"instances": [{"b64": "<base64 image>"}, ...]}`, at most
  MAX_BATCH images (a bare list of base64 strings is accepted too).

Response (`application/json`):
`{"predictions": [{"count": 3, "probabilities": {"1": 0.01, ..., "5": 0.02}}, ...],
  "model_version": "..."}`

Bad requests raise ServingError with status 400 (malformed), 413 (too large) or 415
(unsupported content type). Images are decoded and resized exactly as Prepare does (JPEG
draft decode, RGB, bilinear square resize), then normalised as in training.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from image_transforms import to_model_input
from model import build_model
from PIL import Image
from serving_errors import bad_request, too_large, unsupported_type

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON_TYPE = "application/json"
MAX_BATCH = 64
MAX_BODY_BYTES = 20 * 2**20  # SageMaker real-time endpoints cap payloads at 6 MB anyway
MAX_PIXELS = 40_000_000  # width x height read from the header, before any decoding
MIN_SIDE = 8
# The toolkit calls input_fn without the model, so model_fn leaves its input size here.
_serving_image_size = 224


class LoadedModel:
    """The network with what serving needs to know about it (from model.json)."""

    def __init__(self, net: torch.nn.Module, meta: dict[str, Any], device: torch.device):
        self.net, self.meta, self.device = net, meta, device
        self.image_size = int(meta["image_size"])
        self.counts = [int(c) for c in meta["counts"]]
        self.mean = tuple(meta["mean"])
        self.std = tuple(meta["std"])
        self.version = os.environ.get("BINCOUNT_MODEL_VERSION") or str(meta.get("version", ""))


def model_fn(model_dir: str) -> LoadedModel:
    """Load model.json + model.pt from `model_dir` onto the GPU when there is one."""
    folder = Path(model_dir)
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = build_model(meta["arch"], pretrained=False, num_classes=len(meta["counts"]))
    state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.to(device).eval()
    loaded = LoadedModel(net, meta, device)
    global _serving_image_size
    _serving_image_size = loaded.image_size
    return loaded


def _base_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def input_fn(request_body: bytes | str | bytearray, content_type: str | None) -> torch.Tensor:
    """Request -> uint8 [N, S, S, 3] at the model's size (resized again in predict_fn if its
    model.json says otherwise). Raises ServingError naming what is wrong."""
    kind = _base_type(content_type)
    if kind not in (*IMAGE_TYPES, JSON_TYPE):
        raise unsupported_type(
            f"content type {content_type!r} is not supported; use one of "
            f"{', '.join((*IMAGE_TYPES, JSON_TYPE))}"
        )
    try:
        if isinstance(request_body, str):
            body = request_body.encode()
        else:
            body = bytes(request_body or b"")
    except (UnicodeError, TypeError) as exc:
        raise bad_request(f"the request body is not bytes or UTF-8 text: {exc}") from None
    if not body:
        raise bad_request("the request body is empty")
    if len(body) > MAX_BODY_BYTES:
        raise too_large(f"the request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    images = [body] if kind in IMAGE_TYPES else _images_from_json(body)
    size = _serving_image_size
    return torch.from_numpy(np.stack([decode_image(img, size, i) for i, img in enumerate(images)]))


def _images_from_json(body: bytes) -> list[bytes]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise bad_request(f"the JSON body does not parse: {exc}") from None
    items = doc.get("instances") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise bad_request(
            'expected {"instances": [{"b64": "..."}, ...]} or a list of base64 strings'
        )
    if not items:
        raise bad_request("the request holds no instances")
    if len(items) > MAX_BATCH:
        raise too_large(f"the request holds {len(items)} images; the limit is {MAX_BATCH}")
    images = []
    for i, item in enumerate(items):
        text = item.get("b64") if isinstance(item, dict) else item
        if not isinstance(text, str) or not text:
            raise bad_request(f'instance {i} is not {{"b64": "<base64 string>"}}')
        try:
            images.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise bad_request(f"instance {i} is not valid base64: {exc}") from None
    return images


def decode_image(data: bytes, size: int, index: int = 0) -> np.ndarray:
    """Image bytes -> uint8 [size, size, 3] RGB the way Prepare decodes its shards.

    The header is read first: dimensions above MAX_PIXELS are refused (413) before any pixel
    is decoded, so a decompression bomb costs nothing.
    """
    where = f"image {index}" if index else "the image"
    try:
        # Only the header is read here; PIL itself refuses (DecompressionBombError) what is
        # far beyond our own MAX_PIXELS check below. No warnings filter: it is process-wide
        # state, and a threaded server would race on it.
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise too_large(f"{where} is {width}x{height} pixels; the limit is {MAX_PIXELS} pixels")
        if min(width, height) < MIN_SIDE:
            raise bad_request(f"{where} is {width}x{height}; at least {MIN_SIDE} px a side needed")
        if image.format not in ("JPEG", "PNG"):
            raise unsupported_type(f"{where} is {image.format}, not JPEG or PNG")
        with image:
            # JPEG decodes at 1/2..1/8 scale with Prepare's exact draft target (80% of the
            # size): any other target picks another scale for some photos, and the model
            # would serve on pixels unlike the ones it trained on.
            floor = max(1, (size * 4) // 5)
            image.draft("RGB", (floor, floor))
            rgb = image.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise too_large(f"{where} is too large to decode: {exc}") from None
    except OSError as exc:  # UnidentifiedImageError, truncated data, broken streams
        raise bad_request(f"{where} is not a readable JPEG or PNG: {exc}") from None
    except (ValueError, TypeError, SyntaxError, IndexError, KeyError, EOFError) as exc:
        # Damaged headers surface as many exception types inside PIL's plugins.
        raise bad_request(f"{where} is damaged: {type(exc).__name__}: {exc}") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


@torch.inference_mode()
def predict_fn(images: torch.Tensor, model: LoadedModel) -> dict[str, Any]:
    """uint8 [N, H, W, 3] -> probabilities [N, classes] (CPU float) and predicted counts."""
    x = to_model_input(images.to(model.device), model.image_size, model.mean, model.std)
    probs = model.net(x).float().softmax(dim=1).cpu()
    counts = [model.counts[i] for i in probs.argmax(dim=1).tolist()]
    return {
        "probabilities": probs,
        "counts": counts,
        "version": model.version,
        "classes": model.counts,
    }


def output_fn(prediction: dict[str, Any], accept: str | None = JSON_TYPE) -> tuple[str, str]:
    """JSON answer (the only one offered): counts, probabilities keyed by count, version."""
    # An Accept header may list several types (`application/json, */*;q=0.8`).
    kinds = {_base_type(part) for part in (accept or "").split(",")}
    if not kinds & {"", "*/*", "application/*", JSON_TYPE}:
        raise unsupported_type(f"accept type {accept!r} is not offered; use {JSON_TYPE}")
    classes = [str(c) for c in prediction["classes"]]
    predictions = [
        {"count": count, "probabilities": dict(zip(classes, map(float, row), strict=True))}
        for count, row in zip(
            prediction["counts"], prediction["probabilities"].tolist(), strict=True
        )
    ]
    body = {"predictions": predictions, "model_version": prediction["version"]}
    return json.dumps(body), JSON_TYPE
