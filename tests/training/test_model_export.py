"""What export_model_dir writes for serving, and the serving requirements it ships."""

from __future__ import annotations

import json
from pathlib import Path

import model_export
import pytest
import torch
from model import build_model
from model_export import SERVING_FILES, export_model_dir, serving_source
from training_testing import import_serving_code

TRAINING_DIR = Path(model_export.__file__).resolve().parent


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("export") / "model"
    torch.manual_seed(0)
    export_model_dir(model_dir, build_model("smallcnn").state_dict(), "smallcnn", 32)
    return model_dir


def test_training_dir_has_no_requirements_txt():
    # The training toolkit pip-installs a requirements.txt in the source dir on every Train.
    assert not (TRAINING_DIR / "requirements.txt").exists()


def test_code_folder_holds_the_serving_files_from_their_sources(exported: Path):
    code = exported / "code"
    assert sorted(p.name for p in code.iterdir()) == sorted(SERVING_FILES)
    for name in SERVING_FILES:
        assert (code / name).read_bytes() == serving_source(name).read_bytes(), name
    assert serving_source("requirements.txt") == TRAINING_DIR / "serving_requirements.txt"
    assert serving_source("inference.py") == TRAINING_DIR / "inference.py"


def test_served_requirements_name_no_package(exported: Path):
    """SageMaker's inference toolkit pip-installs code/requirements.txt when the endpoint
    starts; a network-isolated endpoint cannot download, so the file names nothing (the
    PyTorch inference image has every package serving imports)."""
    lines = (exported / "code" / "requirements.txt").read_text().splitlines()
    assert lines, "an empty file says nothing about why it is empty"
    named = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert named == []


def test_exported_code_serves_without_training_dir(exported: Path, real_bins):
    serving = import_serving_code(exported / "code")
    model = serving.inference.model_fn(str(exported))
    assert model.engine.startswith("TorchScript")
    data = real_bins[0][0].read_bytes()
    prediction = serving.inference.predict_fn(serving.inference.input_fn(data, "image/jpeg"), model)
    body, _ = serving.inference.output_fn(prediction, "application/json")
    assert json.loads(body)["predictions"][0]["count"] in (1, 2, 3, 4, 5)
