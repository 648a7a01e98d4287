"""Fixtures for the training and serving tests: generated shards, one training run shared by
the tests that only read its results, and its serving code imported from its code/ folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from shard_factory import write_splits
from training_testing import Serving, TrainingRun, import_serving_code, run_train


@pytest.fixture(scope="session")
def shard_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ (320 images), validation/ (80) and test/ (80) shards at 32 px."""
    return write_splits(tmp_path_factory.mktemp("shards"), 320, 80, 80, size=32)


@pytest.fixture(scope="session")
def training_run(tmp_path_factory: pytest.TempPathFactory, shard_data: Path) -> TrainingRun:
    """One uninterrupted run of HYPERPARAMETERS; tests read its model dir, never change it."""
    run = run_train(tmp_path_factory.mktemp("full-run"), shard_data)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


@pytest.fixture(scope="session")
def serving(training_run: TrainingRun) -> Serving:
    """The trained model's own code/ folder, imported the way the endpoint imports it."""
    return import_serving_code(training_run.model_dir / "code")
