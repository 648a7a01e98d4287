"""Prepare's shards, read in place: memory that does not grow with the dataset.

A split is every `<stem>.labels.npy` in its channel with the `<stem>.images.npy` beside it
(processing/shards.py writes them). Labels are held in memory (8 bytes an image: 4 MB for the
whole Amazon Bin Image Dataset); pixels stay on disk, and each batch reads its images with one
`pread` apiece straight into a batch buffer. The page cache keeps what fits (every rank on a
host shares it, and it is not this process's RSS), so a small split is read from memory after
the first epoch and a 73 GB one streams from the instance's volume at the same peak RSS.

Each epoch is a seeded permutation, sharded across ranks the way DistributedSampler would
(padded so every rank runs the same number of steps); reader threads (pread releases the GIL)
fill the next batches while the current one trains, and each batch is pinned and copied to the
GPU asynchronously.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from model import COUNTS

LABELS, IMAGES = ".labels.npy", ".images.npy"
READ_AHEAD = 4  # batches read ahead of the one training: enough to hide a cold disk's latency


class DataError(ValueError):
    """A channel that is missing, empty or not in Prepare's shard format."""


@dataclass(frozen=True)
class _Shard:
    path: Path  # the .images.npy
    offset: int  # where its pixels start in the file
    count: int


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int, bool]:
    """(shape, dtype, data offset, fortran order) from a .npy file's header alone."""
    with open(path, "rb") as f:
        major, _minor = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read(f)
        return tuple(shape), dtype, f.tell(), fortran


def shard_stems(folder: str | Path) -> list[Path]:
    """The shards in `folder`, sorted by name; DataError when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data channel {folder} does not exist")
    stems = sorted(folder / p.name[: -len(LABELS)] for p in folder.glob(f"*{LABELS}"))
    if not stems:
        raise DataError(f"data channel {folder} holds no shards (*{LABELS} and *{IMAGES})")
    return stems


def count_images(folder: str | Path) -> int:
    """Images in `folder`'s shards, from their labels' .npy headers alone (no pixels)."""
    total = 0
    for stem in shard_stems(folder):
        labels = stem.with_name(stem.name + LABELS)
        try:
            shape, *_ = _npy_header(labels)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{labels} is not a readable .npy file: {exc}") from None
        total += int(shape[0]) if shape else 0
    if not total:
        raise DataError(f"data channel {folder} holds shards but no images")
    return total


def require_images(folder: str | Path, minimum: int, split: str, option: str) -> int:
    """The image count of `folder`; DataError naming both sizes and `option` when it is below
    `minimum` (a split that small cannot train or judge a model)."""
    count = count_images(folder)
    if count < minimum:
        raise DataError(
            f"the {split} split ({folder}) has {count} image{'s' if count != 1 else ''}, "
            f"fewer than the {minimum} required: lower {option} only if that is intended, "
            "or give Prepare more data (PerClassCap, the file list, the split ratios)"
        )
    return count


class ShardedImages:
    """One split: labels in memory as class indices, pixels read from the shards per batch."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        shards: list[_Shard] = []
        labels: list[np.ndarray] = []
        sizes: set[int] = set()
        for stem in shard_stems(folder):
            shard, shard_labels, side = self._open(stem)
            sizes.add(side)
            shards.append(shard)
            labels.append(shard_labels)
        if len(sizes) != 1:
            raise DataError(f"{folder}: shards have different image sizes {sorted(sizes)}")
        self.image_size = sizes.pop()
        self.image_bytes = self.image_size * self.image_size * 3
        self.shards = shards
        # Global index i lives in shard `owner[i]` at row `i - starts[owner[i]]`.
        counts = np.array([s.count for s in shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.owner = np.repeat(np.arange(len(shards)), counts)
        self.labels = torch.from_numpy(np.concatenate(labels).astype(np.int64) - COUNTS[0])
        if not len(self.labels):
            raise DataError(f"data channel {folder} holds shards but no images")

    @staticmethod
    def _open(stem: Path) -> tuple[_Shard, np.ndarray, int]:
        images = stem.with_name(stem.name + IMAGES)
        labels_path = stem.with_name(stem.name + LABELS)
        if not images.is_file():
            raise DataError(f"shard {stem} has labels but no {images.name}")
        try:
            shape, dtype, offset, fortran = _npy_header(images)
            labels = np.load(labels_path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"shard {stem} is not readable: {exc}") from None
        if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3 or fortran:
            raise DataError(
                f"{images}: images must be uint8 [N,S,S,3] in C order, got {dtype} {shape}"
            )
        if shape[1] != shape[2] or labels.shape != (shape[0],):
            raise DataError(
                f"shard {stem}: images {list(shape)} and labels {list(labels.shape)} do not match"
            )
        expected = offset + int(np.prod(shape, dtype=np.int64))
        if images.stat().st_size < expected:
            raise DataError(
                f"{images} is truncated: {images.stat().st_size} bytes, header says {expected}"
            )
        bad = set(np.unique(labels).tolist()) - set(COUNTS)
        if bad:
            raise DataError(f"shard {stem}: labels outside {COUNTS}: {sorted(bad)}")
        return _Shard(images, offset, int(shape[0])), labels, int(shape[1])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def read(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Images `indices` (in that order) as uint8 [len, S, S, 3], into `out` if given."""
        if out is None:
            out = np.empty((len(indices), self.image_size, self.image_size, 3), np.uint8)
        flat = out.reshape(len(out), -1)
        # Visit the rows in file order (a cold disk reads ahead); each lands in its own slot.
        # Files are opened per call: no descriptor is shared between reader threads, and none
        # stays open (a whole-dataset split has ~1,000 shards, near the open-files limit).
        fds: dict[int, int] = {}
        try:
            for slot in np.argsort(indices, kind="stable"):
                i = int(indices[slot])
                shard = int(self.owner[i])
                fd = fds.get(shard)
                if fd is None:
                    fd = fds[shard] = os.open(self.shards[shard].path, os.O_RDONLY)
                row = i - int(self.starts[shard])
                where = self.shards[shard].offset + row * self.image_bytes
                if os.preadv(fd, [flat[slot]], where) != self.image_bytes:
                    raise DataError(f"{self.shards[shard].path}: short read at byte {where}")
        finally:
            for fd in fds.values():
                os.close(fd)
        return out

    def head(self, n: int) -> torch.Tensor:
        """The first `n` images as a uint8 tensor (a probe for the exported model)."""
        return torch.from_numpy(self.read(np.arange(min(n, len(self)))))


def epoch_indices(
    n: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True
) -> torch.Tensor:
    """This rank's indices for `epoch`: a seeded permutation, padded and strided like
    DistributedSampler, so a resumed run sees exactly the order an uninterrupted one would."""
    if shuffle:
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=gen)
    else:
        order = torch.arange(n)
    if world_size > 1:
        total = -(-n // world_size) * world_size
        if total > n:
            order = torch.cat([order, order[: total - n]])
        order = order[rank::world_size]
    return order


class Batches:
    """(uint8 NHWC images, class labels) on `device`, `batch_size` at a time, in `indices`
    order, read ahead by `workers` threads. `waited` is the seconds the consumer spent waiting
    for data: near 0 means the data path keeps up."""

    def __init__(
        self,
        data: ShardedImages,
        indices: torch.Tensor,
        batch_size: int,
        device: torch.device,
        workers: int = 2,
    ) -> None:
        self.data, self.device = data, device
        self.order = indices.numpy()
        self.batch_size = batch_size
        self.workers = max(1, workers)
        self.waited = 0.0

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def _load(self, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.order[start : start + self.batch_size]
        images = torch.from_numpy(self.data.read(idx))
        labels = self.data.labels[torch.from_numpy(idx)]
        if self.device.type == "cuda":  # pinned, so the copy below is asynchronous
            images, labels = images.pin_memory(), labels.pin_memory()
        return images, labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        starts = range(0, len(self.order), self.batch_size)
        pending: queue.SimpleQueue = queue.SimpleQueue()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="batches") as pool:
            ahead = iter(starts)
            for start in ahead:
                pending.put(pool.submit(self._load, start))
                if pending.qsize() >= READ_AHEAD:
                    break
            try:
                while not pending.empty():
                    future = pending.get()
                    waited_from = time.perf_counter()
                    images, labels = future.result()
                    self.waited += time.perf_counter() - waited_from
                    nxt = next(ahead, None)
                    if nxt is not None:
                        pending.put(pool.submit(self._load, nxt))
                    yield (
                        images.to(self.device, non_blocking=True),
                        labels.to(self.device, non_blocking=True),
                    )
            finally:
                while not pending.empty():
                    pending.get().cancel()
