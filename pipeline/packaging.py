"""Code archives and staged files: what the definition points at in S3, built locally.

The definition never uploads anything. Each source dir is packed into a reproducible
`sourcedir.tar.gz` (sorted entries, mtime 0, uid/gid 0, no caches, gzip mtime 0) whose key is
`<prefix>/code/<sha256[:16]>/sourcedir.tar.gz`, so the definition changes only when the code
does. Every other file the SDK would upload (runproc.sh, install_requirements.py) is caught by
`StagingSession`. `write_staged` writes them to `<staging_dir>/<bucket>/<key>`, which the CDK
app deploys to the same keys and the local runner copies into its store
(`pipeline.definition.stage_files` builds the definition and writes its files; this module sits
below the definition and never imports it).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from sagemaker.core.workflow.pipeline_context import PipelineSession

from pipeline.settings import REPO_ROOT, Settings

SOURCE_DIRS = {"processing": REPO_ROOT / "processing", "training": REPO_ROOT / "training"}
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class CodeArchive:
    """One packed source dir and the S3 key it lives under."""

    name: str
    key: str
    body: bytes

    def uri(self, settings: Settings) -> str:
        return f"s3://{settings.bucket}/{self.key}"

    @property
    def filename(self) -> str:
        """`sourcedir.tar.gz`: its name inside an input channel that delivers it."""
        return self.key.rsplit("/", 1)[-1]


def _files(source_dir: Path) -> list[Path]:
    if not source_dir.is_dir():
        raise FileNotFoundError(f"source dir not found: {source_dir}")
    found = []
    for root, dirs, files in os.walk(source_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        found.extend(
            Path(root) / f
            for f in files
            if not f.endswith(_SKIP_SUFFIXES) and not f.startswith(".")
        )
    return sorted(found, key=lambda p: p.relative_to(source_dir).as_posix())


def pack(source_dir: Path) -> bytes:
    """A tar.gz of the dir's files, byte-identical for identical contents."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _files(source_dir):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(source_dir).as_posix())
            info.size = len(data)
            # By the file's x bits, not by who packs it (root may execute any file with one).
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def code_archive(settings: Settings, name: str, source_dir: Path | None = None) -> CodeArchive:
    """Pack one source dir (`processing` or `training` by default) under its content key."""
    body = pack(source_dir or SOURCE_DIRS[name])
    digest = hashlib.sha256(body).hexdigest()[:16]
    key = "/".join(p for p in (settings.prefix, "code", digest, "sourcedir.tar.gz") if p)
    return CodeArchive(name=name, key=key, body=body)


class StagingSession(PipelineSession):
    """A PipelineSession that records uploads instead of making them and never asks AWS.

    Files land in `staged` as {(bucket, key): bytes}; `default_bucket()` answers the configured
    bucket without checking that it exists, and roles are taken as given.
    """

    def __init__(self, settings: Settings, boto_session, sagemaker_config: dict):
        self.staged: dict[tuple[str, str], bytes] = {}
        super().__init__(
            boto_session=boto_session,
            default_bucket=settings.bucket,
            sagemaker_config=sagemaker_config,
        )

    def default_bucket(self) -> str:
        return self._default_bucket_name_override

    def expand_role(self, role: str) -> str:
        # Roles arrive as ARNs or CloudFormation placeholders: never look them up in IAM.
        return role

    def upload_string_as_file_body(self, body, bucket, key, kms_key=None) -> str:
        self.stage(bucket, key, body.encode() if isinstance(body, str) else bytes(body))
        return f"s3://{bucket}/{key}"

    def upload_data(self, path, bucket=None, key_prefix="data", callback=None, extra_args=None):
        bucket = bucket or self.default_bucket()
        root = Path(path)
        if root.is_file():
            self.stage(bucket, f"{key_prefix}/{root.name}", root.read_bytes())
            return f"s3://{bucket}/{key_prefix}/{root.name}"
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            self.stage(
                bucket, f"{key_prefix}/{file.relative_to(root).as_posix()}", file.read_bytes()
            )
        return f"s3://{bucket}/{key_prefix}"

    def stage(self, bucket: str, key: str, body: bytes) -> None:
        previous = self.staged.get((bucket, key))
        if previous is not None and previous != body:
            raise ValueError(f"two different files staged to s3://{bucket}/{key}")
        self.staged[(bucket, key)] = body


def write_staged(staged: dict[tuple[str, str], bytes], staging_dir: Path) -> list[Path]:
    """Write files to `<staging_dir>/<bucket>/<key>` (temp name, then rename); skip unchanged."""
    written = []
    for (bucket, key), body in sorted(staged.items()):
        target = staging_dir / bucket / key
        if target.is_file() and target.read_bytes() == body:
            written.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_bytes(body)
        tmp.replace(target)
        written.append(target)
    return written
