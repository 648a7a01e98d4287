"""Presets: every value is one the deployed definition accepts, `start --preset` passes them
(with --param winning), and the estimate is the arithmetic its figures give."""

from __future__ import annotations

import json
import math

import boto3
import pytest
from moto import mock_aws

from pipeline import presets
from pipeline.cli import main
from pipeline.parameters import check_value
from pipeline.settings import Settings


def declared_parameters(definition: str) -> dict[str, dict]:
    return {p["Name"]: p for p in json.loads(definition)["Parameters"]}


REGION = "us-east-1"


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_value_passes_the_definitions_own_checks(built, name):
    declared = declared_parameters(built.definition)
    for key, value in presets.PRESETS[name].parameters.items():
        assert key in declared, f"{name}: {key} is not a pipeline parameter"
        check_value(declared[key], value)


def test_start_with_a_preset_sends_its_values_and_param_wins(built, capsys):
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        client.create_pipeline(
            PipelineName=Settings().pipeline_name,
            PipelineDefinition=built.definition,
            RoleArn=Settings().role_arn,
        )
        code = main(
            [
                *("start", "--region", REGION, "--pipeline-name", Settings().pipeline_name),
                *("--preset", "abid-full", "--param", "Epochs=3"),
            ]
        )
        assert code == 0, capsys.readouterr().err
        arn = capsys.readouterr().out.strip()
        given = {
            p["Name"]: p["Value"]
            for p in client.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)[
                "PipelineParameters"
            ]
        }
    expected = dict(presets.PRESETS["abid-full"].parameters, Epochs="3")
    assert given == expected


def test_an_unknown_preset_is_named_before_anything_starts(capsys):
    assert main(["presets", "abid-half"]) == 2
    assert "unknown preset 'abid-half'; known: abid-full" in capsys.readouterr().err


def test_the_estimate_is_the_arithmetic_of_its_figures():
    preset = presets.PRESETS["abid-full"]
    est = presets.estimate(preset)
    # 4 A10G at 0.7 V100 each, ResNet-34 1.3x ResNet-50, 4-GPU scaling as NVIDIA's 8-GPU one.
    rate = 1200 * 0.7 * 1.3 * 4 * (6.93 / 8)
    epochs = 20 * (470_000 * 0.8 + 470_000 * 0.1 / 3)
    copy = 470_000 * 224 * 224 * 3 / 1e9 * 0.9 * 1000 / 300 / 60
    assert est.train_minutes == pytest.approx(5 + copy + epochs / rate / 60)
    assert est.prepare_minutes == pytest.approx(5 + 470_000 / (300 * 8) / 60)
    assert est.shard_gb == pytest.approx(70.75, abs=0.01)
    assert 30 < est.minutes < 120 and 2 < est.usd < 20  # an hour or so, single-digit dollars
    assert f"and ${math.ceil(est.usd)} on demand" in presets.describe("abid-full")
