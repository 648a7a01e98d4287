"""Reading the source (signed and unsigned requests, S3 URIs, listing), host shares, the window."""

from __future__ import annotations

import datetime
import json
import random
import sys
import threading
import time
from pathlib import Path

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from fetching import ordered_map
from hosts import HostShare, current_host
from retrying import Retrier
from s3http import S3Http
from sources import ObjectMissing, S3Source, is_transient, split_s3_uri
from splitting import split_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from prepare_fault_server import FaultyS3


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)


def test_without_credentials_requests_go_unsigned(no_credentials, no_network):
    client = S3Http("public-bins", workers=8)
    assert client.unsigned and "Authorization" not in client._signed("http://x/y", {})
    assert client.pool.connection_pool_kw["maxsize"] >= 8
    with FaultyS3("public-bins", {"metadata/1.json": b"{}"}) as server:
        client = S3Http("public-bins", endpoint=server.endpoint)
        assert S3Source("s3://public-bins", client).read("metadata/1.json") == b"{}"
    assert not no_network


def test_signatures_are_botocores_own(monkeypatch):
    """The same GET signed by boto3's client and by S3Http carries the same Authorization."""
    fixed = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: fixed)
    endpoint = "http://127.0.0.1:9"
    seen = {}

    def capture(request, **_):
        seen.update(url=request.url, headers=dict(request.headers.items()))
        return AWSResponse(request.url, 200, {}, None)

    reference = boto3.client(
        "s3", endpoint_url=endpoint, region_name="eu-west-1", aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret", aws_session_token="token",
        config=Config(response_checksum_validation="when_required"),
    )  # fmt: skip
    reference.meta.events.register_first("before-send.s3.GetObject", capture)
    reference.get_object(Bucket="bins", Key="bin-images/0 1+x.jpg", IfNoneMatch='"e"')
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    ours = S3Http("bins", region="eu-west-1", endpoint=endpoint)
    url = ours.url("bin-images/0 1+x.jpg")
    headers = ours._signed(url, {"If-None-Match": '"e"'})
    assert url == seen["url"]
    theirs = seen["headers"]["Authorization"]
    assert headers["Authorization"] == (theirs.decode() if isinstance(theirs, bytes) else theirs)
    assert headers["X-Amz-Security-Token"] == "token"


def test_with_credentials_requests_are_signed(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    client = S3Http("bins", workers=64)
    assert not client.unsigned
    assert (
        client.url("bin-images/1.jpg") == "https://bins.s3.us-east-1.amazonaws.com/bin-images/1.jpg"
    )
    auth = client._signed(client.url("bin-images/1.jpg"), {})["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert client.pool.connection_pool_kw["maxsize"] >= 64


@pytest.mark.parametrize("uri", ["s3://", "s3:///key", "bucket/key", "http://x/y"])
def test_bad_s3_uris_are_named(uri):
    with pytest.raises(ValueError, match="not an s3://bucket"):
        split_s3_uri(uri)


def test_a_missing_bucket_fails_with_its_name():
    with FaultyS3("bins", {}) as server:
        source = S3Source("s3://nope/data", S3Http("nope", endpoint=server.endpoint))
        with pytest.raises(SystemExit, match=r"cannot read source s3://nope.*NoSuchBucket"):
            source.check()


def test_listing_in_ranges_returns_every_key_once_in_order():
    """Ten key ranges listed at once, 1,000 keys a page: each name exactly once, sorted."""
    # 1,050 names from "1" to "2" (two pages in one range), a few everywhere else.
    names = [f"1{n:04d}.json" for n in range(1050)] + [f"{d}7.json" for d in range(10)]
    names = sorted({*names, "0042.json", "a.json", "-x.json", "1", "2"})
    objects = {f"p/metadata/{name}": b"{}" for name in names} | {"p/other/1.json": b"{}"}
    with FaultyS3("listed", objects) as server:
        source = S3Source("s3://listed/p", S3Http("listed", endpoint=server.endpoint))
        listed = list(source.list_names("metadata"))
    assert listed == names
    assert source.retrier.requests == 11  # a request for each range, two for "1" to "2"


def test_a_missing_object_and_a_transient_error_are_told_apart():
    with FaultyS3("apart", {}) as server:
        source = S3Source("s3://apart", S3Http("apart", endpoint=server.endpoint))
        with pytest.raises(ObjectMissing, match=r"no s3://apart/bin-images/1\.jpg"):
            source.read("bin-images/1.jpg")
    dead = S3Source("s3://apart", S3Http("apart", endpoint="http://127.0.0.1:9"),
                    Retrier(is_transient, max_attempts=2, backoff_s=0.001))  # fmt: skip
    with pytest.raises(SystemExit, match="still failing after 2 attempts"):
        dead.read("bin-images/1.jpg")
    assert dead.retrier.retries == 1


def test_a_bucket_in_another_region_is_followed_there(monkeypatch):
    """S3 refuses a request signed for the wrong region, naming the bucket's; the client
    signs for that region from then on (a real HTTP server checking the credential scope)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    scopes = []

    class Regional(BaseHTTPRequestHandler):
        def do_GET(self):
            scope = self.headers.get("Authorization", "").split("/")[2]
            scopes.append(scope)
            ok = scope == "eu-west-1"
            body = b"pixels" if ok else b"<Error><Code>AuthorizationHeaderMalformed</Code></Error>"
            self.send_response(200 if ok else 400)
            self.send_header("x-amz-bucket-region", "eu-west-1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Regional)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        client = S3Http("bins", region="us-east-1", endpoint=endpoint)
        assert client.get("bin-images/1.jpg").data == b"pixels"
        assert client.get("bin-images/2.jpg").data == b"pixels"
    finally:
        server.shutdown()
    assert scopes == ["us-east-1", "eu-west-1", "eu-west-1"] and client.region == "eu-west-1"


def test_resource_config_names_the_host(tmp_path, monkeypatch):
    config = tmp_path / "resourceconfig.json"
    config.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-2", "algo-1"]}))
    monkeypatch.setenv("SM_RESOURCE_CONFIG_PATH", str(config))
    assert current_host() == HostShare("algo-2", 1, 2)
    config.write_text(json.dumps({"current_host": "algo-9", "hosts": ["algo-1"]}))
    with pytest.raises(SystemExit, match="not a valid resource config"):
        current_host()
    monkeypatch.setenv("SM_RESOURCE_CONFIG_PATH", str(tmp_path / "absent.json"))
    assert current_host() == HostShare("algo-1", 0, 1)


def test_host_shares_partition_any_ids():
    ids = [str(i) for i in range(3000)] + [f"{i:05d}" for i in range(3000)]
    shares = [HostShare(f"algo-{k + 1}", k, 4) for k in range(4)]
    owners = [[s.owns(i) for s in shares].count(True) for i in ids]
    assert set(owners) == {1}
    sizes = [sum(s.owns(i) for i in ids) for s in shares]
    assert min(sizes) > 0.2 * len(ids)  # roughly balanced


def test_split_ratios_hold_per_class_and_ids_are_not_numbers():
    ids = [str(i) for i in range(20000)]
    splits = [split_of(i, 0.1, 0.2) for i in ids]
    assert abs(splits.count("test") / len(ids) - 0.2) < 0.02
    assert abs(splits.count("validation") / len(ids) - 0.1) < 0.02
    # "01044" and "1044" are different images: their splits are drawn independently.
    differs = sum(split_of(f"{i:05d}", 0.5, 0.0) != split_of(str(i), 0.5, 0.0) for i in range(400))
    assert 120 < differs < 280


def test_ordered_map_keeps_order_and_bounds_the_work_in_flight():
    lock = threading.Lock()
    live = {"now": 0, "peak": 0}

    def slow_square(x: int) -> int:
        with lock:
            live["now"] += 1
            live["peak"] = max(live["peak"], live["now"])
        time.sleep(random.random() / 500)
        with lock:
            live["now"] -= 1
        return x * x

    results = []
    for value in ordered_map(slow_square, range(300), workers=8, window=16):
        results.append(value)
    assert results == [x * x for x in range(300)]
    assert 1 < live["peak"] <= 8


def test_a_cap_is_shared_out_across_hosts_exactly():
    from selection import cap_share

    for cap in (1, 2, 7, 100):
        for hosts in (1, 2, 3, 8):
            parts = [cap_share(cap, index, hosts) for index in range(hosts)]
            assert sum(parts) == cap and max(parts) - min(parts) <= 1
