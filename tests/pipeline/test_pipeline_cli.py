"""The CLI and the definition against the SageMaker API (moto): create, start, status."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from pipeline.cli import CliError, declared_parameters, main, parse_parameter_overrides
from pipeline.settings import Settings

REGION = "us-east-1"
# What the dev stack names its pipeline (cdk.json's default environment): the default of
# `start` and `status`.
PIPELINE = "bincount-dev"


@pytest.fixture
def sagemaker_with_pipeline(built):
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        client.create_pipeline(
            PipelineName=PIPELINE,
            PipelineDefinition=built.definition,
            RoleArn=Settings().role_arn,
        )
        yield client


def test_sagemaker_accepts_the_definition_and_an_execution_with_overrides(sagemaker_with_pipeline):
    client = sagemaker_with_pipeline
    described = client.describe_pipeline(PipelineName=PIPELINE)
    assert json.loads(described["PipelineDefinition"])["Steps"][0]["Name"] == "Prepare"
    arn = client.start_pipeline_execution(
        PipelineName=PIPELINE,
        PipelineParameters=[{"Name": "Epochs", "Value": "2"}],
    )["PipelineExecutionArn"]
    assert client.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineArn"]


def test_cli_start_passes_checked_parameters(sagemaker_with_pipeline, capsys):
    code = main(
        ["start", "--region", REGION, "--param", "Epochs=3", "--param", "Architecture=resnet18"]
    )
    assert code == 0
    arn = capsys.readouterr().out.strip()
    assert arn.startswith("arn:aws:sagemaker:us-east-1:") and "/execution/" in arn
    given = sagemaker_with_pipeline.list_pipeline_parameters_for_execution(
        PipelineExecutionArn=arn
    )["PipelineParameters"]
    assert given == [
        {"Name": "Epochs", "Value": "3"},
        {"Name": "Architecture", "Value": "resnet18"},
    ]


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("Epoch=3", "unknown parameter 'Epoch'"),
        ("Epochs=three", "parameter Epochs is Integer"),
        ("LearningRate=fast", "parameter LearningRate is Float"),
        ("Architecture=vgg16", "must be one of resnet18"),
        ("Epochs", "expects NAME=VALUE"),
    ],
)
def test_cli_start_rejects_bad_parameters_before_calling_start(
    sagemaker_with_pipeline, capsys, param, message
):
    assert main(["start", "--region", REGION, "--param", param]) == 2
    assert message in capsys.readouterr().err
    executions = sagemaker_with_pipeline.list_pipeline_executions(PipelineName=PIPELINE)
    assert executions["PipelineExecutionSummaries"] == []


def test_cli_start_names_a_missing_pipeline(capsys):
    # A missing resource is a runtime failure (1), not a usage error (2).
    with mock_aws():
        assert main(["start", "--region", REGION, "--pipeline-name", "nope"]) == 1
        err = capsys.readouterr().err
        assert "'nope' in us-east-1" in err and "Traceback" not in err
        # --env prod: the prod stack's pipeline, in cdk.json's region.
        assert main(["start", "--env", "prod"]) == 1
        assert "'bincount-prod' in us-east-1" in capsys.readouterr().err
        assert main(["start", "--env", "nope"]) == 2
        assert "'nope' is not one of" in capsys.readouterr().err


def test_cli_status_lists_each_step_of_the_newest_execution(sagemaker_with_pipeline, capsys):
    client = sagemaker_with_pipeline
    arn = client.start_pipeline_execution(PipelineName=PIPELINE)["PipelineExecutionArn"]
    steps = [
        {"StepName": "Prepare", "StepStatus": "Succeeded", "StartTime": datetime.now(UTC)},
        {"StepName": "Train", "StepStatus": "Failed", "FailureReason": "CapacityError: no g4dn"},
    ]
    asked: list[str] = []

    # moto does not implement ListPipelineExecutionSteps: answer that one call in its place.
    def list_steps(params, **_):
        asked.append(json.loads(params["body"])["PipelineExecutionArn"])
        return AWSResponse("https://local", 200, {}, None), {"PipelineExecutionSteps": steps}

    boto3.DEFAULT_SESSION = None
    boto3.setup_default_session(region_name=REGION)
    boto3.DEFAULT_SESSION.events.register(
        "before-call.sagemaker.ListPipelineExecutionSteps", list_steps
    )
    try:
        assert main(["status", "--region", REGION]) == 0
    finally:
        boto3.DEFAULT_SESSION = None
    out = capsys.readouterr().out.splitlines()
    assert asked == [arn]
    assert out[0].startswith(arn)
    assert out[1].split() == ["STEP", "STATUS"]
    assert out[2].split() == ["Prepare", "Succeeded"]
    assert out[3].split()[:2] == ["Train", "Failed"] and "CapacityError: no g4dn" in out[3]


def test_cli_status_without_executions_says_so(sagemaker_with_pipeline, capsys):
    assert main(["status", "--region", REGION]) == 1
    assert "has no executions yet" in capsys.readouterr().err


def test_cli_definition_writes_the_same_json_to_a_file(built, tmp_path, capsys):
    out = tmp_path / "nested" / "definition.json"
    staging = tmp_path / "staging"
    assert main(["definition", "--out", str(out), "--stage", "--staging-dir", str(staging)]) == 0
    assert out.read_text() == built.definition
    assert sorted(p.name for p in out.parent.iterdir()) == ["definition.json"]
    assert any(staging.rglob("sourcedir.tar.gz"))
    capsys.readouterr()
    assert main(["definition", "--default", "epochs=4", "--spot"]) == 0
    changed = json.loads(capsys.readouterr().out)
    epochs = next(p for p in changed["Parameters"] if p["Name"] == "Epochs")
    assert epochs["DefaultValue"] == 4


def test_cli_definition_rejects_bad_settings(capsys):
    assert main(["definition", "--default", "epoch=4"]) == 2
    assert "unknown --default 'epoch'" in capsys.readouterr().err
    assert main(["definition", "--subnet", "subnet-1"]) == 2
    assert "security_group_ids" in capsys.readouterr().err


def test_parameter_overrides_against_declared_parameters(definition):
    declared = declared_parameters(definition)
    assert parse_parameter_overrides(["ModelApprovalStatus=Approved"], declared) == {
        "ModelApprovalStatus": "Approved"
    }


def test_one_checker_serves_start_run_and_the_runner(definition):
    from pipeline import parameters
    from pipeline.local.cli import parse_params
    from pipeline.local.expressions import resolve_parameters

    declared = declared_parameters(definition)
    for check in (
        lambda: parameters.parse_overrides(["Architecture=resnet101"], declared),
        lambda: resolve_parameters(definition["Parameters"], {"Architecture": "resnet101"}),
    ):
        with pytest.raises(ValueError, match="Architecture must be one of resnet18"):
            check()
    with pytest.raises(CliError, match="expects NAME=VALUE"):
        parse_params(["Epochs"])
    assert parse_params(["SourceUri=s3://b/k=v"]) == {"SourceUri": "s3://b/k=v"}


@pytest.fixture
def local_home(tmp_path, monkeypatch):
    monkeypatch.setenv("BINCOUNT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--param", "Bogus=1"], "unknown parameter 'Bogus'"),
        (["run", "--param", "Architecture=resnet101"], "Architecture must be one of"),
        (["run", "--param", "Epochs"], "--param expects NAME=VALUE"),
        (["executions", "show", "nope"], "no execution 'nope'"),
        (["endpoints", "stop", "nope"], 'Could not find endpoint "nope"'),
    ],
)
def test_local_cli_mistakes_are_one_error_line_and_exit_2(
    built, local_home, monkeypatch, capsys, argv, message
):
    from pipeline.local.workspace import Workspace

    # `run` builds the definition first; the shared build stands in for it.
    monkeypatch.setattr(Workspace, "definition", lambda self: built.definition)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert not (local_home / "executions").exists()


def test_local_cli_invoke_of_a_missing_endpoint_is_an_error_line(local_home, tmp_path, capsys):
    image = tmp_path / "x.jpg"
    image.write_bytes(b"\xff\xd8")
    assert main(["endpoints", "invoke", "nope", str(image)]) == 2
    assert capsys.readouterr().err == 'error: Could not find endpoint "nope".\n'


def test_aws_errors_are_error_lines(capsys, monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with mock_aws():
        # ClientError from a paginated call (status of an unknown execution).
        arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/bincount/execution/nope"
        assert main(["status", "--region", REGION, arn]) == 1
        assert capsys.readouterr().err.startswith("error: ")
        # No AWS config and no --region: cdk.json's region for the environment.
        assert main(["models", "list", "--aws", "--env", "dev"]) == 0
        assert "bincount-dev" in capsys.readouterr().out
        # An environment without a region and no AWS config: a usage error naming the fix.
        from pipeline.cli_support import NO_REGION

        def no_region(args):
            from botocore.exceptions import NoRegionError

            raise NoRegionError()

        from pipeline.cli_support import run_command

        assert run_command(argparse.Namespace(func=no_region)) == 2
        err = capsys.readouterr().err
        assert err == f"error: {NO_REGION}\n" and "AWS_DEFAULT_REGION" in err


class _PagedSageMaker:
    """list_endpoints in two pages; one endpoint vanished meanwhile, one tags a package."""

    def list_endpoints(self, **kwargs):
        if kwargs.get("NextToken") == "2":
            return {"Endpoints": [{"EndpointName": "gone"}, {"EndpointName": "second"}]}
        return {"Endpoints": [{"EndpointName": "first"}], "NextToken": "2"}

    def describe_endpoint(self, EndpointName):
        if EndpointName == "gone":
            from pipeline.local.registry import client_error

            raise client_error("DescribeEndpoint", "ValidationException", "Could not find")
        return {"EndpointConfigName": f"{EndpointName}-config"}

    def describe_endpoint_config(self, EndpointConfigName):
        return {"EndpointConfigArn": f"arn:{EndpointConfigName}"}

    def list_tags(self, ResourceArn):
        from infra.deployer_lambda.deployer import PACKAGE_TAG

        return {"Tags": [{"Key": PACKAGE_TAG, "Value": f"package-of-{ResourceArn}"}]}


def test_live_arns_reads_every_page_and_skips_only_client_errors():
    from pipeline.local.listings import live_arns

    assert live_arns(_PagedSageMaker()) == {
        "package-of-arn:first-config": ["first"],
        "package-of-arn:second-config": ["second"],
    }

    class Broken(_PagedSageMaker):
        def list_tags(self, ResourceArn):
            raise KeyError("a bug, not an AWS answer")

    with pytest.raises(KeyError):
        live_arns(Broken())
