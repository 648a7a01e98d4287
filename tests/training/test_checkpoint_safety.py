"""Checkpoints that cannot run code, survive damage, and still resume bit-identically."""

from __future__ import annotations

import random
import re
from pathlib import Path

import checkpointing
import numpy as np
import pytest
import torch
from checkpointing import CHECKPOINT_NAME, PREVIOUS_NAME, DamagedCheckpoint
from training_testing import TrainingRun, run_train


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"tensors differ: {differ}"


class OpensAFile:
    """Unpickling this calls open(path, "w"): a stand-in for any code a crafted file runs."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path: Path, capsys):
    folder = tmp_path / "ck"
    folder.mkdir()
    checkpointing.save_checkpoint(folder, {"epoch": 1})
    marker = tmp_path / "code-ran"
    checkpointing.save_checkpoint(folder, {"epoch": 2, "payload": OpensAFile(marker)})

    assert checkpointing.load_checkpoint(folder) == {"epoch": 1}  # the previous good one
    assert not marker.exists()
    out = capsys.readouterr().out
    assert f"{folder / CHECKPOINT_NAME} is damaged (unreadable: Weights only load failed" in out
    damaged = folder / (CHECKPOINT_NAME + ".damaged")
    assert damaged.is_file() and not (folder / CHECKPOINT_NAME).exists()
    # What the refused file would have done to a loader that trusts it (the old code):
    torch.load(damaged, weights_only=False)
    assert marker.exists()


def test_the_whole_training_state_loads_under_weights_only(tmp_path: Path):
    """Optimizer, scheduler, scaler, RNG (numpy's too) and history are tensors and plain
    values, so weights_only=True loads them and the generators continue where they were."""
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    net(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    random.random(), np.random.rand(), torch.rand(1)
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": torch.amp.GradScaler("cuda", enabled=False).state_dict(),
        "rng": checkpointing.rng_state(),
        "history": [{"epoch": 1, "val_acc": 0.5}],
        "best_score": (0.5, -0.25),
    }
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpointing.save_checkpoint(tmp_path, state)

    loaded = torch.load(tmp_path / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert loaded["history"] == state["history"] and loaded["best_score"] == (0.5, -0.25)
    checkpointing.restore_rng_state(checkpointing.load_checkpoint(tmp_path)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    resumed = torch.optim.AdamW(net.parameters(), lr=1e-3)
    resumed.load_state_dict(loaded["optimizer"])
    assert torch.equal(
        resumed.state_dict()["state"][0]["exp_avg"], optimizer.state[net.weight]["exp_avg"]
    )


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00not a checkpoint" * 100)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a tensor: torch.load itself notices nothing
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, "unreadable"),
        (_garbage, "unreadable"),
        (_flip_a_byte, "its content does not match its digest"),
    ],
    ids=["truncated", "garbage", "flipped-byte"],
)
def test_damaged_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, damage, reason: str, capsys
):
    weights = {"w": torch.arange(4096, dtype=torch.float32)}
    checkpointing.save_checkpoint(tmp_path, {"epoch": 1, "model": weights})
    checkpointing.save_checkpoint(tmp_path, {"epoch": 2, "model": weights})
    damage(tmp_path / CHECKPOINT_NAME)
    state = checkpointing.load_checkpoint(tmp_path)
    assert state is not None and state["epoch"] == 1
    out = capsys.readouterr().out
    assert f"is damaged ({reason}" in out
    assert "resuming from the previous good checkpoint checkpoint.previous.pt" in out
    # The next save starts a clean pair: the good epoch 1 stays as the previous one.
    checkpointing.save_checkpoint(tmp_path, {"epoch": 2, "model": weights})
    assert checkpointing.load_checkpoint(tmp_path)["epoch"] == 2
    assert checkpointing.read_checkpoint(tmp_path / PREVIOUS_NAME)["epoch"] == 1


def test_no_usable_checkpoint_means_a_fresh_start_with_a_warning(tmp_path: Path, capsys):
    checkpointing.save_checkpoint(tmp_path, {"epoch": 1})
    checkpointing.save_checkpoint(tmp_path, {"epoch": 2})
    _garbage(tmp_path / CHECKPOINT_NAME)
    _truncate(tmp_path / PREVIOUS_NAME)
    assert checkpointing.load_checkpoint(tmp_path) is None
    assert "WARNING: no usable checkpoint in" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.previous.pt.damaged",
        "checkpoint.pt.damaged",
    ]
    assert checkpointing.load_checkpoint(tmp_path) is None  # and again: nothing crashes


def test_a_checkpoint_that_does_not_fit_the_model_is_damaged():
    expected = {"w": torch.zeros(3, 2), "b": torch.zeros(3)}
    checkpointing.require_same_tensors(
        "model", {"w": torch.ones(3, 2), "b": torch.ones(3)}, expected
    )
    for saved, message in [
        ({"w": torch.zeros(3, 2)}, "does not match the model"),
        ({"w": torch.zeros(2, 3), "b": torch.zeros(3)}, r"model\[w\] has the wrong shape"),
        ({"w": torch.zeros(3, 2), "b": torch.zeros(3, dtype=torch.float64)}, "is torch.float64"),
        ({"w": torch.full((3, 2), float("nan")), "b": torch.zeros(3)}, "non-finite"),
    ]:
        with pytest.raises(DamagedCheckpoint, match=message):
            checkpointing.require_same_tensors("model", saved, expected)
    with pytest.raises(DamagedCheckpoint, match="missing epoch"):
        checkpointing.require_fields({"model": {}}, {"epoch": int, "model": dict})
    with pytest.raises(DamagedCheckpoint, match="epoch is a str"):
        checkpointing.require_fields({"epoch": "3"}, {"epoch": int})


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "garbage"])
def test_a_restart_after_damage_resumes_from_the_previous_epoch_bit_identically(
    tmp_path: Path, shard_data: Path, training_run: TrainingRun, damage
):
    """Spot interrupted after epoch 3; the newest checkpoint is damaged on restart: epoch 2's
    is used, and the run still ends with exactly the uninterrupted run's weights."""
    checkpoints = tmp_path / "checkpoints"
    first = run_train(
        tmp_path / "first", shard_data, None, "--max_epochs_this_run", "3",
        checkpoint_dir=checkpoints,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    damage(checkpoints / CHECKPOINT_NAME)

    second = run_train(tmp_path / "second", shard_data, checkpoint_dir=checkpoints)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "is damaged" in second.stdout and "resuming after epoch 2" in second.stdout
    assert re.findall(r"^epoch=(\d+)", second.stdout, re.MULTILINE) == ["3", "4", "5", "6"]
    assert_same_tensors(
        torch.load(second.model_dir / "model.pt", weights_only=True),
        torch.load(training_run.model_dir / "model.pt", weights_only=True),
    )


def test_a_restart_with_every_checkpoint_damaged_trains_afresh(
    tmp_path: Path, shard_data: Path, training_run: TrainingRun
):
    checkpoints = tmp_path / "checkpoints"
    first = run_train(
        tmp_path / "first", shard_data, None, "--max_epochs_this_run", "2",
        checkpoint_dir=checkpoints,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    _garbage(checkpoints / CHECKPOINT_NAME)
    _garbage(checkpoints / PREVIOUS_NAME)

    second = run_train(tmp_path / "second", shard_data, checkpoint_dir=checkpoints)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "WARNING: no usable checkpoint" in second.stdout
    assert re.findall(r"^epoch=(\d+)", second.stdout, re.MULTILINE) == [str(e) for e in range(1, 7)]
    assert_same_tensors(
        torch.load(second.model_dir / "model.pt", weights_only=True),
        torch.load(training_run.model_dir / "model.pt", weights_only=True),
    )
