"""Spot-safe checkpoints: one file per job, replaced atomically after every epoch."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from atomic_files import atomic_file

CHECKPOINT_NAME = "checkpoint.pt"


def usable_checkpoint_dir(path: str | None) -> Path | None:
    """`path` created if needed, or None (with one line saying why) when it cannot be written."""
    if not path:
        return None
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as exc:
        print(f"checkpoints: {folder} is not writable ({exc.strerror}); not checkpointing")
        return None
    return folder


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """Write `state` to folder/checkpoint.pt through a temp file and a rename."""
    target = folder / CHECKPOINT_NAME
    with atomic_file(target) as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename: a spot reclaim may follow at once
    return target


def load_checkpoint(folder: Path | None) -> dict[str, Any] | None:
    """The saved state, or None when there is none yet."""
    if folder is None or not (folder / CHECKPOINT_NAME).is_file():
        return None
    # weights_only=False: the state holds optimizer/RNG objects we wrote ourselves.
    return torch.load(folder / CHECKPOINT_NAME, map_location="cpu", weights_only=False)
