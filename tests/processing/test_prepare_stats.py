"""Prepare's per-host reports merged into the execution's one stats.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prepare_stats import StatsError, merge_host_stats


def host_stats(name: str, hosts: int, usable: int, seconds: float, **extra) -> dict:
    return {
        "host": name,
        "hosts": hosts,
        "source": "s3://aft-vbi-pds",
        "file_list": "scan",
        "image_size": 224,
        "selected": 1000,
        "assigned": usable + 2,
        "usable": usable,
        "counts": {"train": {"1": usable - 10, "2": 10}, "test": {"3": 0}},
        "skipped": {"corrupt_image": 2},
        "shards": {"train": 2, "test": 1},
        "bytes_downloaded": 10 * usable,
        "max_skip_fraction": 0.01,
        "seconds": {"select": 1.0, "fetch_decode_write": seconds, "total": seconds + 1},
        "images_per_s": usable / seconds,
        **extra,
    }


def write(folder: Path, *reports: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for r in reports:
        (folder / f"stats-{r['host']}.json").write_text(json.dumps(r))
    return folder


def test_counts_add_up_shared_fields_agree_and_the_slowest_host_sets_the_time(tmp_path):
    report = write(tmp_path, host_stats("algo-1", 2, 500, 10.0), host_stats("algo-2", 2, 300, 20.0))
    merged = merge_host_stats(report)
    assert merged["usable"] == 800 and merged["assigned"] == 804
    assert merged["counts"]["train"] == {"1": 780, "2": 20}
    assert merged["skipped"] == {"corrupt_image": 4}
    assert merged["bytes_downloaded"] == 8000
    assert merged["seconds"] == {"select": 1.0, "fetch_decode_write": 20.0, "total": 21.0}
    assert merged["images_per_s"] == pytest.approx(804 / 20.0, abs=0.1)
    assert merged["selected"] == 1000 and merged["hosts"] == 2
    assert merged["host_names"] == ["algo-1", "algo-2"]


def test_a_missing_host_report_is_an_error_not_a_smaller_dataset(tmp_path):
    report = write(tmp_path, host_stats("algo-1", 3, 500, 10.0), host_stats("algo-2", 3, 1, 1))
    with pytest.raises(StatsError, match=r"2 host report\(s\) \(algo-1, algo-2\) for a Prepare "
                       r"that ran on 3 hosts: a host's report is missing"):  # fmt: skip
        merge_host_stats(report)


def test_reports_of_different_executions_do_not_merge(tmp_path):
    other = host_stats("algo-2", 2, 300, 20.0, image_size=128)
    report = write(tmp_path, host_stats("algo-1", 2, 500, 10.0), other)
    with pytest.raises(StatsError, match="disagree on image_size"):
        merge_host_stats(report)


def test_no_report_or_an_unreadable_one_is_named(tmp_path):
    with pytest.raises(StatsError, match=r"no stats-<host>\.json in"):
        merge_host_stats(tmp_path / "absent")
    (tmp_path / "stats-algo-1.json").write_text("{not json")
    with pytest.raises(StatsError, match=r"stats-algo-1\.json is unreadable"):
        merge_host_stats(tmp_path)
