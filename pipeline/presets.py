"""Named sets of pipeline parameter values, each with what one execution costs.

`python -m pipeline start --preset abid-full` starts the pipeline with a preset's values
(`--param` still overrides any of them); `python -m pipeline presets` lists them with their
estimates. The estimate is arithmetic on the figures below, each measured or cited, so that
a reader can check it and redo it for other values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# --- the figures the estimates rest on --------------------------------------------------------

# Images of counts 1..5 in the whole Amazon Bin Image Dataset (536,434 images): the ABID
# challenge's 0..5 subset is ~481k images (the best published result trained on it); bins
# with no item are ~2% of the dataset, so ~470k remain for counts 1..5.
ABID_COUNTS_1_TO_5 = 470_000
# Bytes of one image in Prepare's shards: raw RGB at the image size (ARCHITECTURE.md).
SHARD_BYTES_PER_PIXEL = 3
# ResNet-50 mixed-precision training on one V100: 1,200 img/s; 8 GPUs: 6.93x one
# (NVIDIA DeepLearningExamples, PyTorch ResNet50 v1.5 README, "Training performance").
RESNET50_V100_AMP_IMAGES_PER_S = 1200.0
MULTI_GPU_EFFICIENCY = 6.93 / 8
# Relative to a V100 (assumptions, stated: tensor-core fp16 and memory bandwidth put an
# A10G near 0.7x and a T4 near 0.3x of a V100 for convolutional training).
GPU_SPEED_VS_V100 = {"V100": 1.0, "A10G": 0.7, "T4": 0.3, "A100": 2470 / 1200}
# ResNet-34 trains ~1.3x as many images/s as ResNet-50 (3.6 vs 4.1 GFLOPs, and no
# bandwidth-bound 1x1 bottlenecks); ResNet-18 ~2x.
ARCH_SPEED_VS_RESNET50 = {"resnet18": 2.0, "resnet34": 1.3, "resnet50": 1.0}
# Training instances: GPU model and count.
TRAINING_GPUS = {
    "ml.g4dn.xlarge": ("T4", 1),
    "ml.g4dn.12xlarge": ("T4", 4),
    "ml.g5.xlarge": ("A10G", 1),
    "ml.g5.12xlarge": ("A10G", 4),
    "ml.g5.48xlarge": ("A10G", 8),
    "ml.p3.2xlarge": ("V100", 1),
    "ml.p3.8xlarge": ("V100", 4),
    "ml.p3.16xlarge": ("V100", 8),
    "ml.p4d.24xlarge": ("A100", 8),
}
# SageMaker on-demand list prices, USD an hour, us-east-1 (aws.amazon.com/sagemaker/pricing,
# training and processing): check your region's; managed spot training is typically 60-70%
# less for the Train step.
HOURLY_USD = {
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.g4dn.xlarge": 0.736,
    "ml.g4dn.12xlarge": 4.89,
    "ml.g5.xlarge": 1.408,
    "ml.g5.12xlarge": 7.09,
    "ml.p3.2xlarge": 3.825,
    "ml.p3.8xlarge": 14.688,
}
# Prepare, one ml.m5.2xlarge host, images/s fetched, decoded and sharded from S3 in the same
# region (BENCHMARKS.md, Prepare: measured on 2 cores behind a 20 ms S3 stand-in; an 8-vCPU
# host is taken at that rate, not more).
PREPARE_IMAGES_PER_S_PER_HOST = 300.0
# SageMaker's File-mode copy of the channels onto the instance before the first step.
FILE_MODE_MB_PER_S = 300.0
# Job start-up (instance provisioning, image pull) per SageMaker job.
JOB_STARTUP_MINUTES = 5.0
# Evaluate on a CPU processing instance: ResNet-34 at 224 px, images/s (measured order of
# magnitude for an 8-vCPU host: ~4x the 2-core figure in BENCHMARKS.md's serving section).
EVALUATE_IMAGES_PER_S = 120.0


@dataclass(frozen=True)
class Preset:
    description: str
    parameters: dict[str, str]
    images: int  # the images Prepare is expected to deliver
    notes: list[str] = field(default_factory=list)


PRESETS: dict[str, Preset] = {
    "abid-full": Preset(
        description=(
            "The whole Amazon Bin Image Dataset, counts 1-5, as the best published result "
            "trained it (ResNet-34 at 224 px, ImageNet weights)"
        ),
        parameters={
            "FileListUri": "scan",
            "PerClassCap": "0",
            "ProcessingInstanceType": "ml.m5.2xlarge",
            "ProcessingInstanceCount": "8",
            "TrainingInstanceType": "ml.g5.12xlarge",
            "TrainingInstanceCount": "1",
            "Architecture": "resnet34",
            "PretrainedWeights": "imagenet",
            "ImageSize": "224",
            "Epochs": "20",
            # Per GPU: 4 x 64 = 256 a step; the learning rate grows with the square root of
            # the batch from the default 1e-3 at 64 (AdamW).
            "BatchSize": "64",
            "LearningRate": "0.002",
        },
        images=ABID_COUNTS_1_TO_5,
        notes=[
            "stage the ImageNet weights once first: python -m pipeline weights stage --env ENV",
            "the train and validation shards are copied onto the instance's NVMe storage "
            "(3.8 TB on ml.g5.12xlarge) before the first step",
        ],
    ),
}


@dataclass(frozen=True)
class Estimate:
    prepare_minutes: float
    train_minutes: float
    evaluate_minutes: float
    usd: float
    shard_gb: float

    @property
    def minutes(self) -> float:
        return self.prepare_minutes + self.train_minutes + self.evaluate_minutes


def estimate(preset: Preset) -> Estimate:
    """Wall time and on-demand cost of one execution of `preset`, from the figures above."""
    p = preset.parameters
    images = preset.images
    size = int(p["ImageSize"])
    shard_gb = images * size * size * SHARD_BYTES_PER_PIXEL / 1e9

    hosts = int(p["ProcessingInstanceCount"])
    prepare = JOB_STARTUP_MINUTES + images / (PREPARE_IMAGES_PER_S_PER_HOST * hosts) / 60

    gpu, gpus = TRAINING_GPUS[p["TrainingInstanceType"]]
    gpus *= int(p["TrainingInstanceCount"])
    scaling = MULTI_GPU_EFFICIENCY if gpus > 1 else 1.0
    # Image size scales the work per image with the pixel count (224 px is the reference).
    rate = (
        RESNET50_V100_AMP_IMAGES_PER_S
        * GPU_SPEED_VS_V100[gpu]
        * ARCH_SPEED_VS_RESNET50[p["Architecture"]]
        * gpus
        * scaling
        * (224 / size) ** 2
    )
    trained = images * 0.8 * int(p["Epochs"])
    validated = images * 0.1 * int(p["Epochs"]) / 3  # forward only: ~3x faster
    copy = shard_gb * 0.9 * 1000 / FILE_MODE_MB_PER_S / 60
    train = JOB_STARTUP_MINUTES + copy + (trained + validated) / rate / 60
    evaluate = JOB_STARTUP_MINUTES + images * 0.1 / EVALUATE_IMAGES_PER_S / 60

    usd = (
        prepare / 60 * hosts * HOURLY_USD[p["ProcessingInstanceType"]]
        + train / 60 * int(p["TrainingInstanceCount"]) * HOURLY_USD[p["TrainingInstanceType"]]
        + evaluate / 60 * HOURLY_USD[p["ProcessingInstanceType"]]
    )
    return Estimate(prepare, train, evaluate, usd, shard_gb)


def describe(name: str) -> str:
    preset = PRESETS[name]
    est = estimate(preset)
    values = " ".join(f"{k}={v}" for k, v in preset.parameters.items())
    lines = [
        f"{name}: {preset.description}",
        f"  parameters: {values}",
        f"  expected images: ~{preset.images:,} ({est.shard_gb:.0f} GB of shards)",
        f"  estimate: Prepare {_minutes(est.prepare_minutes)}, Train "
        f"{_minutes(est.train_minutes)}, Evaluate {_minutes(est.evaluate_minutes)}: about "
        f"{_minutes(est.minutes)} and ${math.ceil(est.usd)} on demand (us-east-1 list prices; "
        "spot training is cheaper; see pipeline/presets.py for every figure used)",
    ]
    lines += [f"  note: {note}" for note in preset.notes]
    return "\n".join(lines)


def _minutes(value: float) -> str:
    return f"{value:.0f} min" if value < 90 else f"{value / 60:.1f} h"


def overrides(name: str | None, params: list[str]) -> list[str]:
    """NAME=VALUE pairs: the preset's (if any), then `params`, which win."""
    if name is None:
        return list(params)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return [f"{k}={v}" for k, v in PRESETS[name].parameters.items()] + list(params)
