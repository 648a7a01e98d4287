"""Monitoring on AWS in the prod environment of cdk.json (staging daily, prod hourly): a
least-privilege role per monitored stage, alarms on the monitor's metrics to the SNS topic, the
deployer's environment and permissions to keep the schedule; and every request the deployer
then makes (through a model's life and a teardown) allowed by its role, every thing the
monitoring job does allowed by the monitoring role. Still free of cdk-nag findings."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aws"))
import deployer_scenarios
from cfn_template import ACCOUNT, REGION, ResolvedTemplate
from iam_policy import Request, allows
from iam_requirements import Arns, deployer_call_needs, monitoring_role_needs
from pipeline_requests import parameter_assignments, step_requests

from infra.config import StackConfig
from infra.deployer_lambda.monitoring import METRIC_NAMES, METRIC_NAMESPACE

ARNS = Arns(REGION, ACCOUNT)


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    from app import build_app, cdk_json_context

    context = {**cdk_json_context(), "bincount:environment": "prod"}
    outdir = tmp_path_factory.mktemp("prod-monitoring-synth")
    app, stack = build_app(outdir=str(outdir), context=context)
    app.synth()
    report = json.loads((outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == [], json.dumps(report["pluginReports"])[:3000]
    template = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
    return StackConfig.from_context(context), ResolvedTemplate(template, stack.stack_name)


def of_type(stack: ResolvedTemplate, kind: str) -> dict[str, dict]:
    return {n: r["Properties"] for n, r in stack.resources.items() if r["Type"] == kind}


def deployer_env(stack: ResolvedTemplate, stage: str) -> dict[str, str]:
    (variables,) = [
        p["Environment"]["Variables"]
        for p in of_type(stack, "AWS::Lambda::Function").values()
        if p.get("Environment", {}).get("Variables", {}).get("STAGE") == stage
        and "ENDPOINT_NAME" in p["Environment"]["Variables"]
    ]
    return {k: str(v) for k, v in stack.resolve(variables).items()}


def test_each_instance_stage_gets_its_monitoring_alarms_to_the_topic(prod):
    config, stack = prod
    alarms = {p["AlarmName"]: p for p in of_type(stack, "AWS::CloudWatch::Alarm").values()}
    (topic,) = of_type(stack, "AWS::SNS::Topic")
    for stage, schedule, period in (
        ("bincount-staging", "bincount-staging-monitor", 86400),
        ("bincount", "bincount-monitor", 3600),
    ):
        drift = alarms[f"bincount-prod-{stage}-drift"]
        assert drift["Namespace"] == METRIC_NAMESPACE
        assert drift["MetricName"] == "bincount_drift"
        assert drift["Threshold"] == 1
        assert drift["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert drift["Period"] == period
        assert {d["Name"]: d["Value"] for d in drift["Dimensions"]} == {
            "Endpoint": stage,
            "MonitoringSchedule": schedule,
        }
        assert drift["AlarmActions"] == [{"Ref": topic}]
        psi = alarms[f"bincount-prod-{stage}-prediction-psi"]
        assert psi["Threshold"] == config.thresholds["prediction_psi"]
        # The brightness shift is signed: its alarm takes the size (a math expression).
        brightness = alarms[f"bincount-prod-{stage}-brightness-shift"]
        (expression,) = [m for m in brightness["Metrics"] if "Expression" in m]
        assert expression["Expression"] == "ABS(shift)"
        assert brightness["Threshold"] == config.thresholds["brightness_shift"]
        watched = {
            a["MetricName"] for a in alarms.values() if a.get("Namespace") == METRIC_NAMESPACE
        }
        # Mean confidence is judged against the version's baseline by the job (its verdict).
        assert watched == set(METRIC_NAMES) - {
            "bincount_brightness_shift",
            "bincount_mean_confidence",
        }
    # A failed monitoring job is a notification too (it would otherwise read as "no drift").
    rules = [
        p for p in of_type(stack, "AWS::Events::Rule").values()
        if p.get("EventPattern", {}).get("detail-type") == ["SageMaker Processing Job State Change"]
    ]  # fmt: skip
    assert len(rules) == 2


def test_the_deployer_gets_the_monitoring_settings_the_job_needs(prod):
    config, stack = prod
    env = deployer_env(stack, "prod")
    assert env["MONITOR_SCHEDULE"] == "cron(0 * ? * * *)"
    assert deployer_env(stack, "staging")["MONITOR_SCHEDULE"] == "cron(0 0 ? * * *)"
    assert "pytorch-training:2.6.0-cpu-py312" in env["MONITOR_IMAGE_URI"]
    assert json.loads(env["MONITOR_THRESHOLDS"]) == config.thresholds
    # The code is the processing archive the pipeline itself runs (same content-hash key).
    key = env["MONITOR_CODE_URI"].split("/", 3)[3]
    (pipeline,) = of_type(stack, "AWS::SageMaker::Pipeline").values()
    folder, archive = key.rsplit("/", 1)
    assert archive == "sourcedir.tar.gz"
    assert f"{folder}/" in json.dumps(pipeline["PipelineDefinition"])
    assert env["MONITOR_OUTPUT_URI"].endswith("/monitoring/bincount")
    from infra.deployer_lambda.deployer import Config

    monitored = Config.from_env(env).monitoring
    assert monitored is not None and monitored.code_digest in key


def test_a_serverless_stage_is_not_monitored():
    from app import build_app, cdk_json_context

    config = StackConfig.from_context(cdk_json_context())
    assert [s.monitored for s in config.stages] == [False]  # dev: serverless, no capture
    with pytest.raises(ValueError, match="serverless endpoint has no data capture"):
        StackConfig.from_dict({"serverless_memory_mb": 2048, "monitoring_schedule": "hourly"})
    assert build_app  # the dev stack's own tests check it synthesizes as before


def _role(stack: ResolvedTemplate, prefix: str) -> list[dict]:
    return stack.role_statements(stack.logical_id(prefix, "AWS::IAM::Role"))


@pytest.fixture(scope="module")
def staging_run(prod, tmp_path_factory):
    """The deployer scenarios on the staging deployer of the prod stack, teardown included."""
    from infra.deployer_lambda.deployer import Config

    _, stack = prod
    config = Config.from_env(deployer_env(stack, "staging"))
    (pipeline,) = of_type(stack, "AWS::SageMaker::Pipeline").values()
    definition = json.loads(stack.resolve(pipeline["PipelineDefinition"]["PipelineDefinitionBody"]))
    _, defaults = next(parameter_assignments(definition))
    requests = step_requests(definition, defaults, REGION, ACCOUNT)
    (register,) = [r.params for r in requests if r.operation == "CreateModelPackage"]
    if "DriftCheckBaselines" not in register:
        # Until Register records the baseline, the scenario's versions carry one themselves.
        evaluation = register["ModelMetrics"]["ModelStatistics"]["S3Uri"]
        baseline = evaluation.rsplit("/", 1)[0] + "/baseline.json"
        register = {
            **register,
            "DriftCheckBaselines": {
                "ModelDataQuality": {
                    "Statistics": {"ContentType": "application/json", "S3Uri": baseline}
                }
            },
        }
    config = dataclasses.replace(config, smoke_test=False)
    return deployer_scenarios.run(
        tmp_path_factory.mktemp("staging-home"), config, register, REGION, ACCOUNT, teardown=True
    )


def test_the_deployer_keeps_the_schedule_through_a_models_life_and_teardown(staging_run):
    calls, results = staging_run
    labels = [label for label, _ in results]
    assert labels[-1] == "teardown"
    assert results[0][1]["monitoring_schedule"] == "created"
    operations = [c.operation for c in calls]
    assert "UpdateMonitoringSchedule" in operations  # v2 went live: its baseline
    # The schedule goes before the endpoint (SageMaker refuses the other order).
    assert operations.index("DeleteMonitoringSchedule") < operations.index("DeleteEndpoint")


def test_the_deployer_role_allows_what_it_does_for_monitoring(prod, staging_run):
    _, stack = prod
    calls, _ = staging_run
    statements = _role(stack, "DeployerRole")  # the first stage keeps the plain id
    needs = deployer_call_needs(calls, ARNS)
    missing = [
        str(n) for n in needs if not any(allows(statements, n.request) for _ in n.principals)
    ]
    # kms:CreateGrant on the volume key may be held by either the deployer or the job's role.
    assert not missing, "\n".join(dict.fromkeys(missing))
    # And no more than its own schedule.
    other = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:monitoring-schedule/someone-elses"
    assert not allows(statements, Request("sagemaker:DeleteMonitoringSchedule", other))


def test_the_monitoring_role_allows_what_the_job_does_and_nothing_of_other_stages(
    prod, staging_run
):
    _, stack = prod
    calls, _ = staging_run
    statements = _role(stack, "MonitoringStagingRole")
    needs = monitoring_role_needs(calls, ARNS)
    assert {n.request.action for n in needs} >= {"s3:GetObject", "s3:ListBucket", "s3:PutObject"}
    missing = [str(n) for n in needs if not allows(statements, n.request)]
    assert not missing, "\n".join(dict.fromkeys(missing))
    bucket = stack.resolve({"Ref": stack.logical_id("StorageData", "AWS::S3::Bucket")})
    for action, key in (
        ("s3:GetObject", "data-capture/bincount/bincount/AllTraffic/2025/01/02/03/x.jsonl"),
        ("s3:PutObject", "monitoring/bincount/report.json"),
        ("s3:PutObject", "bincount/code/0123456789abcdef/sourcedir.tar.gz"),
    ):
        assert not allows(statements, Request(action, f"arn:aws:s3:::{bucket}/{key}")), key
