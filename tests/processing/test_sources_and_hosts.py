"""Reading the source (unsigned fallback, S3 URIs), host shares and the bounded fetch window."""

from __future__ import annotations

import json
import random
import threading
import time

import boto3
import pytest
from botocore import UNSIGNED
from fetching import ordered_map
from hosts import HostShare, current_host
from moto import mock_aws
from sources import S3Source, s3_client, split_s3_uri
from splitting import split_of


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
    client = s3_client(workers=8)  # before mock_aws, which brings fake credentials of its own
    assert client.meta.config.signature_version is UNSIGNED
    assert client.meta.config.max_pool_connections >= 8
    assert client.meta.config.retries["mode"] == "standard"
    with mock_aws():
        signed = boto3.client("s3", aws_access_key_id="a", aws_secret_access_key="b")
        signed.create_bucket(Bucket="public-bins")
        signed.put_object(
            Bucket="public-bins", Key="metadata/1.json", Body=b"{}", ACL="public-read"
        )
        assert S3Source("s3://public-bins", client).read("metadata/1.json") == b"{}"
    assert not no_network


def test_with_credentials_requests_are_signed():
    assert s3_client(workers=64).meta.config.signature_version is not UNSIGNED
    assert s3_client(workers=64).meta.config.max_pool_connections >= 64


@pytest.mark.parametrize("uri", ["s3://", "s3:///key", "bucket/key", "http://x/y"])
def test_bad_s3_uris_are_named(uri):
    with pytest.raises(ValueError, match="not an s3://bucket"):
        split_s3_uri(uri)


def test_a_missing_bucket_fails_with_its_name():
    with mock_aws(), pytest.raises(SystemExit, match=r"cannot read source s3://nope.*NoSuchBucket"):
        S3Source("s3://nope/data", s3_client()).check()


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
