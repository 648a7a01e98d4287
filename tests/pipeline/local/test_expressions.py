"""Expressions of the definition schema: Get paths, Std:Join, Std:JsonGet, conditions."""

from __future__ import annotations

import pytest

from pipeline.local.expressions import (
    ResolutionError,
    Scope,
    UnsupportedFeature,
    check_expressions,
    coerce_parameter,
    describe_condition,
    evaluate,
    evaluate_condition,
    parse_path,
    referenced_steps,
    resolve_parameters,
)

PREPARE = {
    "ProcessingOutputConfig": {
        "Outputs": [
            {"OutputName": "train", "S3Output": {"S3Uri": "s3://b/exec/Prepare/train"}},
            {"OutputName": "test", "S3Output": {"S3Uri": "s3://b/exec/Prepare/test"}},
        ]
    }
}
REPORT = {"multiclass_classification_metrics": {"accuracy": {"value": 0.75}}, "items": [3, 4]}


@pytest.fixture
def scope() -> Scope:
    documents = {"s3://b/exec/Evaluate/evaluation.json": REPORT}

    def read(uri: str):
        if uri not in documents:
            raise ResolutionError(f"no document {uri}")
        return documents[uri]

    return Scope(
        parameters={"Epochs": 3, "Threshold": 0.5, "Name": "bincount", "Flag": True},
        execution={"PipelineExecutionId": "exec1", "PipelineName": "bincount"},
        steps={
            "Prepare": PREPARE,
            "Train": {"ModelArtifacts": {"S3ModelArtifacts": "s3://b/model.tar.gz"}},
            "Deploy": {"OutputParameters": {"status": "created"}},
        },
        property_files={"Evaluate": {"EvaluationReport": "s3://b/exec/Evaluate/evaluation.json"}},
        read_json_uri=read,
    )


def test_parse_path_handles_names_quoted_keys_and_indices():
    assert parse_path("Steps.Prepare.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri") == [
        "Steps", "Prepare", "ProcessingOutputConfig", "Outputs", "train", "S3Output", "S3Uri",
    ]  # fmt: skip
    assert parse_path('a["x y"][2].b') == ["a", "x y", 2, "b"]
    with pytest.raises(ResolutionError, match="cannot parse"):
        parse_path("a..b")


def test_get_reads_parameters_execution_variables_and_step_properties(scope):
    assert evaluate({"Get": "Parameters.Epochs"}, scope) == 3
    assert evaluate({"Get": "Execution.PipelineExecutionId"}, scope) == "exec1"
    uri = "Steps.Prepare.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"
    assert evaluate({"Get": uri}, scope) == "s3://b/exec/Prepare/test"
    assert evaluate({"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}, scope).endswith(
        "model.tar.gz"
    )
    assert evaluate({"Get": "Steps.Deploy.OutputParameters['status']"}, scope) == "created"


def test_get_names_what_is_missing(scope):
    with pytest.raises(ResolutionError, match="no parameter"):
        evaluate({"Get": "Parameters.Nope"}, scope)
    with pytest.raises(ResolutionError, match="has not run"):
        evaluate({"Get": "Steps.Evaluate.ProcessingJobName"}, scope)
    with pytest.raises(ResolutionError, match="no element named 'validation'"):
        evaluate({"Get": "Steps.Prepare.ProcessingOutputConfig.Outputs['validation']"}, scope)
    with pytest.raises(ResolutionError, match=r"Steps\.Train\.ModelArtifacts\.Nope"):
        evaluate({"Get": "Steps.Train.ModelArtifacts.Nope"}, scope)


def test_join_prints_values_like_the_service(scope):
    expr = {
        "Std:Join": {
            "On": "/",
            "Values": [
                "s3://b",
                {"Get": "Execution.PipelineExecutionId"},
                {"Get": "Parameters.Epochs"},
            ],
        }
    }
    assert evaluate(expr, scope) == "s3://b/exec1/3"
    flag = {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Flag"}]}}
    assert evaluate(flag, scope) == "true"


def test_json_get_reads_property_files_and_s3_uris(scope):
    expr = {
        "Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
            "Path": "multiclass_classification_metrics.accuracy.value",
        }
    }
    assert evaluate(expr, scope) == 0.75
    by_uri = {"Std:JsonGet": {"S3Uri": "s3://b/exec/Evaluate/evaluation.json", "Path": "items[1]"}}
    assert evaluate(by_uri, scope) == 4
    missing = {
        "Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.Other"},
            "Path": "a",
        }
    }
    with pytest.raises(ResolutionError, match="no property file 'Other'"):
        evaluate(missing, scope)


def test_nested_structures_resolve_everywhere(scope):
    args = {"A": [{"Get": "Parameters.Name"}, "x"], "B": {"C": {"Get": "Parameters.Threshold"}}}
    assert evaluate(args, scope) == {"A": ["bincount", "x"], "B": {"C": 0.5}}


@pytest.mark.parametrize(
    ("type_", "left", "right", "expected"),
    [
        ("GreaterThanOrEqualTo", 0.75, 0.5, True),
        ("GreaterThanOrEqualTo", 0.5, 0.5, True),
        ("GreaterThan", 0.5, 0.5, False),
        ("LessThan", 1, 2, True),
        ("LessThanOrEqualTo", 3, 2, False),
        ("Equals", "a", "a", True),
        ("Equals", "0.5", 0.5, True),  # a number read as text compares as a number
    ],
)
def test_comparisons(scope, type_, left, right, expected):
    assert (
        evaluate_condition({"Type": type_, "LeftValue": left, "RightValue": right}, scope)
        is expected
    )


def test_condition_reading_a_property_file_against_a_parameter(scope):
    cond = {
        "Type": "GreaterThanOrEqualTo",
        "LeftValue": {
            "Std:JsonGet": {
                "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
                "Path": "multiclass_classification_metrics.accuracy.value",
            }
        },
        "RightValue": {"Get": "Parameters.Threshold"},
    }
    assert evaluate_condition(cond, scope) is True
    assert describe_condition(cond, scope) == "0.75 GreaterThanOrEqualTo 0.5"


def test_logical_conditions(scope):
    true = {"Type": "Equals", "LeftValue": 1, "RightValue": 1}
    false = {"Type": "Equals", "LeftValue": 1, "RightValue": 2}
    assert evaluate_condition({"Type": "Not", "Condition": false}, scope) is True
    assert evaluate_condition({"Type": "Or", "Conditions": [false, true]}, scope) is True
    assert evaluate_condition({"Type": "Or", "Conditions": [false, false]}, scope) is False
    assert evaluate_condition(
        {"Type": "In", "QueryValue": {"Get": "Parameters.Name"}, "Values": ["x", "bincount"]}, scope
    )
    with pytest.raises(UnsupportedFeature, match="condition type 'Between'"):
        evaluate_condition({"Type": "Between"}, scope)


def test_unsupported_functions_are_named(scope):
    with pytest.raises(UnsupportedFeature, match="Std:Select"):
        evaluate({"Std:Select": {"Values": []}}, scope)
    with pytest.raises(UnsupportedFeature, match="Std:Select"):
        check_expressions({"X": [{"Std:Select": {}}]}, "Steps.S.Arguments")
    with pytest.raises(UnsupportedFeature, match=r"Execution\.TrainingJobName"):
        check_expressions({"Get": "Execution.TrainingJobName"}, "Steps.S.Arguments")
    with pytest.raises(UnsupportedFeature, match="supported roots"):
        check_expressions({"Get": "Something.Else"}, "here")


def test_referenced_steps_finds_every_step_read():
    args = {
        "A": {"Get": "Steps.Prepare.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"},
        "B": [
            {
                "Std:JsonGet": {
                    "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.R"},
                    "Path": "x",
                }
            }
        ],
        "C": {"Get": "Parameters.X"},
    }
    assert referenced_steps(args) == {"Prepare", "Evaluate"}


def test_parameters_are_typed_with_defaults_and_overrides():
    declared = [
        {"Name": "Epochs", "Type": "Integer", "DefaultValue": 15},
        {"Name": "Rate", "Type": "Float", "DefaultValue": 0.001},
        {"Name": "Arch", "Type": "String", "DefaultValue": "resnet34"},
        {"Name": "Flag", "Type": "Boolean", "DefaultValue": False},
    ]
    values = resolve_parameters(declared, {"Epochs": "3", "Rate": "0.5", "Flag": "true"})
    assert values == {"Epochs": 3, "Rate": 0.5, "Arch": "resnet34", "Flag": True}
    with pytest.raises(ValueError, match="Epochs: 'three' is not a valid Integer"):
        resolve_parameters(declared, {"Epochs": "three"})
    with pytest.raises(ValueError, match="unknown parameter"):
        resolve_parameters(declared, {"Epoch": "3"})
    with pytest.raises(ValueError, match="not a valid Integer"):
        coerce_parameter("N", "Integer", 2.5)


def test_enum_parameters_refuse_values_outside_their_enum_values():
    declared = [
        {"Name": "Architecture", "Type": "String", "DefaultValue": "resnet34",
         "EnumValues": ["resnet18", "resnet34", "resnet50", "smallcnn"]},
        {"Name": "ModelApprovalStatus", "Type": "String", "DefaultValue": "PendingManualApproval",
         "EnumValues": ["PendingManualApproval", "Approved", "Rejected"]},
    ]  # fmt: skip
    assert resolve_parameters(declared, {"Architecture": "smallcnn"})["Architecture"] == "smallcnn"
    with pytest.raises(
        ValueError, match=r"Architecture must be one of resnet18, .*smallcnn, got 'resnet101'"
    ):
        resolve_parameters(declared, {"Architecture": "resnet101"})
    with pytest.raises(ValueError, match=r"ModelApprovalStatus must be one of .*'approved'"):
        resolve_parameters(declared, {"ModelApprovalStatus": "approved"})
