"""Prepare's npz shards, held whole in memory as uint8 tensors and served in batches.

The dataset is small (about 10k images at 224 px is 1.5 GB of uint8), so every shard is read
once; each epoch is then a permutation of indices, sharded across ranks the way
DistributedSampler would (padded so every rank runs the same number of steps).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from model import COUNTS


class DataError(ValueError):
    """A channel that is missing, empty or not in Prepare's shard format."""


@dataclass
class InMemoryImages:
    images: torch.Tensor  # uint8 [N, S, S, 3]
    labels: torch.Tensor  # int64 [N] class index (count - 1)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def to(self, device: torch.device) -> InMemoryImages:
        """Move to `device` once when it fits in a third of its memory; otherwise pin it, and
        `batches` copies each batch over asynchronously."""
        if device.type != "cuda":
            return self
        if self.images.nbytes < torch.cuda.get_device_properties(device).total_memory / 3:
            return InMemoryImages(self.images.to(device), self.labels.to(device))
        return InMemoryImages(self.images.pin_memory(), self.labels.pin_memory())


def count_images(folder: str | Path) -> int:
    """Images in `folder`'s shards, read from their labels' .npy headers alone (no pixels);
    DataError for a folder load_split would refuse for its layout, in its words."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data channel {folder} does not exist")
    shards = sorted(folder.glob("*.npz"))
    if not shards:
        raise DataError(f"data channel {folder} holds no *.npz shards")
    total = 0
    for shard in shards:
        try:
            with zipfile.ZipFile(shard) as archive:
                if "labels.npy" not in archive.namelist():
                    raise DataError(f"{shard} lacks labels")
                with archive.open("labels.npy") as f:
                    major, _minor = np.lib.format.read_magic(f)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if major == 1
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _fortran, _dtype = read_header(f)
        except DataError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{shard} is not a readable npz shard: {exc}") from None
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


def load_split(folder: str | Path) -> InMemoryImages:
    """Every `*.npz` in `folder`, sorted by name, concatenated; labels turned into class indices."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data channel {folder} does not exist")
    shards = sorted(folder.glob("*.npz"))
    if not shards:
        raise DataError(f"data channel {folder} holds no *.npz shards")
    images, labels = [], []
    for shard in shards:
        try:
            with np.load(shard, allow_pickle=False) as npz:
                missing = {"images", "labels"} - set(npz.files)
                if missing:
                    raise DataError(f"{shard} lacks {', '.join(sorted(missing))}")
                imgs, labs = npz["images"], npz["labels"]
        except DataError:
            raise
        except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile) as exc:
            # Not an npz at all (a bare .npy has no `with`), truncated, or damaged inside.
            raise DataError(f"{shard} is not a readable npz shard: {exc}") from None
        if imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[-1] != 3:
            raise DataError(
                f"{shard}: images must be uint8 [N,S,S,3], got {imgs.dtype} {imgs.shape}"
            )
        if imgs.shape[1] != imgs.shape[2] or len(labs) != len(imgs):
            raise DataError(f"{shard}: images {imgs.shape} and labels {labs.shape} do not match")
        bad = set(np.unique(labs).tolist()) - set(COUNTS)
        if bad:
            raise DataError(f"{shard}: labels outside {COUNTS}: {sorted(bad)}")
        images.append(imgs)
        labels.append(labs.astype(np.int64) - COUNTS[0])
    sizes = {im.shape[1] for im in images}
    if len(sizes) != 1:
        raise DataError(f"{folder}: shards have different image sizes {sorted(sizes)}")
    if not sum(len(lab) for lab in labels):
        raise DataError(f"data channel {folder} holds shards but no images")
    return InMemoryImages(
        torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))
    )


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


def batches(
    data: InMemoryImages, indices: torch.Tensor, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 NHWC images, labels) on `device`, `batch_size` at a time."""
    on_gpu = device.type == "cuda"
    for start in range(0, len(indices), batch_size):
        idx = indices[start : start + batch_size]
        if data.images.device == device:
            yield data.images[idx.to(device)], data.labels[idx.to(device)]
        else:
            imgs, labs = data.images[idx], data.labels[idx]
            if on_gpu:  # indexing makes an unpinned copy; pin it so the copy is asynchronous
                imgs, labs = imgs.pin_memory(), labs.pin_memory()
            yield imgs.to(device, non_blocking=True), labs.to(device, non_blocking=True)
