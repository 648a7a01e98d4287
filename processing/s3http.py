"""A lean S3 client for Prepare: plain HTTP GETs over a urllib3 pool, signed by botocore.

boto3's `get_object` costs ~2.5 ms of GIL time per call in client plumbing (parameter
validation, event hooks, response parsing) on top of the request itself: more than decoding
the image. Prepare needs two operations (GetObject, with If-None-Match, and ListObjectsV2),
so it makes them itself: botocore's own SigV4 signer (`S3SigV4Auth`, the code every AWS SDK
for Python signs with; credentials from botocore's provider chain, refreshed as they expire)
or no signature at all when there are no credentials (the public dataset), over one urllib3
pool sized for the workers. Both libraries are in SageMaker's PyTorch images.

Errors come back as `S3Error(status, code, message)` parsed from S3's XML error body; the
caller decides what is transient (sources.is_transient). Redirects to the bucket's own region
(S3 answers 301/400 with `x-amz-bucket-region`) are followed once, then remembered.

Endpoint: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL (path-style, e.g. a VPC interface
endpoint or a local server), else `https://<bucket>.s3.<region>.amazonaws.com`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from urllib.parse import quote
from xml.etree import ElementTree

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.session import Session

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
DEFAULT_REGION = "us-east-1"  # the Amazon Bin Image Dataset's region
SAFE_KEY = "/-_.~"  # RFC 3986 unreserved, plus the key's own slashes


class S3Error(Exception):
    """An HTTP error answer from S3: status, S3's error code (or the status as text), message."""

    def __init__(self, status: int, code: str, message: str, where: str = "") -> None:
        super().__init__(f"{code} ({status}) on {where}: {message}" if where else message)
        self.status = status
        self.code = code or str(status)
        self.message = message
        self.where = where


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict  # lower-case names
    data: bytes


def endpoint_from_env() -> str:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = os.environ.get(name, "").strip()
        if value:
            return value.rstrip("/")
    return ""


class S3Http:
    """GET and LIST on one bucket, thread-safe; `unsigned=None` signs when credentials exist."""

    def __init__(
        self,
        bucket: str,
        workers: int = 16,
        unsigned: bool | None = None,
        region: str | None = None,
        endpoint: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        session = Session()
        self.bucket = bucket
        self.region = region or session.get_config_variable("region") or DEFAULT_REGION
        self.endpoint = endpoint if endpoint is not None else endpoint_from_env()
        self.credentials = None if unsigned else session.get_credentials()
        if unsigned is False and self.credentials is None:
            raise ValueError("signed requests asked for, but no AWS credentials were found")
        self.unsigned = self.credentials is None
        self._lock = threading.Lock()
        self.pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=max(10, workers + 4),
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=False,  # the Retrier does every retry, counted and budgeted
            ca_certs=os.environ.get("AWS_CA_BUNDLE") or None,
        )

    # -- requests ---------------------------------------------------------------------------

    def url(self, key: str, query: str = "") -> str:
        path = quote(key, safe=SAFE_KEY)
        if self.endpoint:
            base = f"{self.endpoint}/{self.bucket}"
        elif "." in self.bucket:  # a dotted name breaks the TLS wildcard: path-style
            base = f"https://s3.{self.region}.amazonaws.com/{self.bucket}"
        else:
            base = f"https://{self.bucket}.s3.{self.region}.amazonaws.com"
        return f"{base}/{path}" + (f"?{query}" if query else "")

    def request(self, key: str, query: str = "", headers: dict | None = None) -> Answer:
        """One GET; S3Error for any status >= 300 except 304; urllib3's errors as they are."""
        where = f"s3://{self.bucket}/{key}"
        for redirected in (False, True):
            url = self.url(key, query)
            sent = self._signed(url, headers or {})
            response = self.pool.request(
                "GET", url, headers=sent, preload_content=True, decode_content=False,
                redirect=False,
            )  # fmt: skip
            answer = Answer(response.status, {k.lower(): v for k, v in response.headers.items()},
                            response.data)  # fmt: skip
            if answer.status < 300 or answer.status == 304:
                return answer
            region = answer.headers.get("x-amz-bucket-region")
            if not redirected and region and region != self.region:
                with self._lock:
                    self.region = region  # the bucket lives elsewhere: go there from now on
                continue
            raise error_of(answer, where)
        raise AssertionError("unreachable")

    def _signed(self, url: str, headers: dict) -> dict:
        if self.unsigned:
            return headers
        request = AWSRequest(method="GET", url=url, headers=headers)
        # Frozen per request: a refreshable role's keys are renewed before they expire.
        S3SigV4Auth(self.credentials.get_frozen_credentials(), "s3", self.region).add_auth(request)
        return dict(request.headers.items())

    def get(self, key: str, if_none_match: str | None = None) -> Answer:
        headers = {"If-None-Match": if_none_match} if if_none_match else None
        return self.request(key, headers=headers)

    def list_page(
        self,
        prefix: str,
        token: str | None = None,
        start_after: str | None = None,
        max_keys: int | None = None,
    ) -> tuple[list[str], str | None, bool]:
        """One ListObjectsV2 page: (keys, continuation token, truncated)."""
        params = {"list-type": "2", "prefix": prefix}
        if token:
            params["continuation-token"] = token
        if start_after:
            params["start-after"] = start_after
        if max_keys:
            params["max-keys"] = str(max_keys)
        query = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
        answer = self.request("", query)
        try:
            # S3's own answer, over the job's endpoint; expat >= 2.4.1 refuses entity bombs.
            root = ElementTree.fromstring(answer.data)  # noqa: S314
        except ElementTree.ParseError as err:
            # A listing cut short mid-body is a transfer fault, like a truncated object.
            raise S3Error(200, "MalformedListing", f"unparseable listing: {err}") from err
        ns = S3_NS if root.tag.startswith(S3_NS) else ""
        keys = [el.text or "" for el in root.iterfind(f"{ns}Contents/{ns}Key")]
        truncated = (root.findtext(f"{ns}IsTruncated") or "").lower() == "true"
        return keys, root.findtext(f"{ns}NextContinuationToken"), truncated


def error_of(answer: Answer, where: str) -> S3Error:
    """S3's XML error (`<Error><Code>..</Code><Message>..</Message>`), else the bare status."""
    code = message = ""
    if answer.data.lstrip().startswith(b"<"):
        try:
            root = ElementTree.fromstring(answer.data)  # noqa: S314
            code = root.findtext("Code") or ""
            message = root.findtext("Message") or ""
        except ElementTree.ParseError:
            pass  # a proxy's HTML page, say: the status tells what happened
    return S3Error(answer.status, code or str(answer.status), message or "(no message)", where)
