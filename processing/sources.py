"""Where Prepare reads from: an S3 bucket/prefix (the public dataset by default) or a folder.

Both hold `bin-images/<id>.jpg` and `metadata/<id>.json` under their root. Every S3 request
goes through one `Retrier` (retrying.py): throttling, 5xx, resets, timeouts, bodies cut short
and bodies that do not match their ETag's MD5 are tried again, never skipped. A missing
object is `ObjectMissing`, a forbidden one `ObjectForbidden` (the caller skips that image);
any other refusal stops the job with the key and the code. Requests are plain GETs over a
urllib3 pool as large as the workers, signed with botocore's SigV4 signer, or unsigned when
no credentials exist (the dataset bucket is public) (s3http.py); AWS_ENDPOINT_URL(_S3) is
honoured.

`fetch(relative, known)` returns the bytes with what identifies them at the source (S3: ETag,
size, VersionId; a folder: size and mtime), or no bytes when `known` is still current (S3
answers a conditional GET with 304): what the cache keys on. `list_names(folder)` lists an
S3 folder as ten key ranges at once (pages of 1,000 keys are sequential within a range).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path

import urllib3.exceptions
from failures import PrepareFailed
from ids import checked_path
from retrying import Retrier, describe
from s3http import S3Error, S3Http

NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
FORBIDDEN_CODES = {"AccessDenied", "403", "Forbidden"}
TRANSIENT_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "RequestTimeout", "InternalError", "ServiceUnavailable", "500", "502", "503", "504", "429",
    "MalformedListing",
}  # fmt: skip
# S3's ETag is the body's MD5 for single-part uploads without SSE-KMS/SSE-C.
MD5_ETAG = re.compile(r"[0-9a-fA-F]{32}")
# Listing splits: keys below "<folder>/1", then one range per leading digit 1-9 (the dataset's
# ids are numbers); every key falls in exactly one range whatever its first character.
LIST_BOUNDS = tuple("123456789")


class ObjectMissing(LookupError):
    """The object (image or metadata) does not exist in the source."""


class ObjectForbidden(LookupError):
    """The source refuses this one object (403) while the bucket itself is readable."""


class CorruptTransfer(Exception):
    """The body received is not the object's (length or MD5 differ): a transfer fault."""


@dataclass(frozen=True)
class Fetched:
    data: bytes | None  # None: `known` is still the object's current content
    identity: dict


def is_transient(err: BaseException) -> bool:
    if isinstance(err, S3Error):
        return err.code in TRANSIENT_CODES or err.status >= 500 or err.status == 429
    if isinstance(err, CorruptTransfer):
        return True
    # Resets, refused or timed-out connections, bodies cut off mid-read; not a malformed URL.
    return isinstance(err, urllib3.exceptions.HTTPError) and not isinstance(err, ValueError)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"), with a clear error otherwise."""
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise ValueError(f"not an s3://bucket[/key] URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def check_body(headers: dict, data: bytes, where: str) -> None:
    """CorruptTransfer unless `data` has the announced length and, where S3 says, its MD5."""
    length = headers.get("content-length")
    if length is not None and int(length) != len(data):
        raise CorruptTransfer(f"{where}: {len(data)} bytes received of {length}")
    etag = (headers.get("etag") or "").strip('"')
    encrypted = headers.get("x-amz-server-side-encryption", "").startswith("aws:kms") or (
        headers.get("x-amz-server-side-encryption-customer-algorithm")
    )
    if MD5_ETAG.fullmatch(etag) and not encrypted:
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if digest != etag.lower():
            raise CorruptTransfer(f"{where}: body MD5 {digest} is not its ETag {etag}")


class S3Source:
    def __init__(self, uri: str, client: S3Http | None = None, retrier: Retrier | None = None):
        self.bucket, prefix = split_s3_uri(uri)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client or S3Http(self.bucket)
        self.retrier = retrier or Retrier(is_transient)
        self.uri = uri

    def fetch(self, relative: str, known: dict | None = None) -> Fetched:
        key = self.prefix + relative
        where = f"s3://{self.bucket}/{key}"
        etag = (known or {}).get("etag")

        def get() -> Fetched:
            answer = self.client.get(key, if_none_match=etag)
            if answer.status == 304:
                return Fetched(None, known or {})
            check_body(answer.headers, answer.data, where)
            identity = {"etag": answer.headers.get("etag"), "size": len(answer.data)}
            if answer.headers.get("x-amz-version-id"):
                identity["version_id"] = answer.headers["x-amz-version-id"]
            return Fetched(answer.data, identity)

        try:
            return self.retrier.call(get, where)
        except S3Error as err:
            if err.code in NOT_FOUND_CODES:
                raise ObjectMissing(f"no {where}") from err
            if err.code in FORBIDDEN_CODES:
                raise ObjectForbidden(f"{err.code} on {where}") from err
            self.retrier.stop(f"reading {where} failed: {describe(err)}")

    def read(self, relative: str) -> bytes:
        data = self.fetch(relative).data
        assert data is not None  # an unconditional GET always has a body
        return data

    def list_names(self, folder: str) -> Iterator[str]:
        """File names (not keys) under `folder/`, in key order; ten ranges listed at once."""
        start = f"{self.prefix}{folder}/"
        bounds = [None, *(start + b for b in LIST_BOUNDS), None]
        ranges = list(pairwise(bounds))
        with ThreadPoolExecutor(len(ranges), thread_name_prefix="list") as pool:
            parts = [pool.submit(self._list_range, start, lo, hi) for lo, hi in ranges]
            for part in parts:  # in order, so names come sorted as S3 sorts keys
                yield from (key[len(start) :] for key in part.result())

    def _list_range(self, start: str, lo: str | None, hi: str | None) -> list[str]:
        """Keys k under `start` with lo < k <= hi (None: unbounded), every page retried."""
        where = f"listing s3://{self.bucket}/{start}"
        keys: list[str] = []
        token = None
        while True:
            try:
                page, token, truncated = self.retrier.call(
                    partial(self.client.list_page, start, token, None if token else lo), where
                )
            except S3Error as err:
                self.retrier.stop(f"{where} failed: {describe(err)}")
            for key in page:
                if hi is not None and key > hi:
                    return keys
                keys.append(key)
            if not truncated:
                return keys
            if not token:
                self.retrier.stop(f"{where}: a truncated page without a continuation token")

    def check(self) -> None:
        """Fail early, with the bucket's name, when it cannot be reached at all (403 included)."""
        try:
            self.retrier.call(
                lambda: self.client.list_page(self.prefix, max_keys=1), f"listing {self.uri}"
            )
        except S3Error as err:
            raise PrepareFailed(
                f"prepare: cannot read source {self.uri}: {err.code}: {err.message}"
            ) from err


class LocalSource:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.uri = str(self.root)

    def fetch(self, relative: str, known: dict | None = None) -> Fetched:
        path = checked_path(self.root, relative)
        try:
            with open(path, "rb") as f:
                status = os.fstat(f.fileno())
                identity = {"size": status.st_size, "mtime_ns": status.st_mtime_ns}
                if known == identity:
                    return Fetched(None, identity)
                return Fetched(f.read(), identity)
        except FileNotFoundError as err:
            raise ObjectMissing(f"no {path}") from err
        except PermissionError as err:
            raise ObjectForbidden(f"permission denied on {path}") from err

    def read(self, relative: str) -> bytes:
        data = self.fetch(relative).data
        assert data is not None
        return data

    def list_names(self, folder: str) -> Iterator[str]:
        base = self.root / folder
        if base.is_dir():
            yield from sorted(entry.name for entry in base.iterdir() if entry.is_file())

    def check(self) -> None:
        if not self.root.is_dir():
            raise PrepareFailed(f"prepare: source folder {self.root} does not exist")


def open_source(uri: str, workers: int, retrier: Retrier | None = None):
    if uri.startswith("s3://"):
        bucket, _ = split_s3_uri(uri)
        return S3Source(uri, S3Http(bucket, workers), retrier)
    return LocalSource(uri)


def read_uri(uri: str, workers: int = 4) -> bytes:
    """The bytes of a local path or an s3:// object (e.g. a file list), S3 retried."""
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        return S3Source(f"s3://{bucket}", S3Http(bucket, workers)).read(key)
    return Path(uri).read_bytes()
