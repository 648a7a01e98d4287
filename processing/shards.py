"""Writes one split's images into `<host>-<nnnnn>.npz` shards of at most `shard_size` images.

Each shard is an uncompressed npz (images uint8 [N,S,S,3], labels int64 [N], ids <U [N]),
written to a temp name and renamed. Only one shard's worth of images is held in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from atomic_io import atomic_file


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
        path = self.folder / f"{self.host}-{len(self.written):05d}.npz"
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as f:
            np.savez(
                f,
                images=self.images[:n],
                labels=np.asarray(self.labels, dtype=np.int64),
                ids=np.asarray(self.ids, dtype=str),
            )
        self.written.append(path)
        self.ids, self.labels = [], []
