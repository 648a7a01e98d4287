"""Notifications: one message per transition (deployed, rolling back, rollout failed, serving
an unapproved version), none on repeated events or schedule ticks, each saying what, which
version, where, with the console link; a failed publish never fails the deployer. SNS requests
go through the strict validator (test_deployer_fakes.FakeSNS)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from test_deployer_fakes import ACCOUNT, FakeAutoscaling, FakeSageMaker, FakeSNS, error
from test_deployer_reconcile import SCHEDULE, Clock, endpoint_event, package_event

from infra.deployer_lambda import notify
from infra.deployer_lambda.deployer import Clients, Config, handle

ENDPOINT = "bincount-prod-staging"
GROUP = "bincount-prod-staging"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:bincount-prod"
CONSOLE = (
    "https://us-east-1.console.aws.amazon.com/sagemaker/home?region=us-east-1"
    f"#/endpoints/{ENDPOINT}"
)


@pytest.fixture
def sm():
    return FakeSageMaker(group=GROUP)


@pytest.fixture
def sns():
    return FakeSNS()


@pytest.fixture
def clients(sm, sns):
    clock = Clock()
    return Clients(
        sagemaker=sm, autoscaling=FakeAutoscaling(sm.log), sleep=clock.sleep, clock=clock, sns=sns
    )


@pytest.fixture
def config():
    return Config(
        endpoint_name=ENDPOINT,
        model_role_arn=f"arn:aws:iam::{ACCOUNT}:role/bincount-model",
        data_capture_uri="s3://bincount-data/data-capture",
        model_package_group=GROUP,
        instance_count=2,
        alarm_names=("bincount-5xx",),
        wait_seconds=0,
        stage="staging",
        next_stage="prod",
        topic_arn=TOPIC,
    )


def events(sns: FakeSNS) -> list[str]:
    return [m["Message"].split("Event: ", 1)[1].split("\n", 1)[0] for m in sns.messages]


def settle(sm, clients, config) -> None:
    while sm.endpoint(ENDPOINT)["EndpointStatus"] != "InService":
        sm.finish(ENDPOINT)
        handle(endpoint_event(name=ENDPOINT), clients, config)


def approve(sm, clients, config, arn: str) -> dict:
    sm.set_status(arn, "Approved")
    return handle(package_event(arn, "Approved", GROUP), clients, config)


def test_deployed_is_published_once_by_the_call_that_sees_the_endpoint_settle(
    sm, sns, clients, config
):
    arn = sm.register("PendingManualApproval")
    approve(sm, clients, config, arn)
    assert sns.messages == []  # Creating: nothing to say yet

    settle(sm, clients, config)
    for event in (SCHEDULE, endpoint_event(name=ENDPOINT), package_event(arn, "Approved", GROUP)):
        handle(event, clients, config)

    assert events(sns) == ["deployed"]
    (message,) = sns.messages
    assert message["TopicArn"] == TOPIC
    assert message["Subject"] == f"[staging] {ENDPOINT}: version 1 is live"
    for text in ("Stage: staging", f"Endpoint: {ENDPOINT}", f"Version: 1 ({arn})", CONSOLE):
        assert text in message["Message"]


def test_a_deploy_step_that_waits_for_the_settle_publishes_deployed_itself(sm, sns, clients):
    wait = replace(
        Config(
            endpoint_name=ENDPOINT,
            model_role_arn=f"arn:aws:iam::{ACCOUNT}:role/m",
            data_capture_uri="s3://b/c",
            model_package_group=GROUP,
            topic_arn=TOPIC,
        ),
        wait_seconds=60,
    )
    arn = sm.register("Approved")
    clients = replace(clients, sleep=lambda s: sm.finish(ENDPOINT))

    result = handle({"model_package_arn": arn, "endpoint_name": ENDPOINT}, clients, wait)

    assert result["status"] == "deployed"
    assert events(sns) == ["deployed"]
    handle(endpoint_event(name=ENDPOINT), clients, wait)  # the endpoint's own event, later
    assert events(sns) == ["deployed"]


def test_an_alarm_rollback_publishes_rollout_failed_once_and_no_second_deployed(
    sm, sns, clients, config
):
    n = sm.register("Approved")
    approve(sm, clients, config, n)
    settle(sm, clients, config)
    n1 = sm.register("Approved")
    approve(sm, clients, config, n1)

    sm.finish(ENDPOINT, "rollback", "Alarm bincount-5xx went into ALARM")
    handle(endpoint_event(name=ENDPOINT), clients, config)
    handle(SCHEDULE, clients, config)
    handle(SCHEDULE, clients, config)

    assert events(sns) == ["deployed", "rollout_failed"]
    failed = sns.messages[1]
    assert "version 2 rollout failed" in failed["Subject"]
    assert n1 in failed["Message"] and "Alarm bincount-5xx went into ALARM" in failed["Message"]


def test_rejecting_the_live_version_publishes_rolling_back_then_deployed_for_the_previous(
    sm, sns, clients, config
):
    n, n1 = sm.register("Approved"), sm.register("PendingManualApproval")
    approve(sm, clients, config, n)
    settle(sm, clients, config)
    approve(sm, clients, config, n1)
    settle(sm, clients, config)
    sm.set_status(n1, "Rejected")

    handle(package_event(n1, "Rejected", GROUP), clients, config)
    settle(sm, clients, config)
    handle(SCHEDULE, clients, config)

    assert events(sns) == ["deployed", "deployed", "rolling_back", "deployed"]
    rolling_back = sns.messages[2]
    assert rolling_back["Subject"].endswith("rolling back to version 1")
    assert f"The live version 2 ({n1}) is Rejected" in rolling_back["Message"]
    assert sns.messages[3]["Subject"].endswith("version 1 is live")


def test_serving_unapproved_is_published_once_per_time_it_happens(sm, sns, clients, config):
    arn = sm.register("Approved")
    approve(sm, clients, config, arn)
    settle(sm, clients, config)
    sm.set_status(arn, "Rejected")

    for _ in range(3):
        assert handle(package_event(arn, "Rejected", GROUP), clients, config)["status"] == (
            "serving_unapproved"
        )
        handle(SCHEDULE, clients, config)
    assert events(sns) == ["deployed", "serving_unapproved"]
    assert "still serving version 1, which is Rejected" in sns.messages[1]["Subject"]

    # Approved again, then rejected again: two more transitions, each published once.
    approve(sm, clients, config, arn)
    handle(SCHEDULE, clients, config)
    sm.set_status(arn, "Rejected")
    handle(SCHEDULE, clients, config)
    handle(SCHEDULE, clients, config)
    assert events(sns) == ["deployed", "serving_unapproved", "deployed", "serving_unapproved"]


def test_a_failed_publish_is_logged_and_the_reconcile_goes_on(sm, sns, clients, config, caplog):
    arn = sm.register("Approved")
    approve(sm, clients, config, arn)
    sns.fail_next(error("Publish", "AuthorizationError", "not allowed to publish"))

    with caplog.at_level(logging.ERROR, logger="bincount.notify"):
        settle(sm, clients, config)

    assert sm.endpoint(ENDPOINT)["EndpointStatus"] == "InService"
    assert "notification_failed" in caplog.text and "not allowed to publish" in caplog.text
    handle(SCHEDULE, clients, config)
    assert sns.messages == []  # announced once (and lost), not retried on every tick


def test_without_a_topic_or_an_sns_client_nothing_is_published_or_tagged(
    sm, sns, clients, config, caplog
):
    arn = sm.register("Approved")
    approve(sm, clients, replace(config, topic_arn=""), arn)
    settle(sm, clients, replace(config, topic_arn=""))
    assert sns.messages == []
    assert not [op for _, op, _ in sm.log if op == "AddTags"]

    with caplog.at_level(logging.WARNING, logger="bincount.deployer"):
        handle(SCHEDULE, replace(clients, sns=None), config)
    assert "notifications_skipped" in caplog.text


# -- the messages -------------------------------------------------------------------------------


def test_subjects_are_one_ascii_line_below_the_sns_limit():
    long = notify.subject("ünïcode\nline " + "x" * 200)
    assert len(long) == notify.MAX_SUBJECT and long.isascii() and "\n" not in long
    assert long.endswith("...")
    assert notify.subject("short") == "short"


def test_the_console_link_and_version_come_from_the_arn():
    arn = f"arn:aws:sagemaker:eu-central-1:{ACCOUNT}:model-package/g/12"
    message = notify.endpoint_message(
        "deployed", headline="version 12 is live", stage="prod", endpoint="e", package_arn=arn
    )
    assert notify.version_of(arn) == "12"
    assert (
        "Console: https://eu-central-1.console.aws.amazon.com/sagemaker/home?region=eu-central-1"
        "#/endpoints/e" in message.body
    )
    assert message.subject == "[prod] e: version 12 is live"
