"""Promotion: an Approved staging version whose smoke test passed is copied into the prod
group as PendingManualApproval, once; anything else is refused with the reason. Every
request is strictly validated (test_deployer_fakes). The last test runs the whole path with
both stages' deployers: approve -> staging -> smoke test -> promote -> approve -> prod."""

from __future__ import annotations

import json

import pytest
from test_deployer_fakes import ACCOUNT, FakeAutoscaling, FakeRuntime, FakeSageMaker, FakeSNS
from test_deployer_reconcile import Clock, endpoint_event, package_event

from infra.deployer_lambda.deployer import Clients, Config, handle
from infra.deployer_lambda.promotion import (
    PROMOTED_FROM,
    PromotionConfig,
    PromotionError,
    promote,
    promotion_request,
)

STAGING, PROD = "bincount-prod-staging", "bincount-prod"
SMOKE = "bincount:smoke-test:staging"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:bincount-prod"


@pytest.fixture
def sm():
    return FakeSageMaker(group=STAGING)


@pytest.fixture
def sns():
    return FakeSNS()


@pytest.fixture
def clients(sm, sns):
    return Clients(sagemaker=sm, autoscaling=None, sns=sns)


@pytest.fixture
def config():
    return PromotionConfig(
        source_stage="staging",
        source_group=STAGING,
        target_stage="prod",
        target_group=PROD,
        topic_arn=TOPIC,
    )


def staging_version(sm, status: str = "Approved", smoke: str | None = "passed") -> str:
    arn = sm.register(status)
    sm.packages[arn]["ModelPackageDescription"] = "resnet34, 224 px, accuracy 0.71"
    sm.packages[arn]["ModelMetrics"] = {
        "ModelQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": "s3://b/evaluation.json"}
        }
    }
    sm.packages[arn]["CustomerMetadataProperties"] = {
        "trained-by": "pipeline-run-7",
        "bincount:rollout-failed:bincount-dev": "2025-01-01T00:00:00Z",
        "bincount:smoke-p50-ms:staging": "120",
        **({SMOKE: smoke} if smoke else {}),
    }
    return arn


def test_a_passed_version_is_registered_into_prod_pending_approval_with_its_spec(
    sm, sns, clients, config
):
    arn = staging_version(sm)

    result = promote({"version": 1}, clients, config)

    copy = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/{PROD}/1"
    assert result == {
        "status": "promoted",
        "source_model_package_arn": arn,
        "model_package_arn": copy,
        "target_group": PROD,
    }
    package = sm.packages[copy]
    assert package["ModelPackageGroupName"] == PROD
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["CustomerMetadataProperties"] == {
        "trained-by": "pipeline-run-7",
        PROMOTED_FROM: arn,
    }
    source = sm.packages[arn]
    assert package["ModelMetrics"] == source["ModelMetrics"]
    assert package["ModelPackageDescription"] == source["ModelPackageDescription"]
    (container,) = package["InferenceSpecification"]["Containers"]
    (original,) = source["InferenceSpecification"]["Containers"]
    assert container == {
        k: v for k, v in original.items() if k not in {"ImageDigest", "ModelDataETag"}
    }
    assert package["InferenceSpecification"]["SupportedContentTypes"] == ["image/jpeg"]
    (message,) = sns.messages
    assert message["Subject"] == (
        "[prod] version 1 waiting for approval in prod (staging version 1)"
    )
    assert copy in message["Message"] and arn in message["Message"]
    assert "--model-approval-status Approved" in message["Message"]


def test_promoting_again_returns_the_copy_without_registering_or_notifying(
    sm, sns, clients, config
):
    arn = staging_version(sm)
    first = promote({"model_package_arn": arn}, clients, config)
    sm.set_status(first["model_package_arn"], "Rejected")  # whatever became of it

    again = promote({"version": 1}, clients, config)

    assert again == {**first, "status": "already_promoted"}
    assert [op for _, op, _ in sm.log].count("CreateModelPackage") == 1
    assert len(sns.messages) == 1


def test_two_promotions_at_once_register_one_copy(sm, config):
    arn = staging_version(sm)
    request = promotion_request(sm.describe_model_package(ModelPackageName=arn), config)
    first = sm.create_model_package(**request)
    assert sm.create_model_package(**request) == first


@pytest.mark.parametrize(
    ("status", "smoke", "message"),
    [
        ("Approved", None, "no smoke-test result on staging yet"),
        ("Approved", "failed: p50 latency 2500 ms over the 2000 ms budget", "failed: p50 latency"),
        ("PendingManualApproval", "passed", "is PendingManualApproval, not Approved"),
        ("Rejected", "passed", "is Rejected, not Approved"),
    ],
)
def test_anything_but_an_approved_passed_version_is_refused(
    sm, sns, clients, config, status, smoke, message
):
    staging_version(sm, status, smoke)
    with pytest.raises(PromotionError, match=message):
        promote({"version": 1}, clients, config)
    assert [op for _, op, _ in sm.log if op == "CreateModelPackage"] == []
    assert sns.messages == []


def test_a_version_of_another_group_is_refused(sm, clients, config):
    other = sm.register("Approved", group="bincount-dev")
    sm.packages[other]["CustomerMetadataProperties"] = {SMOKE: "passed"}
    with pytest.raises(PromotionError, match="belongs to group 'bincount-dev'"):
        promote({"model_package_arn": other}, clients, config)


@pytest.mark.parametrize(
    ("event", "error", "message"),
    [
        ({"version": 9}, PromotionError, "has no version 9"),
        (
            {"model_package_arn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/x/9"},
            PromotionError,
            "does not exist",
        ),
        ({}, ValueError, "expected"),
        ({"version": 1, "model_package_arn": "arn"}, ValueError, "expected"),
        ({"version": "1"}, ValueError, "positive integer"),
        ({"version": True}, ValueError, "positive integer"),
        ([1], ValueError, "JSON object"),
    ],
)
def test_bad_events_say_what_is_wrong(sm, clients, config, event, error, message):
    staging_version(sm)
    with pytest.raises(error, match=message):
        promote(event, clients, config)


def test_the_promoter_reads_its_environment():
    env = {
        "SOURCE_STAGE": "staging",
        "SOURCE_GROUP": STAGING,
        "TARGET_STAGE": "prod",
        "TARGET_GROUP": PROD,
    }
    config = PromotionConfig.from_env({**env, "TAGS": json.dumps({"project": "bincount"})})
    assert (config.source_group, config.target_group, config.topic_arn) == (STAGING, PROD, "")
    with pytest.raises(ValueError, match="TARGET_GROUP is required"):
        PromotionConfig.from_env({k: v for k, v in env.items() if k != "TARGET_GROUP"})
    with pytest.raises(ValueError, match="both"):
        PromotionConfig.from_env({**env, "TARGET_GROUP": STAGING})


# -- the whole path -----------------------------------------------------------------------------


def stage_config(endpoint: str, group: str, stage: str, next_stage: str = "") -> Config:
    return Config(
        endpoint_name=endpoint,
        model_role_arn=f"arn:aws:iam::{ACCOUNT}:role/bincount-model",
        data_capture_uri="s3://bincount-data/data-capture",
        model_package_group=group,
        wait_seconds=0,
        stage=stage,
        next_stage=next_stage,
        serverless_memory_mb=2048 if next_stage else 0,
        topic_arn=TOPIC,
        smoke_test=bool(next_stage),
    )


def settle(sm, endpoint: str, clients, config) -> dict:
    result = {}
    while sm.endpoint(endpoint)["EndpointStatus"] != "InService":
        sm.finish(endpoint)
        result = handle(endpoint_event(name=endpoint), clients, config)
    return result


@pytest.mark.parametrize("latency_ms", [100, 5000])
def test_approve_staging_smoke_test_promote_approve_prod(sm, sns, config, latency_ms):
    clock = Clock()
    runtime = FakeRuntime(sm, clock, latency_ms=latency_ms)
    clients = Clients(
        sagemaker=sm,
        autoscaling=FakeAutoscaling(sm.log),
        sleep=clock.sleep,
        clock=clock,
        runtime=runtime,
        sns=sns,
    )
    staging = stage_config(STAGING, STAGING, "staging", "prod")
    prod = stage_config(PROD, PROD, "prod")
    arn = sm.register("PendingManualApproval")
    sm.set_status(arn, "Approved")

    handle(package_event(arn, "Approved", STAGING), clients, staging)
    smoke = settle(sm, STAGING, clients, staging)["smoke_test"]

    if latency_ms > staging.smoke_p50_ms:
        assert smoke.startswith("failed: p50 latency")
        with pytest.raises(PromotionError, match="smoke test on staging failed"):
            promote({"version": 1}, clients, config)
        assert PROD not in sm.endpoints
        return

    assert smoke == "passed"
    copy = promote({"version": 1}, clients, config)["model_package_arn"]
    waiting = handle(package_event(copy, "PendingManualApproval", PROD), clients, prod)
    assert waiting["status"] == "no_approved_version"  # prod waits for its approver

    sm.set_status(copy, "Approved")
    assert handle(package_event(copy, "Approved", PROD), clients, prod)["status"] == "created"
    settle(sm, PROD, clients, prod)
    assert sm.serving_version(PROD) == copy
    assert sm.serving_version(STAGING) == arn
    subjects = [m["Subject"] for m in sns.messages]
    assert subjects == [
        f"[staging] {STAGING}: version 1 is live",
        f"[staging] {STAGING}: version 1 passed its smoke test, ready to promote to prod",
        "[prod] version 1 waiting for approval in prod (staging version 1)",
        f"[prod] {PROD}: version 1 is live",
    ]


def test_the_lambda_loads_the_modules_top_level_beside_each_other():
    """Lambda imports `deployer` and `promotion` by bare name from the asset's root."""
    import subprocess
    import sys
    from pathlib import Path

    asset = Path(__file__).resolve().parents[2] / "infra" / "deployer_lambda"
    code = (
        "import deployer, promotion, notify, smoke; "
        "assert promotion.deployer is deployer and deployer.notify is notify; "
        "assert deployer.smoke is smoke and len(smoke.photos()) == 3; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=asset, capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
