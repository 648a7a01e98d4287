"""All of a host's outputs are built in a staging folder, then moved into place at the end.

A run that fails leaves whatever complete output was already there untouched; a run that
succeeds replaces exactly this host's files (stale shards of an earlier, larger run go).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

FOLDERS = ("train", "validation", "test", "report")


class Staging:
    def __init__(self, output_dir: Path, host: str) -> None:
        self.output_dir = output_dir
        self.host = host
        self.root = output_dir / f".staging-{host}"

    def __enter__(self) -> Staging:
        shutil.rmtree(self.root, ignore_errors=True)  # leftovers of a crashed run
        for folder in FOLDERS:
            (self.root / folder).mkdir(parents=True)
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def folder(self, name: str) -> Path:
        return self.root / name

    def commit(self) -> list[Path]:
        """Move every staged file into place; remove this host's files the new run lacks."""
        placed: list[Path] = []
        for folder in FOLDERS:
            target = self.output_dir / folder
            target.mkdir(parents=True, exist_ok=True)
            fresh = {p.name for p in (self.root / folder).iterdir()}
            for old in target.glob(f"{self.host}-*.npy"):  # shards' parts
                if old.name not in fresh:
                    old.unlink()
            for old in target.glob(f"*-{self.host}.*"):
                if old.name not in fresh:
                    old.unlink()
            for name in sorted(fresh):
                os.replace(self.root / folder / name, target / name)
                placed.append(target / name)
        return placed
