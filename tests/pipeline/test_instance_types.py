"""pipeline/instance_types.py against the definitions it copies: the SDK's KMS-volume rule and
botocore's instance-type enums (what CreateTrainingJob, CreateProcessingJob and
CreateEndpointConfig accept)."""

from __future__ import annotations

import botocore.session
import pytest
from sagemaker.core.common_utils import instance_supports_kms

from pipeline.images import repository
from pipeline.instance_types import (
    PROCESSING_INSTANCE_TYPES,
    TRAINING_GPUS,
    TRAINING_INSTANCE_TYPES,
    accepts_volume_kms_key,
    inference_instance_types,
    volume_kms_key,
)

SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")


def enum(shape: str) -> list[str]:
    return SAGEMAKER.shape_for(shape).enum


ALL_TYPES = sorted(
    {
        *enum("TrainingInstanceType"),
        *enum("ProcessingInstanceType"),
        *enum("ProductionVariantInstanceType"),
    }
)


def test_kms_volume_rule_is_the_sdks_for_every_type_sagemaker_knows():
    assert len(ALL_TYPES) > 100
    differ = [t for t in ALL_TYPES if accepts_volume_kms_key(t) != instance_supports_kms(t)]
    assert not differ


def test_allowed_types_are_ones_sagemaker_accepts():
    assert set(PROCESSING_INSTANCE_TYPES) <= set(enum("ProcessingInstanceType"))
    assert set(TRAINING_INSTANCE_TYPES) <= set(enum("TrainingInstanceType"))
    for endpoint_type in ("ml.m5.large", "ml.c5.xlarge", "ml.g4dn.xlarge", "ml.g5.xlarge"):
        types = inference_instance_types(endpoint_type)
        assert types[0] == endpoint_type
        assert set(types) <= set(enum("ProductionVariantInstanceType"))
        assert types[0] in enum("TransformInstanceType")


def test_training_types_are_all_gpu_types():
    assert all(n >= 1 for n in TRAINING_GPUS.values())
    assert all(t.startswith(("ml.g", "ml.p")) for t in TRAINING_INSTANCE_TYPES)


def test_volume_key_is_left_off_when_any_allowed_type_refuses_it():
    key = "arn:aws:kms:us-east-1:111122223333:key/k"
    assert volume_kms_key(key, ["ml.m5.large", "ml.c5.xlarge"]) == key
    assert volume_kms_key(key, ["ml.m5.large", "ml.g4dn.xlarge"]) is None
    assert volume_kms_key("", ["ml.m5.large"]) is None
    with pytest.raises(ValueError, match="not a SageMaker instance type"):
        accepts_volume_kms_key("g4dn")


@pytest.mark.parametrize(
    ("region", "account"),
    [
        ("us-east-1", "763104351884"),
        ("eu-south-2", "503227376785"),  # opt-in regions host their own copies
        ("il-central-1", "780543022126"),
        ("us-gov-west-1", "442386744353"),
    ],
)
def test_image_repositories_come_from_the_sdks_config(region, account):
    repo = repository(region, "2.6.0", "training")
    assert (repo.account, repo.name) == (account, "pytorch-training")
    assert repo.arn("aws") == f"arn:aws:ecr:{region}:{account}:repository/pytorch-training"
    assert repository(region, "2.6.0", "inference").name == "pytorch-inference"


def test_an_unknown_region_is_refused_by_name():
    with pytest.raises(
        ValueError, match=r"no pytorch 2\.6\.0 training image in region 'xx-nowhere-1'"
    ):
        repository("xx-nowhere-1", "2.6.0", "training")
