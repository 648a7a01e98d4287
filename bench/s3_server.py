"""A minimal S3 endpoint on asyncio for benchmarks: cheap enough never to be the bottleneck.

moto's server burns ~3.3 ms of CPU per request: on a 2-core machine it, not the client, was
what a Prepare benchmark measured. This one serves one bucket from memory (a folder loaded
at start) with S3's answers for what the benchmarks call: GetObject (If-None-Match -> 304),
HeadObject and ListObjectsV2 (prefix, start-after, continuation-token, max-keys), path-style,
HTTP/1.1 keep-alive, every answer delayed by `--latency-ms` (S3's first-byte latency) without
holding a thread. Signatures are not checked. One process, one event loop: its CPU time
(reported by the benchmark) is what serving cost.

    python -m bench.s3_server --root FOLDER --bucket NAME [--prefix P] [--latency-ms 20]

prints `port N` on stdout once listening, then serves until stdin closes or it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

LAST_MODIFIED = formatdate(1_600_000_000, usegmt=True)


class Store:
    def __init__(self, bucket: str, objects: dict[str, bytes]) -> None:
        self.bucket = bucket
        self.objects = objects
        self.etags = {k: f'"{hashlib.md5(v, usedforsecurity=False).hexdigest()}"'
                      for k, v in objects.items()}  # fmt: skip
        self.keys = sorted(objects)

    @classmethod
    def from_folder(cls, bucket: str, root: Path, prefix: str = "") -> Store:
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        return cls(bucket, {prefix + p.relative_to(root).as_posix(): p.read_bytes() for p in files})


def response(status: int, reason: str, headers: dict, body: bytes, head: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}",
             "x-amz-request-id: bench", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else body)


def error(status: int, reason: str, code: str, message: str, head: bool) -> bytes:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error>").encode()  # fmt: skip
    return response(status, reason, {"Content-Type": "application/xml"}, body, head)


def listing(store: Store, query: dict) -> bytes:
    prefix = query.get("prefix", [""])[0]
    after = max(query.get("continuation-token", [""])[0], query.get("start-after", [""])[0])
    limit = min(int(query.get("max-keys", ["1000"])[0]), 1000)
    keys = [k for k in store.keys if k.startswith(prefix) and k > after]
    page, truncated = keys[:limit], len(keys) > limit
    contents = "".join(
        f"<Contents><Key>{escape(k)}</Key><ETag>{escape(store.etags[k])}</ETag>"
        f"<Size>{len(store.objects[k])}</Size></Contents>"
        for k in page
    )
    token = (
        f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>" if truncated else ""
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Name>{store.bucket}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(page)}"
        f"</KeyCount><MaxKeys>{limit}</MaxKeys><IsTruncated>{str(truncated).lower()}"
        f"</IsTruncated>{token}{contents}</ListBucketResult>"
    ).encode()
    return response(200, "OK", {"Content-Type": "application/xml"}, body)


def answer(store: Store, method: str, target: str, headers: dict) -> bytes:
    head = method == "HEAD"
    if method not in ("GET", "HEAD"):
        return error(405, "Method Not Allowed", "MethodNotAllowed", method, head)
    url = urlsplit(target)
    bucket, _, key = unquote(url.path).lstrip("/").partition("/")
    if bucket != store.bucket:
        return error(404, "Not Found", "NoSuchBucket", bucket, head)
    if not key:
        return listing(store, parse_qs(url.query, keep_blank_values=True))
    data = store.objects.get(key)
    if data is None:
        return error(404, "Not Found", "NoSuchKey", key, head)
    meta = {"ETag": store.etags[key], "Last-Modified": LAST_MODIFIED,
            "Content-Type": "binary/octet-stream", "Accept-Ranges": "bytes"}  # fmt: skip
    if headers.get("if-none-match") == store.etags[key]:
        return response(304, "Not Modified", meta, b"", head=True)
    return response(200, "OK", meta, data, head)


async def serve_connection(store: Store, latency: float, reader, writer) -> None:
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            request_line, *header_lines = raw.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if length:
                await reader.readexactly(length)  # a body we do not use (no PUT here)
            await asyncio.sleep(latency)
            writer.write(answer(store, method, target, headers))
            await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()


async def main_async(store: Store, latency: float, port: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: serve_connection(store, latency, r, w), "127.0.0.1", port, backlog=1024
    )
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    # Serve until stdin closes: the benchmark that started us is gone or done.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", default="")
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    if not args.root.is_dir():
        p.error(f"--root {args.root} is not a folder")
    store = Store.from_folder(args.bucket, args.root, args.prefix)
    asyncio.run(main_async(store, args.latency_ms / 1000, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
