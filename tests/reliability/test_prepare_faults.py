"""Prepare against a faulty S3 on loopback: every image is delivered, skipped with its reason,
or the job fails with the cause; never a success with images silently missing.

Each scenario runs Prepare's real main() against `prepare_fault_server.FaultyS3` (a seeded
fault schedule, so the same faults every run) and checks the accounting from the outputs:
manifest + skipped == what was selected, and the skips are exactly the content defects.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import prepare
import pytest
from prepare_fault_server import FaultPlan, FaultyS3
from shards import read_shard, shard_stems
from synthetic import GeneratedDataset, generate

BUCKET = "faulty-bins"
PREPARE = str(Path(prepare.__file__))
SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    """200 good images (40 per count) and 6 bad ones: 2 corrupt, 2 truncated, 2 no metadata."""
    root = tmp_path_factory.mktemp("faulty-dataset")
    return generate(
        root, per_class=40, seed=11, corrupt=2, truncated=2, missing_metadata=2,
        file_list=root / "file_list.json",
    )  # fmt: skip


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SM_RESOURCE_CONFIG_PATH", str(tmp_path / "no-resource-config.json"))
    return tmp_path


def serve(dataset: GeneratedDataset, plan: FaultPlan, **kwargs) -> FaultyS3:
    return FaultyS3.from_folder(BUCKET, dataset.root, prefix="data/", plan=plan, **kwargs)


def args_for(server: FaultyS3, file_list: str, out: Path, validate=True, **extra) -> list[str]:
    """Prepare's arguments; metadata is validated by default, so that its requests (and
    their faults) are exercised too."""
    args = {
        "source": f"s3://{BUCKET}/data",
        "file-list": file_list,
        "image-size": 32,
        "shard-size": 64,
        "workers": 8,
        "output-dir": out,
        "backoff-seconds": 0.001,  # the schedule, not the clock, decides what fails
        "max-skip-fraction": 0.05,  # 6 of 206 are deliberately bad
    }
    args.update({k.replace("_", "-"): v for k, v in extra.items()})
    flags = ["--validate-metadata"] if validate else []
    return [part for k, v in args.items() for part in (f"--{k}", str(v))] + flags


def run_prepare(server, file_list, out, monkeypatch, validate=True, **extra) -> dict:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
    assert prepare.main(args_for(server, file_list, out, validate, **extra)) == 0
    return json.loads((out / "report" / "stats-algo-1.json").read_text())


def report(out: Path, name: str) -> list[dict]:
    with open(out / "report" / f"{name}-algo-1.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def shard_ids(out: Path) -> list[str]:
    stems = [stem for split in SPLITS for stem in shard_stems(out / split)]
    return [image_id for stem in stems for image_id in read_shard(stem)[2].tolist()]


def assert_accounted(out: Path, selected: set[str]) -> tuple[set[str], dict[str, str]]:
    """Every selected id exactly once, in the manifest (and a shard) or skipped with a reason."""
    manifest = [row["id"] for row in report(out, "manifest")]
    skipped = {row["id"]: row["reason"] for row in report(out, "skipped")}
    assert len(manifest) == len(set(manifest)) and not set(manifest) & set(skipped)
    assert set(manifest) | set(skipped) == selected
    assert sorted(shard_ids(out)) == sorted(manifest)
    assert all(skipped.values())
    return set(manifest), skipped


def content_skips(dataset: GeneratedDataset) -> dict[str, str]:
    return {
        **dict.fromkeys(dataset.corrupt, "corrupt_image"),
        **dict.fromkeys(dataset.truncated, "truncated_image"),
        **dict.fromkeys(dataset.missing_metadata, "missing_metadata"),
    }


TRANSIENT_MIXES = {
    "throttling-60%": {"slowdown": 0.6},
    "5xx-30%": {"500": 0.1, "502": 0.1, "503": 0.1},
    "truncated-20%": {"truncate": 0.2},
    "corrupted-20%": {"corrupt": 0.2},
    "resets-20%": {"reset": 0.2},
    "all-kinds-60%": {
        "slowdown": 0.15, "500": 0.05, "502": 0.05, "503": 0.05,
        "truncate": 0.1, "corrupt": 0.1, "reset": 0.1,
    },
}  # fmt: skip


@pytest.mark.parametrize("mix", TRANSIENT_MIXES, ids=list(TRANSIENT_MIXES))
def test_transient_faults_are_retried_never_skipped(dataset, host, monkeypatch, mix):
    plan = FaultPlan(seed=3, rates=TRANSIENT_MIXES[mix], max_faults_per_key=3)
    out = host / "out"
    with serve(dataset, plan) as server:
        stats = run_prepare(server, str(dataset.root / "file_list.json"), out, monkeypatch)
        figures = server.figures()
    delivered, skipped = assert_accounted(out, set(dataset.ids) | set(dataset.bad_ids()))
    assert delivered == set(dataset.ids)
    assert skipped == content_skips(dataset)
    # Each injected fault cost exactly one retry, and none became a skip.
    assert figures["faults_total"] > 20
    assert stats["retries"] == figures["faults_total"]
    assert stats["requests"] == figures["requests"]


def test_trusted_list_labels_under_faults_one_request_an_image(dataset, host, monkeypatch):
    """Without --validate-metadata: one GET an image, retried like any, nothing lost; the
    images without metadata are delivered under the list's label."""
    plan = FaultPlan(seed=8, rates=TRANSIENT_MIXES["all-kinds-60%"], max_faults_per_key=3)
    out = host / "out"
    with serve(dataset, plan) as server:
        listing = str(dataset.root / "file_list.json")
        stats = run_prepare(server, listing, out, monkeypatch, validate=False)
        figures = server.figures()
        gets = [t for t in server.asked if t.startswith("GET ")]
    delivered, skipped = assert_accounted(out, set(dataset.ids) | set(dataset.bad_ids()))
    assert delivered == set(dataset.ids) | set(dataset.missing_metadata)
    assert skipped == {i: r for i, r in content_skips(dataset).items() if r != "missing_metadata"}
    assert not [t for t in gets if "/metadata/" in t] and len(gets) == 206
    assert stats["retries"] == figures["faults_total"] > 20
    assert stats["requests"] == figures["requests"]


def test_scan_under_throttling_and_resets_loses_no_id(dataset, host, monkeypatch):
    """Listing pages fail too (25 keys a page): every metadata file listed is accounted for."""
    plan = FaultPlan(seed=5, rates={"slowdown": 0.4, "reset": 0.1, "truncate": 0.1})
    out = host / "out"
    with serve(dataset, plan, page_size=25) as server:
        stats = run_prepare(server, "scan", out, monkeypatch)
        lists = [n for t, n in server.asked.items() if t.startswith("LIST")]
        listing_faults = sum(lists) - len(lists)  # a target asked again was a fault retried
    with_metadata = set(dataset.ids) | set(dataset.corrupt) | set(dataset.truncated)
    delivered, skipped = assert_accounted(out, with_metadata)
    assert delivered == set(dataset.ids)
    assert skipped == {i: r for i, r in content_skips(dataset).items() if i in with_metadata}
    assert listing_faults > 0 and stats["retries"] > 0


def test_forbidden_objects_are_skipped_by_name_and_the_gate_counts_them(dataset, host, monkeypatch):
    forbidden_images = dataset.ids[:3]
    forbidden = {f"data/bin-images/{i}.jpg" for i in forbidden_images}
    forbidden.add(f"data/metadata/{dataset.ids[3]}.json")
    plan = FaultPlan(seed=1, rates={"slowdown": 0.2}, forbidden=frozenset(forbidden))
    listing = str(dataset.root / "file_list.json")
    with serve(dataset, plan) as server:
        run_prepare(server, listing, host / "out", monkeypatch)
        _, skipped = assert_accounted(host / "out", set(dataset.ids) | set(dataset.bad_ids()))
        assert skipped == {
            **content_skips(dataset),
            **dict.fromkeys(forbidden_images, "forbidden_image"),
            dataset.ids[3]: "forbidden_metadata",
        }
        # 10 of 206 skipped: more than 1% allows (2), so the job fails, naming the reasons.
        with pytest.raises(SystemExit) as failure:
            prepare.main(args_for(server, listing, host / "gated", max_skip_fraction=0.01))
    message = str(failure.value)
    assert "were skipped, more than --max-skip-fraction 0.01 allows (2)" in message
    assert "forbidden_image" in message or "corrupt_image" in message
    assert not (host / "gated").exists() or not list((host / "gated").rglob("*.npy"))


def test_a_source_that_keeps_failing_stops_the_job_and_keeps_the_old_output(
    dataset, host, monkeypatch
):
    out = host / "out"
    listing = str(dataset.root / "file_list.json")
    with serve(dataset, FaultPlan()) as server:
        run_prepare(server, listing, out, monkeypatch)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    broken = FaultPlan(seed=2, rates={"503": 0.5, "reset": 0.5}, max_faults_per_key=10**6)
    with serve(dataset, broken) as server, pytest.raises(SystemExit) as failure:
        prepare.main(args_for(server, listing, out, max_attempts=4))
    assert "still failing after 4 attempts" in str(failure.value)
    assert "never skipped" in str(failure.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_degraded_source_spends_the_retry_budget_then_stops(dataset, host, monkeypatch):
    plan = FaultPlan(seed=4, rates={"slowdown": 0.9}, max_faults_per_key=3)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "")
    with serve(dataset, plan) as server, pytest.raises(SystemExit, match="fails too often"):
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
        prepare.main(
            args_for(server, str(dataset.root / "file_list.json"), host / "out", retry_budget=0.5)
        )


def test_access_denied_on_the_bucket_exits_non_zero_with_one_line(dataset, host):
    plan = FaultPlan(deny_bucket=True)
    with serve(dataset, plan) as server:
        env = {**os.environ, "AWS_ENDPOINT_URL_S3": server.endpoint}
        done = subprocess.run(
            [sys.executable, PREPARE,
             *args_for(server, str(dataset.root / "file_list.json"), host / "out")],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"prepare: cannot read source s3://{BUCKET}/data: AccessDenied")
    assert not (host / "out").exists()


def test_a_full_cache_disk_fails_the_job_instead_of_dropping_images(dataset, host, monkeypatch):
    import cache

    real_write = cache.write_atomic
    writes = {"n": 0}

    def filling_disk(path, data):
        writes["n"] += 1
        if writes["n"] > 40:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    monkeypatch.setattr(cache, "write_atomic", filling_disk)
    out = host / "out"
    with serve(dataset, FaultPlan()) as server, pytest.raises(SystemExit) as failure:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
        prepare.main(
            args_for(server, str(dataset.root / "file_list.json"), out, cache_dir=host / "c")
        )
    assert "cannot write the cache entry" in str(failure.value)
    assert "No space left on device" in str(failure.value)
    assert not out.exists() or not list(out.rglob("*.npy"))


@pytest.mark.parametrize("where", ["cache", "output"])
def test_permission_denied_on_the_cache_or_the_output_fails_at_once(
    dataset, host, monkeypatch, where
):
    import atomic_io

    real_mkstemp = atomic_io.tempfile.mkstemp
    denied = host / where

    def refusing(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).is_relative_to(denied):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(atomic_io.tempfile, "mkstemp", refusing)
    with serve(dataset, FaultPlan()) as server, pytest.raises(SystemExit) as failure:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
        prepare.main(
            args_for(server, str(dataset.root / "file_list.json"), host / "output",
                     cache_dir=host / "cache")
        )  # fmt: skip
    assert "Permission denied" in str(failure.value)
    assert str(failure.value).startswith("prepare: ")
    assert not list((host / "output").rglob("*.npy"))


def test_scan_refuses_keys_that_would_leave_the_cache(dataset, host, monkeypatch):
    escape_id = "../../escape"
    with serve(dataset, FaultPlan()) as server:
        server.put(f"data/metadata/{escape_id}.json", b'{"EXPECTED_QUANTITY": 2}')
        server.put(f"data/bin-images/{escape_id}.jpg", (dataset.root / "bin-images" /
                   f"{dataset.ids[0]}.jpg").read_bytes())  # fmt: skip
        cache_dir = host / "deep" / "er" / "cache"
        run_prepare(server, "scan", host / "out", monkeypatch, cache_dir=cache_dir)
    with_metadata = set(dataset.ids) | set(dataset.corrupt) | set(dataset.truncated)
    _, skipped = assert_accounted(host / "out", with_metadata | {escape_id})
    assert skipped[escape_id] == "bad_id"
    outside = [p for p in host.rglob("escape*")]
    assert outside == []


def test_the_cache_refetches_changed_objects_and_damaged_entries(dataset, host, monkeypatch):
    listing = str(dataset.root / "file_list.json")
    cache_dir = host / "cache"
    relabelled, redrawn, damaged = dataset.ids[0], dataset.ids[1], dataset.ids[2]
    with serve(dataset, FaultPlan()) as server:
        first = run_prepare(server, listing, host / "one", monkeypatch, cache_dir=cache_dir)
        again = run_prepare(server, listing, host / "two", monkeypatch, cache_dir=cache_dir)
        assert first["bytes_downloaded"] > 0 and again["bytes_downloaded"] == 0

        metadata = json.loads((dataset.root / "metadata" / f"{relabelled}.json").read_bytes())
        metadata["EXPECTED_QUANTITY"] = metadata["EXPECTED_QUANTITY"] % 5 + 1
        changed = json.dumps(metadata).encode()
        server.put(f"data/metadata/{relabelled}.json", changed)
        new_photo = (dataset.root / "bin-images" / f"{dataset.ids[5]}.jpg").read_bytes()
        server.put(f"data/bin-images/{redrawn}.jpg", new_photo)
        entry = cache_dir / "bin-images" / f"{damaged}.jpg"
        entry.write_bytes(entry.read_bytes()[:-10] + b"0123456789")
        third = run_prepare(server, listing, host / "three", monkeypatch, cache_dir=cache_dir)
    damaged_size = len((dataset.root / "bin-images" / f"{damaged}.jpg").read_bytes())
    assert third["bytes_downloaded"] == len(changed) + len(new_photo) + damaged_size
    labels = {row["id"]: int(row["label"]) for row in report(host / "three", "manifest")}
    assert labels[relabelled] == metadata["EXPECTED_QUANTITY"]


def test_a_changed_local_file_is_read_again(tmp_path, host):
    root = tmp_path / "data"
    data = generate(root, per_class=2, seed=1)
    cache_dir = tmp_path / "cache"
    local_args = ["--source", str(root), "--file-list", "scan", "--image-size", "32",
                  "--cache-dir", str(cache_dir)]  # fmt: skip
    prepare.main([*local_args, "--output-dir", str(tmp_path / "one")])
    photo = root / "bin-images" / f"{data.ids[0]}.jpg"
    photo.write_bytes((root / "bin-images" / f"{data.ids[1]}.jpg").read_bytes())
    prepare.main([*local_args, "--output-dir", str(tmp_path / "two")])
    stats = json.loads((tmp_path / "two" / "report" / "stats-algo-1.json").read_text())
    assert stats["bytes_downloaded"] == photo.stat().st_size


def test_prepare_checks_its_own_accounting(dataset, host, monkeypatch):
    """An outcome lost between fetching and writing fails the job, naming the id."""
    real_outcomes = prepare.fetch_outcomes
    lost = []

    def losing_one(*args, **kwargs):
        for n, outcome in enumerate(real_outcomes(*args, **kwargs)):
            if n == 7:
                lost.append(outcome.image_id)
                continue
            yield outcome

    monkeypatch.setattr(prepare, "fetch_outcomes", losing_one)
    with serve(dataset, FaultPlan()) as server, pytest.raises(SystemExit) as failure:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
        prepare.main(args_for(server, str(dataset.root / "file_list.json"), host / "out"))
    assert "1 lost (neither in the manifest nor skipped)" in str(failure.value)
    assert lost and lost[0] in str(failure.value)
