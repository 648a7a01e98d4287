"""The pieces train.py is built from: augmentation, epoch order, loss, schedule, checkpoints."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import checkpointing
import numpy as np
import pytest
import torch
from augment import augment_batch
from data import epoch_indices
from image_transforms import to_model_input
from losses import OrdinalCountLoss, class_weights
from train import cosine_with_warmup
from training_testing import REPO


def reference_flip_and_jitter(images: torch.Tensor, seed: int) -> torch.Tensor:
    """Whole-image "crops" (scale and ratio 1), written plainly per image from the same draws:
    the flips, then the jitter and normalisation."""
    gen = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    # The crop's draws (area, aspect, centre), unused when the crop is the whole image.
    torch.rand(n, generator=gen), torch.rand(n, generator=gen), torch.rand(n, 2, generator=gen)
    flips = torch.randint(0, 2, (n, 2), generator=gen).bool()
    gains = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.2
    offsets = (torch.rand(n, generator=gen) * 2 - 1) * 0.2
    out = []
    for i in range(n):
        img = images[i].numpy().astype(np.float64) / 255
        if flips[i, 1]:
            img = img[::-1]
        if flips[i, 0]:
            img = img[:, ::-1]
        m = img.mean()
        img = np.clip((img - m) * gains[i].item() + m + offsets[i].item(), 0, 1)
        out.append(img)
    x = torch.from_numpy(np.stack(out).astype(np.float32)).permute(0, 3, 1, 2)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def test_whole_image_crops_flip_and_jitter_as_written_plainly():
    images = torch.randint(0, 256, (16, 20, 24, 3), dtype=torch.uint8)
    got = augment_batch(images, torch.Generator().manual_seed(3), scale=(1, 1), ratio=(1, 1))
    assert got.shape == (16, 3, 20, 24) and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, reference_flip_and_jitter(images, 3), atol=2e-5, rtol=0)


@pytest.mark.parametrize("scale", [(0.6, 1.0), (0.2, 0.3)])
def test_crops_take_the_asked_share_of_the_image_inside_it_flipped_either_way(scale):
    """Pixels that hold their own coordinates (R = column, G = row) show where each output
    pixel was sampled: the crop's sides, area, aspect and direction can be read back."""
    side, n = 101, 64
    coords = torch.arange(side, dtype=torch.uint8)
    images = torch.stack(
        [
            coords.view(1, side).expand(side, side),
            coords.view(side, 1).expand(side, side),
            torch.zeros(side, side, dtype=torch.uint8),
        ],
        dim=-1,
    ).expand(n, side, side, 3)
    x = augment_batch(
        images, torch.Generator().manual_seed(0), scale=scale, brightness=0.0, contrast=0.0
    )
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    source = (x * std + mean) * 255  # back to the coordinates sampled
    cols, rows = source[:, 0, side // 2, :], source[:, 1, :, side // 2]
    width = (cols[:, -1] - cols[:, 0]).abs() / (side - 1)
    height = (rows[:, -1] - rows[:, 0]).abs() / (side - 1)
    assert bool((cols.min(1).values >= -0.01).all() and (cols.max(1).values <= side - 0.99).all())
    area = width * height
    assert bool((area > scale[0] * 0.9).all() and (area < scale[1] * 1.02).all()), area
    aspect = width / height
    assert bool((aspect > 0.7).all() and (aspect < 1.45).all()), aspect
    mirrored = cols[:, -1] < cols[:, 0]
    assert 0 < int(mirrored.sum()) < n  # both directions occur


def test_augmentation_is_reproducible_and_varies_with_the_generator():
    images = torch.randint(0, 256, (8, 16, 16, 3), dtype=torch.uint8)
    a = augment_batch(images, torch.Generator().manual_seed(1))
    b = augment_batch(images, torch.Generator().manual_seed(1))
    c = augment_batch(images, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Normalised [0, 1] pixels: the bounds of to_model_input's output for 0 and 255.
    lo = to_model_input(torch.zeros(1, 1, 1, 3, dtype=torch.uint8), 1).view(1, 3, 1, 1)
    hi = to_model_input(torch.full((1, 1, 1, 3), 255, dtype=torch.uint8), 1).view(1, 3, 1, 1)
    assert bool(((a >= lo - 1e-6) & (a <= hi + 1e-6)).all())


def test_augmentation_resizes_to_the_models_size_and_refuses_floats():
    images = torch.randint(0, 256, (2, 40, 40, 3), dtype=torch.uint8)
    assert augment_batch(images, torch.Generator(), image_size=24).shape == (2, 3, 24, 24)
    with pytest.raises(ValueError, match=r"expected uint8 \[N, H, W, 3\], got torch.float32"):
        augment_batch(images.float(), torch.Generator())


def test_epoch_order_is_seeded_and_split_evenly_across_ranks():
    assert torch.equal(epoch_indices(50, 3, 42), epoch_indices(50, 3, 42))
    assert not torch.equal(epoch_indices(50, 3, 42), epoch_indices(50, 4, 42))
    ranks = [epoch_indices(10, 1, 0, rank, 3) for rank in range(3)]
    assert {len(r) for r in ranks} == {4}  # padded like DistributedSampler
    assert set(torch.cat(ranks).tolist()) == set(range(10))


def test_class_weights_favour_rare_counts_and_skip_absent_ones():
    weights = class_weights(torch.tensor([0, 0, 0, 1, 2, 2]), 5)
    assert weights[3] == weights[4] == 0
    assert weights[1] > weights[2] > weights[0]
    assert weights[:3].mean().item() == pytest.approx(1.0)


def test_ordinal_loss_charges_far_misses_more_than_near_ones():
    loss = OrdinalCountLoss(count_weight=0.5)
    target = torch.tensor([0])  # a count of 1
    near = torch.tensor([[0.0, 4.0, 0.0, 0.0, 0.0]])  # says 2
    far = torch.tensor([[0.0, 0.0, 0.0, 0.0, 4.0]])  # says 5, exactly as confidently
    assert loss(far, target) > loss(near, target)
    plain = OrdinalCountLoss(count_weight=0.0)
    assert plain(far, target) == pytest.approx(plain(near, target).item())


def test_schedule_warms_up_then_decays_to_its_floor():
    factor = cosine_with_warmup(total_steps=100, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factor(100) == pytest.approx(0.01)
    assert all(factor(s) >= factor(s + 1) for s in range(10, 100))


def test_checkpoint_replaces_the_old_one_whole_or_not_at_all(tmp_path: Path, monkeypatch):
    folder = checkpointing.usable_checkpoint_dir(str(tmp_path / "ck"))
    assert folder is not None
    checkpointing.save_checkpoint(folder, {"epoch": 1})

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        checkpointing.save_checkpoint(folder, {"epoch": 2})
    monkeypatch.undo()
    assert checkpointing.load_checkpoint(folder) == {"epoch": 1}
    assert [p.name for p in folder.iterdir()] == ["checkpoint.pt"]


def test_unwritable_checkpoint_dir_means_no_checkpoints(tmp_path: Path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert checkpointing.usable_checkpoint_dir(str(blocker / "ck")) is None
    assert "is not writable" in capsys.readouterr().out
    assert checkpointing.usable_checkpoint_dir("") is None


def test_rng_state_round_trips():
    state = checkpointing.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpointing.restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


MMAPPED_BLOCKS = """
import ctypes, sys
sys.path.insert(0, "training")
import cpu_allocator, torch

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert cpu_allocator.keep_freed_memory()
before = libc.mallinfo2().hblks
batch = torch.empty(64, 3, 224, 224)  # 38 MiB: past glibc's largest mmap threshold
print(libc.mallinfo2().hblks - before)
"""


@pytest.mark.parametrize(("mode", "mmapped"), [("default", True), ("keep", False)])
def test_cpu_allocator_serves_batches_from_the_heap(mode: str, mmapped: bool):
    proc = subprocess.run(
        [sys.executable, "-c", MMAPPED_BLOCKS, mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert (int(proc.stdout.split()[-1]) > 0) is mmapped


def test_a_shard_cut_short_after_training_began_stops_the_epoch_not_skips_images(tmp_path):
    """The data path read in place: a shard that loses its tail mid-job is an error naming
    the file, from the reader threads through the batches, never a short batch."""
    from data import Batches, DataError, ShardedImages
    from shard_factory import IMAGES, shard_part, write_shards

    folder = write_shards(tmp_path / "train", 40, size=16, shard_size=20)
    data = ShardedImages(folder)
    images = shard_part(folder / "algo-1-00001", IMAGES)
    images.write_bytes(images.read_bytes()[:-100])
    batches = Batches(data, torch.arange(40), 8, torch.device("cpu"), workers=2)
    with pytest.raises(DataError, match=r"algo-1-00001\.images\.npy: short read at byte"):
        for _ in batches:
            pass
