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
from dataclasses import dataclass, fields
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
from pipeline.packaging import CodeArchive, StagingSession, code_archive, write_staged
from pipeline.parameters import check_value
from pipeline.settings import (  # noqa: F401 (APPROVAL_STATUSES, ARCHITECTURES re-exported)
    APPROVAL_STATUSES,
    ARCHITECTURES,
    Settings,
)
from pipeline.weights import (
    DEFAULT_PRETRAINED_WEIGHTS,
    PRETRAINED_CHOICES,
    PRETRAINED_WEIGHTS_PARAMETER,
    WEIGHTS_CHANNEL,
    weights_channel_uri,
    weights_staged_files,
)

# Names shared with the containers and the local runner (ARCHITECTURE.md).
PREPARE, TRAIN, EVALUATE, GATE = "Prepare", "Train", "Evaluate", "QualityGate"
REGISTER, DEPLOY, GATE_FAILED = "Register", "Deploy", "QualityGateFailed"
# What Studio shows for each step (DisplayName, Description): the step's name stays the id the
# containers, the local runner and the JSON's references use.
STEP_TEXT = {
    PREPARE: (
        "Prepare data",
        "Downloads the bin images named by FileListUri from SourceUri, keeps those with 1 to 5 "
        "items, caps each class at PerClassCap, splits them 80/10/10 into train, validation "
        "and test, and writes them as shards at ImageSize; fails when more than "
        "MaxSkipFraction of the selection is unusable.",
    ),
    TRAIN: (
        "Train model",
        "Fine-tunes Architecture (from PretrainedWeights) on the train split for up to Epochs "
        "epochs with early stopping on the validation split; one rank per GPU on "
        "TrainingInstanceCount instances of TrainingInstanceType.",
    ),
    EVALUATE: (
        "Evaluate model",
        "Scores the trained model on the held-out test split: accuracy, per-class metrics, a "
        "confusion matrix, an HTML report and the monitoring baseline (evaluation.json, "
        "report.html, baseline.json).",
    ),
    GATE: (
        "Quality gate",
        "Registers and deploys the model only if its test accuracy is at least "
        "AccuracyThreshold; otherwise the execution fails with both numbers.",
    ),
    GATE_FAILED: (
        "Quality gate failed",
        "The model's test accuracy is below AccuracyThreshold: nothing is registered.",
    ),
    REGISTER: (
        "Register model version",
        "Adds a version to the model package group with status ModelApprovalStatus, its "
        "evaluation metrics, monitoring baseline and report link.",
    ),
    DEPLOY: (
        "Deploy if approved",
        "Asks the stage's deployer to put the version on the stage's endpoint if it is "
        "Approved (blue/green, rolled back by alarms); a pending version is left for a "
        "person to approve.",
    ),
}
EVALUATION_REPORT = "EvaluationReport"
ACCURACY_JSON_PATH = "multiclass_classification_metrics.accuracy.value"
PROCESSING_OUTPUT = "/opt/ml/processing/output"
# A network-isolated Train gets its code archive as this input channel.
CODE_CHANNEL = "code"
CODE_CHANNEL_DIR = f"/opt/ml/input/data/{CODE_CHANNEL}"
CONTENT_TYPES = ("image/jpeg", "image/png", "application/x-image", "application/json")
RESPONSE_TYPES = ("application/json",)
# One line per epoch from training/train.py: "epoch=3 train_loss=0.8123 ... images_per_s=812.3".
METRIC_NAMES = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_mae",
    "lr",
    "images_per_s",
    "data_wait_s",
)

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
    """The SDK Pipeline for these settings. Nothing is uploaded (see stage_files);
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
    """The pipeline, one builder per step, in the order the steps run."""
    params = _parameters(settings)
    jobs = _JobSettings.of(settings, session)
    prepare = _prepare_step(jobs, params, processing_code)
    train = _train_step(jobs, params, training_code, prepare)
    evaluate = _evaluate_step(jobs, params, processing_code, prepare, train)
    register = _register_step(jobs, params, train, evaluate)
    deploy = _deploy_step(settings, session, register)
    gate = _gate_step(params, evaluate, if_steps=[register, deploy])
    return Pipeline(
        name=settings.pipeline_name,
        parameters=params.all(),
        steps=[prepare, train, evaluate, gate],
        sagemaker_session=session,
        **_tracking(settings),
    )


# --- Parameters (what Studio shows when starting an execution) -------------------------------


@dataclass(frozen=True)
class _Parameters:
    """The pipeline parameters, in the order Studio lists them (README.md "Parameters")."""

    processing_instance_type: ParameterString
    processing_instance_count: ParameterInteger
    training_instance_type: ParameterString
    training_instance_count: ParameterInteger
    epochs: ParameterInteger
    learning_rate: ParameterFloat
    batch_size: ParameterInteger
    image_size: ParameterInteger
    architecture: ParameterString
    pretrained_weights: ParameterString
    source_uri: ParameterString
    file_list_uri: ParameterString
    per_class_cap: ParameterInteger
    max_skip_fraction: ParameterFloat
    accuracy_threshold: ParameterFloat
    min_train_images: ParameterInteger
    min_validation_images: ParameterInteger
    min_test_images: ParameterInteger
    model_approval_status: ParameterString

    def all(self) -> list:
        return [getattr(self, f.name) for f in fields(self)]


def _parameters(settings: Settings) -> _Parameters:
    d = settings.defaults
    return _Parameters(
        processing_instance_type=ParameterString(
            "ProcessingInstanceType",
            default_value=d.processing_instance_type,
            enum_values=list(PROCESSING_INSTANCE_TYPES),
        ),
        processing_instance_count=ParameterInteger(
            "ProcessingInstanceCount", default_value=d.processing_instance_count
        ),
        training_instance_type=ParameterString(
            "TrainingInstanceType",
            default_value=d.training_instance_type,
            enum_values=list(TRAINING_INSTANCE_TYPES),
        ),
        training_instance_count=ParameterInteger(
            "TrainingInstanceCount", default_value=d.training_instance_count
        ),
        epochs=ParameterInteger("Epochs", default_value=d.epochs),
        learning_rate=ParameterFloat("LearningRate", default_value=d.learning_rate),
        batch_size=ParameterInteger("BatchSize", default_value=d.batch_size),
        image_size=ParameterInteger("ImageSize", default_value=d.image_size),
        architecture=ParameterString(
            "Architecture", default_value=d.architecture, enum_values=list(ARCHITECTURES)
        ),
        # ImageNet weights for Train from the `weights` channel, or none (pipeline/weights.py).
        pretrained_weights=ParameterString(
            PRETRAINED_WEIGHTS_PARAMETER,
            default_value=DEFAULT_PRETRAINED_WEIGHTS,
            enum_values=list(PRETRAINED_CHOICES),
        ),
        source_uri=ParameterString("SourceUri", default_value=d.source_uri),
        file_list_uri=ParameterString("FileListUri", default_value=d.file_list_uri),
        per_class_cap=ParameterInteger("PerClassCap", default_value=d.per_class_cap),
        # Prepare fails when more of the selection than this is skipped as unusable (processing/
        # prepare.py --max-skip-fraction); transient read errors are retried, never skipped.
        max_skip_fraction=ParameterFloat("MaxSkipFraction", default_value=d.max_skip_fraction),
        accuracy_threshold=ParameterFloat("AccuracyThreshold", default_value=d.accuracy_threshold),
        # Smallest splits Train and Evaluate accept (they exit 2 below them; see train.py).
        min_train_images=ParameterInteger("MinTrainImages", default_value=d.min_train_images),
        min_validation_images=ParameterInteger(
            "MinValidationImages", default_value=d.min_validation_images
        ),
        min_test_images=ParameterInteger("MinTestImages", default_value=d.min_test_images),
        model_approval_status=ParameterString(
            "ModelApprovalStatus",
            default_value=d.model_approval_status,
            # Where the pipeline may not approve (prod), only PendingManualApproval; IAM enforces
            # it.
            enum_values=list(settings.approval_statuses),
        ),
    )


# --- Shared job settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class _JobSettings:
    """What every job step shares: keys, caching, retries, images, network, the session."""

    settings: Settings
    session: StagingSession
    kms_key: str | None
    processing_volume_key: str | None
    training_volume_key: str | None
    cache: CacheConfig
    job_retries: list
    processing_image: str
    # The SDK stages install_requirements.py under code/<job_name>/source/: named by content.
    helpers_prefix: str

    @classmethod
    def of(cls, settings: Settings, session: StagingSession) -> _JobSettings:
        kms_key = settings.kms_key or None
        return cls(
            settings=settings,
            session=session,
            kms_key=kms_key,
            # Volume keys only where no instance type the parameter allows would make
            # SageMaker refuse.
            processing_volume_key=volume_kms_key(kms_key, PROCESSING_INSTANCE_TYPES),
            training_volume_key=volume_kms_key(kms_key, TRAINING_INSTANCE_TYPES),
            cache=CacheConfig(enable_caching=True, expire_after=settings.cache_expire_after),
            job_retries=[
                StepRetryPolicy(
                    exception_types=[
                        StepExceptionTypeEnum.THROTTLING,
                        StepExceptionTypeEnum.SERVICE_FAULT,
                    ],
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
            ],
            processing_image=image_uri(
                settings.region,
                settings.framework_version,
                settings.py_version,
                settings.defaults.processing_instance_type,
                "training",
            ),
            helpers_prefix=f"sdk-{_sha256_file(install_requirements.__file__)[:16]}",
        )

    def execution_uri(self, *parts: str, top: str = "executions") -> Join:
        """s3://bucket/prefix/<top>/<execution id>/parts...

        `executions/` keeps what registered versions point at (the model, its evaluation);
        `intermediate/` holds what only the execution itself needs (shards, checkpoints),
        which the bucket's lifecycle rule expires.
        """
        head = self.settings.s3_uri(top)
        return Join(on="/", values=[head, ExecutionVariables.PIPELINE_EXECUTION_ID, *parts])

    def network_config(self, isolated: bool) -> NetworkConfig | None:
        settings = self.settings
        if not (settings.subnets or settings.network_isolation):
            return None
        return NetworkConfig(
            enable_network_isolation=isolated and settings.network_isolation,
            # None leaves VpcConfig out: isolation alone needs no VPC (empty Subnets is invalid).
            subnets=list(settings.subnets) or None,
            security_group_ids=list(settings.security_group_ids) or None,
        )

    def processor(
        self, job: str, params: _Parameters, isolated: bool = True, instance_count=None
    ) -> FrameworkProcessor:
        settings = self.settings
        return FrameworkProcessor(
            image_uri=self.processing_image,
            command=["python3"],
            role=settings.jobs_role_arn,
            instance_type=params.processing_instance_type,
            instance_count=instance_count or params.processing_instance_count,
            volume_size_in_gb=100,
            volume_kms_key=self.processing_volume_key,
            output_kms_key=self.kms_key,
            code_location=settings.s3_uri("code"),
            base_job_name=f"{settings.pipeline_name}-{job}",
            sagemaker_session=self.session,
            network_config=self.network_config(isolated),
        )


# --- 1. Prepare: download, filter, split and shard the bin images ----------------------------

PREPARED_SPLITS = ("train", "validation", "test", "report")


def _prepare_step(
    jobs: _JobSettings, params: _Parameters, processing_code: CodeArchive
) -> ProcessingStep:
    # Prepare reads the source bucket itself (through the VPC's S3 endpoint in VPC mode), so
    # it keeps its network; the jobs that get everything as inputs run isolated.
    prepare_args = jobs.processor("prepare", params, isolated=False).run(
        code="prepare.py",
        source_dir=processing_code.uri(jobs.settings),
        job_name=jobs.helpers_prefix,
        outputs=[
            ProcessingOutput(
                output_name=split,
                s3_output=ProcessingS3Output(
                    s3_uri=jobs.execution_uri(PREPARE, split, top="intermediate"),
                    local_path=f"{PROCESSING_OUTPUT}/{split}",
                    s3_upload_mode="EndOfJob",
                ),
            )
            for split in PREPARED_SPLITS
        ],
        arguments=_flags(
            {
                "--source": params.source_uri,
                "--file-list": params.file_list_uri,
                "--min-count": "1",
                "--max-count": "5",
                "--per-class-cap": params.per_class_cap.to_string(),
                "--max-skip-fraction": params.max_skip_fraction.to_string(),
                "--val-ratio": "0.1",
                "--test-ratio": "0.1",
                "--image-size": params.image_size.to_string(),
                "--shard-size": "512",
                "--workers": "64",
                "--output-dir": PROCESSING_OUTPUT,
            }
        ),
    )
    return ProcessingStep(
        name=PREPARE,
        **_step_text(PREPARE),
        step_args=prepare_args,
        cache_config=jobs.cache,
        retry_policies=jobs.job_retries,
    )


def _prepared(prepare: ProcessingStep, split: str):
    """Where Prepare wrote one split (a property resolved at run time)."""
    return prepare.properties.ProcessingOutputConfig.Outputs[split].S3Output.S3Uri


# --- 2. Train: fine-tune the CNN on the prepared shards --------------------------------------


def _train_step(
    jobs: _JobSettings,
    params: _Parameters,
    training_code: CodeArchive,
    prepare: ProcessingStep,
) -> TrainingStep:
    settings, session = jobs.settings, jobs.session
    trainer = _trainer(jobs, params, training_code)
    channels = [
        InputData(channel_name="train", data_source=_prepared(prepare, "train")),
        InputData(channel_name="validation", data_source=_prepared(prepare, "validation")),
        # weights/<PretrainedWeights>/: the ImageNet files, or (none) only a README.
        InputData(
            channel_name=WEIGHTS_CHANNEL,
            data_source=weights_channel_uri(settings, params.pretrained_weights),
        ),
    ]
    for (bucket, key), body in weights_staged_files(settings).items():
        session.stage(bucket, key, body)  # a channel must never be empty
    if settings.network_isolation:
        channels.append(
            InputData(channel_name=CODE_CHANNEL, data_source=training_code.uri(settings))
        )
    return TrainingStep(
        name=TRAIN,
        **_step_text(TRAIN),
        step_args=trainer.train(input_data_config=channels),
        cache_config=jobs.cache,
        retry_policies=jobs.job_retries,
    )


def _hyperparameters(settings: Settings, params: _Parameters, training_code: CodeArchive) -> dict:
    """What training/train.py reads (argv) plus what the PyTorch image's toolkit reads."""
    return {
        "epochs": params.epochs.to_string(),
        "batch_size": params.batch_size.to_string(),
        "learning_rate": params.learning_rate.to_string(),
        "arch": params.architecture,
        "image_size": params.image_size.to_string(),
        "pretrained": params.pretrained_weights,
        "seed": "42",
        "patience": "5",
        "compile": "false",
        "checkpoint_dir": "/opt/ml/checkpoints",
        "min_train_images": params.min_train_images.to_string(),
        "min_validation_images": params.min_validation_images.to_string(),
        # The PyTorch image's training toolkit fetches and runs our own staged archive, so the
        # SDK has no driver files to upload under a timestamped key. A network-isolated job cannot
        # reach S3 itself: SageMaker delivers the archive as the `code` channel instead (as SDK
        # v2's estimators do), and the toolkit extracts it from there.
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": (
            f"{CODE_CHANNEL_DIR}/{training_code.filename}"
            if settings.network_isolation
            else training_code.uri(settings)
        ),
        "sagemaker_region": settings.region,
        "sagemaker_container_log_level": "20",
        # torchrun on every run: one rank per GPU on each of the TrainingInstanceCount hosts
        # chosen at run time (a single-GPU host runs one rank, which costs nothing).
        "sagemaker_torch_distributed_enabled": "true",
    }


def _trainer(jobs: _JobSettings, params: _Parameters, training_code: CodeArchive) -> ModelTrainer:
    """The training job: image, compute, limits, output, network, metrics, checkpoints."""
    settings = jobs.settings
    trainer = ModelTrainer(
        training_image=image_uri(
            settings.region,
            settings.framework_version,
            settings.py_version,
            settings.defaults.training_instance_type,
            "training",
        ),
        # ModelTrainer looks up anything not shaped like a role ARN in IAM; a CloudFormation
        # placeholder such as ${JobRoleArn} is set on the trainer after construction instead.
        role=_ROLE_ARN_SHAPE
        if not _is_role_arn(settings.jobs_role_arn)
        else settings.jobs_role_arn,
        base_job_name=f"{settings.pipeline_name}-train",
        sagemaker_session=jobs.session,
        compute=Compute(
            instance_type=params.training_instance_type,
            instance_count=params.training_instance_count,
            volume_size_in_gb=100,
            volume_kms_key_id=jobs.training_volume_key,
            enable_managed_spot_training=settings.spot,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=settings.max_training_seconds,
            max_wait_time_in_seconds=settings.max_spot_wait_seconds if settings.spot else None,
        ),
        output_data_config=OutputDataConfig(
            s3_output_path=jobs.execution_uri(TRAIN), kms_key_id=jobs.kms_key
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
        hyperparameters=_hyperparameters(settings, params, training_code),
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
                s3_uri=jobs.execution_uri("checkpoints", top="intermediate"),
                local_path="/opt/ml/checkpoints",
            )
        )
    return trainer


def _model_artifact(train: TrainingStep):
    return train.properties.ModelArtifacts.S3ModelArtifacts


# --- 3. Evaluate: judge the packaged model on the held-out test split ------------------------


def _evaluate_step(
    jobs: _JobSettings,
    params: _Parameters,
    processing_code: CodeArchive,
    prepare: ProcessingStep,
    train: TrainingStep,
) -> ProcessingStep:
    evaluation_report = PropertyFile(
        name=EVALUATION_REPORT, output_name="evaluation", path="evaluation.json"
    )
    # One instance: it judges one model on the whole test split and writes one evaluation.json.
    evaluate_args = jobs.processor("evaluate", params, instance_count=1).run(
        code="evaluate.py",
        source_dir=processing_code.uri(jobs.settings),
        job_name=jobs.helpers_prefix,
        inputs=[
            _s3_input("model", _model_artifact(train), "/opt/ml/processing/model"),
            _s3_input("test", _prepared(prepare, "test"), "/opt/ml/processing/test"),
            # Every Prepare host's report: merged into one stats.json, and the baseline's
            # input statistics (JPEG sizes of the test split) for monitoring.
            _s3_input("report", _prepared(prepare, "report"), "/opt/ml/processing/report"),
        ],
        outputs=[
            ProcessingOutput(
                output_name="evaluation",
                s3_output=ProcessingS3Output(
                    s3_uri=jobs.execution_uri(EVALUATE),
                    local_path="/opt/ml/processing/evaluation",
                    s3_upload_mode="EndOfJob",
                ),
            )
        ],
        arguments=_flags(
            {
                "--model-dir": "/opt/ml/processing/model",
                "--test-dir": "/opt/ml/processing/test",
                "--report-dir": "/opt/ml/processing/report",
                "--output-dir": "/opt/ml/processing/evaluation",
                "--min-test-images": params.min_test_images.to_string(),
            }
        ),
    )
    return ProcessingStep(
        name=EVALUATE,
        **_step_text(EVALUATE),
        step_args=evaluate_args,
        property_files=[evaluation_report],
        cache_config=jobs.cache,
        retry_policies=jobs.job_retries,
    )


def _accuracy(evaluate: ProcessingStep) -> JsonGet:
    """Evaluate's test accuracy, read from its evaluation.json at run time."""
    (report,) = evaluate.property_files
    return JsonGet(step_name=EVALUATE, property_file=report, json_path=ACCURACY_JSON_PATH)


# --- 4. QualityGate: register and deploy only a model at least as good as the threshold ------


def _gate_step(params: _Parameters, evaluate: ProcessingStep, *, if_steps: list) -> ConditionStep:
    accuracy = _accuracy(evaluate)
    gate_failed = FailStep(
        name=GATE_FAILED,
        **_step_text(GATE_FAILED),
        error_message=Join(
            on=" ",
            values=[
                "Test accuracy",
                accuracy,
                "is below AccuracyThreshold",
                params.accuracy_threshold,
            ],
        ),
    )
    return ConditionStep(
        name=GATE,
        **_step_text(GATE),
        conditions=[ConditionGreaterThanOrEqualTo(left=accuracy, right=params.accuracy_threshold)],
        if_steps=if_steps,
        else_steps=[gate_failed],
    )


# --- 5. Register: a model package version in the group ---------------------------------------


def _register_step(
    jobs: _JobSettings, params: _Parameters, train: TrainingStep, evaluate: ProcessingStep
) -> ModelStep:
    evaluation_uri = Join(
        on="/",
        values=[
            evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri,
            "evaluation.json",
        ],
    )
    return ModelStep(
        name=REGISTER,
        **_step_text(REGISTER),
        step_args=_register_args(
            jobs.settings,
            jobs.session,
            model_data=_model_artifact(train),
            approval_status=params.model_approval_status,
            architecture=params.architecture,
            evaluation_uri=evaluation_uri,
        ),
        retry_policies=jobs.job_retries[:1],
    )


# --- 6. Deploy: the deployer Lambda deploys Approved packages, otherwise says why not --------


def _deploy_step(settings: Settings, session: StagingSession, register: ModelStep) -> LambdaStep:
    # No endpoint name goes in: each stage's deployer serves the one endpoint cdk.json names
    # for it, and says which in its `endpoint_name` output.
    return LambdaStep(
        name=DEPLOY,
        **_step_text(DEPLOY),
        lambda_func=Lambda(function_arn=settings.deployer_function_arn, session=session),
        inputs={
            "model_package_arn": register.properties.ModelPackageArn,
        },
        outputs=[
            LambdaOutput(output_name="status", output_type=LambdaOutputTypeEnum.String),
            LambdaOutput(output_name="endpoint_name", output_type=LambdaOutputTypeEnum.String),
        ],
    )


def _step_text(step: str) -> dict:
    display_name, description = STEP_TEXT[step]
    return {"display_name": display_name, "description": description}


def stage_files(settings: Settings) -> Path:
    """Build the definition and write every file it points at; returns the staging dir.

    The result holds `<bucket>/<key>` for each file (code archives, runproc.sh, ...).
    """
    write_staged(build(settings).staged, settings.staging_dir)
    return settings.staging_dir


def _tracking(settings: Settings) -> dict:
    """Where executions are recorded: the configured managed MLflow server (the pipeline's
    experiment in it, a run per execution), else SageMaker Experiments (an experiment named
    after the pipeline, a run group per execution, a run per job)."""
    from sagemaker.core.shapes import MlflowConfig
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.mlops.workflow.pipeline_experiment_config import PipelineExperimentConfig

    if settings.mlflow_tracking_server_arn:
        return {
            "pipeline_experiment_config": None,
            "mlflow_config": MlflowConfig(
                mlflow_resource_arn=settings.mlflow_tracking_server_arn,
                mlflow_experiment_name=settings.pipeline_name,
            ),
        }
    return {
        "pipeline_experiment_config": PipelineExperimentConfig(
            ExecutionVariables.PIPELINE_NAME, ExecutionVariables.PIPELINE_EXECUTION_ID
        )
    }


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
    from sagemaker.core.workflow.functions import Join

    image = image_uri(
        settings.region,
        settings.framework_version,
        settings.py_version,
        settings.inference_instance_types[0],
        "inference",
    )
    # evaluation_uri joins Evaluate's output folder and "evaluation.json": baseline.json is
    # its neighbour.
    baseline_uri = Join(on="/", values=[*evaluation_uri.values[:-1], "baseline.json"])
    report_uri = Join(on="/", values=[*evaluation_uri.values[:-1], "report.html"])
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
                        # One model-server worker using every vCPU (inference.py sizes its
                        # threads to it), idle OpenMP threads asleep rather than spinning:
                        # TorchServe loads torch before inference.py could set the policy.
                        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
                        "OMP_WAIT_POLICY": "PASSIVE",
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
        # The monitoring baseline Evaluate writes beside evaluation.json (processing/baseline.py):
        # stored with the version, so a schedule watching it compares against its own test
        # split. Input and prediction statistics are what Model Monitor calls data quality.
        "DriftCheckBaselines": {
            "ModelDataQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": baseline_uri,
                }
            }
        },
        # The Architecture this execution trained (resolved per execution, like the status),
        # and Evaluate's report page (processing/report_page.py), so an approver looking at
        # the version finds it. Values: at most 256 of [letters digits space _.:/=+-@].
        "CustomerMetadataProperties": {
            "architecture": architecture,
            "evaluation_report": report_uri,
        },
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
