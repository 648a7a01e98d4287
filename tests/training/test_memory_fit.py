"""Train refuses, before loading a pixel, splits that cannot fit in the instance's memory."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import data
import memory_fit
import numpy as np
import pytest
import train
from data import load_split

GIB = 1024**3


def fake_meminfo(tmp_path: Path, available_kb: int) -> Path:
    path = tmp_path / "meminfo"
    path.write_text(
        f"MemTotal:       16000000 kB\nMemFree:          200000 kB\n"
        f"MemAvailable:   {available_kb:>8} kB\nBuffers:           10000 kB\n"
    )
    return path


def header_only_shard(path: Path, n: int, size: int) -> None:
    """An npz whose images.npy claims [n, size, size, 3] uint8 but holds only its header, the
    way a split far bigger than this machine would look to a reader of headers alone."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (n, size, size, 3)}
    )
    labels = io.BytesIO()
    np.save(labels, np.ones(n, dtype=np.int64))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", header.getvalue())  # magic and header, no pixels
        archive.writestr("labels.npy", labels.getvalue())


def test_the_need_is_read_from_headers_and_matches_what_load_split_holds(shard_data: Path):
    loaded = [load_split(shard_data / split) for split in ("train", "validation")]
    held = sum(s.images.nbytes + s.labels.nbytes for s in loaded)
    assert memory_fit.loaded_bytes(shard_data / "train") + memory_fit.loaded_bytes(
        shard_data / "validation"
    ) == pytest.approx(held)


def test_mem_available_is_read_in_bytes(tmp_path: Path):
    assert memory_fit.available_bytes(fake_meminfo(tmp_path, 15_938_355)) == 15_938_355 * 1024


def test_without_meminfo_free_physical_memory_is_used(tmp_path: Path):
    assert memory_fit.available_bytes(tmp_path / "absent") > 0


def test_a_split_too_big_for_the_instance_names_the_sizes(tmp_path: Path):
    for split in ("train", "validation"):
        (tmp_path / split).mkdir()
    # ~480k images at 224 px: 67 GiB of pixels, never read (the file holds only headers).
    header_only_shard(tmp_path / "train" / "algo-1-00000.npz", 480_000, 224)
    header_only_shard(tmp_path / "validation" / "algo-1-00000.npz", 10_000, 224)
    available = memory_fit.available_bytes(fake_meminfo(tmp_path, int(15.2 * 1024**2)))

    with pytest.raises(memory_fit.InsufficientMemory) as caught:
        memory_fit.check_fits(tmp_path / "train", tmp_path / "validation", 4, available)

    data_bytes = (480_000 + 10_000) * (224 * 224 * 3 + 8)
    need = 4 * (0.65 * GIB + 1.8 * data_bytes)
    message = str(caught.value)
    assert f"need {need / GIB:.1f} GiB" in message
    assert f"{data_bytes / GIB:.1f} GiB of arrays" in message
    assert "4 ranks per host load them all" in message
    assert "this instance has 15.2 GiB available" in message
    assert "larger instance or a smaller ImageSize/PerClassCap" in message


def test_splits_that_fit_pass_and_the_need_grows_with_ranks(shard_data: Path):
    one = memory_fit.check_fits(shard_data / "train", shard_data / "validation", 1, 64 * GIB)
    four = memory_fit.check_fits(shard_data / "train", shard_data / "validation", 4, 64 * GIB)
    assert four == 4 * one > 0.65 * GIB


def test_missing_or_damaged_channels_are_left_to_load_split_to_report(tmp_path: Path):
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "a.npz").write_bytes(b"not a zip")
    assert memory_fit.loaded_bytes(tmp_path / "absent") == 0
    assert memory_fit.loaded_bytes(tmp_path / "damaged") == 0


def test_train_exits_2_before_loading_anything(
    tmp_path: Path, shard_data: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    small = memory_fit.available_bytes(fake_meminfo(tmp_path, 512 * 1024))  # 0.5 GiB
    monkeypatch.setattr(memory_fit, "available_bytes", lambda: small)

    def no_loading(folder):
        raise AssertionError(f"loaded {folder} although it cannot fit")

    monkeypatch.setattr(data, "load_split", no_loading)
    monkeypatch.setattr(train, "load_split", no_loading)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    code = train.main(
        [
            "--train",
            str(shard_data / "train"),
            "--validation",
            str(shard_data / "validation"),
            "--checkpoint_dir",
            str(tmp_path / "checkpoints"),
            "--min_validation_images",
            "80",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "error: train+validation need" in err
    assert "2 ranks per host load them all" in err
    assert "this instance has 0.5 GiB available" in err
