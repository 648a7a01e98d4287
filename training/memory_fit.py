"""Refuse, before loading anything, a dataset that cannot fit in this instance's memory.

Train holds both splits in memory (data.load_split), and so does every rank on a host. Without
this check a split too big for the instance is found out by the kernel's OOM killer minutes
into the job, with no word of why. The need is read from the shards' .npy headers alone.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

GIB = 1024**3
# Measured for today's in-memory path (issue 11): peak RSS of one rank is about 0.65 GiB
# (interpreter, torch, model) plus 1.8x the bytes of its train+validation arrays, because the
# per-shard arrays and their concatenation live together while a split loads.
BASE_BYTES = int(0.65 * GIB)
LOAD_FACTOR = 1.8
LOADED_MEMBERS = ("images.npy", "labels.npy")  # what load_split reads; ids stay on disk


class InsufficientMemory(RuntimeError):
    """The splits, as Train loads them, need more memory than the instance has available."""


def loaded_bytes(folder: str | Path) -> int:
    """Bytes of the arrays load_split would read from `folder`'s shards, from their headers.

    A missing folder or an unreadable shard counts 0: load_split reports those, in its words.
    """
    total = 0
    for shard in sorted(Path(folder).glob("*.npz")) if Path(folder).is_dir() else []:
        try:
            with zipfile.ZipFile(shard) as archive:
                for member in LOADED_MEMBERS:
                    if member in archive.namelist():
                        with archive.open(member) as f:
                            total += _array_bytes(f)
        except (OSError, ValueError, zipfile.BadZipFile):
            continue
    return total


def _array_bytes(f) -> int:
    major, _minor = np.lib.format.read_magic(f)
    if major == 1:
        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def available_bytes(meminfo: str | Path = "/proc/meminfo") -> int:
    """MemAvailable (what can be allocated without swapping), else free physical pages."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def needed_bytes(data_bytes: int, ranks_per_host: int) -> int:
    return ranks_per_host * (BASE_BYTES + int(LOAD_FACTOR * data_bytes))


def check_fits(
    train: str | Path, validation: str | Path, ranks_per_host: int, available: int
) -> int:
    """The bytes the host needs; InsufficientMemory, naming the sizes, when over `available`."""
    data = loaded_bytes(train) + loaded_bytes(validation)
    need = needed_bytes(data, ranks_per_host)
    if need > available:
        who = (
            f"{ranks_per_host} ranks per host load them all"
            if ranks_per_host > 1
            else "one process loads them"
        )
        raise InsufficientMemory(
            f"train+validation need {need / GIB:.1f} GiB in memory ({data / GIB:.1f} GiB of "
            f"arrays; {who}); this instance has {available / GIB:.1f} GiB available: use a "
            "larger instance or a smaller ImageSize/PerClassCap"
        )
    return need
