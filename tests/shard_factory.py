"""Small npz shards in Prepare's format, drawn directly with numpy: 1-5 coloured blocks on a
noisy background, so counting is learnable in a few CPU seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def draw_bins(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` images uint8 [n, size, size, 3] and their counts (balanced 1..5)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 5 + 1).astype(np.int64)
    rng.shuffle(labels)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    cell = size // 3
    for i, count in enumerate(labels):
        base = rng.integers(60, 120, size=3)
        img = base + rng.integers(-12, 13, size=(size, size, 3))
        for c in rng.choice(9, size=count, replace=False):
            side = rng.integers(cell // 2, cell - 2)
            y0 = (c // 3) * cell + rng.integers(0, cell - side)
            x0 = (c % 3) * cell + rng.integers(0, cell - side)
            img[y0 : y0 + side, x0 : x0 + side] = rng.integers(150, 256, size=3)
        images[i] = np.clip(img, 0, 255)
    return images, labels


def write_shards(
    folder: Path, n: int, size: int = 32, seed: int = 0, shard_size: int = 64, host: str = "algo-1"
) -> Path:
    """`n` images as `<host>-<nnnnn>.npz` shards of at most `shard_size` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = draw_bins(n, size, seed)
    ids = np.asarray([f"{seed:03d}{i:05d}" for i in range(n)])
    for k, start in enumerate(range(0, n, shard_size)):
        sl = slice(start, start + shard_size)
        np.savez(folder / f"{host}-{k:05d}.npz", images=images[sl], labels=labels[sl], ids=ids[sl])
    return folder


def write_splits(root: Path, n_train: int, n_val: int, n_test: int = 0, size: int = 32) -> Path:
    """root/train, root/validation (and root/test) with disjoint seeds."""
    write_shards(root / "train", n_train, size, seed=1)
    write_shards(root / "validation", n_val, size, seed=2)
    if n_test:
        write_shards(root / "test", n_test, size, seed=3)
    return root
