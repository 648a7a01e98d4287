"""Where Prepare reads from: an S3 bucket/prefix (the public dataset by default) or a folder.

Both hold `bin-images/<id>.jpg` and `metadata/<id>.json` under their root. Every S3 request
goes through one `Retrier` (retrying.py): throttling, 5xx, resets, timeouts, bodies cut short
and bodies that do not match their ETag's MD5 are tried again, never skipped. A missing
object is `ObjectMissing`, a forbidden one `ObjectForbidden` (the caller skips that image);
any other refusal stops the job with the key and the code. Clients pool as many connections
as there are workers, honour AWS_ENDPOINT_URL(_S3), and fall back to unsigned requests when
no credentials exist (the dataset bucket is public).

`fetch(relative, known)` returns the bytes with what identifies them at the source (S3: ETag,
size, VersionId; a folder: size and mtime), or no bytes when `known` is still current (S3
answers a conditional GET with 304): what the cache keys on.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as ConnectFailed  # refused, DNS, proxy
from failures import PrepareFailed
from ids import checked_path
from retrying import Retrier, describe

NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
FORBIDDEN_CODES = {"AccessDenied", "403", "Forbidden"}
TRANSIENT_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "RequestTimeout", "InternalError", "ServiceUnavailable", "500", "502", "503", "504", "429",
}  # fmt: skip
NOT_MODIFIED_CODES = {"304", "NotModified"}
# S3's ETag is the body's MD5 for single-part uploads without SSE-KMS/SSE-C.
MD5_ETAG = re.compile(r"[0-9a-fA-F]{32}")


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


TRANSIENT_ERRORS = (
    ConnectFailed,
    CorruptTransfer,
    FlexibleChecksumError,
    HTTPClientError,  # resets, closed connections, read timeouts, bodies cut off mid-read
    IncompleteReadError,
)


def is_transient(err: BaseException) -> bool:
    if isinstance(err, ClientError):
        code, status = error_code(err), error_status(err)
        return code in TRANSIENT_CODES or status >= 500 or status == 429
    return isinstance(err, TRANSIENT_ERRORS)


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def error_status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def s3_client(workers: int = 16, total_attempts: int = 1, unsigned: bool | None = None):
    """A thread-safe S3 client sized for `workers` concurrent requests.

    botocore's own retries are off by default: the Retrier does them all, so that every
    transient failure (truncated and corrupted bodies too) follows one policy and is counted.
    """
    session = boto3.session.Session()
    if unsigned is None:
        unsigned = session.get_credentials() is None
    config = Config(
        retries={"mode": "standard", "total_max_attempts": total_attempts},
        max_pool_connections=max(10, workers + 4),
        connect_timeout=10,
        read_timeout=60,
        signature_version=UNSIGNED if unsigned else None,
    )
    return session.client("s3", config=config)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"), with a clear error otherwise."""
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise ValueError(f"not an s3://bucket[/key] URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def check_body(answer: dict, data: bytes, where: str) -> None:
    """CorruptTransfer unless `data` has the announced length and, where S3 says, its MD5."""
    length = answer.get("ContentLength")
    if length is not None and length != len(data):
        raise CorruptTransfer(f"{where}: {len(data)} bytes received of {length}")
    etag = (answer.get("ETag") or "").strip('"')
    encrypted = answer.get("ServerSideEncryption", "").startswith("aws:kms") or answer.get(
        "SSECustomerAlgorithm"
    )
    if MD5_ETAG.fullmatch(etag) and not encrypted:
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if digest != etag.lower():
            raise CorruptTransfer(f"{where}: body MD5 {digest} is not its ETag {etag}")


class S3Source:
    def __init__(self, uri: str, client, retrier: Retrier | None = None) -> None:
        self.bucket, prefix = split_s3_uri(uri)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client
        self.retrier = retrier or Retrier(is_transient)
        self.uri = uri

    def fetch(self, relative: str, known: dict | None = None) -> Fetched:
        key = self.prefix + relative
        where = f"s3://{self.bucket}/{key}"

        def get() -> Fetched:
            request = {"Bucket": self.bucket, "Key": key}
            if known and known.get("etag"):
                request["IfNoneMatch"] = known["etag"]
            try:
                answer = self.client.get_object(**request)
            except ClientError as err:
                if error_code(err) in NOT_MODIFIED_CODES or error_status(err) == 304:
                    return Fetched(None, known or {})
                raise
            data = answer["Body"].read()
            check_body(answer, data, where)
            identity = {"etag": answer.get("ETag"), "size": len(data)}
            if answer.get("VersionId"):
                identity["version_id"] = answer["VersionId"]
            return Fetched(data, identity)

        try:
            return self.retrier.call(get, where)
        except ClientError as err:
            code = error_code(err)
            if code in NOT_FOUND_CODES:
                raise ObjectMissing(f"no {where}") from err
            if code in FORBIDDEN_CODES:
                raise ObjectForbidden(f"{code} on {where}") from err
            self.retrier.stop(f"reading {where} failed: {describe(err)}")

    def read(self, relative: str) -> bytes:
        data = self.fetch(relative).data
        assert data is not None  # an unconditional GET always has a body
        return data

    def list_names(self, folder: str) -> Iterator[str]:
        """File names (not keys) under `folder/`, every page retried like any request."""
        start = f"{self.prefix}{folder}/"
        where = f"listing s3://{self.bucket}/{start}"
        request = {"Bucket": self.bucket, "Prefix": start}
        while True:
            try:
                page = self.retrier.call(partial(self.client.list_objects_v2, **request), where)
            except ClientError as err:
                self.retrier.stop(f"{where} failed: {describe(err)}")
            for entry in page.get("Contents", []):
                yield entry["Key"][len(start) :]
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                self.retrier.stop(f"{where}: a truncated page without a continuation token")
            request["ContinuationToken"] = token

    def check(self) -> None:
        """Fail early, with the bucket's name, when it cannot be reached at all (403 included)."""
        try:
            self.retrier.call(
                lambda: self.client.list_objects_v2(
                    Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1
                ),
                f"listing {self.uri}",
            )
        except ClientError as err:
            raise PrepareFailed(
                f"prepare: cannot read source {self.uri}: {error_code(err)}: {err}"
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
        return S3Source(uri, s3_client(workers), retrier)
    return LocalSource(uri)


def read_uri(uri: str, workers: int = 4) -> bytes:
    """The bytes of a local path or an s3:// object (e.g. a file list), S3 retried."""
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        return S3Source(f"s3://{bucket}", s3_client(workers)).read(key)
    return Path(uri).read_bytes()
