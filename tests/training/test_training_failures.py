"""Training that cannot succeed says so and exports nothing: divergence, too little data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model import build_model
from model_export import NotExportable, export_model_dir
from shard_factory import IMAGES, shard_part, write_shards
from training_testing import SMALL_SPLITS


def train_args(tmp_path: Path, shard_data: Path, *extra: str) -> list[str]:
    return [
        "--epochs", "2", "--arch", "smallcnn", "--pretrained", "false", "--batch_size", "32",
        "--num_threads", "1", "--patience", "0",
        "--train", str(shard_data / "train"), "--validation", str(shard_data / "validation"),
        "--model_dir", str(tmp_path / "model"), "--output_data_dir", str(tmp_path / "out"),
        "--checkpoint_dir", str(tmp_path / "checkpoints"), *SMALL_SPLITS, *extra,
    ]  # fmt: skip


def test_a_huge_learning_rate_stops_training_and_exports_nothing(
    tmp_path: Path, shard_data: Path, capsys
):
    import train

    code = train.main(train_args(tmp_path, shard_data, "--learning_rate", "1e30"))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "error: training diverged in epoch 1" in err
    assert "nothing was exported: lower the learning rate (LearningRate, was 1e+30)" in err
    assert not (tmp_path / "model").exists()
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # no diverged state saved


def test_an_infinite_learning_rate_is_refused_before_training(tmp_path, shard_data, capsys):
    import train

    with pytest.raises(SystemExit) as exited:
        train.main(train_args(tmp_path, shard_data, "--learning_rate", "inf"))
    assert exited.value.code == 2
    assert "--learning_rate must be positive and finite, got inf" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_a_nan_batch_stops_training_at_that_step(
    tmp_path: Path, shard_data: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    import train

    real_augment = train.augment_batch
    calls = []

    def augment_with_a_nan(images, gen, image_size):
        x = real_augment(images, gen, image_size)
        calls.append(len(x))
        if len(calls) == 12:  # epoch 2, step 2: after a checkpoint was written
            x = x.clone()
            x[0, 0, 0, 0] = float("nan")
        return x

    monkeypatch.setattr(train, "augment_batch", augment_with_a_nan)
    code = train.main(train_args(tmp_path, shard_data))
    captured = capsys.readouterr()
    assert code == 1
    assert "error: training diverged in epoch 2, step 2: the loss is not finite" in captured.err
    assert "epoch=1 " in captured.out and "epoch=2 " not in captured.out
    assert not (tmp_path / "model").exists()
    # Epoch 1's checkpoint is left as it was, the last good state.
    state = torch.load(tmp_path / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1


def test_export_refuses_weights_that_are_not_finite(tmp_path: Path):
    state = build_model("smallcnn").state_dict()
    state["head.2.bias"] = torch.full_like(state["head.2.bias"], float("nan"))
    with pytest.raises(NotExportable, match=r"weights hold NaN or infinite values \(head.2.bias\)"):
        export_model_dir(tmp_path / "model", state, "smallcnn", 32)
    assert not (tmp_path / "model").exists()


def test_export_refuses_finite_weights_whose_outputs_are_not(tmp_path: Path):
    state = build_model("smallcnn").state_dict()
    state["head.2.weight"] = torch.full_like(state["head.2.weight"], 3e38)  # logits overflow
    images = torch.from_numpy(write_and_read(tmp_path, 8))
    with pytest.raises(NotExportable, match="outputs on 8 probe images are NaN or infinite"):
        export_model_dir(tmp_path / "model", state, "smallcnn", 32, probe=images)
    assert not (tmp_path / "model").exists()
    with pytest.raises(NotExportable, match="outputs on 4 probe images"):  # no probe given
        export_model_dir(tmp_path / "model", state, "smallcnn", 32)


def write_and_read(tmp_path: Path, n: int):
    import numpy as np

    folder = write_shards(tmp_path / "probe", n, size=32)
    return np.load(shard_part(folder / "algo-1-00000", IMAGES))


@pytest.mark.parametrize(
    ("split", "sizes", "message"),
    [
        (
            "train",
            (1, 120),
            "the train split ({train}) has 1 image, fewer than the 250 required: lower "
            "--min_train_images (MinTrainImages) only if that is intended",
        ),
        (
            "validation",
            (300, 99),
            "the validation split ({validation}) has 99 images, fewer than the 100 required: "
            "lower --min_validation_images (MinValidationImages)",
        ),
    ],
)
def test_a_split_below_its_minimum_is_refused_before_training(
    tmp_path: Path, split: str, sizes: tuple[int, int], message: str, capsys
):
    import train

    train_dir = write_shards(tmp_path / "train", sizes[0], size=32, seed=1)
    validation_dir = write_shards(tmp_path / "validation", sizes[1], size=32, seed=2)
    code = train.main(
        [
            "--train", str(train_dir), "--validation", str(validation_dir),
            "--model_dir", str(tmp_path / "model"), "--checkpoint_dir", "",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "error: " + message.format(train=train_dir, validation=validation_dir) in err
    assert not (tmp_path / "model").exists()
