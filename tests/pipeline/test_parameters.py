"""Parameter values that are known wrong before any job starts are refused when an execution
starts: one rule table (pipeline.parameters.RULES), held to the definition it checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import parameters
from pipeline.cli import declared_parameters, main
from pipeline.local.expressions import resolve_parameters
from pipeline.settings import ParameterDefaults

REPO = Path(__file__).resolve().parents[2]


def test_every_rule_names_a_declared_parameter_and_every_number_has_one(definition):
    declared = declared_parameters(definition)
    assert set(parameters.RULES) <= set(declared), set(parameters.RULES) - set(declared)
    numbers = {n for n, p in declared.items() if p["Type"] in ("Integer", "Float")}
    assert numbers <= set(parameters.RULES), numbers - set(parameters.RULES)


def test_the_declared_defaults_satisfy_the_rules(definition):
    for parameter in definition["Parameters"]:
        parameters.check_value(parameter, parameter["DefaultValue"])


def test_the_scripts_defaults_are_the_pipelines():
    """Run by hand, train.py and evaluate.py refuse the same small splits the pipeline does."""
    import evaluate
    import train

    d = ParameterDefaults()
    assert d.min_train_images == train.MIN_TRAIN_IMAGES
    assert d.min_validation_images == train.MIN_VALIDATION_IMAGES
    assert d.min_test_images == evaluate.MIN_TEST_IMAGES
    low, high = train.IMAGE_SIZE_RANGE
    rule = parameters.RULES["ImageSize"]
    assert (rule.minimum, rule.maximum) == (low, high)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("Epochs", "0", "parameter Epochs must be at least 1 and at most 1000, got '0'"),
        ("Epochs", "1001", "parameter Epochs must be at most 1000"),
        ("BatchSize", "0", "parameter BatchSize must be at least 1"),
        ("BatchSize", "4096", "parameter BatchSize must be at most 1024"),
        ("ImageSize", "16", "parameter ImageSize must be at least 32 and at most 512, got '16'"),
        ("ImageSize", "1024", "parameter ImageSize must be at most 512"),
        ("LearningRate", "0", "parameter LearningRate must be greater than 0 and at most 1"),
        ("LearningRate", "-0.1", "parameter LearningRate must be greater than 0"),
        ("LearningRate", "inf", "parameter LearningRate must be a finite number, got 'inf'"),
        ("LearningRate", "nan", "parameter LearningRate must be a finite number"),
        ("LearningRate", "3", "parameter LearningRate must be at most 1"),
        ("AccuracyThreshold", "1.5", "parameter AccuracyThreshold must be at most 1"),
        ("AccuracyThreshold", "-0.1", "parameter AccuracyThreshold must be at least 0"),
        ("TrainingInstanceCount", "0", "parameter TrainingInstanceCount must be at least 1"),
        ("ProcessingInstanceCount", "101", "parameter ProcessingInstanceCount must be at most"),
        ("PerClassCap", "-1", "parameter PerClassCap must be at least 0"),
        ("MinTrainImages", "0", "parameter MinTrainImages must be at least 1"),
        ("MinValidationImages", "0", "parameter MinValidationImages must be at least 1"),
        ("MinTestImages", "0", "parameter MinTestImages must be at least 1"),
    ],
)
def test_out_of_range_values_are_refused_by_start_run_and_the_runner(
    definition, name, value, message
):
    declared = declared_parameters(definition)
    with pytest.raises(ValueError, match=f"^{message}" if "got" in message else message):
        parameters.parse_overrides([f"{name}={value}"], declared)  # start (AWS)
    with pytest.raises(ValueError, match=message):
        resolve_parameters(definition["Parameters"], {name: value})  # run and the runner


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Epochs", "1"),
        ("ImageSize", "32"),
        ("ImageSize", "512"),
        ("LearningRate", "1e-5"),
        ("LearningRate", "1"),
        ("AccuracyThreshold", "0"),
        ("AccuracyThreshold", "1"),
        ("PerClassCap", "0"),
        ("MinTestImages", "1"),
    ],
)
def test_values_at_the_edges_are_accepted(definition, name, value):
    resolve_parameters(definition["Parameters"], {name: value})


def test_local_run_with_zero_epochs_is_one_error_line_before_any_step(
    built, tmp_path, monkeypatch, capsys
):
    from pipeline.local.workspace import Workspace

    home = tmp_path / "home"
    monkeypatch.setenv("BINCOUNT_HOME", str(home))
    monkeypatch.setattr(Workspace, "definition", lambda self: built.definition)
    assert main(["run", "--param", "Epochs=0"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "error: parameter Epochs must be at least 1 and at most 1000, got '0'\n"
    )
    assert not (home / "executions").exists()


def test_python_m_pipeline_run_refuses_zero_epochs(tmp_path):
    """The command as a person types it: exit 2, one line, no execution recorded."""
    home = tmp_path / "home"
    env = {**os.environ, "BINCOUNT_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--param", "Epochs=0"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines()[-1] == (
        "error: parameter Epochs must be at least 1 and at most 1000, got '0'"
    )
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        done.stderr.splitlines()[-1]
    ]
    assert "Traceback" not in done.stderr
    assert not (home / "executions").exists() or not any((home / "executions").iterdir())


def test_every_parameter_is_documented_and_the_readme_table_is_current(definition):
    table = parameters.describe(definition["Parameters"])
    assert table.count("\n") == len(definition["Parameters"]) + 2
    assert set(parameters.DOCS) == {p["Name"] for p in definition["Parameters"]}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    begin, end = "<!-- parameters:begin -->\n", "<!-- parameters:end -->"
    printed = readme[readme.index(begin) + len(begin) : readme.index(end)]
    assert printed == table, "README.md Parameters: paste `python -m pipeline.parameters` again"


def test_an_undocumented_parameter_is_refused_by_name():
    with pytest.raises(ValueError, match="parameter Mystery has no entry"):
        parameters.describe([{"Name": "Mystery", "Type": "String", "DefaultValue": "x"}])


def test_parameters_cli_prints_a_definition_table_and_names_a_bad_file(tmp_path, capsys):
    path = tmp_path / "definition.json"
    path.write_text(json.dumps({"Parameters": [{"Name": "Epochs", "Type": "Integer",
                                                "DefaultValue": 3}]}))  # fmt: skip
    assert parameters.main([str(path)]) == 0
    assert "| `Epochs` | Integer | `3` | >= 1, <= 1000 |" in capsys.readouterr().out
    assert parameters.main([str(tmp_path / "missing.json")]) == 1
    assert "missing.json" in capsys.readouterr().err
