"""Fixtures for the pipeline definition tests: one build shared by the read-only checks."""

from __future__ import annotations

import json

import pytest

from pipeline.definition import Built, build
from pipeline.settings import Settings


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The definition for default settings (staging into a temp dir, never build/)."""
    return build(Settings(staging_dir=tmp_path_factory.mktemp("staging")))


@pytest.fixture(scope="session")
def definition(built: Built) -> dict:
    return json.loads(built.definition)
