"""Small shards in Prepare's format (processing/shards.py), drawn directly with numpy: 1-5
coloured blocks on a noisy background, so counting is learnable in a few CPU seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from shards import IDS, IMAGES, LABELS, shard_stems
from shards import part as shard_part

__all__ = ["IDS", "IMAGES", "LABELS", "shard_part", "shard_stems"]


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


def write_shard(stem: Path, images: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> Path:
    """One shard at `stem` (labels last, as Prepare writes it), its arrays as given: unlike
    shards.write_shard, nothing is converted, so tests can write the malformed shards that
    readers must refuse; returns `stem`."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    np.save(shard_part(stem, IMAGES), np.ascontiguousarray(images))
    np.save(shard_part(stem, IDS), np.asarray(ids, dtype=str))
    np.save(shard_part(stem, LABELS), np.asarray(labels))
    return stem


def read_split(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels, ids) of every shard in `folder`, concatenated in name order."""
    stems = shard_stems(folder)
    if not stems:
        return np.empty((0, 0, 0, 3), np.uint8), np.empty(0, np.int64), np.empty(0, str)
    parts = [[np.load(shard_part(s, sfx)) for s in stems] for sfx in (IMAGES, LABELS, IDS)]
    return tuple(np.concatenate(p) for p in parts)


def write_shards(
    folder: Path, n: int, size: int = 32, seed: int = 0, shard_size: int = 64, host: str = "algo-1"
) -> Path:
    """`n` images as `<host>-<nnnnn>` shards of at most `shard_size` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = draw_bins(n, size, seed)
    ids = np.asarray([f"{seed:03d}{i:05d}" for i in range(n)])
    for k, start in enumerate(range(0, n, shard_size)):
        sl = slice(start, start + shard_size)
        write_shard(folder / f"{host}-{k:05d}", images[sl], labels[sl], ids[sl])
    return folder


def write_splits(root: Path, n_train: int, n_val: int, n_test: int = 0, size: int = 32) -> Path:
    """root/train, root/validation (and root/test) with disjoint seeds."""
    write_shards(root / "train", n_train, size, seed=1)
    write_shards(root / "validation", n_val, size, seed=2)
    if n_test:
        write_shards(root / "test", n_test, size, seed=3)
    return root
