"""The instance types each part of bincount may run on, and the rules SageMaker applies to them.

One place for what the pipeline parameters allow (their EnumValues, so Studio and the API refuse
anything else before a job starts), and for SageMaker's rule that an instance type with local
NVMe instance storage takes no KMS key for its storage volume: CreateTrainingJob,
CreateProcessingJob and CreateEndpointConfig are refused with one. The rule is the SDK's own
(`sagemaker.core.common_utils.instance_supports_kms`); tests/pipeline/test_instance_types.py
checks this copy against it for every type in botocore's enums. It is copied, not imported,
because the CDK app and the deployer's settings need it without importing the SDK.
"""

from __future__ import annotations

from collections.abc import Iterable

# Processing (Prepare, Evaluate): CPU types with EBS storage only, so every one of them takes
# the project's KMS key for its volume.
PROCESSING_INSTANCE_TYPES = (
    "ml.m5.large",
    "ml.m5.xlarge",
    "ml.m5.2xlarge",
    "ml.m5.4xlarge",
    "ml.m5.12xlarge",
    "ml.m5.24xlarge",
    "ml.c5.xlarge",
    "ml.c5.2xlarge",
    "ml.c5.4xlarge",
    "ml.c5.9xlarge",
    "ml.c5.18xlarge",
    "ml.r5.large",
    "ml.r5.xlarge",
    "ml.r5.2xlarge",
    "ml.r5.4xlarge",
)

# Training: GPU types and their GPUs per instance (torchrun starts one rank per GPU). Most have
# NVMe instance storage (g4dn, g5, g6, p4d, p5), which SageMaker encrypts at rest in hardware
# and which refuses a KMS volume key; so Train's volume carries no key (outputs still do).
TRAINING_GPUS = {
    "ml.g4dn.xlarge": 1,
    "ml.g4dn.2xlarge": 1,
    "ml.g4dn.12xlarge": 4,
    "ml.g5.xlarge": 1,
    "ml.g5.2xlarge": 1,
    "ml.g5.12xlarge": 4,
    "ml.g5.48xlarge": 8,
    "ml.g6.xlarge": 1,
    "ml.g6.12xlarge": 4,
    "ml.p3.2xlarge": 1,
    "ml.p3.8xlarge": 4,
    "ml.p3.16xlarge": 8,
    "ml.p4d.24xlarge": 8,
    "ml.p5.48xlarge": 8,
}
TRAINING_INSTANCE_TYPES = tuple(TRAINING_GPUS)

# Families without an EBS volume, besides every family with a "d" (c5d, g4dn, p4d, ...).
_NO_EBS_FAMILIES = ("g5", "g6", "g7e", "p5", "p6-b200", "trn1", "trn2")


def accepts_volume_kms_key(instance_type: str) -> bool:
    """False for types with local NVMe storage: SageMaker refuses a KMS key for their volume."""
    parts = instance_type.split(".")
    if len(parts) == 3 and parts[0] == "ml":
        parts = parts[1:]
    if len(parts) != 2 or not parts[0]:
        raise ValueError(f"not a SageMaker instance type: {instance_type!r}")
    family = parts[0]
    return "d" not in family and not family.startswith(_NO_EBS_FAMILIES)


def volume_kms_key(key: str | None, instance_types: Iterable[str]) -> str | None:
    """`key` when every type a job may run on takes a volume key, else None.

    The instance type is a pipeline parameter, chosen per execution: the key can only be in the
    definition if no allowed choice would make SageMaker refuse the job.
    """
    if not key:
        return None
    return key if all(accepts_volume_kms_key(t) for t in instance_types) else None


def is_accelerated(instance_type: str) -> bool:
    """GPU / Inferentia / Trainium types: they serve with the GPU inference image."""
    return instance_type.startswith(("ml.g", "ml.p", "ml.inf", "ml.trn"))


# Where a registered version may serve besides the endpoint's own type, by image kind.
_CPU_INFERENCE = ("ml.m5.large", "ml.m5.xlarge", "ml.c5.xlarge", "ml.c5.2xlarge")
_GPU_INFERENCE = ("ml.g4dn.xlarge", "ml.g5.xlarge")


def inference_instance_types(endpoint_instance_type: str) -> tuple[str, ...]:
    """The endpoint's type first, then the other types of its kind (CPU or accelerated): the
    registered image is the one for the endpoint's kind and serves only on that kind."""
    others = _GPU_INFERENCE if is_accelerated(endpoint_instance_type) else _CPU_INFERENCE
    return (endpoint_instance_type, *(t for t in others if t != endpoint_instance_type))
