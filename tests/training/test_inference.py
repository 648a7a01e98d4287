"""The serving handler, imported from a trained model dir's code/ folder as the endpoint does."""

from __future__ import annotations

import base64
import io
import json
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import decoding  # Prepare's decoder (processing/): serving must see the same pixels
import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from shard_factory import read_split
from training_testing import Serving, TrainingRun

# --- images ---------------------------------------------------------------------------------


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **save) -> bytes:
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save)
    return buf.getvalue()


def photo(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A bin-photo-sized RGB array: smooth background and a few bright blocks."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), rng.integers(40, 120, 3), np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
        img[y : y + height // 4, x : x + width // 4] = rng.integers(150, 256, 3)
    return img


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with one tiny IDAT: a decompression bomb's look."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is patched to claim width x height."""
    data = bytearray(encode(photo(64, 64), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def serve(serving: Serving, model, body, content_type: str, accept: str = "application/json"):
    inf = serving.inference
    answer, kind = inf.output_fn(inf.predict_fn(inf.input_fn(body, content_type), model), accept)
    assert kind == "application/json"
    return json.loads(answer)


@pytest.fixture(scope="module")
def model(serving: Serving):
    return serving.inference.model_fn(str(serving.model_dir))


# --- loading ----------------------------------------------------------------------------------


def test_serving_code_comes_from_the_model_dir(serving: Serving, training_run: TrainingRun):
    assert Path(serving.inference.__file__).parent == training_run.model_dir / "code"


def test_model_fn_loads_onto_the_cpu_in_eval_mode(serving: Serving, model):
    meta = json.loads((serving.model_dir / "model.json").read_text())
    assert model.device == torch.device("cpu")
    # On a CPU the network is served as frozen TorchScript graphs (serving_runtime.py): one,
    # or a fused one-image graph beside it.
    assert type(model.net).__name__ in {"RecursiveScriptModule", "SplitByBatchSize"}
    assert model.engine.startswith("TorchScript, frozen and optimised for inference")
    # Eval mode: dropout off and BatchNorm on its running statistics, so answers repeat.
    for batch in (1, 4):
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            assert torch.equal(model.net(x), model.net(x))
    assert model.image_size == 32
    assert model.counts == [1, 2, 3, 4, 5]
    assert model.version == meta["version"]


def test_version_comes_from_the_environment_when_set(serving: Serving, monkeypatch, real_bins):
    arn = "arn:aws:sagemaker:us-east-1:111122223333:model-package/bincount/7"
    monkeypatch.setenv("BINCOUNT_MODEL_VERSION", arn)
    model = serving.inference.model_fn(str(serving.model_dir))
    answer = serve(serving, model, real_bins[0][0].read_bytes(), "image/jpeg")
    assert answer["model_version"] == arn


def test_model_fn_refuses_weights_that_carry_code(serving: Serving, tmp_path: Path):
    model_dir = tmp_path / "model"
    shutil.copytree(serving.model_dir, model_dir)
    state = torch.load(model_dir / "model.pt", weights_only=True)
    state["extra"] = Path("anything")  # not a tensor: only a full unpickler could load it
    torch.save(state, model_dir / "model.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        serving.inference.model_fn(str(model_dir))


# --- good requests ----------------------------------------------------------------------------


def test_real_bin_photos_are_counted_from_prepares_pixels(serving: Serving, model, real_bins):
    for path, _count in real_bins:
        data = path.read_bytes()
        images = serving.inference.input_fn(data, "image/jpeg")
        assert images.dtype == torch.uint8 and tuple(images.shape) == (1, 32, 32, 3)
        assert np.array_equal(images[0].numpy(), decoding.decode_image(data, 32))
        answer = serve(serving, model, data, "image/jpeg")
        (prediction,) = answer["predictions"]
        assert prediction["count"] in (1, 2, 3, 4, 5)
        probs = prediction["probabilities"]
        assert list(probs) == ["1", "2", "3", "4", "5"]
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction["count"] == int(max(probs, key=probs.get))
        assert answer["model_version"] == model.version


@pytest.mark.parametrize("size", [32, 64, 112, 160, 224, 299])
def test_decoding_matches_prepare_at_every_size(serving: Serving, real_bins, size: int):
    # Decoding differently from Prepare (another JPEG draft scale) skews what the model sees.
    jpegs = [p.read_bytes() for p, _ in real_bins] + [encode(photo(400, 500), "JPEG")]
    for data in jpegs:
        served = serving.inference.decode_image(data, size)
        assert np.array_equal(served, decoding.decode_image(data, size))


def test_held_out_shards_are_counted_as_in_training(serving: Serving, model, shard_data: Path):
    """The test split, sent as PNGs in JSON batches, gets the predictions the network gives
    the shard tensors directly, and clearly better than chance (0.2): 0.77 when written."""
    import image_transforms

    images, labels, _ids = read_split(shard_data / "test")
    images, labels = images[: serving.inference.MAX_BATCH], labels[: serving.inference.MAX_BATCH]
    body = json.dumps({"instances": [{"b64": b64(encode(img))} for img in images]})
    answer = serve(serving, model, body, "application/json")
    counts = np.array([p["count"] for p in answer["predictions"]])
    with torch.inference_mode():
        direct = model.net(image_transforms.to_model_input(torch.from_numpy(images), 32))
    assert np.array_equal(counts, direct.argmax(1).numpy() + 1)
    assert (counts == labels).mean() > 0.5


def test_json_batch_answers_like_single_requests(serving: Serving, model, real_bins):
    images = [p.read_bytes() for p, _ in real_bins]
    images += [encode(photo(seed=1)), encode(photo(seed=2), "JPEG", quality=85)]
    batch = serve(
        serving,
        model,
        json.dumps({"instances": [{"b64": b64(i)} for i in images]}),
        "application/json",
    )["predictions"]
    singles = [serve(serving, model, i, "image/png")["predictions"][0] for i in images]
    assert [p["count"] for p in batch] == [p["count"] for p in singles]
    for b, s in zip(batch, singles, strict=True):
        assert b["probabilities"] == pytest.approx(s["probabilities"], abs=1e-5)
    bare_list = serve(serving, model, json.dumps([b64(i) for i in images]), "application/json")
    assert bare_list["predictions"] == batch


@pytest.mark.parametrize(
    "content_type",
    ["image/png", "IMAGE/PNG", "image/jpeg; charset=binary", "application/x-image"],
)
def test_image_content_types(serving: Serving, content_type: str):
    images = serving.inference.input_fn(encode(photo()), content_type)
    assert tuple(images.shape) == (1, 32, 32, 3)


@pytest.mark.parametrize(
    ("array", "fmt", "mode"),
    [
        (photo(480, 640), "JPEG", None),
        (photo(300, 100), "PNG", None),
        (photo(120, 90), "PNG", "L"),
        (photo(120, 90), "PNG", "RGBA"),
        (photo(120, 90), "PNG", "P"),
        (photo(120, 90), "JPEG", "CMYK"),
        (photo(8, 8), "PNG", None),
    ],
    ids=["jpeg-640x480", "png-tall", "grey", "rgba", "palette", "cmyk-jpeg", "8px"],
)
def test_any_jpeg_or_png_becomes_rgb_at_the_models_size(serving: Serving, array, fmt, mode):
    images = serving.inference.input_fn(encode(array, fmt, mode), "application/x-image")
    assert images.dtype == torch.uint8 and tuple(images.shape) == (1, 32, 32, 3)


def test_json_body_as_text_with_a_charset(serving: Serving):
    body = json.dumps({"instances": [{"b64": b64(encode(photo()))}] * 2})
    images = serving.inference.input_fn(body, "application/json; charset=utf-8")
    assert tuple(images.shape) == (2, 32, 32, 3)


def test_predict_fn_resizes_input_of_another_size(serving: Serving, model):
    images = torch.from_numpy(np.stack([photo(48, 48), photo(48, 48, seed=3)]))
    prediction = serving.inference.predict_fn(images, model)
    assert tuple(prediction["probabilities"].shape) == (2, 5)


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "*/*",
        "application/json",
        "application/json; charset=utf-8",
        "text/html, */*;q=0.8",
    ],
)
def test_accept_types_that_json_satisfies(serving: Serving, model, accept):
    prediction = serving.inference.predict_fn(
        serving.inference.input_fn(encode(photo()), "image/png"), model
    )
    body, kind = serving.inference.output_fn(prediction, accept)
    assert kind == "application/json" and json.loads(body)["predictions"]


# --- bad requests -----------------------------------------------------------------------------

PNG = encode(photo(64, 64))


def too_many() -> str:
    return json.dumps({"instances": [{"b64": b64(PNG)}] * 65})


BAD_REQUESTS = [
    # (id, body, content type, status, words the message must hold)
    ("csv", b"1,2,3", "text/csv", 415, "content type 'text/csv' is not supported"),
    ("no-type", PNG, None, 415, "content type None is not supported"),
    ("empty", b"", "image/jpeg", 400, "the request body is empty"),
    ("empty-json", "", "application/json", 400, "the request body is empty"),
    ("text-as-jpeg", b"hello, I am no image", "image/jpeg", 400, "not a readable JPEG or PNG"),
    ("truncated", encode(photo(), "JPEG")[:2000], "image/jpeg", 400, "not a readable JPEG or PNG"),
    ("gif", encode(photo(64, 64), "GIF"), "image/png", 415, "is GIF, not JPEG or PNG"),
    ("tiny", encode(photo(4, 40)), "image/png", 400, "is 40x4; at least 8 px a side needed"),
    ("png-bomb", png_header_only(20_000, 20_000), "image/png", 413, "too large to decode"),
    ("png-50mp", png_header_only(10_000, 5_000), "image/png", 413, "10000x5000 pixels"),
    ("jpeg-bomb", jpeg_claiming(20_000, 20_000), "image/jpeg", 413, "too large to decode"),
    ("huge-body", b"\xff" * (20 * 2**20 + 1), "image/jpeg", 413, "the limit is 20971520"),
    ("batch-65", too_many(), "application/json", 413, "holds 65 images; the limit is 64"),
    ("bad-json", b"{instances: ", "application/json", 400, "the JSON body does not parse"),
    ("deep-json", b"[" * 100_000, "application/json", 400, "the JSON body does not parse"),
    ("not-utf8", b"\xff\xfe{", "application/json", 400, "the JSON body does not parse"),
    ("object", b'{"images": []}', "application/json", 400, 'expected {"instances"'),
    ("no-instances", b'{"instances": []}', "application/json", 400, "holds no instances"),
    ("number", b'{"instances": [7]}', "application/json", 400, "instance 0 is not"),
    ("no-b64", b'{"instances": [{"url": "x"}]}', "application/json", 400, "instance 0 is not"),
    (
        "bad-b64",
        json.dumps([b64(PNG), "%%%not base64%%%"]),
        "application/json",
        400,
        "instance 1 is not valid base64",
    ),
    (
        "bad-2nd-image",
        json.dumps([b64(PNG), b64(b"nope")]),
        "application/json",
        400,
        "image 1 is not a readable JPEG or PNG",
    ),
    ("surrogate", '{"instances": ["\ud800"]}', "application/json", 400, "not bytes or UTF-8 text"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_gets_its_status_and_says_what_is_wrong(
    serving: Serving, monkeypatch, body, content_type, status: int, words: str
):
    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded for a request refused from its header")

    if status == 413:  # refused from sizes alone: decoding a bomb is what it wants
        monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(serving.error_type) as refused:
        serving.inference.input_fn(body, content_type)
    assert refused.value.status_code == status
    assert words in refused.value.message
    assert str(refused.value) == f"{status}: {refused.value.message}"


@pytest.mark.parametrize("accept", ["text/csv", "image/png", "application/xml, text/*"])
def test_unsupported_accept_type_is_415(serving: Serving, model, accept: str):
    prediction = serving.inference.predict_fn(serving.inference.input_fn(PNG, "image/png"), model)
    with pytest.raises(serving.error_type) as refused:
        serving.inference.output_fn(prediction, accept)
    assert refused.value.status_code == 415
    assert repr(accept) in refused.value.message and "application/json" in refused.value.message
