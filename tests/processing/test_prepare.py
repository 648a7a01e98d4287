"""Prepare end to end through its real main(): local folders and a moto S3 bucket."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import prepare
import pytest
from prepare_testing import BUCKET, prepare_args, read_manifest, read_skipped, read_stats
from synthetic import generate

PREPARE = str(Path(prepare.__file__))


def load_split(output: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shards = [np.load(p) for p in sorted((output / split).glob("*.npz"))]
    if not shards:
        return np.empty((0, 32, 32, 3), np.uint8), np.empty(0, np.int64), np.empty(0, str)
    return tuple(np.concatenate([s[k] for s in shards]) for k in ("images", "labels", "ids"))


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_local_folder_gives_the_data_contract(small_dataset, single_host):
    out = single_host / "out"
    root = small_dataset.root
    assert prepare.main(prepare_args(str(root), str(root / "file_list.json"), out)) == 0

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
        assert all(len(np.load(p)["ids"]) <= 8 for p in (out / split).glob("*.npz"))
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
    per_class = {
        c: sum(stats["counts"][s].get(str(c), 0) for s in stats["counts"]) for c in range(1, 6)
    }
    assert per_class == dict.fromkeys(range(1, 6), 6)
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


def test_s3_source_with_an_s3_file_list(s3_bucket, single_host):
    out = single_host / "out"
    args = prepare_args(f"s3://{BUCKET}/data", f"s3://{BUCKET}/data/file_list.json", out)
    prepare.main(args)
    stats = read_stats(out)
    assert stats["usable"] == 30 and sum(stats["skipped"].values()) == 6
    assert read_skipped(out)


def test_scan_over_s3_with_a_cap(s3_bucket, single_host, small_dataset):
    out = single_host / "out"
    prepare.main(prepare_args(f"s3://{BUCKET}/data/", "scan", out, per_class_cap=4))
    manifest = read_manifest(out)
    labels = [label for label, _ in manifest.values()]
    # Scan reads each metadata file: the one without metadata is never selected, and
    # corrupt/truncated images are selected and then skipped.
    assert sorted(set(labels)) == [1, 2, 3, 4, 5]
    assert all(labels.count(c) <= 4 for c in range(1, 6))
    assert not set(read_skipped(out)) & set(small_dataset.missing_metadata)


def test_throttling_and_server_errors_are_retried_and_nothing_is_lost(
    s3_bucket, single_host, small_dataset, monkeypatch
):
    import sources
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    failures: dict[str, int] = {}
    victims = {f"/bin-images/{i}.jpg" for i in small_dataset.ids[::5]}
    answers = [
        (503, b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"),
        (
            500,
            b"<Error><Code>InternalError</Code><Message>We encountered an error.</Message></Error>",
        ),
    ]

    def flaky(request, **_):
        # The first two GETs of some images fail (a throttle, then a 5xx); botocore's own
        # retry handler must absorb them.
        if not any(request.url.endswith(v) for v in victims):
            return None
        done = failures.get(request.url, 0)
        if done >= 2:
            return None
        failures[request.url] = done + 1
        status, body = answers[done]
        return AWSResponse(request.url, status, {}, MockRawResponse(body))

    real_client = sources.s3_client

    def client_with_faults(*args, **kwargs):
        client = real_client(*args, **kwargs)
        client.meta.events.register_first("before-send.s3.GetObject", flaky)
        return client

    monkeypatch.setattr(sources, "s3_client", client_with_faults)
    out = single_host / "out"
    prepare.main(prepare_args(f"s3://{BUCKET}/data", f"s3://{BUCKET}/data/file_list.json", out))
    assert len(failures) == len(victims) == 6 and set(failures.values()) == {2}
    stats = read_stats(out)
    assert stats["usable"] == 30 and "fetch_error" not in stats["skipped"]
    assert stats["retries"] == 12


def _client_answering(monkeypatch, victim_url_end: str, status: int, code: str) -> None:
    """Every GetObject of the victim is answered `status` with the S3 error `code`."""
    import sources
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    def refuse(request, **_):
        if request.url.endswith(victim_url_end):
            body = f"<Error><Code>{code}</Code><Message>no</Message></Error>".encode()
            return AWSResponse(request.url, status, {}, MockRawResponse(body))
        return None

    real_client = sources.s3_client

    def client_with_fault(*args, **kwargs):
        client = real_client(*args, **kwargs)
        client.meta.events.register_first("before-send.s3.GetObject", refuse)
        return client

    monkeypatch.setattr(sources, "s3_client", client_with_fault)


def test_a_forbidden_object_is_skipped_as_forbidden(
    s3_bucket, single_host, small_dataset, monkeypatch
):
    victim = small_dataset.ids[0]
    _client_answering(monkeypatch, f"/bin-images/{victim}.jpg", 403, "AccessDenied")
    out = single_host / "out"
    prepare.main(prepare_args(f"s3://{BUCKET}/data", f"s3://{BUCKET}/data/file_list.json", out))
    assert read_skipped(out)[victim] == "forbidden_image"
    assert read_stats(out)["usable"] == 29


def test_throttling_past_all_retries_fails_the_job_instead_of_skipping(
    s3_bucket, single_host, small_dataset, monkeypatch
):
    victim = small_dataset.ids[3]
    _client_answering(monkeypatch, f"/bin-images/{victim}.jpg", 503, "SlowDown")
    out = single_host / "out"
    args = prepare_args(f"s3://{BUCKET}/data", f"s3://{BUCKET}/data/file_list.json", out)
    with pytest.raises(
        SystemExit, match=rf"{victim}\.jpg still failing after 3 attempts.*SlowDown"
    ):
        prepare.main([*args, "--max-attempts", "3"])
    assert not out.exists() or not list(out.rglob("*.npz"))


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
        names = [p.name for p in (shared / split).glob("*.npz")]
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
        for shard in (tmp_path / "after" / split).glob("*.npz"):
            assert shard.read_bytes() == (tmp_path / "again" / split / shard.name).read_bytes()


def test_metadata_wins_over_the_list_and_out_of_range_counts_are_skipped(tmp_path, single_host):
    root = tmp_path / "data"
    data = generate(root, per_class=2, seed=3, classes=(2, 7))
    twos = [i for i, c in zip(data.ids, data.labels, strict=True) if c == 2]
    sevens = [i for i, c in zip(data.ids, data.labels, strict=True) if c == 7]
    listing = {"3": [f"data/metadata/{twos[0]}.json"], "2": [f"data/metadata/{twos[1]}.json"]}
    listing["5"] = [f"data/metadata/{i}.json" for i in sevens]  # metadata says 7
    listing["9"] = ["data/metadata/404.json"]  # no such image at all
    (tmp_path / "list.json").write_text(json.dumps(listing))
    prepare.main(prepare_args(str(root), str(tmp_path / "list.json"), tmp_path / "out"))
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
    other = out / "train" / "algo-2-00000.npz"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another host's shard")
    prepare.main(prepare_args(str(root), "scan", out, shard_size=4))
    many = len(list((out / "train").glob("algo-1-*.npz")))
    prepare.main(prepare_args(str(root), "scan", out, shard_size=64))
    assert [p.name for p in (out / "train").glob("algo-1-*.npz")] == ["algo-1-00000.npz"]
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
