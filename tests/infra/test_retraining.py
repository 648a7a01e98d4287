"""Retraining (infra/retraining.py, infra/retraining_lambda/retrain.py): the guard starts one
execution with cdk.json's parameters and none while one runs (against moto's SageMaker, every
request checked against botocore's model); the schedule and the drift rule reach only the
guard, whose role reaches only this pipeline; MLflow tracking, when configured, is granted on
that one server. Still free of cdk-nag findings."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aws"))
from cfn_template import ACCOUNT, REGION, ResolvedTemplate
from iam_policy import Request, allows
from iam_requirements import Arns, deployer_call_needs
from recording_clients import Call, ValidatingClient

from infra.config import StackConfig
from infra.retraining_lambda import retrain

PIPELINE = "bincount-prod"
MLFLOW = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/bincount"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def alarm_event(state: str = "ALARM", event_id: str = "e-1") -> dict:
    return {
        "id": event_id,
        "source": "aws.cloudwatch",
        "detail-type": "CloudWatch Alarm State Change",
        "resources": [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:bincount-prod-bincount-drift"],
        "detail": {"alarmName": "bincount-prod-bincount-drift", "state": {"value": state}},
    }


@pytest.fixture
def sagemaker():
    """moto's SageMaker with the pipeline, behind the strict validator; calls recorded."""
    calls: list[Call] = []
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        client.create_pipeline(
            PipelineName=PIPELINE,
            PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}),
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/pipeline",
            ClientRequestToken="0" * 32,
        )
        yield ValidatingClient(client, "sagemaker", calls, caller="retrain"), calls


def _set_status(status: str) -> None:
    from moto.sagemaker.models import sagemaker_backends

    for execution in (
        sagemaker_backends[ACCOUNT][REGION].pipelines[PIPELINE].pipeline_executions.values()
    ):
        execution.pipeline_execution_status = status


def test_the_guard_starts_one_execution_and_none_while_it_runs(sagemaker):
    client, calls = sagemaker
    config = retrain.Config(PIPELINE, {"ModelApprovalStatus": "PendingManualApproval"})
    started = retrain.start(alarm_event(), client, config, now=NOW)
    assert started["status"] == "started"
    assert started["trigger"] == "drift alarm bincount-prod-bincount-drift"
    (start,) = [c.params for c in calls if c.operation == "StartPipelineExecution"]
    assert start["PipelineParameters"] == [
        {"Name": "ModelApprovalStatus", "Value": "PendingManualApproval"}
    ]
    _set_status("Executing")
    skipped = retrain.start({"trigger": "schedule", "execution_id": "x"}, client, config, now=NOW)
    assert skipped == {
        "status": "skipped",
        "trigger": "retraining schedule",
        "running": [started["pipeline_execution_arn"]],
    }
    _set_status("Succeeded")
    again = retrain.start(alarm_event(event_id="e-2"), client, config, now=NOW)
    assert again["status"] == "started"
    # One token per pipeline and hour: racing triggers get the first one's execution.
    tokens = {
        c.params["ClientRequestToken"] for c in calls if c.operation == "StartPipelineExecution"
    }
    assert len(tokens) == 1


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (alarm_event("OK"), "only ALARM starts a retraining"),
        ({"detail-type": "CloudWatch Alarm State Change", "detail": 3}, "without a 'detail'"),
        ({"something": "else"}, "unsupported event"),
    ],
)
def test_the_guard_refuses_events_it_does_not_know(event, message, sagemaker):
    client, calls = sagemaker
    with pytest.raises(ValueError, match=message):
        retrain.start(event, client, retrain.Config(PIPELINE), now=NOW)
    assert calls == []


def test_the_guard_config_is_checked():
    assert retrain.Config.from_env({"PIPELINE_NAME": PIPELINE, "PARAMETERS": '{"Epochs": "3"}'})
    with pytest.raises(ValueError, match="PARAMETERS must be JSON"):
        retrain.Config.from_env({"PIPELINE_NAME": PIPELINE, "PARAMETERS": "{"})
    with pytest.raises(ValueError, match="invalid pipeline name"):
        retrain.Config.from_env({})


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"retraining_schedule": "every day"}, "retraining_schedule must be an EventBridge"),
        ({"retrain_on_drift": True}, "retrain_on_drift needs a monitored stage"),
        ({"mlflow_tracking_server_arn": "arn:aws:s3:::x"}, "mlflow_tracking_server_arn must be"),
        ({"monitor_thresholds": {"psi": 0.3}}, "unknown monitor_thresholds"),
        ({"monitor_thresholds": {"min_accuracy": 1.5}}, "is a fraction"),
        ({"monitor_instance_type": "m5.large"}, "monitor_instance_type must be"),
        ({"monitoring_schedule": "weekly"}, "monitoring_schedule must be one of"),
    ],
)
def test_bad_monitoring_and_retraining_settings_are_refused_by_name(change, message):
    # Serverless (as dev is): no stage can raise a drift alarm.
    base = {"serverless_memory_mb": 2048}
    with pytest.raises(ValueError, match=message):
        StackConfig.from_dict({**base, **change})


def test_retraining_parameters_are_checked_against_the_definition():
    from infra.retraining import retraining_parameters

    body = json.dumps(
        {
            "Parameters": [
                {"Name": "Epochs", "Type": "Integer", "DefaultValue": 10},
                {"Name": "Architecture", "Type": "String", "EnumValues": ["resnet18", "smallcnn"]},
            ]
        }
    )
    config = StackConfig.from_dict({"retraining_parameters": {"Epochs": 3}})
    assert retraining_parameters(config, body) == {"Epochs": "3"}
    for bad, message in (
        ({"Epoch": 3}, "unknown parameter 'Epoch'"),
        ({"Architecture": "vgg"}, "must be one of resnet18, smallcnn"),
        ({"Epochs": 0}, "Epochs must be at least 1"),
    ):
        config = StackConfig.from_dict({"retraining_parameters": bad})
        with pytest.raises(ValueError, match=message):
            retraining_parameters(config, body)


# --- the stack ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory):
    """prod, plus a weekly retraining schedule and an MLflow tracking server."""
    from app import build_app, cdk_json_context

    context = cdk_json_context()
    environment = context["bincount:environments"]["prod"]
    context["bincount:environments"]["prod"] = {
        **environment,
        "retraining_schedule": "cron(0 3 ? * SUN *)",
        "retraining_parameters": {"Epochs": 12, "ModelApprovalStatus": "PendingManualApproval"},
        "mlflow_tracking_server_arn": MLFLOW,
    }
    context["bincount:environment"] = "prod"
    outdir = tmp_path_factory.mktemp("retraining-synth")
    app, stack = build_app(outdir=str(outdir), context=context)
    app.synth()
    report = json.loads((outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == [], json.dumps(report["pluginReports"])[:3000]
    template = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
    return ResolvedTemplate(template, stack.stack_name)


def of_type(stack, kind):
    return {n: r["Properties"] for n, r in stack.resources.items() if r["Type"] == kind}


def test_the_schedule_and_the_drift_alarms_reach_only_the_guard(scheduled):
    stack = scheduled
    guard = stack.logical_id("RetrainingGuardFunction", "AWS::Lambda::Function")
    guard_arn = stack.attribute(guard, "Arn")
    (schedule,) = of_type(stack, "AWS::Scheduler::Schedule").values()
    assert schedule["ScheduleExpression"] == "cron(0 3 ? * SUN *)"
    assert stack.resolve(schedule["Target"]["Arn"]) == guard_arn
    assert json.loads(schedule["Target"]["Input"])["trigger"] == "schedule"
    scheduler_role = stack.role_statements(
        stack.logical_id("RetrainingSchedulerRole", "AWS::IAM::Role")
    )
    assert allows(scheduler_role, Request("lambda:InvokeFunction", guard_arn))
    assert not allows(scheduler_role, Request("sagemaker:StartPipelineExecution", "*"))

    (drift,) = [
        p for p in of_type(stack, "AWS::Events::Rule").values()
        if p.get("EventPattern", {}).get("detail-type") == ["CloudWatch Alarm State Change"]
    ]  # fmt: skip
    alarms = {
        stack.attribute(n, "Arn"): p["AlarmName"]
        for n, p in of_type(stack, "AWS::CloudWatch::Alarm").items()
    }
    watched = sorted(alarms[stack.resolve(a)] for a in drift["EventPattern"]["resources"])
    assert watched == ["bincount-prod-bincount-drift", "bincount-prod-bincount-staging-drift"]
    assert drift["EventPattern"]["detail"] == {"state": {"value": ["ALARM"]}}
    assert [stack.resolve(t["Arn"]) for t in drift["Targets"]] == [guard_arn]
    variables = stack.resolve(stack.properties(guard)["Environment"]["Variables"])
    assert json.loads(variables["PARAMETERS"]) == {
        "Epochs": "12",
        "ModelApprovalStatus": "PendingManualApproval",
    }


def test_the_guard_role_allows_what_the_guard_calls_on_this_pipeline_only(scheduled, sagemaker):
    stack = scheduled
    client, calls = sagemaker
    retrain.start(alarm_event(), client, retrain.Config(PIPELINE, {"Epochs": "12"}), now=NOW)
    statements = stack.role_statements(stack.logical_id("RetrainingGuardRole", "AWS::IAM::Role"))
    needs = deployer_call_needs(calls, Arns(REGION, ACCOUNT), principal="retrain")
    assert {n.request.action for n in needs} == {
        "sagemaker:ListPipelineExecutions",
        "sagemaker:StartPipelineExecution",
    }
    missing = [str(n) for n in needs if not allows(statements, n.request)]
    assert not missing, missing
    other = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/someone-elses"
    assert not allows(statements, Request("sagemaker:StartPipelineExecution", other))


def test_mlflow_tracking_is_granted_on_the_configured_server_only(scheduled):
    stack = scheduled
    job = stack.role_statements(stack.logical_id("RolesJobRole", "AWS::IAM::Role"))
    assert allows(job, Request("sagemaker-mlflow:LogMetric", MLFLOW))
    other = MLFLOW.replace("/bincount", "/other")
    assert not allows(job, Request("sagemaker-mlflow:LogMetric", other))
