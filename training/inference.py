"""SageMaker PyTorch serving handler: model_fn, input_fn, predict_fn, output_fn.

Requests:
- `image/jpeg`, `image/png`, `application/x-image`: the body is one image.
- `application/json`: `{"instances": [{"b64": "<base64 image>"}, ...]}`, at most
  MAX_BATCH images (a bare list of base64 strings is accepted too).

Response (`application/json`):
`{"predictions": [{"count": 3, "probabilities": {"1": 0.01, ..., "5": 0.02}}, ...],
  "model_version": "..."}`

Bad requests raise ServingError with status 400 (malformed), 413 (too large: bytes, images,
pixels of one image or MAX_REQUEST_PIXELS decoded pixels per request) or 415 (unsupported
content type); in a batch the message names the image by its index (`image 3`). 16-bit
grey PNGs are scaled to 8 bits, as PIL does for 16-bit colour. Images are decoded and resized
exactly as Prepare does (JPEG draft decode, RGB, bilinear square resize), then normalised as
in training.

On a CPU the network runs as a frozen TorchScript graph traced at load (serving_runtime.py),
on torch threads sized to the endpoint's vCPUs; outputs stay within 1e-4 of the eager network.
"""

from __future__ import annotations

# isort: off
import omp_policy  # before torch, where this module is imported first

# isort: on
import base64
import binascii
import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from image_transforms import to_model_input
from model import build_model
from PIL import Image
from serving_errors import bad_request, too_large, unsupported_type
from serving_runtime import configure_threads, log, optimize_for_cpu, wait_policy

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON_TYPE = "application/json"
MAX_BATCH = 64
MAX_BODY_BYTES = 20 * 2**20  # SageMaker real-time endpoints cap payloads at 6 MB anyway
MAX_PIXELS = 40_000_000  # width x height read from the header, before any decoding
# Pixels one request may decode, all its images together, counted after the JPEG draft scale
# (64 bin photos of ~500x400 decode to about 3.2 million at 224 px): bounds a request's time.
MAX_REQUEST_PIXELS = 50_000_000
SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")
MIN_SIDE = 8
# The toolkit calls input_fn without the model, so model_fn leaves its input size here.
_serving_image_size = 224


class LoadedModel:
    """The network with what serving needs to know about it (from model.json)."""

    def __init__(
        self,
        net: torch.nn.Module,
        meta: dict[str, Any],
        device: torch.device,
        engine: str = "eager",
    ):
        self.net, self.meta, self.device = net, meta, device
        self.engine = engine  # what runs the network (serving_runtime.optimize_for_cpu)
        self.image_size = int(meta["image_size"])
        self.counts = [int(c) for c in meta["counts"]]
        self.mean = tuple(meta["mean"])
        self.std = tuple(meta["std"])
        self.version = os.environ.get("BINCOUNT_MODEL_VERSION") or str(meta.get("version", ""))


def model_fn(model_dir: str) -> LoadedModel:
    """Load model.json + model.pt from `model_dir` onto the GPU when there is one; on a CPU,
    as the graph serving_runtime.optimize_for_cpu makes of it."""
    folder = Path(model_dir)
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = build_model(meta["arch"], pretrained=False, num_classes=len(meta["counts"]))
    state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.to(device).eval()
    engine = "eager"
    if device.type == "cpu":
        threads = configure_threads()
        net, engine = optimize_for_cpu(net, int(meta["image_size"]))
        policy = wait_policy(omp_policy.IN_EFFECT)
        log(f"{meta['arch']} on {threads} CPU thread(s), OpenMP wait {policy}: {engine}")
    loaded = LoadedModel(net, meta, device, engine)
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
    size = _serving_image_size
    if kind in IMAGE_TYPES:
        opened = [open_image(body, size)]
    else:
        opened = []
        try:
            for i, data in enumerate(_images_from_json(body)):
                opened.append(open_image(data, size, i))
        except BaseException:
            _close_all(opened)
            raise
    # Every header is read before any pixel is decoded: a request costing more than the
    # budget is refused at once, instead of holding a worker (and the next caller) for seconds.
    total = sum(decoded_pixels(image) for image in opened)
    if total > MAX_REQUEST_PIXELS:
        _close_all(opened)
        raise too_large(
            f"the request's {len(opened)} image(s) decode to {total} pixels; the limit per "
            f"request is {MAX_REQUEST_PIXELS} (send fewer or smaller images per request)"
        )
    batch = kind == JSON_TYPE
    try:
        arrays = [finish_decode(im, size, i if batch else None) for i, im in enumerate(opened)]
    finally:
        _close_all(opened)
    return torch.from_numpy(np.stack(arrays))


def _close_all(images: list[Image.Image]) -> None:
    for image in images:
        image.close()


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


def decode_image(data: bytes, size: int, index: int | None = None) -> np.ndarray:
    """Image bytes -> uint8 [size, size, 3] RGB the way Prepare decodes its shards.

    `index` names the image in a batch (`image 3`) in every error; None: a lone image.
    """
    return finish_decode(open_image(data, size, index), size, index)


def open_image(data: bytes, size: int, index: int | None = None) -> Image.Image:
    """The image with only its header read, checked and set to decode at Prepare's scale.

    Dimensions above MAX_PIXELS are refused (413) before any pixel is decoded, so a
    decompression bomb costs nothing; `decoded_pixels` then tells what decoding will cost.
    """
    where = _label(index)
    with _decoding_errors(where):
        # No warnings filter (for PIL's DecompressionBombWarning): it is process-wide state,
        # and a threaded server would race on it; our MAX_PIXELS check comes first anyway.
        image = Image.open(io.BytesIO(data))
        try:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise too_large(
                    f"{where} is {width}x{height} pixels; the limit is {MAX_PIXELS} pixels"
                )
            if min(width, height) < MIN_SIDE:
                raise bad_request(
                    f"{where} is {width}x{height}; at least {MIN_SIDE} px a side needed"
                )
            if image.format not in ("JPEG", "PNG"):
                raise unsupported_type(f"{where} is {image.format}, not JPEG or PNG")
            # JPEG decodes at 1/2..1/8 scale with Prepare's exact draft target (80% of the
            # size): any other target picks another scale for some photos, and the model
            # would serve on pixels unlike the ones it trained on.
            floor = max(1, (size * 4) // 5)
            image.draft("RGB", (floor, floor))
        except BaseException:
            image.close()
            raise
    return image


def decoded_pixels(image: Image.Image) -> int:
    """Pixels decoding will produce (after the JPEG draft scale): the request's real cost."""
    width, height = image.size
    return width * height


def finish_decode(image: Image.Image, size: int, index: int | None = None) -> np.ndarray:
    """Decode an `open_image` result to uint8 [size, size, 3] RGB (and close it)."""
    with _decoding_errors(_label(index)), image:
        rgb = _to_rgb(image)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in SIXTEEN_BIT_GREY:
        # PIL's convert("RGB") clips 16-bit grey at 255 (a white image): keep the top byte,
        # as PIL itself does for 16-bit RGB PNGs.
        grey = np.asarray(image).astype(np.int64)
        top = (np.clip(grey, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(top, "L").convert("RGB")
    return image.convert("RGB")


def _label(index: int | None) -> str:
    return "the image" if index is None else f"image {index}"


@contextlib.contextmanager
def _decoding_errors(where: str) -> Iterator[None]:
    """PIL's many exception types for damaged data, as a ServingError naming the image."""
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise too_large(f"{where} is too large to decode: {exc}") from None
    except OSError as exc:  # UnidentifiedImageError, truncated data, broken streams
        raise bad_request(f"{where} is not a readable JPEG or PNG: {exc}") from None
    except (ValueError, TypeError, SyntaxError, IndexError, KeyError, EOFError) as exc:
        # Damaged headers surface as many exception types inside PIL's plugins.
        raise bad_request(f"{where} is damaged: {type(exc).__name__}: {exc}") from None


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
