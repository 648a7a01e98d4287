"""The baseline travels with the model version: Register sends it as the package's
DriftCheckBaselines (checked against botocore's CreateModelPackage shape by tests/aws)."""

from __future__ import annotations

import json

from pipeline.definition import definition_json
from pipeline.settings import Settings


def test_register_stores_evaluates_baseline_as_drift_check_baselines():
    definition = json.loads(definition_json(Settings()))
    gate = next(s for s in definition["Steps"] if s["Name"] == "QualityGate")
    (register,) = [s for s in gate["Arguments"]["IfSteps"] if s["Name"] == "Register"]
    args = register["Arguments"]
    statistics = args["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"]
    assert statistics["ContentType"] == "application/json"
    evaluation = args["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]["Std:Join"]
    baseline = statistics["S3Uri"]["Std:Join"]
    # The same Evaluate output folder as evaluation.json, file baseline.json.
    assert evaluation["Values"][-1] == "evaluation.json"
    assert baseline == {**evaluation, "Values": [*evaluation["Values"][:-1], "baseline.json"]}
    assert baseline["Values"][0] == {
        "Get": "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"
    }
