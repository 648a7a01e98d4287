"""Spot-safe checkpoints: the newest two kept, each replaced atomically and verified on load.

A checkpoint is read with `torch.load(weights_only=True)`, so a crafted file cannot run code:
everything in it is tensors and plain Python values (numpy's RNG state is stored as a tensor).
It carries a digest of its own content, because PyTorch's zip reader does not notice flipped
bytes. A file that cannot be read, fails its digest or the caller's check is moved aside as
`<name>.damaged` and the previous one is tried; with none usable, training starts afresh.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from atomic_files import atomic_file

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_NAME = "checkpoint.previous.pt"
DAMAGED_SUFFIX = ".damaged"
DIGEST_KEY = "digest"


class DamagedCheckpoint(ValueError):
    """A checkpoint that cannot be trusted: unreadable, unsafe, altered, or not what it claims."""


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
    """Every generator's state as tensors and plain values (what weights_only may load)."""
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": name,
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["bit_generator"],
            numpy_state["key"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def content_digest(value: Any) -> str:
    """sha256 over a nested structure of dicts, sequences, tensors and plain values."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def _feed(h, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"tensor {value.dtype} {tuple(value.shape)};".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        h.update(f"dict {len(value)};".encode())
        for key in sorted(value, key=repr):
            h.update(f"{key!r}:".encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__} {len(value)};".encode())
        for item in value:
            _feed(h, item)
    else:
        h.update(f"{value!r};".encode())


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """Write `state` (and its digest) as folder/checkpoint.pt, the one it replaces becoming
    checkpoint.previous.pt. Each file is whole or absent: temp file, fsync, rename."""
    target = folder / CHECKPOINT_NAME
    with atomic_file(target) as f:
        torch.save({**state, DIGEST_KEY: content_digest(state)}, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the renames: a spot reclaim may follow at once
        if target.exists():
            os.replace(target, folder / PREVIOUS_NAME)
    return target


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The state saved in `path`; DamagedCheckpoint when it is unreadable, unsafe or altered."""
    try:
        # weights_only: tensors and plain values only; any other object is refused, not built.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, garbage, an unsafe pickle: all mean "not usable"
        raise DamagedCheckpoint(f"unreadable: {_first_line(exc)}") from None
    if not isinstance(state, dict) or DIGEST_KEY not in state:
        raise DamagedCheckpoint("not a checkpoint written by this trainer (no digest)")
    saved = state.pop(DIGEST_KEY)
    if content_digest(state) != saved:
        raise DamagedCheckpoint("its content does not match its digest")
    return state


def load_checkpoint(
    folder: Path | None, verify: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any] | None:
    """The newest usable state (checkpoint.pt, else checkpoint.previous.pt), or None.

    `verify(state)` raises DamagedCheckpoint for a state the caller cannot resume from. A
    damaged file is renamed `<name>.damaged` (kept for a look, out of the next save's way).
    """
    if folder is None:
        return None
    damaged = False
    for path in (folder / CHECKPOINT_NAME, folder / PREVIOUS_NAME):
        if not path.is_file():
            continue
        try:
            state = read_checkpoint(path)
            if verify is not None:
                verify(state)
        except DamagedCheckpoint as exc:
            damaged = True
            aside = path.with_name(path.name + DAMAGED_SUFFIX)
            os.replace(path, aside)
            print(f"checkpoint: WARNING: {path} is damaged ({exc}); moved to {aside.name}")
            continue
        if damaged:
            print(f"checkpoint: resuming from the previous good checkpoint {path.name}")
        return state
    if damaged:
        print(f"checkpoint: WARNING: no usable checkpoint in {folder}; starting afresh")
    return None


def require_fields(state: Mapping[str, Any], fields: Mapping[str, type | tuple[type, ...]]) -> None:
    """DamagedCheckpoint unless `state` has every field, each of its expected type."""
    missing = sorted(set(fields) - set(state))
    if missing:
        raise DamagedCheckpoint(f"missing {', '.join(missing)}")
    for name, expected in fields.items():
        if not isinstance(state[name], expected):
            raise DamagedCheckpoint(f"{name} is a {type(state[name]).__name__}")


def require_same_tensors(
    what: str, saved: Mapping[str, Any], expected: Mapping[str, torch.Tensor]
) -> None:
    """DamagedCheckpoint unless `saved` has exactly `expected`'s names, shapes and dtypes, and
    nothing non-finite."""
    if set(saved) != set(expected):
        odd = sorted(set(saved) ^ set(expected))[:3]
        raise DamagedCheckpoint(f"{what} does not match the model (e.g. {', '.join(odd)})")
    for name, tensor in expected.items():
        value = saved[name]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            raise DamagedCheckpoint(f"{what}[{name}] has the wrong shape")
        if value.dtype != tensor.dtype:
            raise DamagedCheckpoint(f"{what}[{name}] is {value.dtype}, not {tensor.dtype}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise DamagedCheckpoint(f"{what}[{name}] holds non-finite values")


def require_optimizer_matches(saved: Mapping[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """DamagedCheckpoint unless `saved` (an optimizer state dict) fits `optimizer`'s params."""
    groups = saved.get("param_groups")
    if not isinstance(groups, list) or not isinstance(saved.get("state"), dict):
        raise DamagedCheckpoint("optimizer state lacks param_groups or state")
    if len(groups) != len(optimizer.param_groups):
        raise DamagedCheckpoint("optimizer has a different number of parameter groups")
    shapes: dict[Any, torch.Size] = {}
    for group, live in zip(groups, optimizer.param_groups, strict=True):
        ids = group.get("params") if isinstance(group, dict) else None
        if not isinstance(ids, list) or len(ids) != len(live["params"]):
            raise DamagedCheckpoint("optimizer group sizes do not match the model")
        shapes.update({i: p.shape for i, p in zip(ids, live["params"], strict=True)})
    for key, per_param in saved["state"].items():
        if key not in shapes or not isinstance(per_param, dict):
            raise DamagedCheckpoint(f"optimizer state for unknown parameter {key!r}")
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != shapes[key]:
                raise DamagedCheckpoint(f"optimizer {name} of parameter {key} has the wrong shape")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
