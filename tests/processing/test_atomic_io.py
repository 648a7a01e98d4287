"""Whole-or-nothing writes: an error mid-write leaves the old file and no temp behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from atomic_io import atomic_file, write_atomic


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "stats.json"
    write_atomic(target, b"complete")
    with pytest.raises(RuntimeError, match="killed"), atomic_file(target) as f:
        f.write(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json"]


def test_creates_missing_folders(tmp_path: Path):
    write_atomic(tmp_path / "a" / "b" / "c.bin", b"x")
    assert (tmp_path / "a" / "b" / "c.bin").read_bytes() == b"x"
