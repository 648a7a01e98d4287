"""Prepare end to end through its real main(): local folders and an S3 over HTTP."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import prepare
import pytest
from prepare_testing import BUCKET, prepare_args, read_manifest, read_skipped, read_stats
from shard_factory import read_split, shard_stems
from shards import read_shard
from synthetic import generate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from prepare_fault_server import FaultyS3

PREPARE = str(Path(prepare.__file__))


def load_split(output: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return read_split(output / split)


def manifest_rows(output: Path) -> dict[str, dict[str, str]]:
    rows = {}
    for path in sorted((output / "report").glob("manifest-*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            rows.update({row["id"]: row for row in csv.DictReader(f)})
    return rows


@pytest.fixture
def s3_data(small_dataset, monkeypatch):
    """The small dataset under `data/` of a bucket served over HTTP on 127.0.0.1 (the
    reliability tests' S3, here without faults; stdlib only, so it runs in the container
    suite too), its list beside it."""
    with FaultyS3.from_folder(BUCKET, small_dataset.root, prefix="data/") as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        yield server


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_local_folder_gives_the_data_contract(small_dataset, single_host):
    out = single_host / "out"
    root = small_dataset.root
    args = prepare_args(str(root), str(root / "file_list.json"), out)
    assert prepare.main([*args, "--validate-metadata"]) == 0

    expected = dict(zip(small_dataset.ids, small_dataset.labels, strict=True))
    manifest = read_manifest(out)
    assert {i: label for i, (label, _) in manifest.items()} == expected
    seen = {}
    for split in ("train", "validation", "test"):
        images, labels, ids = load_split(out, split)
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
        assert labels.dtype == np.int64 and ids.dtype.kind == "U"
        for image_id, label in zip(ids.tolist(), labels.tolist(), strict=True):
            assert manifest[image_id] == (label, split)
            seen[image_id] = label
        stems = shard_stems(out / split)
        assert stems and all(len(read_shard(stem)[1]) <= 8 for stem in stems)
    assert seen == expected

    skipped = read_skipped(out)
    assert skipped == {
        **dict.fromkeys(small_dataset.corrupt, "corrupt_image"),
        **dict.fromkeys(small_dataset.truncated, "truncated_image"),
        **dict.fromkeys(small_dataset.missing_metadata, "missing_metadata"),
    }
    stats = read_stats(out)
    assert stats["usable"] == 30 and stats["assigned"] == 36
    assert stats["skipped"] == {"corrupt_image": 2, "missing_metadata": 2, "truncated_image": 2}
    assert stats["processes"] == 2 and stats["validate_metadata"]
    per_class = {
        c: sum(stats["counts"][s].get(str(c), 0) for s in stats["counts"]) for c in range(1, 6)
    }
    assert per_class == dict.fromkeys(range(1, 6), 6)
    # The original JPEG's bytes and sides, for the monitoring baseline.
    from PIL import Image

    for image_id, row in manifest_rows(out).items():
        photo = root / "bin-images" / f"{image_id}.jpg"
        with Image.open(photo) as original:
            assert (int(row["width"]), int(row["height"])) == original.size
        assert int(row["bytes"]) == photo.stat().st_size
    assert stats["bytes_downloaded"] > 0 and stats["images_per_s"] > 0
    assert set(stats["seconds"]) >= {"select", "fetch_decode_write"}
    # Nothing half-written or staged is left behind.
    assert not [f for f in all_files(out) if "/." in f or f.startswith(".")]


def test_images_are_the_decoded_photos(small_dataset, single_host):
    out = single_host / "out"
    root = small_dataset.root
    prepare.main(prepare_args(str(root), str(root / "file_list.json"), out, image_size=48))
    images, _, ids = load_split(out, "train")
    from PIL import Image

    with Image.open(root / "bin-images" / f"{ids[0]}.jpg") as photo:
        reference = np.asarray(photo.convert("RGB").resize((48, 48)), dtype=np.float32)
    # draft() decodes at a reduced scale first: close to a full resize, not identical.
    assert np.abs(images[0].astype(np.float32) - reference).mean() < 12


def test_s3_source_with_an_s3_file_list(s3_data, single_host, small_dataset):
    out = single_host / "out"
    args = prepare_args(f"s3://{BUCKET}/data", f"s3://{BUCKET}/data/file_list.json", out)
    prepare.main([*args, "--validate-metadata"])
    stats = read_stats(out)
    assert stats["usable"] == 30 and sum(stats["skipped"].values()) == 6
    assert set(read_skipped(out)) == set(small_dataset.bad_ids())
    # Two requests an image (metadata, image; none for an image without metadata), plus the
    # bucket check; the list is read before the job's counters start.
    assert stats["requests"] == 2 * 36 - 2 + 1


def test_a_list_s_labels_are_trusted_unless_validation_is_asked_for(
    s3_data, single_host, small_dataset
):
    """Without --validate-metadata no metadata is read: one GET an image, the list's labels."""
    out = single_host / "out"
    prepare.main(prepare_args(f"s3://{BUCKET}/data", f"s3://{BUCKET}/data/file_list.json", out))
    stats = read_stats(out)
    assert stats["requests"] == 36 + 1 and not stats["validate_metadata"]
    assert stats["relabelled_from_metadata"] == 0
    # The images without metadata are delivered under the list's label; bad JPEGs still skip.
    delivered = read_manifest(out)
    assert set(small_dataset.missing_metadata) <= set(delivered)
    assert set(read_skipped(out)) == {*small_dataset.corrupt, *small_dataset.truncated}


def test_scan_over_s3_with_a_cap(s3_data, single_host, small_dataset):
    out = single_host / "out"
    prepare.main(prepare_args(f"s3://{BUCKET}/data/", "scan", out, per_class_cap=4))
    manifest = read_manifest(out)
    labels = [label for label, _ in manifest.values()]
    # Scan reads each metadata file: the one without metadata is never selected, and
    # corrupt/truncated images are selected and then skipped.
    assert sorted(set(labels)) == [1, 2, 3, 4, 5]
    assert all(labels.count(c) <= 4 for c in range(1, 6))
    assert not set(read_skipped(out)) & set(small_dataset.missing_metadata)


def test_one_process_and_several_give_identical_outputs(small_dataset, single_host):
    root = small_dataset.root
    outputs = []
    for processes in (1, 3):
        out = single_host / f"out-{processes}"
        args = prepare_args(str(root), str(root / "file_list.json"), out, processes=processes)
        prepare.main([*args, "--validate-metadata"])
        assert read_stats(out)["processes"] == processes
        outputs.append(out)
    one, several = outputs
    files = [f for f in all_files(one) if not f.startswith("report/stats")]
    assert files == [f for f in all_files(several) if not f.startswith("report/stats")]
    for name in files:
        assert (one / name).read_bytes() == (several / name).read_bytes(), name


def test_scan_is_split_across_hosts_reading_only_each_share(tmp_path, monkeypatch):
    """Each host reads only the metadata it owns; the hosts' outputs make up one host's, and
    a cap is shared out so that the classes hold exactly the cap in all."""
    root = tmp_path / "data"
    generate(root, per_class=12, seed=4)
    monkeypatch.setenv("SM_RESOURCE_CONFIG_PATH", str(tmp_path / "none.json"))
    prepare.main(prepare_args(str(root), "scan", tmp_path / "single"))
    single = read_manifest(tmp_path / "single")
    hosts = ["algo-1", "algo-2", "algo-3"]
    reads = {}
    for cap, shared in ((0, tmp_path / "shared"), (7, tmp_path / "capped")):
        for host in hosts:
            config = tmp_path / f"{host}.json"
            config.write_text(json.dumps({"current_host": host, "hosts": hosts}))
            monkeypatch.setenv("SM_RESOURCE_CONFIG_PATH", str(config))
            prepare.main(prepare_args(str(root), "scan", shared, per_class_cap=cap))
            stats = read_stats(shared, host)
            if not cap:
                reads[host] = stats["assigned"]
    assert read_manifest(tmp_path / "shared") == single
    assert sum(reads.values()) == 60 and max(reads.values()) < 60
    # The hosts' reports merge into one execution's (Evaluate's check: `selected` agrees).
    from prepare_stats import merge_host_stats

    merged = merge_host_stats(tmp_path / "shared" / "report")
    assert merged["selected"] == 60 and merged["assigned"] == 60 and merged["usable"] == 60
    capped = [label for label, _ in read_manifest(tmp_path / "capped").values()]
    assert all(capped.count(c) == 7 for c in range(1, 6))
    assert merge_host_stats(tmp_path / "capped" / "report")["usable"] == 35


def test_a_worker_process_killed_fails_the_job_with_the_cause(
    small_dataset, single_host, monkeypatch
):
    import os
    import signal

    import workers

    real_handle = workers.handle

    def dying(fetcher, kind, payload):
        if kind == workers.FETCH and payload.image_id == small_dataset.ids[5]:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
        return real_handle(fetcher, kind, payload)

    monkeypatch.setattr(workers, "handle", dying)  # inherited by the forked workers
    monkeypatch.setattr(workers, "POLL_S", 0.05)
    root = small_dataset.root
    out = single_host / "out"
    with pytest.raises(SystemExit, match=r"worker process ended .*exit code -9"):
        prepare.main(prepare_args(str(root), str(root / "file_list.json"), out))
    assert not out.exists() or not list(out.rglob("*.npy"))


def test_three_hosts_share_the_selection_disjointly_and_completely(
    small_dataset, tmp_path, monkeypatch
):
    root = small_dataset.root
    single = tmp_path / "single"
    monkeypatch.setenv("SM_RESOURCE_CONFIG_PATH", str(tmp_path / "none.json"))
    prepare.main(prepare_args(str(root), str(root / "file_list.json"), single))

    shared = tmp_path / "shared"
    hosts = ["algo-1", "algo-2", "algo-3"]
    assigned = []
    for host in hosts:
        config = tmp_path / f"{host}.json"
        config.write_text(json.dumps({"current_host": host, "hosts": hosts}))
        monkeypatch.setenv("SM_RESOURCE_CONFIG_PATH", str(config))
        prepare.main(prepare_args(str(root), str(root / "file_list.json"), shared))
        stats = read_stats(shared, host)
        assert stats["hosts"] == 3 and 0 < stats["assigned"] < 36
        assigned.append(stats["assigned"])
    assert sum(assigned) == 36
    # read_manifest fails on an id seen twice: disjoint. Equal to one host's: complete.
    assert read_manifest(shared) == read_manifest(single)
    assert read_skipped(shared) == read_skipped(single)
    for split in ("train", "validation", "test"):
        names = [stem.name for stem in shard_stems(shared / split)]
        assert {n.split("-0")[0] for n in names} <= set(hosts)
        _, labels, ids = load_split(shared, split)
        _, labels_one, ids_one = load_split(single, split)
        pairs = sorted(zip(ids.tolist(), labels.tolist(), strict=True))
        assert pairs == sorted(zip(ids_one.tolist(), labels_one.tolist(), strict=True))


def test_splits_stay_put_when_images_are_added(tmp_path, single_host):
    root = tmp_path / "data"
    generate(root, per_class=10, seed=1)
    prepare.main(prepare_args(str(root), "scan", tmp_path / "before"))
    before = read_manifest(tmp_path / "before")
    generate(root, per_class=10, seed=2, start_index=1000)
    prepare.main(prepare_args(str(root), "scan", tmp_path / "after"))
    after = read_manifest(tmp_path / "after")
    assert len(after) == 100 and set(before) < set(after)
    assert all(after[i] == before[i] for i in before)
    # And a rerun is identical, shards byte for byte.
    prepare.main(prepare_args(str(root), "scan", tmp_path / "again"))
    for split in ("train", "validation", "test"):
        parts = list((tmp_path / "after" / split).glob("*.npy"))
        assert parts
        for part in parts:
            assert part.read_bytes() == (tmp_path / "again" / split / part.name).read_bytes()


def test_metadata_wins_over_the_list_and_out_of_range_counts_are_skipped(tmp_path, single_host):
    root = tmp_path / "data"
    data = generate(root, per_class=2, seed=3, classes=(2, 7))
    twos = [i for i, c in zip(data.ids, data.labels, strict=True) if c == 2]
    sevens = [i for i, c in zip(data.ids, data.labels, strict=True) if c == 7]
    listing = {"3": [f"data/metadata/{twos[0]}.json"], "2": [f"data/metadata/{twos[1]}.json"]}
    listing["5"] = [f"data/metadata/{i}.json" for i in sevens]  # metadata says 7
    listing["9"] = ["data/metadata/404.json"]  # no such image at all
    (tmp_path / "list.json").write_text(json.dumps(listing))
    args = prepare_args(str(root), str(tmp_path / "list.json"), tmp_path / "out")
    prepare.main([*args, "--validate-metadata"])
    manifest = read_manifest(tmp_path / "out")
    assert {i: label for i, (label, _) in manifest.items()} == {twos[0]: 2, twos[1]: 2}
    skipped = read_skipped(tmp_path / "out")
    assert skipped == {**dict.fromkeys(sevens, "label_out_of_range"), "404": "missing_metadata"}
    assert read_stats(tmp_path / "out")["relabelled_from_metadata"] == 1


def test_no_usable_image_fails_clearly_and_leaves_the_old_output_alone(tmp_path, single_host):
    good = tmp_path / "good"
    generate(good, per_class=2, seed=1)
    out = tmp_path / "out"
    prepare.main(prepare_args(str(good), "scan", out))
    before = {f: (out / f).read_bytes() for f in all_files(out)}

    bad = tmp_path / "bad"
    data = generate(bad, per_class=0, seed=1, corrupt=2, truncated=1, file_list=bad / "l.json")
    assert not data.ids
    result = subprocess.run(
        [sys.executable, PREPARE, *prepare_args(str(bad), str(bad / "l.json"), out)],
        capture_output=True, text=True, env={**__import__("os").environ},
    )  # fmt: skip
    assert result.returncode != 0
    assert "no usable image among the 3 selected" in result.stderr
    assert "corrupt_image: 2" in result.stderr and "truncated_image: 1" in result.stderr
    assert {f: (out / f).read_bytes() for f in all_files(out)} == before


def test_an_empty_selection_or_missing_source_fails_clearly(tmp_path, single_host):
    empty = tmp_path / "empty"
    (empty / "metadata").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"selection from .*empty.* is empty"):
        prepare.main(prepare_args(str(empty), "scan", tmp_path / "out"))
    with pytest.raises(SystemExit, match=r"source folder .*nowhere does not exist"):
        prepare.main(prepare_args(str(tmp_path / "nowhere"), "scan", tmp_path / "out"))
    assert not (tmp_path / "out" / ".staging-algo-1").exists()


def test_a_rerun_replaces_this_hosts_files_only(tmp_path, single_host):
    root = tmp_path / "data"
    generate(root, per_class=8, seed=1)
    out = tmp_path / "out"
    other = out / "train" / "algo-2-00000.labels.npy"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another host's shard")
    prepare.main(prepare_args(str(root), "scan", out, shard_size=4))
    many = len(shard_stems(out / "train")) - 1
    prepare.main(prepare_args(str(root), "scan", out, shard_size=64))
    assert [p.name for p in shard_stems(out / "train")] == ["algo-1-00000", "algo-2-00000"]
    assert many > 1 and other.read_bytes() == b"another host's shard"


def test_the_cache_makes_a_rerun_fetch_nothing_and_heals_damage(tmp_path, single_host):
    root = tmp_path / "data"
    data = generate(root, per_class=3, seed=1)
    cache = tmp_path / "cache"
    prepare.main(prepare_args(str(root), "scan", tmp_path / "one", cache_dir=cache))
    first = read_stats(tmp_path / "one")
    assert first["bytes_downloaded"] > 0
    damaged = cache / "bin-images" / f"{data.ids[0]}.jpg"
    damaged.write_bytes(b"garbage")
    prepare.main(prepare_args(str(root), "scan", tmp_path / "two", cache_dir=cache))
    second = read_stats(tmp_path / "two")
    # Scan reads metadata from the source (listing is not cached); images come from the cache
    # except the damaged one, fetched again.
    image_bytes = (root / "bin-images" / f"{data.ids[0]}.jpg").stat().st_size
    metadata_bytes = sum(p.stat().st_size for p in (root / "metadata").glob("*.json"))
    assert second["bytes_downloaded"] == image_bytes
    assert second["usable"] == 15 and damaged.read_bytes() != b"garbage"
    assert metadata_bytes > 0


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("val_ratio", 0.8, "leave room for training"),
        ("test_ratio", -0.1, "must each be in"),
        ("shard_size", 0, "--shard-size must be >= 1"),
    ],
)
def test_bad_arguments_are_named(tmp_path, single_host, small_dataset, flag, value, message):
    args = prepare_args(str(small_dataset.root), "scan", tmp_path / "out", **{flag: value})
    with pytest.raises(SystemExit, match=message):
        prepare.main(args)


def _children(pid: int) -> list[int]:
    """Live child processes of `pid` (from /proc: the container suite has no psutil)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_worker_processes_do_not_outlive_a_killed_job(s3_data, single_host):
    """SIGKILL on the main process (no cleanup can run): its workers notice and exit."""
    import os
    import signal
    import time

    from prepare_fault_server import FaultPlan

    s3_data.plan = FaultPlan(seed=1, rates={"slowdown": 0.9}, max_faults_per_key=3)
    listing = f"s3://{BUCKET}/data/file_list.json"
    args = prepare_args(f"s3://{BUCKET}/data", listing, single_host / "out", processes=2,
                        workers=2, backoff_seconds=0.3)  # fmt: skip
    job = subprocess.Popen([sys.executable, PREPARE, *args], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    workers = []
    while len(workers) < 2 and time.monotonic() < deadline and job.poll() is None:
        workers = _children(job.pid)
        time.sleep(0.05)
    assert len(workers) == 2 and job.poll() is None, "the job should still be fetching"
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(map(_running, workers)):
        time.sleep(0.1)
    assert not [w for w in workers if _running(w)]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
