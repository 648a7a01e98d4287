"""The synthetic data generator: determinism, layout and the real dataset's metadata schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import synthetic
from decoding import decode_image
from PIL import Image
from synthetic import REPO_SCRIPT, generate, image_id

SKU_KEYS = {"asin", "height", "length", "name", "quantity", "weight", "width"}


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.*"))}


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path: Path):
    first = generate(tmp_path / "a", per_class=3, seed=11, corrupt=1, truncated=1)
    again = generate(tmp_path / "b", per_class=3, seed=11, corrupt=1, truncated=1)
    other = generate(tmp_path / "c", per_class=3, seed=12, corrupt=1, truncated=1)
    assert files_of(first.root) == files_of(again.root)
    assert first.ids == other.ids
    assert files_of(first.root) != files_of(other.root)


def test_metadata_follows_the_real_examples_schema(tmp_path: Path, shared_data: Path):
    real = [json.loads(p.read_text()) for p in (shared_data / "metadata-examples").glob("*.json")]
    real_top = set().union(*(m.keys() for m in real))
    real_sku = set().union(*(s.keys() for m in real for s in m["BIN_FCSKU_DATA"].values()))
    data = generate(tmp_path, per_class=8, seed=3)
    keys_seen: set[str] = set()
    fcsku_differs = False
    for ident, label in zip(data.ids, data.labels, strict=True):
        meta = json.loads((tmp_path / "metadata" / f"{ident}.json").read_text())
        assert set(meta) <= real_top and {"BIN_FCSKU_DATA", "EXPECTED_QUANTITY"} <= set(meta)
        assert meta["EXPECTED_QUANTITY"] == label
        assert sum(s["quantity"] for s in meta["BIN_FCSKU_DATA"].values()) == label
        for key, sku in meta["BIN_FCSKU_DATA"].items():
            assert SKU_KEYS <= set(sku) <= real_sku
            assert sku["height"]["unit"] == "IN" and sku["weight"]["unit"] == "pounds"
            fcsku_differs |= key != sku["asin"]
            keys_seen |= set(sku)
        if "image_fname" in meta:
            assert meta["image_fname"] == f"{ident}.jpg"
    assert "normalizedName" in keys_seen and fcsku_differs


def test_images_look_like_the_real_ones_and_shrink_to_64px(tmp_path: Path, real_bins):
    data = generate(tmp_path, per_class=2, seed=5)
    real_w, real_h = Image.open(real_bins[0][0]).size
    for ident in data.ids:
        with Image.open(tmp_path / "bin-images" / f"{ident}.jpg") as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert 0.6 < image.size[0] / real_w < 1.3 and 0.6 < image.size[1] / real_h < 1.3
    small = decode_image((tmp_path / "bin-images" / f"{data.ids[0]}.jpg").read_bytes(), 64)
    assert small.shape == (64, 64, 3) and small.std() > 10


def test_ids_are_strings_with_padded_and_unpadded_twins():
    ids = [image_id(i) for i in range(50_000)]
    assert len(set(ids)) == len(ids)
    padded = {i for i in ids if i.startswith("0")}
    assert padded and any(i.lstrip("0") in ids for i in padded)


def test_bad_items_are_really_bad(tmp_path: Path):
    data = generate(tmp_path, per_class=1, seed=2, corrupt=1, truncated=1, missing_metadata=1)
    for ident in data.corrupt:
        with pytest.raises(Exception, match="cannot identify"):
            Image.open(tmp_path / "bin-images" / f"{ident}.jpg")
    for ident in data.truncated:
        with pytest.raises(OSError, match="truncated"):
            Image.open(tmp_path / "bin-images" / f"{ident}.jpg").load()
    for ident in data.missing_metadata:
        assert (tmp_path / "bin-images" / f"{ident}.jpg").is_file()
        assert not (tmp_path / "metadata" / f"{ident}.json").exists()


def test_cli_writes_the_dataset_and_a_published_format_file_list(tmp_path: Path):
    out = tmp_path / "data"
    subprocess.run(
        [sys.executable, REPO_SCRIPT, "--out", out, "--per-class", "2", "--seed", "1",
         "--missing-metadata", "1", "--file-list", tmp_path / "list.json"],
        check=True, capture_output=True,
    )  # fmt: skip
    listing = json.loads((tmp_path / "list.json").read_text())
    assert set(listing) == {"1", "2", "3", "4", "5"}
    paths = [p for v in listing.values() for p in v]
    assert len(paths) == 11 and all(p.startswith("data/metadata/") for p in paths)
    assert len(list((out / "bin-images").glob("*.jpg"))) == 11
    assert len(list((out / "metadata").glob("*.json"))) == 10
    assert np.all(
        [(out / "bin-images" / Path(p).with_suffix(".jpg").name).is_file() for p in paths]
    )


def test_rendering_on_every_core_writes_the_same_files_as_one_core(tmp_path, monkeypatch):
    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    monkeypatch.setattr(synthetic, "PARALLEL_FROM", 10**9)
    one = synthetic.generate(tmp_path / "one", per_class=6, seed=7, corrupt=1, truncated=1)
    monkeypatch.setattr(synthetic, "PARALLEL_FROM", 1)
    many = synthetic.generate(tmp_path / "many", per_class=6, seed=7, corrupt=1, truncated=1)
    assert (many.ids, many.labels, many.corrupt) == (one.ids, one.labels, one.corrupt)
    assert files(tmp_path / "many") == files(tmp_path / "one")
