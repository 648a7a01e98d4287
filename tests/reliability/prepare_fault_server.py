"""A fault-injecting S3 endpoint on 127.0.0.1 for Prepare's reliability tests.

A minimal S3 of its own (GetObject with If-None-Match, HeadObject, ListObjectsV2 with
pagination and start-after, path-style) serving one bucket from a dict, so that every fault
is exactly the one asked for. Which request fails, and how, is decided by a seeded hash of
(request target, how many times that target was asked before): the same seed gives the same
faults whatever the threads' interleaving, and at most `max_faults_per_key` faults hit one
target, so a client that retries enough always gets through. Keys in `forbidden` always
answer 403.

Faults: `slowdown` (503 SlowDown), `500`, `502` (a proxy's HTML page), `503`
(ServiceUnavailable), `truncate` (Content-Length of the whole body, half of it sent, then
the connection closed), `corrupt` (the whole body with bytes flipped: its MD5 no longer
matches the ETag), `reset` (the connection reset, no answer at all).

The server serves at most `max_requests` requests and for at most `lifetime_s` seconds, then
stops by itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

STATUS_FAULTS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Service is unable to handle request."),
}
KINDS = (*STATUS_FAULTS, "502", "truncate", "corrupt", "reset")
BODY_FAULTS = {"truncate", "corrupt"}  # only where there is a body to damage (GetObject)


@dataclass
class FaultPlan:
    seed: int = 0
    rates: dict[str, float] = field(default_factory=dict)  # kind -> share of requests
    max_faults_per_key: int = 3
    forbidden: frozenset[str] = frozenset()  # keys that always answer 403 AccessDenied
    deny_bucket: bool = False  # listing the bucket answers 403 AccessDenied
    listing_faults: bool = True  # listings get status faults, resets and truncation too

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(KINDS)
        if unknown or sum(self.rates.values()) > 1:
            raise ValueError(f"bad fault rates {self.rates} (kinds: {KINDS})")

    def fault(self, target: str, nth: int, allowed: set[str]) -> str:
        """The fault for the nth request of `target` (0-based), or ""."""
        if nth >= self.max_faults_per_key:
            return ""
        digest = hashlib.blake2b(f"{self.seed}|{target}|{nth}".encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big") / 2**64
        for kind in KINDS:
            share = self.rates.get(kind, 0.0)
            if point < share:
                return kind if kind in allowed else ""
            point -= share
        return ""


@dataclass
class StoredObject:
    data: bytes
    etag: str
    version: int


class FaultyS3:
    def __init__(
        self,
        bucket: str,
        objects: dict[str, bytes],
        plan: FaultPlan | None = None,
        page_size: int = 1000,
        max_requests: int = 100_000,
        lifetime_s: float = 120.0,
    ) -> None:
        self.bucket = bucket
        self.plan = plan or FaultPlan()
        self.page_size = page_size
        self.max_requests = max_requests
        self.deadline = time.monotonic() + lifetime_s
        self.objects: dict[str, StoredObject] = {}
        for key, data in objects.items():
            self.put(key, data)
        self.asked: Counter = Counter()  # target -> requests so far
        self.faults: Counter = Counter()  # kind -> injected
        self.statuses: Counter = Counter()  # HTTP status (or "reset") -> answers
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.timeout = 0.1
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._serve, name="faulty-s3", daemon=True)

    @classmethod
    def from_folder(cls, bucket: str, root: Path, prefix: str = "", **kwargs) -> FaultyS3:
        objects = {
            prefix + p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }
        return cls(bucket, objects, **kwargs)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def put(self, key: str, data: bytes) -> None:
        previous = self.objects.get(key)
        etag = f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'
        self.objects[key] = StoredObject(data, etag, previous.version + 1 if previous else 1)

    def __enter__(self) -> FaultyS3:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.server_close()

    def _serve(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            self._server.handle_request()

    def admit(self, target: str) -> tuple[bool, int]:
        """(whether to serve at all, how many times `target` was asked before)."""
        with self._lock:
            self.requests += 1
            nth = self.asked[target]
            self.asked[target] += 1
            within = self.requests <= self.max_requests and time.monotonic() < self.deadline
            return within, nth

    def count(self, status: int | str, fault: str = "") -> None:
        with self._lock:
            self.statuses[status] += 1
            if fault:
                self.faults[fault] += 1

    def figures(self) -> dict:
        return {
            "requests": self.requests,
            "faults": dict(self.faults),
            "faults_total": sum(self.faults.values()),
            "statuses": {str(k): v for k, v in self.statuses.items()},
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection frees its thread

    def log_message(self, *args) -> None:  # no line per request
        pass

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        s3: FaultyS3 = self.server.owner  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        bucket, _, key = unquote(url.path).lstrip("/").partition("/")
        query = parse_qs(url.query, keep_blank_values=True)
        listing = not key
        target = (
            f"LIST {query.get('prefix', [''])[0]} {query.get('continuation-token', [''])[0]}"
            f" {query.get('start-after', [''])[0]}"
            if listing
            else f"{'HEAD' if head else 'GET'} {key}"
        )
        within, nth = s3.admit(target)
        if not within:
            return self._error(s3, 503, "SlowDown", "the test server's bounds are reached", head)
        if bucket != s3.bucket:
            return self._error(s3, 404, "NoSuchBucket", f"no bucket {bucket}", head)
        if listing and s3.plan.deny_bucket:
            return self._error(s3, 403, "AccessDenied", "Access Denied", head)
        if not listing and key in s3.plan.forbidden:
            return self._error(s3, 403, "AccessDenied", "Access Denied", head)
        allowed = set(KINDS) - BODY_FAULTS
        if listing:
            allowed = (allowed | {"truncate"}) if s3.plan.listing_faults else set()
        elif not head:
            allowed |= BODY_FAULTS
        fault = s3.plan.fault(target, nth, allowed)
        if fault == "reset":
            return self._reset(s3)
        if fault in STATUS_FAULTS:
            status, code, message = STATUS_FAULTS[fault]
            return self._error(s3, status, code, message, head, fault)
        if fault == "502":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return self._send(s3, 502, {"Content-Type": "text/html"}, page, head, fault)
        if listing:
            return self._send(s3, 200, {"Content-Type": "application/xml"},
                              self._listing(s3, query), head, fault)  # fmt: skip
        stored = s3.objects.get(key)
        if stored is None:
            return self._error(s3, 404, "NoSuchKey", "The specified key does not exist.", head)
        headers = {
            "Content-Type": "binary/octet-stream",
            "ETag": stored.etag,
            "Last-Modified": formatdate(1_600_000_000 + stored.version, usegmt=True),
            "x-amz-version-id": f"v{stored.version}",
        }
        if self.headers.get("If-None-Match") == stored.etag:
            return self._send(s3, 304, headers, b"", head=True)
        body = stored.data
        if fault == "corrupt":
            flipped = bytearray(body)
            for i in range(0, len(flipped), max(1, len(flipped) // 7)):
                flipped[i] ^= 0x5A
            body = bytes(flipped)
        return self._send(s3, 200, headers, body, head, fault)

    def _listing(self, s3: FaultyS3, query: dict) -> bytes:
        prefix = query.get("prefix", [""])[0]
        token = query.get("continuation-token", [""])[0]
        token = max(token, query.get("start-after", [""])[0])  # both mean "keys after this"
        limit = min(int(query.get("max-keys", ["1000"])[0]), s3.page_size)
        keys = sorted(k for k in s3.objects if k.startswith(prefix) and k > token)
        page, truncated = keys[:limit], len(keys) > limit
        contents = "".join(
            f"<Contents><Key>{escape(k)}</Key><ETag>{escape(s3.objects[k].etag)}</ETag>"
            f"<Size>{len(s3.objects[k].data)}</Size><StorageClass>STANDARD</StorageClass>"
            "<LastModified>2020-09-13T12:26:40.000Z</LastModified></Contents>"
            for k in page
        )
        more = ""
        if truncated:
            more = f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>"
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{s3.bucket}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{limit}</MaxKeys>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{more}{contents}"
            "</ListBucketResult>"
        ).encode()

    def _error(self, s3, status, code, message, head, fault="") -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message><RequestId>faulty-s3</RequestId></Error>"
        ).encode()
        self._send(s3, status, {"Content-Type": "application/xml"}, body, head, fault)

    def _send(self, s3, status, headers, body, head, fault="") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and fault == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        elif not head:
            self.wfile.write(body)
        s3.count(status, fault)

    def _reset(self, s3) -> None:
        # SO_LINGER 0: close() sends a RST instead of a FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True
        s3.count("reset", "reset")

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # the connection was reset on purpose
            super().finish()
