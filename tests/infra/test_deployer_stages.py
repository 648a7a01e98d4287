"""The deployer per stage: serverless endpoints, the env's tags on everything it creates, and
the new configuration (stage, serverless, tags, topic, smoke test) read from the environment.
Against the scripted SageMaker of test_deployer_fakes.py (every request strictly validated)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_deployer_fakes import ACCOUNT, FakeAutoscaling, FakeSageMaker
from test_deployer_reconcile import Clock, delete_event, endpoint_event, package_event, step

from infra.deployer_lambda import deployer
from infra.deployer_lambda.deployer import (
    PACKAGE_TAG,
    ROLLOUT_FAILED_PREFIX,
    Clients,
    Config,
    DeployError,
    handle,
    resource_name,
)

ENDPOINT = "bincount-dev"
GROUP = "bincount-dev"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234"
TAGS = {"project": "bincount", "environment": "dev", "cost-centre": "ml-42"}


@pytest.fixture
def sm():
    return FakeSageMaker(group=GROUP)


@pytest.fixture
def autoscaling(sm):
    return FakeAutoscaling(sm.log)


@pytest.fixture
def clients(sm, autoscaling):
    clock = Clock()
    return Clients(sagemaker=sm, autoscaling=autoscaling, sleep=clock.sleep, clock=clock)


@pytest.fixture
def instance_config():
    return Config(
        endpoint_name=ENDPOINT,
        model_role_arn=f"arn:aws:iam::{ACCOUNT}:role/bincount-model",
        data_capture_uri="s3://bincount-data/data-capture/bincount-dev",
        model_package_group=GROUP,
        kms_key_arn=KEY,
        volume_kms_key_arn=KEY,
        alarm_names=("bincount-dev-5xx",),
        instance_count=2,
        wait_seconds=0,
        tags=TAGS,
    )


@pytest.fixture
def config(instance_config):
    return replace(instance_config, serverless_memory_mb=2048, serverless_max_concurrency=7)


def operations(sm, *names: str) -> list[dict]:
    return [request for _, op, request in sm.log if op in names]


def go_live(sm, clients, config, arn: str) -> None:
    handle(package_event(arn, "Approved"), clients, config)
    while sm.endpoint(ENDPOINT)["EndpointStatus"] != "InService":
        sm.finish(ENDPOINT)
        handle(endpoint_event(), clients, config)


# -- serverless ---------------------------------------------------------------------------------


def test_a_serverless_endpoint_has_a_serverless_variant_without_capture_or_autoscaling(
    sm, autoscaling, clients, config
):
    arn = sm.register("Approved")

    assert handle(step(arn), clients, config)["status"] == "created"
    sm.finish(ENDPOINT)
    assert handle(endpoint_event(), clients, config)["status"] == "unchanged"

    (request,) = operations(sm, "CreateEndpointConfig")
    (model,) = operations(sm, "CreateModel")
    assert request["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": model["ModelName"],
            "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 7},
        }
    ]
    assert "DataCaptureConfig" not in request
    assert request["KmsKeyId"] == KEY
    # Named apart from the instance-based config of the same version.
    assert (
        request["EndpointConfigName"]
        != model["ModelName"]
        == resource_name(ENDPOINT, sm.packages[arn])
    )
    assert autoscaling.targets == {}
    assert not [op for service, op, _ in sm.log if service == "application-autoscaling"]


def test_a_serverless_update_sends_no_deployment_config_and_rollbacks_still_mark(
    sm, clients, config
):
    n = sm.register("Approved")
    go_live(sm, clients, config, n)
    n1 = sm.register("Approved")

    assert handle(package_event(n1, "Approved"), clients, config)["status"] == "updating"
    (update,) = operations(sm, "UpdateEndpoint")
    assert set(update) == {"EndpointName", "EndpointConfigName"}

    sm.finish(ENDPOINT, "rollback", "the new fleet failed its health check")
    after = handle(endpoint_event(), clients, config)

    assert after["rollout_failed_model_package_arn"] == n1
    assert f"{ROLLOUT_FAILED_PREFIX}{ENDPOINT}" in sm.packages[n1]["CustomerMetadataProperties"]
    assert after["status"] == "unchanged" and after["model_package_arn"] == n


def test_a_serverless_rollback_after_rejection_sends_no_deployment_config(sm, clients, config):
    n, n1 = sm.register("Approved"), sm.register("Approved")
    go_live(sm, clients, config, n1)
    sm.log.clear()
    sm.set_status(n1, "Rejected")

    assert handle(package_event(n1, "Rejected"), clients, config)["status"] == "rolling_back"
    (update,) = operations(sm, "UpdateEndpoint")
    assert "DeploymentConfig" not in update
    assert sm.serving_version(ENDPOINT) == n1  # until the update finishes
    sm.finish(ENDPOINT)
    assert sm.serving_version(ENDPOINT) == n


def test_teardown_of_a_serverless_endpoint_deletes_it_without_a_scalable_target(
    sm, clients, config
):
    go_live(sm, clients, config, sm.register("Approved"))

    summary_clients = replace(clients, sleep=lambda s: sm.finish(ENDPOINT))
    answer = handle(delete_event(), summary_clients, config)

    assert answer["PhysicalResourceId"] == f"{ENDPOINT}-deployer"
    assert sm.endpoints == {} and sm.configs == {} and sm.models == {}


def test_an_instance_based_endpoint_is_not_updated_to_serverless_and_is_recreated_once_deleted(
    sm, clients, config, instance_config
):
    n = sm.register("Approved")
    go_live(sm, clients, instance_config, n)
    n1 = sm.register("Approved")

    with pytest.raises(DeployError, match=r"instance-based.*delete-endpoint"):
        handle(package_event(n1, "Approved"), clients, config)
    assert operations(sm, "UpdateEndpoint") == []

    sm.delete_endpoint(EndpointName=ENDPOINT)
    sm.finish(ENDPOINT)
    assert handle(package_event(n1, "Approved"), clients, config)["status"] == "created"
    sm.finish(ENDPOINT)
    variants = sm.describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"]
    assert variants[0]["CurrentServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 7}


def test_a_serverless_endpoint_may_become_instance_based(sm, clients, config, instance_config):
    go_live(sm, clients, config, sm.register("Approved"))
    n1 = sm.register("Approved")

    assert handle(package_event(n1, "Approved"), clients, instance_config)["status"] == "updating"
    (update,) = operations(sm, "UpdateEndpoint")
    assert "BlueGreenUpdatePolicy" in update["DeploymentConfig"]


# -- tags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["instance", "serverless"])
def test_the_envs_tags_are_on_every_model_config_and_endpoint(
    sm, clients, config, instance_config, kind
):
    chosen = config if kind == "serverless" else instance_config
    arn = sm.register("Approved")
    go_live(sm, clients, chosen, arn)

    created = operations(sm, "CreateModel", "CreateEndpointConfig", "CreateEndpoint")
    assert len(created) == 3
    for request in created:
        tags = {t["Key"]: t["Value"] for t in request["Tags"]}
        assert tags == {PACKAGE_TAG: arn, **TAGS}


# -- configuration ------------------------------------------------------------------------------

ENV = {
    "ENDPOINT_NAME": "bincount-prod-staging",
    "MODEL_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/model",
    "DATA_CAPTURE_URI": "s3://bucket/capture",
    "MODEL_PACKAGE_GROUP": "bincount-prod-staging",
}


def test_stage_settings_come_from_the_environment_with_defaults():
    defaults = Config.from_env(ENV)
    assert (defaults.stage, defaults.next_stage) == ("live", "")
    assert (defaults.serverless, defaults.serverless_max_concurrency) == (False, 5)
    assert (defaults.tags, defaults.topic_arn) == ({}, "")
    assert (defaults.smoke_test, defaults.smoke_p50_ms) == (False, 2000)

    topic = f"arn:aws:sns:eu-west-1:{ACCOUNT}:bincount-prod"
    config = Config.from_env(
        {
            **ENV,
            "STAGE": "staging",
            "NEXT_STAGE": "prod",
            "SERVERLESS_MEMORY_MB": "3072",
            "SERVERLESS_MAX_CONCURRENCY": "20",
            "TAGS": json.dumps(TAGS),
            "TOPIC_ARN": topic,
            "SMOKE_TEST": "true",
            "SMOKE_P50_MS": "1500",
        }
    )
    assert (config.stage, config.next_stage) == ("staging", "prod")
    assert (config.serverless_memory_mb, config.serverless_max_concurrency) == (3072, 20)
    assert config.serverless
    assert (config.tags, config.topic_arn) == (TAGS, topic)
    assert (config.smoke_test, config.smoke_p50_ms) == (True, 1500)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SERVERLESS_MEMORY_MB": "1500"}, "1024..6144 in steps of 1024"),
        ({"SERVERLESS_MEMORY_MB": "7168"}, "1024..6144 in steps of 1024"),
        ({"SERVERLESS_MEMORY_MB": "1024", "SERVERLESS_MAX_CONCURRENCY": "0"}, "1..200"),
        ({"SERVERLESS_MEMORY_MB": "1024", "SUBNETS": "subnet-1"}, "VPC"),
        ({"SERVERLESS_MEMORY_MB": "1024", "NETWORK_ISOLATION": "true"}, "network isolation"),
        ({"TAGS": "[1]"}, "JSON object"),
        ({"TAGS": "{not json"}, "JSON object"),
        ({"TAGS": '{"aws:owner": "x"}'}, "reserved"),
        ({"TAGS": '{"bincount:rollout": "x"}'}, "reserved"),
        ({"TAGS": '{"team": "a,b"}'}, "only letters"),
        ({"TAGS": '{"n": 1}'}, "strings"),
        ({"STAGE": "prod", "NEXT_STAGE": "prod"}, "differ"),
        ({"STAGE": "staging!"}, "invalid stage"),
        ({"TOPIC_ARN": "bincount-topic"}, "SNS topic ARN"),
        ({"SMOKE_P50_MS": "0"}, "positive"),
    ],
)
def test_bad_stage_settings_say_what_is_wrong(env, message):
    with pytest.raises(ValueError, match=message):
        Config.from_env({**ENV, **env})


def test_the_local_runners_call_still_works_without_the_new_clients(sm, autoscaling):
    clients = Clients(sagemaker=sm, autoscaling=autoscaling)
    assert (clients.runtime, clients.sns) == (None, None)


def test_the_lambda_creates_runtime_and_sns_clients_only_when_asked(monkeypatch):
    import boto3

    made: list[str] = []
    seen: list[Clients] = []
    monkeypatch.setattr(boto3, "client", lambda name, **kw: made.append(name) or name)
    monkeypatch.setattr(deployer, "handle", lambda event, clients, config: seen.append(clients))

    monkeypatch.setattr(deployer.os, "environ", ENV)
    deployer.handler({}, None)
    assert made == ["sagemaker", "application-autoscaling"]
    assert (seen[-1].runtime, seen[-1].sns) == (None, None)

    made.clear()
    topic = f"arn:aws:sns:us-east-1:{ACCOUNT}:t"
    monkeypatch.setattr(deployer.os, "environ", {**ENV, "SMOKE_TEST": "true", "TOPIC_ARN": topic})
    deployer.handler({}, None)
    assert made == ["sagemaker", "application-autoscaling", "sagemaker-runtime", "sns"]
    assert (seen[-1].runtime, seen[-1].sns) == ("sagemaker-runtime", "sns")
