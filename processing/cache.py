"""Fetched objects kept on disk (`--cache-dir`), keyed on what identifies their content.

One file per object, at `<cache>/<bin-images|metadata>/<name>` (ids are checked, and the
path is refused if it would leave the cache): a header line naming the source's identity of
the content (S3: ETag, size, VersionId; a folder: size, mtime) and the data's BLAKE2b, then
the data. An entry whose header, length or hash is wrong is damaged and fetched again; an
entry whose identity the source no longer confirms (a changed object) is replaced. Each entry
is written whole under a temp name, then renamed. Any failure to read or write the cache
other than a missing or damaged entry (disk full, permission denied) stops the job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from atomic_io import write_atomic
from failures import PrepareFailed
from ids import checked_path

log = logging.getLogger("prepare")
MAGIC = b"bincount-cache 1\n"


@dataclass(frozen=True)
class Entry:
    identity: dict
    data: bytes


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class ContentCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # Fail now, not after the downloads; one probe per process (workers probe too).
            probe = self.root / f".writable-{os.getpid()}"
            write_atomic(probe, b"")
            probe.unlink()
        except OSError as err:
            raise PrepareFailed(f"prepare: cannot use --cache-dir {self.root}: {err}") from err

    def load(self, relative: str) -> Entry | None:
        """The cached entry, or None when absent or damaged."""
        path = checked_path(self.root, relative)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise PrepareFailed(f"prepare: cannot read the cache entry {path}: {err}") from err
        entry = parse(blob)
        if entry is None:
            log.info("cache entry %s is damaged; fetching it again", path)
        return entry

    def store(self, relative: str, identity: dict, data: bytes) -> None:
        path = checked_path(self.root, relative)
        header = {"identity": identity, "size": len(data), "blake2b": digest(data)}
        line = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        try:
            write_atomic(path, MAGIC + line + data)
        except OSError as err:
            raise PrepareFailed(f"prepare: cannot write the cache entry {path}: {err}") from err


def parse(blob: bytes) -> Entry | None:
    if not blob.startswith(MAGIC):
        return None
    line, newline, data = blob[len(MAGIC) :].partition(b"\n")
    try:
        header = json.loads(line) if newline else None
    except ValueError:
        return None
    if (
        not isinstance(header, dict)
        or not isinstance(header.get("identity"), dict)
        or header.get("size") != len(data)
        or header.get("blake2b") != digest(data)
    ):
        return None
    return Entry(header["identity"], data)
