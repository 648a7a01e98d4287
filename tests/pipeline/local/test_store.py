"""The local object store and JSON records."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from pipeline.local.registry import Registry
from pipeline.local.store import ObjectStore, parse_s3_uri, read_json, write_json


def test_uris_map_into_the_store_and_back(tmp_path):
    store = ObjectStore(tmp_path)
    path = store.path("s3://bucket/a/b.txt")
    assert path == tmp_path / "bucket" / "a" / "b.txt"
    assert store.uri(path) == "s3://bucket/a/b.txt"
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="not an s3:// URI"):
        store.path("/local/file")
    with pytest.raises(ValueError, match="escapes the store"):
        store.path("s3://bucket/../../etc/passwd")


def test_prefixes_list_download_and_hash_content(tmp_path):
    store = ObjectStore(tmp_path / "s3")
    store.put_bytes(b"1", "s3://b/p/x.txt")
    store.put_bytes(b"2", "s3://b/p/sub/y.txt")
    assert [rel for rel, _ in store.objects("s3://b/p")] == ["sub/y.txt", "x.txt"]
    assert [rel for rel, _ in store.objects("s3://b/p/x.txt")] == ["x.txt"]
    assert store.objects("s3://b/none") == []
    assert store.download("s3://b/p/", tmp_path / "out") == 2
    assert (tmp_path / "out" / "sub" / "y.txt").read_bytes() == b"2"
    before = store.content_hash("s3://b/p")
    store.put_bytes(b"3", "s3://b/p/x.txt")
    assert store.content_hash("s3://b/p") != before
    with pytest.raises(FileNotFoundError, match="no objects at s3://b/none"):
        store.download("s3://b/none", tmp_path / "x")


def test_staging_folders_import_as_bucket_and_key(tmp_path):
    staging = tmp_path / "staging"
    (staging / "bkt" / "code" / "abc").mkdir(parents=True)
    (staging / "bkt" / "code" / "abc" / "sourcedir.tar.gz").write_bytes(b"tgz")
    store = ObjectStore(tmp_path / "s3")
    assert store.import_staging(staging) == 1
    assert store.path("s3://bkt/code/abc/sourcedir.tar.gz").read_bytes() == b"tgz"


def test_json_records_are_replaced_whole(tmp_path):
    path = tmp_path / "r" / "record.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2})
    assert read_json(path) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]
    circular: dict = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular reference"):
        write_json(path, circular)
    assert json.loads(path.read_text()) == {"a": 2}  # the failed write left the old record
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]


def _register_many(root: str, count: int) -> None:
    registry = Registry(root, "us-east-1", "000000000000")
    for _ in range(count):
        registry.create_package(
            {
                "ModelPackageGroupName": "g",
                "InferenceSpecification": {"Containers": [{"Image": "i"}]},
            }
        )


def test_two_processes_registering_at_once_get_distinct_versions(tmp_path):
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_register_many, args=(str(tmp_path), 10)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert all(w.exitcode == 0 for w in workers)
    listed = Registry(tmp_path, "us-east-1", "000000000000").list_packages({})
    versions = [p["ModelPackageVersion"] for p in listed["ModelPackageSummaryList"]]
    assert sorted(versions) == list(range(1, 21))
