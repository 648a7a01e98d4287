"""The local stand-in for AWS storage: one home folder holding the object store and the records.

Layout under `BINCOUNT_HOME` (default `./.bincount`):

    s3/<bucket>/<key>          objects addressed by s3:// URIs
    executions/<id>/...        execution records and job sandboxes
    registry/...               model package groups and versions
    endpoints/...              endpoint, endpoint config and model records

Records are JSON files written to a temp name and renamed, and read-modify-write cycles hold
an advisory lock, so two CLI processes never see or leave a half-written record.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

HOME_ENV = "BINCOUNT_HOME"


def home_dir() -> Path:
    """The local home folder: `$BINCOUNT_HOME`, else `./.bincount`."""
    return Path(os.environ.get(HOME_ENV) or ".bincount").resolve()


def write_json(path: Path, data: object) -> None:
    """Write `data` as JSON to `path` through a temp file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_line(path: Path, data: object) -> None:
    """Append `data` as one JSON line, under the file's lock (writers never interleave)."""
    with locked(path), open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(data, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> object:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock named after `path` (for read-modify-write cycles)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def try_locked(path: Path) -> Iterator[bool]:
    """The lock of `locked(path)` if it is free right now: yields True holding it, False (not
    holding it) when another holder has it. A holder that died has released it: flock goes
    with the process, so a free lock over a record saying "in progress" means abandoned."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key/parts` -> (`bucket`, `key/parts`); a clear error for anything else."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"s3 URI without a bucket: {uri!r}")
    return bucket, key


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ObjectStore:
    """s3:// URIs mapped onto `<home>/s3/<bucket>/<key>`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, uri: str) -> Path:
        bucket, key = parse_s3_uri(uri)
        target = (self.root / bucket / key).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise ValueError(f"s3 URI escapes the store: {uri!r}")
        return target

    def uri(self, path: Path) -> str:
        rel = Path(path).resolve().relative_to(self.root.resolve())
        return "s3://" + rel.as_posix()

    def objects(self, uri: str) -> list[tuple[str, Path]]:
        """Every object under `uri` taken as an S3 prefix: (key relative to it, local path).

        Like S3, `s3://b/data` matches `data` itself and everything beneath `data/`.
        """
        base = self.path(uri)
        if base.is_file():
            return [(base.name, base)]
        if not base.is_dir():
            return []
        return sorted(
            (p.relative_to(base).as_posix(), p)
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def download(self, uri: str, dest: Path) -> int:
        """Copy everything under `uri` into the folder `dest`; the number of objects copied."""
        found = self.objects(uri)
        if not found:
            raise FileNotFoundError(f"no objects at {uri} (local store {self.path(uri)})")
        dest.mkdir(parents=True, exist_ok=True)
        for rel, src in found:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        return len(found)

    def put_file(self, src: Path, uri: str) -> None:
        target = self.path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_bytes(self, data: bytes, uri: str) -> None:
        target = self.path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)

    def upload_dir(self, src: Path, uri: str) -> int:
        """Copy every file under the folder `src` to the prefix `uri`; the number copied."""
        count = 0
        for p in sorted(Path(src).rglob("*")):
            if p.is_file():
                self.put_file(p, uri.rstrip("/") + "/" + p.relative_to(src).as_posix())
                count += 1
        return count

    def content_hash(self, uri: str) -> str:
        """A hash of every object's key and content under `uri` (for step caching)."""
        digest = hashlib.sha256()
        for rel, p in self.objects(uri):
            digest.update(rel.encode())
            digest.update(b"\0")
            digest.update(file_sha256(p).encode())
        return digest.hexdigest()

    def import_staging(self, staging: Path) -> int:
        """Copy a staging folder laid out as `<bucket>/<key>` into the store."""
        count = 0
        for bucket_dir in sorted(Path(staging).iterdir()):
            if bucket_dir.is_dir():
                count += self.upload_dir(bucket_dir, f"s3://{bucket_dir.name}")
        return count
