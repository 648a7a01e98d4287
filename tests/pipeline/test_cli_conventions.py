"""CLI conventions: --version, the `bincount` entry point, exit codes (2 usage, 1 runtime),
--json on list/show commands, one parameter naming scheme, and per-epoch progress (the local
log follower and `start --wait` on AWS)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from pipeline import progress
from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
PIPELINE = "bincount-dev"


def metric_line(**values) -> str:
    """training/train.py's own METRIC_LINE, read from its source (importing it needs torch)."""
    tree = ast.parse((REPO / "training" / "train.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "METRIC_LINE":
            template = ast.literal_eval(node.value)
            break
    defaults = dict(
        train_loss=1.0, train_acc=0.3, val_loss=1.1, val_acc=0.25, val_mae=1.2, lr=0.001,
        images_per_s=100.0, data_wait_s=0.01,
    )  # fmt: skip
    return template.format(**{**defaults, **values})


# -- version, entry point, usage errors --------------------------------------------------------


def test_version_prints_the_package_version(capsys):
    assert main(["--version"]) == 0
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert capsys.readouterr().out == f"bincount {version}\n"


def test_the_bincount_entry_point_is_the_cli(tmp_path):
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["bincount"].partition(":")
    assert (module, function) == ("pipeline.cli", "main")
    # What pip's console-script wrapper does, under the name `bincount`.
    script = tmp_path / "bincount"
    script.write_text(f"import sys\nfrom {module} import {function}\nsys.exit({function}())\n")
    done = subprocess.run(
        [sys.executable, str(script), "presets", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: bincount presets")


@pytest.mark.parametrize(
    "argv",
    [["no-such-command"], ["run", "--no-such-option"], ["start", "--poll-seconds", "soon"], []],
)
def test_argparse_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_default_accepts_the_parameter_names_param_uses(capsys):
    assert main(["definition", "--default", "Epochs=4", "--default", "learning_rate=0.01"]) == 0
    declared = {p["Name"]: p for p in json.loads(capsys.readouterr().out)["Parameters"]}
    assert declared["Epochs"]["DefaultValue"] == 4
    assert declared["LearningRate"]["DefaultValue"] == 0.01
    assert main(["definition", "--default", "Epoch=4"]) == 2
    assert "unknown --default 'Epoch'" in capsys.readouterr().err


def test_presets_json_lists_each_presets_values(capsys):
    from pipeline import presets

    assert main(["presets", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == {name: dict(p.parameters) for name, p in presets.PRESETS.items()}


# -- progress lines -----------------------------------------------------------------------------


def test_a_metric_line_becomes_a_progress_line_with_an_eta():
    now = [100.0]
    shown = progress.EpochProgress("Train", 4, clock=lambda: now[0])
    assert progress.parse_epoch_line("training starting: 4 epochs") is None
    assert progress.parse_epoch_line("prepoch=1 train_loss=2") is None
    now[0] = 130.0  # the first epoch took 30 s
    line = shown.line(progress.parse_epoch_line(metric_line(epoch=1, train_loss=1.23456)))
    assert line == "Train epoch 1/4  loss 1.2346  val acc 0.250  ETA 0:01:30"
    now[0] = 160.0
    line = shown.line(progress.parse_epoch_line(metric_line(epoch=2, val_acc=0.5)))
    assert line.endswith("val acc 0.500  ETA 0:01:00")
    assert shown.line(progress.parse_epoch_line(metric_line(epoch=4))).endswith("(last epoch)")
    assert progress.format_eta(3725) == "1:02:05"


def test_a_resumed_job_times_only_the_epochs_it_ran():
    now = [0.0]
    shown = progress.EpochProgress("Train", 10, clock=lambda: now[0])
    now[0] = 10.0
    # Resumed from a checkpoint after epoch 7: 10 s for one epoch, 2 left.
    assert shown.line(progress.parse_epoch_line(metric_line(epoch=8))).endswith("ETA 0:00:20")


def test_total_epochs_reads_the_hyperparameter_as_sagemaker_passes_it():
    assert progress.total_epochs({"epochs": "3"}) == 3
    assert progress.total_epochs({"epochs": '"12"'}) == 12
    assert progress.total_epochs({}) is None
    assert progress.EpochProgress("Train", None).line({"epoch": 2, "train_loss": 1.0}) == (
        "Train epoch 2  loss 1.0000"
    )


def test_follow_epochs_prints_each_epoch_while_another_process_writes_the_log(tmp_path):
    log = tmp_path / "algo-1.log"
    lines = [
        "Invoking script with the following command: ...",
        metric_line(epoch=1),
        "noise " * 20,
        metric_line(epoch=2),
    ]
    writer = (
        "import sys, time\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    for line in sys.argv[2:]:\n"
        "        f.write(line[:10]); f.flush(); time.sleep(0.3)\n"  # a line in two writes
        "        f.write(line[10:] + '\\n'); f.flush(); time.sleep(0.3)\n"
    )
    shown: list[str] = []
    with progress.follow_epochs(log, "Train", 2, shown.append):
        subprocess.run([sys.executable, "-c", writer, str(log), *lines], check=True, timeout=60)
    assert len(shown) == 2, shown
    assert "Train epoch 1/2  loss 1.0000" in shown[0] and "ETA" in shown[0]
    assert "Train epoch 2/2" in shown[1] and "(last epoch)" in shown[1]


def test_the_deployers_answer_is_shown_not_just_succeeded():
    from pipeline.local.listings import format_execution
    from pipeline.local.runner import LocalRunner, StepNode

    answer = {"status": "skipped", "reason": "model package is PendingManualApproval"}
    step = {
        "StepName": "Deploy",
        "StepType": "Lambda",
        "StepStatus": "Succeeded",
        "Seconds": 0.2,
        "LambdaResponse": answer,
    }
    node = StepNode({"Name": "Deploy", "Type": "Lambda"})
    assert LocalRunner._end_line(node, step, 0.2).endswith(
        "Deploy Succeeded in 0.2 s: skipped (model package is PendingManualApproval)"
    )
    record = {
        "PipelineExecutionId": "x",
        "PipelineExecutionStatus": "Succeeded",
        "StartTime": "t",
        "Steps": [step],
    }
    assert (
        format_execution(record)
        .splitlines()[-1]
        .endswith("-> skipped (model package is PendingManualApproval)")
    )


# -- AWS: status --json and start --wait --------------------------------------------------------


@pytest.fixture
def aws_pipeline(built, monkeypatch):
    """The dev stack's pipeline in moto, with the calls moto lacks answered by `answers`."""
    answers: dict[str, list] = {"execution": [], "steps": [], "training": {}}
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        client.create_pipeline(
            PipelineName=PIPELINE,
            PipelineDefinition=built.definition,
            RoleArn="arn:aws:iam::123456789012:role/pipeline",
        )

        def execution(params, **_):
            status = (
                answers["execution"].pop(0)
                if len(answers["execution"]) > 1
                else (answers["execution"][0])
            )
            body = {"PipelineExecutionStatus": status}
            if status == "Failed":
                body["FailureReason"] = "Step failure: Train"
            return AWSResponse("https://local", 200, {}, None), body

        def steps(params, **_):
            hooks = answers.get("before_steps") or [None]
            hook = hooks.pop(0)
            if hook:
                hook()
            current = answers["steps"].pop(0) if len(answers["steps"]) > 1 else answers["steps"][0]
            return AWSResponse("https://local", 200, {}, None), {"PipelineExecutionSteps": current}

        def training(params, **_):
            return AWSResponse("https://local", 200, {}, None), answers["training"]

        boto3.DEFAULT_SESSION = None
        boto3.setup_default_session(region_name=REGION)
        events = boto3.DEFAULT_SESSION.events
        events.register("before-call.sagemaker.DescribePipelineExecution", execution)
        events.register("before-call.sagemaker.ListPipelineExecutionSteps", steps)
        events.register("before-call.sagemaker.DescribeTrainingJob", training)
        try:
            yield answers
        finally:
            boto3.DEFAULT_SESSION = None


def _train_log(job: str, *epochs: int) -> None:
    logs = boto3.client("logs", region_name=REGION)
    group = progress.TRAINING_LOG_GROUP
    if not logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
        logs.create_log_group(logGroupName=group)
    stream = f"{job}/algo-1-1700000000"
    if not logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=stream)["logStreams"]:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": now + e, "message": metric_line(epoch=e)} for e in epochs]
        + [{"timestamp": now + 99, "message": "toolkit noise"}],
    )


def test_start_wait_follows_steps_and_epochs_then_exits_by_the_outcome(aws_pipeline, capsys):
    job_arn = "arn:aws:sagemaker:us-east-1:123456789012:training-job/pipelines-abc-train"
    train = {"StepName": "Train", "StepStatus": "Executing"}
    train["Metadata"] = {"TrainingJob": {"Arn": job_arn}}
    prepare = {"StepName": "Prepare", "StepStatus": "Succeeded"}
    aws_pipeline["training"] = {"HyperParameters": {"epochs": "2"}}
    aws_pipeline["execution"] = ["Executing", "Executing", "Succeeded"]
    aws_pipeline["steps"] = [
        [{"StepName": "Prepare", "StepStatus": "Executing"}],
        [prepare, train],
        [prepare, {**train, "StepStatus": "Succeeded"}],
    ]
    # Epoch 1 is logged before the first look at Train, epoch 2 between two looks.
    _train_log("pipelines-abc-train", 1)
    aws_pipeline["before_steps"] = [None, None, lambda: _train_log("pipelines-abc-train", 2)]
    code = main(["start", "--param", "Epochs=2", "--wait", "--poll-seconds", "0"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0, out
    assert out[0].startswith("arn:aws:sagemaker:us-east-1:") and "bincount-dev" in out[0]
    text = "\n".join(out)
    assert "Prepare Executing" in text and "Prepare Succeeded" in text
    assert "Train Executing" in text and "Train Succeeded" in text
    epochs = [line for line in out if "Train epoch" in line]
    assert len(epochs) == 2 and "epoch 1/2" in epochs[0] and "epoch 2/2" in epochs[1], out
    assert "toolkit noise" not in text
    assert out[-1] == "execution Succeeded"


def test_start_wait_exits_1_when_the_execution_fails(aws_pipeline, capsys):
    aws_pipeline["execution"] = ["Failed"]
    failed = {"StepName": "Train", "StepStatus": "Failed", "FailureReason": "CapacityError"}
    aws_pipeline["steps"] = [[failed]]
    assert main(["start", "--wait", "--poll-seconds", "0"]) == 1
    out = capsys.readouterr().out
    assert "Train Failed: CapacityError" in out
    assert out.splitlines()[-1] == "execution Failed: Step failure: Train"


def test_status_json_is_the_execution_and_its_steps(aws_pipeline, capsys):
    aws_pipeline["execution"] = ["Executing"]
    aws_pipeline["steps"] = [[{"StepName": "Prepare", "StepStatus": "Executing"}]]
    arn = boto3.client("sagemaker", region_name=REGION).start_pipeline_execution(
        PipelineName=PIPELINE
    )["PipelineExecutionArn"]
    assert main(["status", "--json", arn]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["Execution"]["PipelineExecutionStatus"] == "Executing"
    assert shown["Steps"] == [{"StepName": "Prepare", "StepStatus": "Executing"}]


def test_aws_endpoint_commands_take_env_and_region_and_fail_with_1(tmp_path, capsys, monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    # JSON, not a JPEG: moto decodes request bodies as text.
    image = tmp_path / "request.json"
    image.write_text('{"instances": []}')
    with mock_aws():
        # The region is cdk.json's for the environment: no AWS config needed.
        assert main(["endpoints", "list", "--aws", "--env", "prod", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == []
        assert main(["endpoints", "list", "--aws", "--region", "eu-west-1"]) == 0
        assert capsys.readouterr().out == "no endpoints\n"
        # An AWS error (the prod stack is not deployed) is a runtime failure, one line.
        code = main(["models", "promote", "1", "--aws", "--env", "prod"])
        err = capsys.readouterr().err
        assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
        assert "Bincount-prod" in err
        # moto answers any endpoint; the answer it makes up is not a count, so it is shown as is.
        assert main(["endpoints", "invoke", "bincount-dev", str(image), "--aws"]) == 0
        capsys.readouterr()
        assert main(["endpoints", "list", "--aws", "--env", "nope"]) == 2
