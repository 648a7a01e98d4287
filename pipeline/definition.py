"""The bincount SageMaker Pipeline, built offline with SDK v3.

`build_pipeline(settings)` returns the SDK `Pipeline`; `definition_json(settings)` its JSON,
byte-identical for equal settings and made without a single AWS request (no credentials
needed). Read top to bottom: parameters, then Prepare -> Train -> Evaluate -> QualityGate ->
Register -> Deploy, with QualityGateFailed in the gate's else branch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.exceptions
import botocore.session

from pipeline.images import image_uri
from pipeline.instance_types import (
    PROCESSING_INSTANCE_TYPES,
    TRAINING_INSTANCE_TYPES,
    volume_kms_key,
)
from pipeline.packaging import CodeArchive, StagingSession, code_archive
from pipeline.parameters import check_value
from pipeline.settings import APPROVAL_STATUSES, Settings  # noqa: F401 (re-exported)

# Names shared with the containers and the local runner (ARCHITECTURE.md).
PREPARE, TRAIN, EVALUATE, GATE = "Prepare", "Train", "Evaluate", "QualityGate"
REGISTER, DEPLOY, GATE_FAILED = "Register", "Deploy", "QualityGateFailed"
EVALUATION_REPORT = "EvaluationReport"
ACCURACY_JSON_PATH = "multiclass_classification_metrics.accuracy.value"
PROCESSING_OUTPUT = "/opt/ml/processing/output"
# A network-isolated Train gets its code archive as this input channel.
CODE_CHANNEL = "code"
CODE_CHANNEL_DIR = f"/opt/ml/input/data/{CODE_CHANNEL}"
CONTENT_TYPES = ("image/jpeg", "image/png", "application/x-image", "application/json")
RESPONSE_TYPES = ("application/json",)
ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "smallcnn")
# One line per epoch from training/train.py: "epoch=3 train_loss=0.8123 ... images_per_s=812.3".
METRIC_NAMES = ("train_loss", "train_acc", "val_loss", "val_acc", "val_mae", "lr", "images_per_s")

# Telemetry off; an explicit config also keeps the user's SDK config files out of the JSON.
_INERT_KEY = "offline-build"  # never sent anywhere: keeps the SDK from hunting for credentials
SDK_CONFIG = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


@contextmanager
def _offline_sdk(region: str):
    """The environment the SDK needs to build without asking AWS; restored afterwards.

    - `import sagemaker.mlops` creates a boto3 client at import time, and ProcessingStep builds
      a LocalSession just to read a method name: both fail unless some region is set, so
      `region` is the default while none is configured (the pipeline uses Settings.region).
    - Creating those clients resolves credentials, which may reach the EC2 metadata service,
      SSO or a credential process: inside this block they find inert static keys instead.
    - ModelTrainer validates its role through IAM unless SAGEMAKER_VALIDATE_ROLE is false.
    - The SDK's notices about pipeline builds (no jobs started, fields popped) stay quiet.
    - The SDK re-validates its config against a large JSON schema on every lookup (about 50
      times a build, most of the build's time); our config, checked once, is not re-checked.
    """
    changes: dict[str, str | None] = {
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "AWS_ACCESS_KEY_ID": _INERT_KEY,
        "AWS_SECRET_ACCESS_KEY": _INERT_KEY,
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if not _configured_region():
        changes["AWS_DEFAULT_REGION"] = region
    saved = {name: os.environ.get(name) for name in changes}
    sdk_loggers = [logging.getLogger(name) for name in ("sagemaker", "sagemaker.config")]
    saved_levels = [logger.level for logger in sdk_loggers]
    # Some SDK modules call logging.basicConfig(level=INFO) on import: the caller's root
    # logger (and so botocore's chatter) stays as it was.
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    # A default boto3 session created in here would keep the inert keys: keep the caller's.
    saved_default_session = boto3.DEFAULT_SESSION
    boto3.DEFAULT_SESSION = None
    _set_environ(changes)
    config_manager = sys.modules.get("sagemaker.core.config.config_manager")
    real_validate = config_manager and config_manager.SageMakerConfig.validate_sagemaker_config
    if config_manager:
        config_manager.SageMakerConfig.validate_sagemaker_config = staticmethod(
            _validate_unless_ours(real_validate)
        )
    for logger in sdk_loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"sagemaker\.")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"sagemaker\.")
            yield
    finally:
        for logger, level in zip(sdk_loggers, saved_levels, strict=True):
            logger.setLevel(level)
        root.setLevel(saved_root[0])
        root.handlers[:] = saved_root[1]
        _set_environ(saved)
        boto3.DEFAULT_SESSION = saved_default_session
        if config_manager:
            config_manager.SageMakerConfig.validate_sagemaker_config = staticmethod(real_validate)


def _configured_region() -> str | None:
    """The region the user's environment configures, if any. A profile that does not exist
    (AWS_PROFILE=nope) is no reason to fail an offline build: the region is then read
    without the profile."""
    try:
        return botocore.session.Session().get_config_variable("region")
    except botocore.exceptions.ProfileNotFound:
        return botocore.session.Session(profile=None).get_config_variable(
            "region", methods=("env",)
        )


def _validate_unless_ours(validate):
    def validate_sagemaker_config(sagemaker_config=None):
        if sagemaker_config != SDK_CONFIG:
            validate(sagemaker_config)

    return validate_sagemaker_config


def _set_environ(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


with _offline_sdk("us-east-1"):
    from sagemaker.core.config.config_manager import SageMakerConfig
    from sagemaker.core.lambda_helper import Lambda
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.network import NetworkConfig
    from sagemaker.core.processing import FrameworkProcessor
    from sagemaker.core.shapes import (
        MetricDefinition,
        ProcessingInput,
        ProcessingOutput,
        ProcessingS3Input,
        ProcessingS3Output,
    )
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InputData,
        Networking,
        OutputDataConfig,
        StoppingCondition,
    )
    from sagemaker.core.utils import install_requirements
    from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import (
        ParameterFloat,
        ParameterInteger,
        ParameterString,
    )
    from sagemaker.core.workflow.pipeline_context import _ModelStepArguments
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow import (
        CacheConfig,
        ConditionStep,
        FailStep,
        LambdaOutput,
        LambdaStep,
        ModelStep,
        Pipeline,
        ProcessingStep,
        SageMakerJobStepRetryPolicy,
        StepRetryPolicy,
        TrainingStep,
    )
    from sagemaker.mlops.workflow.lambda_step import LambdaOutputTypeEnum
    from sagemaker.mlops.workflow.retry import SageMakerJobExceptionTypeEnum, StepExceptionTypeEnum
    from sagemaker.train import ModelTrainer


SageMakerConfig.validate_sagemaker_config(SDK_CONFIG)


def build_pipeline(settings: Settings) -> Pipeline:
    """The SDK Pipeline for these settings. Nothing is uploaded (see packaging.stage_files);
    call its definition() through definition_json, which gives the SDK the environment it
    needs offline."""
    return build(settings).pipeline


def definition_json(settings: Settings) -> str:
    """The pipeline definition as stable JSON (sorted keys, 2-space indent, trailing newline)."""
    return build(settings).definition


@dataclass(frozen=True)
class Built:
    pipeline: Pipeline
    definition: str
    # Every file the definition expects in S3: {(bucket, key): bytes}.
    staged: dict[tuple[str, str], bytes]


def build(settings: Settings) -> Built:
    """The Pipeline, its JSON, and the files it points at; no AWS request is made."""
    processing_code = code_archive(settings, "processing")
    training_code = code_archive(settings, "training")
    with _offline_sdk(settings.region):
        # Inert keys: the build never sends a request, and must not go looking for credentials.
        boto_session = boto3.Session(
            region_name=settings.region,
            aws_access_key_id=_INERT_KEY,
            aws_secret_access_key=_INERT_KEY,
        )
        session = StagingSession(settings, boto_session, sagemaker_config=SDK_CONFIG)
        for archive in (processing_code, training_code):
            session.stage(settings.bucket, archive.key, archive.body)
        pipeline = _define(settings, session, processing_code, training_code)
        # The SDK runs the processors (and so "uploads" runproc.sh) only while serializing.
        definition = json.loads(pipeline.definition())
    for parameter in definition["Parameters"]:
        # A default that the start-time checker would refuse must not reach a definition.
        try:
            check_value(parameter, parameter["DefaultValue"])
        except ValueError as error:
            raise ValueError(f"default of {error}") from None
    text = json.dumps(definition, indent=2, sort_keys=True) + "\n"
    return Built(pipeline=pipeline, definition=text, staged=dict(session.staged))


def _define(
    settings: Settings,
    session: StagingSession,
    processing_code: CodeArchive,
    training_code: CodeArchive,
) -> Pipeline:
    d = settings.defaults
    # --- Parameters (what Studio shows when starting an execution) ---------------------------
    processing_instance_type = ParameterString(
        "ProcessingInstanceType",
        default_value=d.processing_instance_type,
        enum_values=list(PROCESSING_INSTANCE_TYPES),
    )
    processing_instance_count = ParameterInteger(
        "ProcessingInstanceCount", default_value=d.processing_instance_count
    )
    training_instance_type = ParameterString(
        "TrainingInstanceType",
        default_value=d.training_instance_type,
        enum_values=list(TRAINING_INSTANCE_TYPES),
    )
    training_instance_count = ParameterInteger(
        "TrainingInstanceCount", default_value=d.training_instance_count
    )
    epochs = ParameterInteger("Epochs", default_value=d.epochs)
    learning_rate = ParameterFloat("LearningRate", default_value=d.learning_rate)
    batch_size = ParameterInteger("BatchSize", default_value=d.batch_size)
    image_size = ParameterInteger("ImageSize", default_value=d.image_size)
    architecture = ParameterString(
        "Architecture", default_value=d.architecture, enum_values=list(ARCHITECTURES)
    )
    source_uri = ParameterString("SourceUri", default_value=d.source_uri)
    file_list_uri = ParameterString("FileListUri", default_value=d.file_list_uri)
    per_class_cap = ParameterInteger("PerClassCap", default_value=d.per_class_cap)
    # Prepare fails when more of the selection than this is skipped as unusable (processing/
    # prepare.py --max-skip-fraction); transient read errors are retried, never skipped.
    max_skip_fraction = ParameterFloat("MaxSkipFraction", default_value=d.max_skip_fraction)
    accuracy_threshold = ParameterFloat("AccuracyThreshold", default_value=d.accuracy_threshold)
    # Smallest splits Train and Evaluate accept (they exit 2 below them; see train.py).
    min_train_images = ParameterInteger("MinTrainImages", default_value=d.min_train_images)
    min_validation_images = ParameterInteger(
        "MinValidationImages", default_value=d.min_validation_images
    )
    min_test_images = ParameterInteger("MinTestImages", default_value=d.min_test_images)
    model_approval_status = ParameterString(
        "ModelApprovalStatus",
        default_value=d.model_approval_status,
        # Where the pipeline may not approve (prod), only PendingManualApproval; IAM enforces it.
        enum_values=list(settings.approval_statuses),
    )
    endpoint_name = ParameterString("EndpointName", default_value=d.endpoint_name)
    parameters = [
        processing_instance_type,
        processing_instance_count,
        training_instance_type,
        training_instance_count,
        epochs,
        learning_rate,
        batch_size,
        image_size,
        architecture,
        source_uri,
        file_list_uri,
        per_class_cap,
        max_skip_fraction,
        accuracy_threshold,
        min_train_images,
        min_validation_images,
        min_test_images,
        model_approval_status,
        endpoint_name,
    ]

    # --- Shared job settings ------------------------------------------------------------------
    kms_key = settings.kms_key or None
    # Volume keys only where no instance type the parameter allows would make SageMaker refuse.
    processing_volume_key = volume_kms_key(kms_key, PROCESSING_INSTANCE_TYPES)
    training_volume_key = volume_kms_key(kms_key, TRAINING_INSTANCE_TYPES)
    cache = CacheConfig(enable_caching=True, expire_after=settings.cache_expire_after)
    job_retries = [
        StepRetryPolicy(
            exception_types=[StepExceptionTypeEnum.THROTTLING, StepExceptionTypeEnum.SERVICE_FAULT],
            interval_seconds=10,
            backoff_rate=2.0,
            max_attempts=5,
        ),
        SageMakerJobStepRetryPolicy(
            exception_types=[
                SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
            ],
            interval_seconds=60,
            backoff_rate=2.0,
            max_attempts=5,
        ),
    ]

    def execution_uri(*parts: str, top: str = "executions") -> Join:
        """s3://bucket/prefix/<top>/<execution id>/parts...

        `executions/` keeps what registered versions point at (the model, its evaluation);
        `intermediate/` holds what only the execution itself needs (shards, checkpoints),
        which the bucket's lifecycle rule expires.
        """
        head = settings.s3_uri(top)
        return Join(on="/", values=[head, ExecutionVariables.PIPELINE_EXECUTION_ID, *parts])

    processing_image = image_uri(
        settings.region,
        settings.framework_version,
        settings.py_version,
        d.processing_instance_type,
        "training",
    )

    def network_config(isolated: bool) -> NetworkConfig | None:
        if not (settings.subnets or settings.network_isolation):
            return None
        return NetworkConfig(
            enable_network_isolation=isolated and settings.network_isolation,
            # None leaves VpcConfig out: isolation alone needs no VPC (empty Subnets is invalid).
            subnets=list(settings.subnets) or None,
            security_group_ids=list(settings.security_group_ids) or None,
        )

    # The SDK stages install_requirements.py under code/<job_name>/source/: name it by content.
    helpers_prefix = f"sdk-{_sha256_file(install_requirements.__file__)[:16]}"

    def processor(job: str, isolated: bool = True, instance_count=None) -> FrameworkProcessor:
        return FrameworkProcessor(
            image_uri=processing_image,
            command=["python3"],
            role=settings.jobs_role_arn,
            instance_type=processing_instance_type,
            instance_count=instance_count or processing_instance_count,
            volume_size_in_gb=100,
            volume_kms_key=processing_volume_key,
            output_kms_key=kms_key,
            code_location=settings.s3_uri("code"),
            base_job_name=f"{settings.pipeline_name}-{job}",
            sagemaker_session=session,
            network_config=network_config(isolated),
        )

    # --- 1. Prepare: download, filter, split and shard the bin images -------------------------
    splits = ("train", "validation", "test", "report")
    # Prepare reads the source bucket itself (through the VPC's S3 endpoint in VPC mode), so
    # it keeps its network; the jobs that get everything as inputs run isolated.
    prepare_args = processor("prepare", isolated=False).run(
        code="prepare.py",
        source_dir=processing_code.uri(settings),
        job_name=helpers_prefix,
        outputs=[
            ProcessingOutput(
                output_name=split,
                s3_output=ProcessingS3Output(
                    s3_uri=execution_uri(PREPARE, split, top="intermediate"),
                    local_path=f"{PROCESSING_OUTPUT}/{split}",
                    s3_upload_mode="EndOfJob",
                ),
            )
            for split in splits
        ],
        arguments=_flags(
            {
                "--source": source_uri,
                "--file-list": file_list_uri,
                "--min-count": "1",
                "--max-count": "5",
                "--per-class-cap": per_class_cap.to_string(),
                "--max-skip-fraction": max_skip_fraction.to_string(),
                "--val-ratio": "0.1",
                "--test-ratio": "0.1",
                "--image-size": image_size.to_string(),
                "--shard-size": "512",
                "--workers": "64",
                "--output-dir": PROCESSING_OUTPUT,
            }
        ),
    )
    prepare = ProcessingStep(
        name=PREPARE,
        step_args=prepare_args,
        cache_config=cache,
        retry_policies=job_retries,
    )

    def prepared(split: str):
        return prepare.properties.ProcessingOutputConfig.Outputs[split].S3Output.S3Uri

    # --- 2. Train: fine-tune the CNN on the prepared shards -----------------------------------
    isolated_training = settings.network_isolation
    hyperparameters = {
        "epochs": epochs.to_string(),
        "batch_size": batch_size.to_string(),
        "learning_rate": learning_rate.to_string(),
        "arch": architecture,
        "image_size": image_size.to_string(),
        "pretrained": "true",
        "seed": "42",
        "patience": "5",
        "compile": "false",
        "checkpoint_dir": "/opt/ml/checkpoints",
        "min_train_images": min_train_images.to_string(),
        "min_validation_images": min_validation_images.to_string(),
        # The PyTorch image's training toolkit fetches and runs our own staged archive, so the
        # SDK has no driver files to upload under a timestamped key. A network-isolated job cannot
        # reach S3 itself: SageMaker delivers the archive as the `code` channel instead (as SDK
        # v2's estimators do), and the toolkit extracts it from there.
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": (
            f"{CODE_CHANNEL_DIR}/{training_code.filename}"
            if isolated_training
            else training_code.uri(settings)
        ),
        "sagemaker_region": settings.region,
        "sagemaker_container_log_level": "20",
        # torchrun on every run: one rank per GPU on each of the TrainingInstanceCount hosts
        # chosen at run time (a single-GPU host runs one rank, which costs nothing).
        "sagemaker_torch_distributed_enabled": "true",
    }
    trainer = ModelTrainer(
        training_image=image_uri(
            settings.region,
            settings.framework_version,
            settings.py_version,
            d.training_instance_type,
            "training",
        ),
        # ModelTrainer looks up anything not shaped like a role ARN in IAM; a CloudFormation
        # placeholder such as ${JobRoleArn} is set on the trainer after construction instead.
        role=_ROLE_ARN_SHAPE
        if not _is_role_arn(settings.jobs_role_arn)
        else settings.jobs_role_arn,
        base_job_name=f"{settings.pipeline_name}-train",
        sagemaker_session=session,
        compute=Compute(
            instance_type=training_instance_type,
            instance_count=training_instance_count,
            volume_size_in_gb=100,
            volume_kms_key_id=training_volume_key,
            enable_managed_spot_training=settings.spot,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=settings.max_training_seconds,
            max_wait_time_in_seconds=settings.max_spot_wait_seconds if settings.spot else None,
        ),
        output_data_config=OutputDataConfig(
            s3_output_path=execution_uri(TRAIN), kms_key_id=kms_key
        ),
        networking=(
            Networking(
                subnets=list(settings.subnets) or None,
                security_group_ids=list(settings.security_group_ids) or None,
                enable_network_isolation=settings.network_isolation,
            )
            if settings.subnets or settings.network_isolation
            else None
        ),
        hyperparameters=hyperparameters,
    ).with_metric_definitions(
        [MetricDefinition(name=m, regex=rf"\b{m}=([-+0-9.eE]+|nan|inf)") for m in METRIC_NAMES]
    )
    trainer.role = settings.jobs_role_arn
    if settings.spot:
        # Spot interruptions resume from here (train.py reads checkpoint_dir).
        trainer = trainer.with_checkpoint_config(
            CheckpointConfig(
                # Per execution: a later execution must not resume (and so skip) the epochs of
                # an earlier one's finished checkpoint.
                s3_uri=execution_uri("checkpoints", top="intermediate"),
                local_path="/opt/ml/checkpoints",
            )
        )
    channels = [
        InputData(channel_name="train", data_source=prepared("train")),
        InputData(channel_name="validation", data_source=prepared("validation")),
    ]
    if isolated_training:
        channels.append(
            InputData(channel_name=CODE_CHANNEL, data_source=training_code.uri(settings))
        )
    train = TrainingStep(
        name=TRAIN,
        step_args=trainer.train(input_data_config=channels),
        cache_config=cache,
        retry_policies=job_retries,
    )
    model_artifact = train.properties.ModelArtifacts.S3ModelArtifacts

    # --- 3. Evaluate: judge the packaged model on the held-out test split ---------------------
    evaluation_report = PropertyFile(
        name=EVALUATION_REPORT, output_name="evaluation", path="evaluation.json"
    )
    # One instance: it judges one model on the whole test split and writes one evaluation.json.
    evaluate_args = processor("evaluate", instance_count=1).run(
        code="evaluate.py",
        source_dir=processing_code.uri(settings),
        job_name=helpers_prefix,
        inputs=[
            _s3_input("model", model_artifact, "/opt/ml/processing/model"),
            _s3_input("test", prepared("test"), "/opt/ml/processing/test"),
        ],
        outputs=[
            ProcessingOutput(
                output_name="evaluation",
                s3_output=ProcessingS3Output(
                    s3_uri=execution_uri(EVALUATE),
                    local_path="/opt/ml/processing/evaluation",
                    s3_upload_mode="EndOfJob",
                ),
            )
        ],
        arguments=_flags(
            {
                "--model-dir": "/opt/ml/processing/model",
                "--test-dir": "/opt/ml/processing/test",
                "--output-dir": "/opt/ml/processing/evaluation",
                "--min-test-images": min_test_images.to_string(),
            }
        ),
    )
    evaluate = ProcessingStep(
        name=EVALUATE,
        step_args=evaluate_args,
        property_files=[evaluation_report],
        cache_config=cache,
        retry_policies=job_retries,
    )
    accuracy = JsonGet(
        step_name=EVALUATE, property_file=evaluation_report, json_path=ACCURACY_JSON_PATH
    )

    # --- 5. Register: a model package version in the group ------------------------------------
    evaluation_uri = Join(
        on="/",
        values=[
            evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri,
            "evaluation.json",
        ],
    )
    register = ModelStep(
        name=REGISTER,
        step_args=_register_args(
            settings,
            session,
            model_data=model_artifact,
            approval_status=model_approval_status,
            architecture=architecture,
            evaluation_uri=evaluation_uri,
        ),
        retry_policies=job_retries[:1],
    )

    # --- 6. Deploy: the deployer Lambda deploys Approved packages, otherwise says why not -----
    deploy = LambdaStep(
        name=DEPLOY,
        lambda_func=Lambda(function_arn=settings.deployer_function_arn, session=session),
        inputs={
            "model_package_arn": register.properties.ModelPackageArn,
            "endpoint_name": endpoint_name,
        },
        outputs=[
            LambdaOutput(output_name="status", output_type=LambdaOutputTypeEnum.String),
            LambdaOutput(output_name="endpoint_name", output_type=LambdaOutputTypeEnum.String),
        ],
    )

    # --- 4. QualityGate: register and deploy only a model at least as good as the threshold ---
    gate_failed = FailStep(
        name=GATE_FAILED,
        error_message=Join(
            on=" ",
            values=["Test accuracy", accuracy, "is below AccuracyThreshold", accuracy_threshold],
        ),
    )
    gate = ConditionStep(
        name=GATE,
        conditions=[ConditionGreaterThanOrEqualTo(left=accuracy, right=accuracy_threshold)],
        if_steps=[register, deploy],
        else_steps=[gate_failed],
    )

    return Pipeline(
        name=settings.pipeline_name,
        parameters=parameters,
        steps=[prepare, train, evaluate, gate],
        sagemaker_session=session,
        pipeline_experiment_config=None,
    )


def _flags(options: dict) -> list:
    """{"--name": value} as the flat argument list a script's argparse reads."""
    return [item for pair in options.items() for item in pair]


def _sha256_file(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


_ROLE_ARN_SHAPE = "arn:aws:iam::000000000000:role/placeholder"


def _is_role_arn(value: str) -> bool:
    return value.startswith("arn:") and ":iam::" in value


def _s3_input(name: str, uri, local_path: str) -> ProcessingInput:
    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=uri, local_path=local_path, s3_data_type="S3Prefix", s3_input_mode="File"
        ),
    )


def _register_args(
    settings: Settings, session, *, model_data, approval_status, architecture, evaluation_uri
):
    """CreateModelPackage arguments, written out rather than produced by ModelBuilder.

    ModelBuilder.register() inspects models and images; this request is the whole of what the
    Register step needs and stays offline.
    """
    image = image_uri(
        settings.region,
        settings.framework_version,
        settings.py_version,
        settings.inference_instance_types[0],
        "inference",
    )
    request = {
        "ModelPackageGroupName": settings.model_package_group_name,
        "ModelApprovalStatus": approval_status,
        "InferenceSpecification": {
            "Containers": [
                {
                    "Image": image,
                    "ModelDataUrl": model_data,
                    "Environment": {
                        "SAGEMAKER_PROGRAM": "inference.py",
                        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                        "SAGEMAKER_REGION": settings.region,
                    },
                }
            ],
            "SupportedContentTypes": list(CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(RESPONSE_TYPES),
            # The endpoint's type first; all of one kind, which the image above serves.
            "SupportedRealtimeInferenceInstanceTypes": list(settings.inference_instance_types),
            "SupportedTransformInstanceTypes": [settings.inference_instance_types[0]],
        },
        "ModelMetrics": _without_empty(
            ModelMetrics(
                model_statistics=MetricsSource(
                    content_type="application/json", s3_uri=evaluation_uri
                )
            )._to_request_dict()
        ),
        # The Architecture this execution trained (resolved per execution, like the status).
        "CustomerMetadataProperties": {"architecture": architecture},
    }
    args = _ModelStepArguments(model=_SessionHolder(session))
    args.caller_name = "create_model_package_from_containers"
    args.create_model_package_request = request
    return args


def _without_empty(request: dict) -> dict:
    return {name: value for name, value in request.items() if value != {}}


class _SessionHolder:
    """What ModelStep reads from the model behind its arguments: the session."""

    def __init__(self, session):
        self.sagemaker_session = session
