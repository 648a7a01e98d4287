"""Prepare's shard format: one split's images as `<host>-<nnnnn>` shards of plain .npy files.

A shard is three files side by side, each written to a temp name and renamed:

    <stem>.images.npy   uint8 [N, S, S, 3]  RGB pixels, C order
    <stem>.ids.npy      <U [N]              image ids exactly as in the dataset
    <stem>.labels.npy   int64 [N]           the count (1..5), not a class index

The labels file is written last, so a shard exists when its labels file does. Plain .npy
(not npz) because readers take images in place, by offset, without loading a shard whole
(training/data.py reads one image with one pread; `np.load(mmap_mode="r")` works too), and
because np.save writes a C-order array straight to the file, where np.savez copied it twice
into a zip member while holding the GIL. Only one shard's worth of images is held in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from atomic_io import atomic_file

LABELS = ".labels.npy"
IMAGES = ".images.npy"
IDS = ".ids.npy"
SUFFIXES = (IMAGES, IDS, LABELS)


class ShardError(ValueError):
    """A shard that is missing a part, unreadable, or not in this format."""


def shard_stems(folder: Path) -> list[Path]:
    """Every shard in `folder` (as `folder/<stem>`), sorted by name; [] when there is none."""
    if not folder.is_dir():
        return []
    return sorted(folder / p.name[: -len(LABELS)] for p in folder.glob(f"*{LABELS}"))


def part(stem: Path, suffix: str) -> Path:
    return stem.with_name(stem.name + suffix)


def write_shard(stem: Path, images: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
    """Write one shard; its labels file, which makes it visible, goes last."""
    if not (len(images) == len(labels) == len(ids)):
        raise ShardError(f"{stem.name}: {len(images)} images, {len(labels)} labels, {len(ids)} ids")
    for suffix, array in (
        (IMAGES, np.ascontiguousarray(images, dtype=np.uint8)),
        (IDS, np.asarray(ids, dtype=str)),
        (LABELS, np.asarray(labels, dtype=np.int64)),
    ):
        with atomic_file(part(stem, suffix)) as f:
            np.save(f, array, allow_pickle=False)


def read_shard(stem: Path, mmap: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels, ids) of one shard; images memory-mapped unless `mmap` is False."""
    try:
        images = np.load(part(stem, IMAGES), mmap_mode="r" if mmap else None, allow_pickle=False)
        labels = np.load(part(stem, LABELS), allow_pickle=False)
        ids = np.load(part(stem, IDS), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ShardError(f"shard {stem.name} is unreadable: {exc}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ShardError(
            f"shard {stem.name}: images must be uint8 [N,S,S,3], got {images.dtype} "
            f"{list(images.shape)}"
        )
    if not (len(images) == len(labels) == len(ids)):
        raise ShardError(
            f"shard {stem.name}: {len(images)} images, {len(labels)} labels, {len(ids)} ids"
        )
    return images, labels, ids


class ShardWriter:
    def __init__(self, folder: Path, host: str, shard_size: int, image_size: int) -> None:
        if shard_size < 1:
            raise SystemExit(f"prepare: --shard-size must be >= 1, got {shard_size}")
        self.folder = folder
        self.host = host
        self.shard_size = shard_size
        self.images = np.empty((shard_size, image_size, image_size, 3), dtype=np.uint8)
        self.labels: list[int] = []
        self.ids: list[str] = []
        self.written: list[Path] = []
        self.count = 0

    def add(self, image_id: str, label: int, image: np.ndarray) -> None:
        self.images[len(self.ids)] = image
        self.ids.append(image_id)
        self.labels.append(label)
        self.count += 1
        if len(self.ids) == self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.ids:
            return
        n = len(self.ids)
        stem = self.folder / f"{self.host}-{len(self.written):05d}"
        self.folder.mkdir(parents=True, exist_ok=True)
        write_shard(stem, self.images[:n], np.asarray(self.labels), np.asarray(self.ids))
        self.written.append(stem)
        self.ids, self.labels = [], []
