"""Selections: the published list as shipped, malformed lists, and scan's deterministic choice."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from metadata import expected_quantity
from selection import BUNDLED_LIST, cap_per_class, load_file_list, parse_file_list, scan
from sources import LocalSource
from synthetic import generate


def test_the_bundled_list_is_the_published_one(shared_data: Path):
    assert BUNDLED_LIST.read_bytes() == (shared_data / "file_list.json").read_bytes()
    items = load_file_list("bundled")
    assert len(items) == 10_441
    assert Counter(i.label for i in items) == {1: 1228, 2: 2299, 3: 2666, 4: 2373, 5: 1875}
    ids = {i.image_id for i in items}
    assert "00710" in ids and "100313" in ids
    # Padded and unpadded ids are different images, and both kinds stay.
    twins = {i for i in ids if i.startswith("0") and i.lstrip("0") in ids}
    assert len(twins) == 38
    assert all(isinstance(i.image_id, str) for i in items)


def test_the_order_is_fixed_and_mixes_classes():
    items = load_file_list("bundled")
    assert [i.image_id for i in items] == [i.image_id for i in load_file_list("bundled")]
    assert len({i.label for i in items[:20]}) >= 3


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"{not json", "is not valid JSON"),
        (b'["data/metadata/1.json"]', "must be an object"),
        (b'{"three": ["data/metadata/1.json"]}', "class key 'three' is not a count"),
        (b'{"3": "data/metadata/1.json"}', "class 3 must map to a list"),
        (b'{"3": ["data/bin-images/1.jpg"]}', "is not a path to metadata/<id>.json"),
        (b'{"3": [17]}', "17 is not a path"),
        (b'{"3": ["m/1.json"], "4": ["m/1.json"]}', "image 1 is listed under both 3 and 4"),
    ],
)
def test_a_malformed_list_names_the_problem_and_the_file(tmp_path, payload, problem):
    path = tmp_path / "broken.json"
    path.write_bytes(payload)
    with pytest.raises(SystemExit) as failure:
        load_file_list(str(path))
    assert problem in str(failure.value) and str(path) in str(failure.value)


def test_a_missing_list_file_is_named(tmp_path):
    with pytest.raises(SystemExit, match=r"cannot read file list .*nowhere\.json"):
        load_file_list(str(tmp_path / "nowhere.json"))


def test_cap_keeps_the_first_of_each_class_in_order():
    items = parse_file_list(json.dumps({"1": [f"m/{i}.json" for i in range(9)]}).encode(), "x")
    capped = cap_per_class(items, 4)
    assert capped == items[:4]
    assert cap_per_class(items, 0) == items


def test_scan_keeps_counts_in_range_caps_classes_and_is_deterministic(tmp_path):
    generate(tmp_path, per_class=5, seed=4, classes=(0, 1, 2, 3, 6))
    source = LocalSource(tmp_path)
    chosen, rejected = scan(source.list_names, source.read, 1, 3, per_class_cap=3, workers=4)
    assert rejected == []
    assert Counter(i.label for i in chosen) == {1: 3, 2: 3, 3: 3}
    assert all(i.from_metadata for i in chosen)
    again, _ = scan(source.list_names, source.read, 1, 3, per_class_cap=3, workers=2)
    assert again == chosen
    everything, _ = scan(source.list_names, source.read, 1, 3, per_class_cap=0, workers=4)
    assert len(everything) == 15 and set(chosen) <= set(everything)


def test_scan_and_list_mode_read_expected_quantity_alike():
    """2.7, "3" and true are no counts: a scan rejects them (reported) as fetching does."""
    metadata = {
        "00001": b'{"EXPECTED_QUANTITY": 2}',
        "00002": b'{"EXPECTED_QUANTITY": 2.7}',
        "00003": b'{"EXPECTED_QUANTITY": "3"}',
        "00004": b'{"EXPECTED_QUANTITY": true}',
        "00005": b'{"BIN_FCSKU_DATA": {}}',
    }
    names = lambda folder: [f"{i}.json" for i in metadata]  # noqa: E731
    read = lambda key: metadata[key.removeprefix("metadata/").removesuffix(".json")]  # noqa: E731
    chosen, rejected = scan(names, read, 1, 5, 0, 2)
    assert [(item.image_id, item.label) for item in chosen] == [("00001", 2)]
    assert sorted((r.image_id, r.reason) for r in rejected) == [
        (i, "bad_metadata") for i in ("00002", "00003", "00004", "00005")
    ]
    assert expected_quantity(metadata["00001"]) == 2
    for bad in ("00002", "00003", "00004"):
        with pytest.raises(TypeError, match="not an integer"):
            expected_quantity(metadata[bad])
    with pytest.raises(KeyError):
        expected_quantity(metadata["00005"])


@pytest.mark.parametrize(
    "path",
    ["data/metadata/..json", "data/metadata/.hidden.json", "m/a b.json", "m/x\\..\\y.json"],
)
def test_a_list_naming_an_id_that_is_no_plain_name_is_refused_whole(tmp_path, path):
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps({"3": ["data/metadata/1.json", path]}))
    with pytest.raises(SystemExit, match="is not a plain name") as failure:
        load_file_list(str(listing))
    assert str(listing) in str(failure.value)


def test_scan_reports_keys_that_are_no_plain_names_and_never_reads_them():
    names = ["1.json", "../../escape.json", "sub/2.json", ".hidden.json", "3.txt"]
    reads: list[str] = []

    def read(key: str) -> bytes:
        reads.append(key)
        return b'{"EXPECTED_QUANTITY": 2}'

    chosen, rejected = scan(lambda folder: names, read, 1, 5, 0, 2)
    assert [i.image_id for i in chosen] == ["1"] and reads == ["metadata/1.json"]
    assert sorted((r.image_id, r.reason) for r in rejected) == [
        ("../../escape", "bad_id"), (".hidden", "bad_id"), ("sub/2", "bad_id"),
    ]  # fmt: skip


def test_scan_stops_the_job_on_a_read_failure_instead_of_dropping_the_id():
    from failures import PrepareFailed

    def read(key: str) -> bytes:
        if key == "metadata/2.json":
            raise PrepareFailed("prepare: s3://b/metadata/2.json still failing after 12 attempts")
        return b'{"EXPECTED_QUANTITY": 2}'

    with pytest.raises(SystemExit, match="still failing"):
        scan(lambda folder: ["1.json", "2.json", "3.json"], read, 1, 5, 0, 2)
