"""The runner's control flow on definitions without jobs: ordering, branches, Fail, Lambda,
and clear errors for what it cannot run."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from pipeline.local.expressions import UnsupportedFeature
from pipeline.local.runner import ExecutionFailed, LocalRunner, StepNode, parse_duration, plan
from pipeline.local.store import read_json

NOTIFY_ARN = "arn:aws:lambda:us-east-1:000000000000:function:notify"


def definition(extra_steps=()) -> dict:
    score_text = {"Std:Join": {"On": " ", "Values": ["score", {"Get": "Parameters.Score"}]}}
    return {
        "Version": "2020-12-01",
        "Metadata": {},
        "Parameters": [
            {"Name": "Threshold", "Type": "Float", "DefaultValue": 0.5},
            {"Name": "Score", "Type": "Float", "DefaultValue": 0.7},
        ],
        "Steps": [
            {
                "Name": "Final",
                "Type": "Lambda",
                "FunctionArn": NOTIFY_ARN,
                "Arguments": {"previous": {"Get": "Steps.Notify.OutputParameters['status']"}},
                "OutputParameters": [{"OutputName": "status", "OutputType": "String"}],
            },
            {
                "Name": "Check",
                "Type": "Condition",
                "Arguments": {
                    "Conditions": [
                        {
                            "Type": "GreaterThanOrEqualTo",
                            "LeftValue": {"Get": "Parameters.Score"},
                            "RightValue": {"Get": "Parameters.Threshold"},
                        }
                    ],
                    "IfSteps": [
                        {
                            "Name": "Notify",
                            "Type": "Lambda",
                            "FunctionArn": NOTIFY_ARN,
                            "Arguments": {"message": score_text},
                            "OutputParameters": [{"OutputName": "status", "OutputType": "String"}],
                        }
                    ],
                    "ElseSteps": [
                        {
                            "Name": "Below",
                            "Type": "Fail",
                            "Arguments": {
                                "ErrorMessage": {
                                    "Std:Join": {
                                        "On": " ",
                                        "Values": [
                                            score_text,
                                            "is below",
                                            {"Get": "Parameters.Threshold"},
                                        ],
                                    }
                                }
                            },
                        }
                    ],
                },
            },
            *extra_steps,
        ],
    }


@pytest.fixture
def calls():
    return []


@pytest.fixture
def runner(tmp_path, calls) -> LocalRunner:
    def notify(event: dict) -> dict:
        calls.append(event)
        return {"status": f"sent {len(calls)}", "extra": 1}

    return LocalRunner(tmp_path, lambdas={NOTIFY_ARN: notify}, echo=lambda line: None)


def statuses(record: dict) -> dict[str, str]:
    return {s["StepName"]: s["StepStatus"] for s in record["Steps"]}


def test_plan_orders_by_references_and_branches():
    order = [n.name for n in plan(definition())]
    assert order.index("Check") < order.index("Notify") < order.index("Final")
    assert order.index("Check") < order.index("Below")


def test_if_branch_runs_and_its_outputs_feed_later_steps(runner, calls, tmp_path):
    record = runner.run(definition())
    assert record["PipelineExecutionStatus"] == "Succeeded"
    assert statuses(record) == {
        "Check": "Succeeded",
        "Notify": "Succeeded",
        "Below": "NotExecuted",
        "Final": "Succeeded",
    }
    assert calls == [{"message": "score 0.7"}, {"previous": "sent 1"}]
    check = next(s for s in record["Steps"] if s["StepName"] == "Check")
    assert check["Outcome"] == "True"
    assert check["Conditions"] == ["0.7 GreaterThanOrEqualTo 0.5"]
    saved = read_json(tmp_path / "executions" / record["PipelineExecutionId"] / "execution.json")
    assert saved["PipelineExecutionStatus"] == "Succeeded"
    assert runner.executions()[0]["PipelineExecutionId"] == record["PipelineExecutionId"]


def test_else_branch_fails_with_the_resolved_message(runner, calls):
    with pytest.raises(ExecutionFailed, match=r"score 0\.1 is below 0\.5") as failed:
        runner.run(definition(), {"Score": "0.1"})
    record = failed.value.record
    assert record["PipelineExecutionStatus"] == "Failed"
    assert record["FailureReason"] == "score 0.1 is below 0.5"
    assert statuses(record) == {
        "Check": "Succeeded",
        "Notify": "NotExecuted",
        "Below": "Failed",
        "Final": "NotExecuted",
    }
    assert calls == []


def test_lambda_without_a_local_handler_fails_naming_the_function(tmp_path):
    runner = LocalRunner(tmp_path, lambdas={}, echo=lambda line: None)
    with pytest.raises(ExecutionFailed, match="function:notify' has no local handler"):
        runner.run(definition())


def test_unsupported_step_type_is_refused_before_anything_runs(runner, tmp_path):
    transform = {"Name": "Score", "Type": "Transform", "Arguments": {}}
    with pytest.raises(UnsupportedFeature, match="step 'Score': step type 'Transform'"):
        runner.run(definition([transform]))
    assert not (tmp_path / "executions").exists()


def test_definition_errors_are_named(runner):
    bad_version = {**definition(), "Version": "2019-01-01"}
    with pytest.raises(UnsupportedFeature, match="Version '2019-01-01'"):
        runner.run(bad_version)
    dangling = {"Name": "X", "Type": "Fail", "DependsOn": ["Nowhere"], "Arguments": {}}
    with pytest.raises(ValueError, match=r"unknown step.*Nowhere"):
        runner.run(definition([dangling]))
    a = {"Name": "A", "Type": "Fail", "DependsOn": ["B"], "Arguments": {}}
    b = {"Name": "B", "Type": "Fail", "DependsOn": ["A"], "Arguments": {}}
    with pytest.raises(ValueError, match="dependency cycle among steps A, B"):
        runner.run(definition([a, b]))
    select = {"Name": "S", "Type": "Fail", "Arguments": {"ErrorMessage": {"Std:Select": {}}}}
    with pytest.raises(UnsupportedFeature, match=r"Steps\.S\.Arguments\.ErrorMessage.*Std:Select"):
        runner.run(definition([select]))
    with pytest.raises(ValueError, match="unknown parameter"):
        runner.run(definition(), {"Scor": "1"})


def test_definition_json_text_is_accepted(runner):
    record = runner.run(json.dumps(definition()))
    assert record["PipelineExecutionStatus"] == "Succeeded"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P30D", timedelta(days=30)),
        ("PT12H", timedelta(hours=12)),
        ("30dT5h", timedelta(days=30, hours=5)),
        ("T16m", timedelta(minutes=16)),
        ("P1W", timedelta(days=7)),
    ],
)
def test_cache_expiry_durations(text, expected):
    assert parse_duration(text) == expected


def test_bad_cache_expiry_is_named():
    with pytest.raises(ValueError, match="'soon' is not an ISO 8601 duration"):
        parse_duration("soon")


def _processing_node(arguments: dict) -> StepNode:
    return StepNode({"Name": "Prepare", "Type": "Processing", "Arguments": arguments})


def test_cache_key_follows_local_files_and_folders_named_in_arguments(runner, tmp_path):
    dataset = tmp_path / "dataset"
    (dataset / "metadata").mkdir(parents=True)
    (dataset / "metadata" / "1.json").write_text('{"EXPECTED_QUANTITY": 1}')
    file_list = tmp_path / "file_list.json"
    file_list.write_text("[]")
    arguments = {
        "AppSpecification": {
            "ContainerEntrypoint": ["python3"],
            "ContainerArguments": ["--source", str(dataset), "--file-list", str(file_list)],
        }
    }
    node = _processing_node(arguments)
    first = runner._cache_key(node, arguments)
    assert runner._cache_key(node, arguments) == first
    (dataset / "metadata" / "2.json").write_text('{"EXPECTED_QUANTITY": 2}')
    second = runner._cache_key(node, arguments)
    assert second != first
    file_list.write_text('[{"id": "1"}]')
    assert runner._cache_key(node, arguments) != second


def test_cache_key_ignores_the_execution_id_in_per_execution_checkpoints(runner):
    def training(execution_id: str) -> dict:
        return {
            "HyperParameters": {"epochs": "3"},
            "CheckpointConfig": {
                "S3Uri": f"s3://b/p/executions/{execution_id}/checkpoints",
                "LocalPath": "/opt/ml/checkpoints",
            },
        }

    node = StepNode({"Name": "Train", "Type": "Training", "Arguments": {}})
    one = runner._cache_key(node, training("20260101000000aaaaaa"), "20260101000000aaaaaa")
    two = runner._cache_key(node, training("20260102000000bbbbbb"), "20260102000000bbbbbb")
    assert one == two
    other = training("20260102000000bbbbbb")
    other["HyperParameters"]["epochs"] = "4"
    assert runner._cache_key(node, other, "20260102000000bbbbbb") != two


def test_cache_key_keeps_execution_ids_of_inputs(runner):
    # A Train after a cached Prepare reads the earlier execution's outputs: those ids count.
    def training(source_execution: str) -> dict:
        uri = f"s3://b/p/executions/{source_execution}/Prepare/train"
        return {"InputDataConfig": [{"DataSource": {"S3DataSource": {"S3Uri": uri}}}]}

    node = StepNode({"Name": "Train", "Type": "Training", "Arguments": {}})
    first = runner._cache_key(node, training("run1"), "run1")
    assert runner._cache_key(node, training("run1"), "run2") == first
    assert runner._cache_key(node, training("run2"), "run2") != first


def test_register_stores_the_resolved_architecture_parameter(runner):
    register = {
        "Name": "Register",
        "Type": "RegisterModel",
        "Arguments": {
            "ModelPackageGroupName": "g",
            "ModelApprovalStatus": "PendingManualApproval",
            "InferenceSpecification": {"Containers": [{"Image": "img"}]},
            "CustomerMetadataProperties": {"architecture": {"Get": "Parameters.Architecture"}},
        },
    }
    data = definition([register])
    data["Parameters"].append(
        {
            "Name": "Architecture",
            "Type": "String",
            "DefaultValue": "resnet34",
            "EnumValues": ["resnet34", "smallcnn"],
        }
    )
    record = runner.run(data, {"Architecture": "smallcnn"})
    arn = next(s for s in record["Steps"] if s["StepName"] == "Register")["Properties"][
        "ModelPackageArn"
    ]
    package = runner.sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["CustomerMetadataProperties"] == {"architecture": "smallcnn"}
