"""The definition JSON: contracts with the containers, the graph, determinism, and no network."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest
from pipeline_json import all_steps, references, step, walk
from sagemaker.core.common_utils import instance_supports_kms

from pipeline.definition import ACCURACY_JSON_PATH, build, definition_json
from pipeline.instance_types import inference_instance_types
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[2]

PARAMETERS = {
    "ProcessingInstanceType", "ProcessingInstanceCount", "TrainingInstanceType",
    "TrainingInstanceCount", "Epochs", "LearningRate", "BatchSize", "ImageSize", "Architecture",
    "SourceUri", "FileListUri", "PerClassCap", "AccuracyThreshold", "ModelApprovalStatus",
    "MinTrainImages", "MinValidationImages", "MinTestImages", "MaxSkipFraction",
    "PretrainedWeights",
}  # fmt: skip
EXECUTION_VARIABLES = {
    "ExecutionId", "PipelineExecutionId", "PipelineExecutionArn", "PipelineName", "PipelineArn",
    "StartDateTime", "CurrentDateTime",
}  # fmt: skip
PLACEHOLDERS = {
    "bucket": "${BucketName}",
    "role_arn": "${PipelineRoleArn}",
    "deployer_function_arn": "${DeployerFunctionArn}",
    "kms_key": "${KmsKeyArn}",
}


def test_parameters_are_the_contract_names_with_the_agreed_defaults(definition):
    declared = {p["Name"]: p for p in definition["Parameters"]}
    assert set(declared) == PARAMETERS
    assert declared["SourceUri"]["DefaultValue"] == "s3://aft-vbi-pds"
    assert declared["FileListUri"]["DefaultValue"] == "bundled"
    assert declared["ModelApprovalStatus"]["DefaultValue"] == "PendingManualApproval"
    assert declared["TrainingInstanceType"]["DefaultValue"] == "ml.g4dn.xlarge"
    assert set(declared["Architecture"]["EnumValues"]) == {
        "resnet18", "resnet34", "resnet50", "smallcnn",
    }  # fmt: skip


def test_step_graph_is_prepare_train_evaluate_gate_register_deploy(definition):
    assert [s["Name"] for s in definition["Steps"]] == [
        "Prepare",
        "Train",
        "Evaluate",
        "QualityGate",
    ]
    gate = step(definition, "QualityGate")
    assert gate["Type"] == "Condition"
    assert [s["Name"] for s in gate["Arguments"]["IfSteps"]] == ["Register", "Deploy"]
    assert [(s["Name"], s["Type"]) for s in gate["Arguments"]["ElseSteps"]] == [
        ("QualityGateFailed", "Fail")
    ]

    def upstream(name: str) -> set[str]:
        return {
            r.split(".")[1] for r in references(step(definition, name)) if r.startswith("Steps.")
        }

    assert upstream("Prepare") == set()
    assert upstream("Train") == {"Prepare"}
    assert upstream("Evaluate") == {"Prepare", "Train"}
    assert "Evaluate" in upstream("QualityGate")
    assert upstream("Register") == {"Train", "Evaluate"}
    assert upstream("Deploy") == {"Register"}


def test_every_get_resolves_to_a_parameter_step_or_property_file(definition):
    parameters = {p["Name"] for p in definition["Parameters"]}
    steps = {s["Name"]: s for s in all_steps(definition)}
    refs = references(definition)
    assert refs, "the definition should reference something"
    for ref in refs:
        kind, _, rest = ref.partition(".")
        if kind == "Parameters":
            assert rest in parameters, ref
        elif kind == "Execution":
            assert rest in EXECUTION_VARIABLES, ref
        elif kind == "Steps":
            name, _, attribute = rest.partition(".")
            assert name in steps, ref
            if attribute.startswith("PropertyFiles."):
                declared = {p["PropertyFileName"] for p in steps[name].get("PropertyFiles", [])}
                assert attribute.removeprefix("PropertyFiles.") in declared, ref
            if attribute.startswith("ProcessingOutputConfig.Outputs["):
                output = re.match(r"ProcessingOutputConfig\.Outputs\['([^']+)'\]", attribute)[1]
                outputs = steps[name]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
                assert output in {o["OutputName"] for o in outputs}, ref
        else:
            pytest.fail(f"unexpected reference {ref}")


def _contract_evaluation_example() -> dict:
    text = (REPO / "ARCHITECTURE.md").read_text()
    section = text[text.index("## Evaluation contract") :]
    return json.loads(re.search(r"```json\n(.*?)```", section, re.S)[1])


def test_quality_gate_reads_accuracy_where_evaluate_writes_it(definition):
    evaluate = step(definition, "Evaluate")
    assert evaluate["PropertyFiles"] == [
        {
            "PropertyFileName": "EvaluationReport",
            "OutputName": "evaluation",
            "FilePath": "evaluation.json",
        }
    ]
    outputs = evaluate["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert [o["S3Output"]["LocalPath"] for o in outputs] == ["/opt/ml/processing/evaluation"]

    (condition,) = step(definition, "QualityGate")["Arguments"]["Conditions"]
    assert condition["Type"] == "GreaterThanOrEqualTo"
    assert condition["RightValue"] == {"Get": "Parameters.AccuracyThreshold"}
    json_get = condition["LeftValue"]["Std:JsonGet"]
    assert json_get["PropertyFile"] == {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"}
    assert json_get["Path"] == ACCURACY_JSON_PATH

    value = _contract_evaluation_example()
    for key in json_get["Path"].split("."):
        value = value[key]
    assert isinstance(value, float)


def test_gate_failure_message_names_accuracy_and_threshold(definition):
    message = step(definition, "QualityGateFailed")["Arguments"]["ErrorMessage"]["Std:Join"]
    kinds = [next(iter(v)) if isinstance(v, dict) else "text" for v in message["Values"]]
    assert "Std:JsonGet" in kinds
    assert {"Get": "Parameters.AccuracyThreshold"} in message["Values"]


def test_scripts_get_exactly_the_contract_arguments(definition):
    def flags(name: str) -> dict:
        args = step(definition, name)["Arguments"]["AppSpecification"]["ContainerArguments"]
        return dict(zip(args[::2], args[1::2], strict=True))

    prepare = flags("Prepare")
    assert list(prepare) == [
        "--source", "--file-list", "--min-count", "--max-count", "--per-class-cap",
        "--max-skip-fraction", "--val-ratio",
        "--test-ratio", "--image-size", "--shard-size", "--workers", "--output-dir",
    ]  # fmt: skip
    assert prepare["--source"] == {"Get": "Parameters.SourceUri"}
    assert prepare["--file-list"] == {"Get": "Parameters.FileListUri"}
    assert prepare["--output-dir"] == "/opt/ml/processing/output"
    outputs = step(definition, "Prepare")["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert {o["OutputName"]: o["S3Output"]["LocalPath"] for o in outputs} == {
        split: f"/opt/ml/processing/output/{split}"
        for split in ("train", "validation", "test", "report")
    }
    assert flags("Evaluate") == {
        "--model-dir": "/opt/ml/processing/model",
        "--test-dir": "/opt/ml/processing/test",
        "--report-dir": "/opt/ml/processing/report",
        "--output-dir": "/opt/ml/processing/evaluation",
        "--min-test-images": {
            "Std:Join": {"On": "", "Values": [{"Get": "Parameters.MinTestImages"}]}
        },
    }
    entry = step(definition, "Prepare")["Arguments"]["AppSpecification"]["ContainerEntrypoint"]
    assert entry[0] == "/bin/bash" and entry[1].endswith("runproc.sh")


def test_training_hyperparameters_channels_and_metrics(definition):
    args = step(definition, "Train")["Arguments"]
    hyper = args["HyperParameters"]
    for name in ("epochs", "batch_size", "learning_rate", "arch", "image_size", "pretrained",
                 "seed", "patience", "compile", "checkpoint_dir", "min_train_images",
                 "min_validation_images"):  # fmt: skip
        assert name in hyper, name
    assert hyper["sagemaker_program"] == "train.py"
    assert hyper["sagemaker_submit_directory"].endswith("/sourcedir.tar.gz")
    assert all(isinstance(v, (str, dict)) for v in hyper.values())
    assert [c["ChannelName"] for c in args["InputDataConfig"]] == [
        "train",
        "validation",
        "weights",
    ]
    assert hyper["pretrained"] == {"Get": "Parameters.PretrainedWeights"}
    line = (
        "epoch=3 train_loss=0.8123 train_acc=0.6512 val_loss=0.7012 val_acc=0.7034 "
        "val_mae=0.3312 lr=0.000412 images_per_s=812.3 data_wait_s=0.04"
    )
    found = {
        m["Name"]: float(re.search(m["Regex"], line)[1])
        for m in args["AlgorithmSpecification"]["MetricDefinitions"]
    }
    assert found["val_acc"] == 0.7034 and found["lr"] == 0.000412 and found["train_loss"] == 0.8123
    assert args["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TrainingInstanceCount"}
    assert "CheckpointConfig" not in args and args["EnableManagedSpotTraining"] is False


def test_spot_distributed_kms_and_vpc_options_reach_the_jobs(tmp_path):
    settings = Settings(
        staging_dir=tmp_path,
        spot=True,
        kms_key="arn:aws:kms:us-east-1:000000000000:key/abc",
        subnets=("subnet-1",),
        security_group_ids=("sg-1",),
        network_isolation=True,
    )
    definition = json.loads(build(settings).definition)
    train = step(definition, "Train")["Arguments"]
    assert train["EnableManagedSpotTraining"] is True
    assert train["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert (
        train["StoppingCondition"]["MaxWaitTimeInSeconds"]
        >= train["StoppingCondition"]["MaxRuntimeInSeconds"]
    )
    assert train["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    assert train["OutputDataConfig"]["KmsKeyId"] == settings.kms_key
    # TrainingInstanceType allows NVMe types (the default g4dn too): no volume key (see below).
    assert "VolumeKmsKeyId" not in train["ResourceConfig"]
    assert train["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    assert train["EnableNetworkIsolation"] is True
    prepare = step(definition, "Prepare")["Arguments"]
    assert prepare["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == settings.kms_key
    assert prepare["ProcessingOutputConfig"]["KmsKeyId"] == settings.kms_key
    assert prepare["NetworkConfig"]["VpcConfig"]["Subnets"] == ["subnet-1"]
    # Prepare downloads the source itself: in the VPC, but not cut off from S3.
    assert prepare["NetworkConfig"]["EnableNetworkIsolation"] is False
    evaluate = step(definition, "Evaluate")["Arguments"]
    assert evaluate["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert evaluate["NetworkConfig"]["VpcConfig"]["SecurityGroupIds"] == ["sg-1"]


def test_job_steps_retry_on_throttling_and_capacity_and_cache(definition):
    for name in ("Prepare", "Train", "Evaluate"):
        s = step(definition, name)
        kinds = {e for policy in s["RetryPolicies"] for e in policy["ExceptionType"]}
        assert {"Step.THROTTLING", "SageMaker.CAPACITY_ERROR", "SageMaker.JOB_INTERNAL_ERROR",
                "SageMaker.RESOURCE_LIMIT"} <= kinds, name  # fmt: skip
        assert s["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
    register = step(definition, "Register")
    assert {e for p in register["RetryPolicies"] for e in p["ExceptionType"]} >= {"Step.THROTTLING"}


def test_register_and_deploy(definition):
    register = step(definition, "Register")
    assert register["Type"] == "RegisterModel"
    args = register["Arguments"]
    assert args["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    assert args["ModelPackageGroupName"] == Settings().model_package_group_name
    spec = args["InferenceSpecification"]
    assert spec["SupportedContentTypes"] == [
        "image/jpeg", "image/png", "application/x-image", "application/json",
    ]  # fmt: skip
    assert spec["SupportedResponseMIMETypes"] == ["application/json"]
    (container,) = spec["Containers"]
    assert "pytorch-inference" in container["Image"]
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    report = args["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert report["ContentType"] == "application/json"
    assert report["S3Uri"]["Std:Join"]["Values"][-1] == "evaluation.json"

    deploy = step(definition, "Deploy")
    assert deploy["Type"] == "Lambda"
    assert deploy["FunctionArn"] == Settings().deployer_function_arn
    assert deploy["Arguments"] == {
        "model_package_arn": {"Get": "Steps.Register.ModelPackageArn"},
    }
    assert {o["OutputName"] for o in deploy["OutputParameters"]} == {"status", "endpoint_name"}


def test_every_step_has_a_display_name_and_description_within_sagemakers_limits(definition):
    model = botocore.session.get_session().get_service_model("sagemaker")
    limits = {
        "DisplayName": model.shape_for("StepDisplayName").metadata["max"],
        "Description": model.shape_for("StepDescription").metadata["max"],
    }
    steps = list(all_steps(definition))
    assert {s["Name"] for s in steps} == {
        "Prepare", "Train", "Evaluate", "QualityGate", "QualityGateFailed", "Register", "Deploy",
    }  # fmt: skip
    names = set()
    for s in steps:
        for field, limit in limits.items():
            assert isinstance(s.get(field), str) and 0 < len(s[field]) <= limit, (s["Name"], field)
        names.add(s["DisplayName"])
    assert len(names) == len(steps), "two steps share a display name"


def test_deploy_names_no_endpoint_the_stage_deployer_owns_it(definition):
    assert "EndpointName" not in {p["Name"] for p in definition["Parameters"]}
    assert "Parameters.EndpointName" not in json.dumps(definition)


# `python -m pipeline definition` behind a socket guard: no connection, no name lookup.
OFFLINE_CLI = """
import socket, sys
def refuse(*args, **kwargs):
    raise OSError(f"network use during the build: {args!r}")
socket.socket.connect = refuse
socket.getaddrinfo = refuse
from pipeline.cli import main
sys.exit(main(["definition"]))
"""


def test_definition_is_byte_identical_across_processes_offline_without_credentials(built):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    command = [sys.executable, "-c", OFFLINE_CLI]
    runs = [
        subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err.decode()
    first, second = (out for out, _ in outputs)
    assert first == second
    assert json.loads(first)["Steps"], "expected the definition on stdout"
    assert "${" not in first.decode()


def test_rebuilding_in_one_process_gives_the_same_bytes(built, tmp_path):
    # The SDK keeps module-level state; a second build in the same process must not differ.
    # (The code archives are read again, so an edit under processing/ meanwhile would show.)
    assert build(Settings(staging_dir=tmp_path)).definition == built.definition


def test_build_makes_no_network_or_aws_requests_and_keeps_placeholders(
    no_network, monkeypatch, tmp_path
):
    requests: list[str] = []
    real_create_client = botocore.session.Session.create_client

    def create_client(self, *args, **kwargs):
        client = real_create_client(self, *args, **kwargs)

        def record(request, **_):
            requests.append(request.url)
            raise AssertionError(f"AWS request during the build: {request.url}")

        client.meta.events.register("before-send", record)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", create_client)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    settings = Settings(staging_dir=tmp_path, **PLACEHOLDERS)
    text = definition_json(settings)
    assert requests == [] and no_network == []
    assert set(re.findall(r"\$\{[^}]*\}", text)) == set(PLACEHOLDERS.values())
    definition = json.loads(text)
    assert step(definition, "Train")["Arguments"]["RoleArn"] == "${PipelineRoleArn}"
    assert step(definition, "Prepare")["Arguments"]["RoleArn"] == "${PipelineRoleArn}"
    assert step(definition, "Deploy")["FunctionArn"] == "${DeployerFunctionArn}"
    ours = [v for v in walk(definition) if isinstance(v, str) and v.startswith("s3://")]
    ours.remove("s3://aft-vbi-pds")  # the SourceUri default: the public dataset
    assert ours and all(v.startswith("s3://${BucketName}/") for v in ours)


def test_spot_checkpoints_are_per_execution(tmp_path):
    # A fixed prefix let a later execution resume an earlier one's finished checkpoint.
    definition = json.loads(build(Settings(staging_dir=tmp_path, spot=True)).definition)
    uri = step(definition, "Train")["Arguments"]["CheckpointConfig"]["S3Uri"]
    assert uri["Std:Join"]["On"] == "/"
    values = uri["Std:Join"]["Values"]
    assert {"Get": "Execution.PipelineExecutionId"} in values
    assert values[-1] == "checkpoints"
    assert values[0].endswith("/intermediate")  # expired by the bucket's lifecycle rule


def test_only_what_registered_versions_need_outlives_the_lifecycle_rule(definition):
    """Shards expire under intermediate/; the model and its evaluation stay under executions/."""

    def head(uri):
        return uri["Std:Join"]["Values"][0]

    prepare = step(definition, "Prepare")["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert {head(o["S3Output"]["S3Uri"]).rsplit("/", 1)[-1] for o in prepare} == {"intermediate"}
    train = step(definition, "Train")["Arguments"]["OutputDataConfig"]["S3OutputPath"]
    assert head(train).endswith("/executions")
    evaluate = step(definition, "Evaluate")["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert head(evaluate[0]["S3Output"]["S3Uri"]).endswith("/executions")


def test_network_isolation_without_subnets_has_no_empty_vpc_config(tmp_path):
    definition = json.loads(
        build(Settings(staging_dir=tmp_path, network_isolation=True)).definition
    )
    train = step(definition, "Train")["Arguments"]
    assert train["EnableNetworkIsolation"] is True
    assert "VpcConfig" not in train
    for name in ("Prepare", "Evaluate"):
        network = step(definition, name)["Arguments"]["NetworkConfig"]
        assert "VpcConfig" not in network, name
    assert (
        step(definition, "Evaluate")["Arguments"]["NetworkConfig"]["EnableNetworkIsolation"] is True
    )


def test_volume_keys_only_where_every_allowed_instance_type_takes_one(tmp_path):
    """SageMaker refuses VolumeKmsKeyId on types with NVMe instance storage (ml.g4dn.xlarge, the
    default, among them), and Studio may pick any type the parameter allows."""
    settings = Settings(staging_dir=tmp_path, kms_key="arn:aws:kms:us-east-1:000000000000:key/k")
    definition = json.loads(build(settings).definition)
    declared = {p["Name"]: p for p in definition["Parameters"]}
    training_types = declared["TrainingInstanceType"]["EnumValues"]
    processing_types = declared["ProcessingInstanceType"]["EnumValues"]
    assert "ml.g4dn.xlarge" in training_types and "ml.m5.2xlarge" in processing_types
    assert not all(instance_supports_kms(t) for t in training_types)
    assert all(instance_supports_kms(t) for t in processing_types)
    train = step(definition, "Train")["Arguments"]
    assert "VolumeKmsKeyId" not in train["ResourceConfig"]
    assert train["OutputDataConfig"]["KmsKeyId"] == settings.kms_key
    for name in ("Prepare", "Evaluate"):
        cluster = step(definition, name)["Arguments"]["ProcessingResources"]["ClusterConfig"]
        assert cluster["VolumeKmsKeyId"] == settings.kms_key, name


def test_training_launches_torchrun_for_any_instance_count(definition):
    """TrainingInstanceCount is chosen per execution: the launcher must not be decided at
    build time (one rank per GPU per host, whatever the count)."""
    hyperparameters = step(definition, "Train")["Arguments"]["HyperParameters"]
    assert hyperparameters["sagemaker_torch_distributed_enabled"] == "true"


def test_evaluate_runs_on_one_instance_whatever_the_processing_count(definition):
    prepare = step(definition, "Prepare")["Arguments"]["ProcessingResources"]["ClusterConfig"]
    evaluate = step(definition, "Evaluate")["Arguments"]["ProcessingResources"]["ClusterConfig"]
    assert prepare["InstanceCount"] == {"Get": "Parameters.ProcessingInstanceCount"}
    assert evaluate["InstanceCount"] == 1


def test_isolated_training_gets_its_code_as_an_input_channel(tmp_path):
    """A network-isolated container cannot download sagemaker_submit_directory from S3."""
    settings = Settings(staging_dir=tmp_path, network_isolation=True)
    built = build(settings)
    train = step(json.loads(built.definition), "Train")["Arguments"]
    submit = train["HyperParameters"]["sagemaker_submit_directory"]
    assert submit == "/opt/ml/input/data/code/sourcedir.tar.gz"
    (code,) = [c for c in train["InputDataConfig"] if c["ChannelName"] == "code"]
    uri = code["DataSource"]["S3DataSource"]["S3Uri"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    assert key.endswith("/sourcedir.tar.gz") and (bucket, key) in built.staged
    # Not isolated: the toolkit fetches the archive itself, and there is no code channel.
    plain = step(json.loads(build(Settings(staging_dir=tmp_path)).definition), "Train")
    assert plain["Arguments"]["HyperParameters"]["sagemaker_submit_directory"] == uri
    assert [c["ChannelName"] for c in plain["Arguments"]["InputDataConfig"]] == [
        "train",
        "validation",
        "weights",
    ]


def test_registered_types_follow_the_endpoint_type(tmp_path):
    """The registered image and instance types follow the deployer's endpoint type."""
    gpu = Settings(
        staging_dir=tmp_path, inference_instance_types=inference_instance_types("ml.g5.xlarge")
    )
    spec = step(json.loads(build(gpu).definition), "Register")["Arguments"][
        "InferenceSpecification"
    ]
    assert spec["SupportedRealtimeInferenceInstanceTypes"][0] == "ml.g5.xlarge"
    assert "-gpu-" in spec["Containers"][0]["Image"]
    with pytest.raises(ValueError, match="mixes CPU and accelerated"):
        Settings(inference_instance_types=("ml.m5.large", "ml.g5.xlarge"))


def test_register_records_the_architecture_parameter_and_cpu_only_types(definition):
    args = step(definition, "Register")["Arguments"]
    metadata = args["CustomerMetadataProperties"]
    assert metadata["architecture"] == {"Get": "Parameters.Architecture"}
    # The report page beside evaluation.json, so an approver finds it with the version.
    report = metadata.pop("evaluation_report")["Std:Join"]
    evaluation = args["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]["Std:Join"]
    assert report == {"On": "/", "Values": [*evaluation["Values"][:-1], "report.html"]}
    assert set(metadata) == {"architecture"}
    spec = args["InferenceSpecification"]
    realtime = spec["SupportedRealtimeInferenceInstanceTypes"]
    # The image is the CPU inference image: no GPU types.
    assert not [t for t in realtime if t.startswith(("ml.g", "ml.p", "ml.inf"))], realtime
    assert realtime[0] == Settings().inference_instance_types[0]
    assert spec["SupportedTransformInstanceTypes"] == [Settings().inference_instance_types[0]]


def test_definition_builds_with_a_missing_aws_profile():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_PROFILE"] = "nope"
    run = subprocess.run(
        [sys.executable, "-c", OFFLINE_CLI], cwd=REPO, env=env, capture_output=True, timeout=300
    )
    assert run.returncode == 0, run.stderr.decode()
    assert json.loads(run.stdout)["Steps"]


def test_a_default_the_checker_would_refuse_never_reaches_a_definition(tmp_path):
    from dataclasses import replace

    settings = Settings(staging_dir=tmp_path)
    bad = settings.replace(defaults=replace(settings.defaults, epochs=0))
    with pytest.raises(ValueError, match="default of parameter Epochs must be at least 1"):
        build(bad)


def test_packaging_sits_below_the_definition():
    """packaging never imports the definition (at module level or inside a function)."""
    import ast

    tree = ast.parse((REPO / "pipeline" / "packaging.py").read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {name for name in imported if name and name.startswith("pipeline.definition")}
