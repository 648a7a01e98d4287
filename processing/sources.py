"""Where Prepare reads from: an S3 bucket/prefix (the public dataset by default) or a folder.

Both hold `bin-images/<id>.jpg` and `metadata/<id>.json` under their root. S3 clients retry
throttling and 5xx with backoff, pool as many connections as there are workers, honour
AWS_ENDPOINT_URL(_S3), and fall back to unsigned requests when no credentials exist (the
dataset bucket is public).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
# What is worth another try once botocore's own retries are spent (or its retry quota is,
# under sustained throttling), and what botocore never retries (a body cut off mid-read).
TRANSIENT_CODES = {"SlowDown", "Throttling", "RequestTimeout", "InternalError", "500", "502", "503"}
TRANSIENT_ERRORS = (
    ConnectionClosedError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
OUTER_ATTEMPTS = 4


class ObjectMissing(LookupError):
    """The object (image or metadata) does not exist in the source."""


def s3_client(workers: int = 16, max_attempts: int = 10, unsigned: bool | None = None):
    """A thread-safe S3 client sized for `workers` concurrent requests."""
    session = boto3.session.Session()
    if unsigned is None:
        unsigned = session.get_credentials() is None
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
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


class S3Source:
    def __init__(self, uri: str, client) -> None:
        self.bucket, prefix = split_s3_uri(uri)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client
        self.uri = uri

    def read(self, relative: str) -> bytes:
        for attempt in range(1, OUTER_ATTEMPTS + 1):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + relative)
                return answer["Body"].read()
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code")
                if code in NOT_FOUND_CODES:
                    raise ObjectMissing(f"no s3://{self.bucket}/{self.prefix}{relative}") from err
                if code not in TRANSIENT_CODES or attempt == OUTER_ATTEMPTS:
                    raise
            except TRANSIENT_ERRORS:
                if attempt == OUTER_ATTEMPTS:
                    raise
            time.sleep(random.uniform(0, min(20.0, 2.0**attempt)))
        raise AssertionError("unreachable")

    def list_names(self, folder: str) -> Iterator[str]:
        """File names (not keys) directly under `folder/`."""
        paginator = self.client.get_paginator("list_objects_v2")
        start = f"{self.prefix}{folder}/"
        for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
            for entry in page.get("Contents", []):
                yield entry["Key"][len(start) :]

    def check(self) -> None:
        """Fail early, with the bucket's name, when it cannot be reached at all."""
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code")
            raise SystemExit(f"prepare: cannot read source {self.uri}: {code}: {err}") from err


class LocalSource:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.uri = str(self.root)

    def read(self, relative: str) -> bytes:
        try:
            return (self.root / relative).read_bytes()
        except FileNotFoundError as err:
            raise ObjectMissing(f"no {self.root / relative}") from err

    def list_names(self, folder: str) -> Iterator[str]:
        base = self.root / folder
        if base.is_dir():
            yield from sorted(entry.name for entry in base.iterdir() if entry.is_file())

    def check(self) -> None:
        if not self.root.is_dir():
            raise SystemExit(f"prepare: source folder {self.root} does not exist")


def open_source(uri: str, workers: int):
    return S3Source(uri, s3_client(workers)) if uri.startswith("s3://") else LocalSource(uri)


def read_uri(uri: str, workers: int = 4) -> bytes:
    """The bytes of a local path or an s3:// object (e.g. a file list)."""
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        return s3_client(workers).get_object(Bucket=bucket, Key=key)["Body"].read()
    return Path(uri).read_bytes()
