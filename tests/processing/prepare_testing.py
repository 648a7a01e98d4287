"""Helpers for Prepare's tests: upload a dataset to a bucket, build arguments, read reports."""

from __future__ import annotations

import json
from pathlib import Path

BUCKET = "test-bins"


def upload(client, root: Path, bucket: str, prefix: str = "") -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            key = prefix + path.relative_to(root).as_posix()
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


def prepare_args(source: str, file_list: str, output: Path, **extra) -> list[str]:
    args = {
        "source": source,
        "file-list": file_list,
        "min-count": 1,
        "max-count": 5,
        "per-class-cap": 0,
        "val-ratio": 0.2,
        "test-ratio": 0.2,
        "image-size": 32,
        "shard-size": 8,
        "workers": 4,
        "output-dir": output,
        # These datasets hold deliberately bad images; the gate has tests of its own.
        "max-skip-fraction": 1,
        "backoff-seconds": 0.001,
    }
    args.update({k.replace("_", "-"): v for k, v in extra.items()})
    return [part for k, v in args.items() for part in (f"--{k}", str(v))]


def read_manifest(output: Path) -> dict[str, tuple[int, str]]:
    rows: dict[str, tuple[int, str]] = {}
    for path in sorted((output / "report").glob("manifest-*.csv")):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "id,label,split,bytes,width,height"
        for line in lines[1:]:
            image_id, label, split = line.split(",")[:3]
            assert image_id not in rows, f"{image_id} appears twice"
            rows[image_id] = (int(label), split)
    return rows


def read_skipped(output: Path) -> dict[str, str]:
    rows = {}
    for path in sorted((output / "report").glob("skipped-*.csv")):
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            image_id, reason, _ = line.split(",", 2)
            rows[image_id] = reason
    return rows


def read_stats(output: Path, host: str = "algo-1") -> dict:
    return json.loads((output / "report" / f"stats-{host}.json").read_text(encoding="utf-8"))
