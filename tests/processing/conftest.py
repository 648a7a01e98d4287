"""Fixtures for Prepare's tests: generated datasets on disk and in a moto S3 bucket."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from prepare_testing import BUCKET, upload
from synthetic import GeneratedDataset, generate


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    """6 images per count 1..5, plus 2 corrupt, 2 truncated and 2 without metadata."""
    root = tmp_path_factory.mktemp("small-dataset")
    return generate(
        root,
        per_class=6,
        seed=7,
        corrupt=2,
        truncated=2,
        missing_metadata=2,
        file_list=root / "file_list.json",
    )


@pytest.fixture
def s3_bucket(small_dataset: GeneratedDataset):
    """A moto bucket holding the small dataset under `data/` (and its list at the root)."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        upload(client, small_dataset.root, BUCKET, prefix="data/")
        yield client


@pytest.fixture
def single_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No resourceconfig.json on this machine: make that explicit (one host, algo-1)."""
    monkeypatch.setenv("SM_RESOURCE_CONFIG_PATH", str(tmp_path / "no-resource-config.json"))
    return tmp_path
