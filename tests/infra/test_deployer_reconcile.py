"""The deployer as a reconciler, against a scripted SageMaker that changes state only when the
test says so (test_deployer_fakes.py), every request checked against botocore's models."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest
from test_deployer_fakes import ACCOUNT, FakeAutoscaling, FakeSageMaker, error

from infra.deployer_lambda.deployer import (
    PACKAGE_TAG,
    ROLLOUT_FAILED_PREFIX,
    Clients,
    Config,
    DeployError,
    handle,
    live_package_arn,
    resource_name,
)

ENDPOINT = "bincount-dev"
GROUP = "bincount-dev"
MARK = f"{ROLLOUT_FAILED_PREFIX}{ENDPOINT}"
ARCHITECTURE = Path(__file__).resolve().parents[2] / "ARCHITECTURE.md"


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = None

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log():
    return []


@pytest.fixture
def sm(log):
    return FakeSageMaker(log, group=GROUP)


@pytest.fixture
def autoscaling(log):
    return FakeAutoscaling(log)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def clients(sm, autoscaling, clock):
    return Clients(sagemaker=sm, autoscaling=autoscaling, sleep=clock.sleep, clock=clock)


@pytest.fixture
def config():
    return Config(
        endpoint_name=ENDPOINT,
        model_role_arn=f"arn:aws:iam::{ACCOUNT}:role/bincount-model",
        data_capture_uri="s3://bincount-data/data-capture/bincount-dev",
        model_package_group=GROUP,
        kms_key_arn=f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234",
        volume_kms_key_arn=f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234",
        alarm_names=("bincount-dev-5xx", "bincount-dev-latency"),
        instance_count=2,
        wait_seconds=0,
    )


def step(arn: str) -> dict:
    return {"model_package_arn": arn, "endpoint_name": ENDPOINT}


def package_event(arn: str, status: str, group: str = GROUP) -> dict:
    return {
        "version": "0",
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change",
        "resources": [arn],
        "detail": {
            "ModelPackageGroupName": group,
            "ModelPackageArn": arn,
            "ModelApprovalStatus": status,
        },
    }


def endpoint_event(status: str = "IN_SERVICE", name: str = ENDPOINT) -> dict:
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Endpoint State Change",
        "detail": {"EndpointName": name, "EndpointStatus": status},
    }


SCHEDULE = {
    "version": "0",
    "source": "aws.events",
    "detail-type": "Scheduled Event",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/bincount-dev-reconcile"],
    "detail": {},
}


def config_of(sm: FakeSageMaker, arn: str) -> str:
    return resource_name(ENDPOINT, sm.packages[arn])


def live(sm: FakeSageMaker) -> str:
    endpoint = sm.endpoint(ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService", endpoint
    return sm.tags[sm.configs[endpoint["EndpointConfigName"]]["Arn"]][PACKAGE_TAG]


def writes(sm: FakeSageMaker) -> list[str]:
    return [
        op
        for _, op, _ in sm.log
        if op.startswith(("Create", "Update", "Delete", "Add", "Register", "Put", "Deregister"))
    ]


def serve(sm, clients, config, arn: str) -> None:
    """Get `arn` live: approve it, let every rollout finish, deliver the events."""
    handle(package_event(arn, "Approved"), clients, config)
    while sm.endpoint(ENDPOINT)["EndpointStatus"] != "InService":
        sm.finish(ENDPOINT)
        handle(endpoint_event(), clients, config)
    assert live(sm) == arn


# -- the sequences ------------------------------------------------------------------------------


def test_first_approval_creates_and_the_in_service_event_finishes_autoscaling(
    sm, autoscaling, clients, config
):
    arn = sm.register("Approved")

    first = handle(step(arn), clients, config)

    assert first["status"] == "created"
    assert (first["endpoint_name"], first["model_package_arn"]) == (ENDPOINT, arn)
    assert sm.endpoint(ENDPOINT)["EndpointStatus"] == "Creating"
    assert autoscaling.targets == {}
    assert handle(endpoint_event("CREATING"), clients, config)["status"] == "busy"
    sm.finish(ENDPOINT)

    done = handle(endpoint_event(), clients, config)

    assert done["status"] == "unchanged"
    assert live(sm) == arn
    (target,) = autoscaling.targets.values()
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 2)


def test_deploy_step_waits_at_most_wait_seconds_and_reports_the_state_reached(
    sm, clients, clock, config
):
    arn = sm.register("Approved")
    patient = replace(config, wait_seconds=60, poll_seconds=20)

    result = handle(step(arn), clients, patient)

    assert result["status"] == "created"
    assert sum(clock.sleeps) == 60
    # Within the wait: done.
    newer = sm.register("Approved")
    sm.finish(ENDPOINT)
    clock.on_sleep = lambda: sm.finish(ENDPOINT)
    result = handle(step(newer), clients, patient)
    assert result["status"] == "deployed"
    assert result["requested_model_package_arn"] == newer
    assert live(sm) == newer


def test_approve_n_plus_1_while_n_rolls_out_ends_with_n_plus_1_live(sm, clients, config):
    n = sm.register("Approved")
    handle(package_event(n, "Approved"), clients, config)
    n1 = sm.register("Approved")

    busy = handle(package_event(n1, "Approved"), clients, config)

    assert busy["status"] == "busy"
    sm.finish(ENDPOINT)
    moving = handle(endpoint_event(), clients, config)
    assert moving["status"] == "updating"
    assert moving["model_package_arn"] == n1
    (update,) = sm.calls("UpdateEndpoint")
    assert update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"][
        "Type"
    ] == ("CANARY")
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": "bincount-dev-5xx"},
        {"AlarmName": "bincount-dev-latency"},
    ]
    sm.finish(ENDPOINT)
    assert handle(endpoint_event(), clients, config)["status"] == "unchanged"
    assert live(sm) == n1


def test_reject_n_during_its_rollout_ends_with_the_previous_approved_live(sm, clients, config):
    previous = sm.register("Approved")
    serve(sm, clients, config, previous)
    n = sm.register("Approved")
    handle(package_event(n, "Approved"), clients, config)
    sm.set_status(n, "Rejected")

    during = handle(package_event(n, "Rejected"), clients, config)

    assert during["status"] == "busy"  # not raised: nothing for Lambda to retry
    sm.finish(ENDPOINT)  # n's rollout completes
    back = handle(endpoint_event(), clients, config)
    assert back["status"] == "rolling_back"
    assert (back["model_package_arn"], back["replaced_model_package_arn"]) == (previous, n)
    update = sm.calls("UpdateEndpoint")[-1]
    assert "AutoRollbackConfiguration" not in update["DeploymentConfig"]
    routing = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "ALL_AT_ONCE"
    sm.finish(ENDPOINT)
    assert handle(endpoint_event(), clients, config)["status"] == "unchanged"
    assert live(sm) == previous


def test_rejecting_the_only_approved_keeps_serving_it_loudly(sm, clients, config, caplog):
    only = sm.register("Approved")
    serve(sm, clients, config, only)
    sm.set_status(only, "Rejected")
    before = writes(sm)

    with caplog.at_level(logging.ERROR, logger="bincount.deployer"):
        result = handle(package_event(only, "Rejected"), clients, config)
        scheduled = handle(SCHEDULE, clients, config)

    assert result["status"] == scheduled["status"] == "serving_unapproved"
    assert "delete-endpoint" in result["reason"] and "Approve another version" in result["reason"]
    assert [r.levelname for r in caplog.records if "serving_unapproved" in r.message] == [
        "ERROR",
        "ERROR",
    ]
    assert writes(sm) == before
    assert live(sm) == only


def test_alarm_rollback_marks_the_version_never_retries_it_and_n_plus_2_deploys(
    sm, clients, config, caplog
):
    n = sm.register("Approved")
    serve(sm, clients, config, n)
    n1 = sm.register("Approved")
    assert handle(package_event(n1, "Approved"), clients, config)["status"] == "updating"
    sm.finish(ENDPOINT, "rollback")  # the alarms fired during the canary

    with caplog.at_level(logging.ERROR, logger="bincount.deployer"):
        settled = handle(endpoint_event(), clients, config)

    assert settled["status"] == "unchanged"
    assert settled["rollout_failed_model_package_arn"] == n1
    assert settled["model_package_arn"] == n
    assert MARK in sm.packages[n1]["CustomerMetadataProperties"]
    assert any("rollout_failed" in r.message for r in caplog.records)
    assert live(sm) == n
    updates = len(sm.calls("UpdateEndpoint"))
    # Neither the schedule, a repeated event, nor the edit's own Approved event retries it.
    for event in (SCHEDULE, endpoint_event(), package_event(n1, "Approved"), step(n1)):
        assert handle(event, clients, config)["status"] == "unchanged"
    assert len(sm.calls("UpdateEndpoint")) == updates
    assert len(sm.calls("UpdateModelPackage")) == 1

    n2 = sm.register("Approved")
    assert handle(package_event(n2, "Approved"), clients, config)["model_package_arn"] == n2
    sm.finish(ENDPOINT)
    handle(endpoint_event(), clients, config)
    assert live(sm) == n2


def test_rollback_target_is_never_the_version_whose_rollout_just_failed(sm, clients, config):
    oldest = sm.register("Approved")
    serve(sm, clients, config, oldest)
    n = sm.register("Approved")
    serve(sm, clients, config, n)
    failed = sm.register("Approved")
    handle(package_event(failed, "Approved"), clients, config)
    sm.finish(ENDPOINT, "rollback")
    sm.set_status(n, "Rejected")  # and the live one is rejected before anyone looked

    result = handle(package_event(n, "Rejected"), clients, config)

    assert result["rollout_failed_model_package_arn"] == failed
    assert result["status"] == "rolling_back"
    assert result["model_package_arn"] == oldest
    sm.finish(ENDPOINT)
    handle(endpoint_event(), clients, config)
    assert live(sm) == oldest


def test_rejecting_then_approving_a_failed_version_retries_it(sm, clients, config):
    n = sm.register("Approved")
    serve(sm, clients, config, n)
    n1 = sm.register("Approved")
    handle(package_event(n1, "Approved"), clients, config)
    sm.finish(ENDPOINT, "rollback")
    handle(endpoint_event(), clients, config)
    assert MARK in sm.packages[n1]["CustomerMetadataProperties"]

    sm.set_status(n1, "Rejected")
    assert handle(package_event(n1, "Rejected"), clients, config)["status"] == "unchanged"
    assert MARK not in sm.packages[n1]["CustomerMetadataProperties"]
    sm.set_status(n1, "Approved")
    retried = handle(package_event(n1, "Approved"), clients, config)

    assert (retried["status"], retried["model_package_arn"]) == ("updating", n1)


def test_a_stale_rejected_event_after_re_approval_changes_nothing(sm, clients, config):
    older = sm.register("Approved")
    serve(sm, clients, config, older)
    n = sm.register("Approved")
    serve(sm, clients, config, n)
    sm.set_status(n, "Rejected")
    sm.set_status(n, "Approved")  # re-approved before the Rejected event was delivered
    before = writes(sm)

    result = handle(package_event(n, "Rejected"), clients, config)

    assert result["status"] == "unchanged"
    assert [w for w in writes(sm)[len(before) :] if "Scal" not in w] == []
    assert live(sm) == n


def test_schedule_with_nothing_to_do_leaves_everything_unchanged(sm, clients, config):
    arn = sm.register("Approved")
    serve(sm, clients, config, arn)
    sm.log.clear()

    assert handle(SCHEDULE, clients, config)["status"] == "unchanged"

    assert {op for _, op, _ in sm.log} <= {
        "DescribeEndpoint",
        "ListTags",
        "DescribeEndpointConfig",
        "ListModelPackages",
        "DescribeModelPackage",
        "RegisterScalableTarget",
        "PutScalingPolicy",
    }


def test_schedule_without_any_approved_version_or_endpoint_is_said_plainly(sm, clients, config):
    sm.register("PendingManualApproval")
    assert handle(SCHEDULE, clients, config)["status"] == "no_approved_version"
    assert writes(sm) == []


@pytest.mark.parametrize(
    ("outcome", "remedy"),
    [("fail", "delete-endpoint"), ("rollback_failed", "update-endpoint")],
)
def test_failed_and_update_rollback_failed_endpoints_are_refused_with_the_remedy(
    sm, clients, config, outcome, remedy
):
    n = sm.register("Approved")
    serve(sm, clients, config, n)
    handle(package_event(sm.register("Approved"), "Approved"), clients, config)
    sm.finish(ENDPOINT, outcome, reason="Both deployments failed")
    status = sm.endpoint(ENDPOINT)["EndpointStatus"]
    before = writes(sm)

    for event in (endpoint_event(status.upper()), SCHEDULE, step(n)):
        with pytest.raises(
            DeployError, match=rf"is {status} \(Both deployments failed\).*{remedy}"
        ):
            handle(event, clients, config)
    assert writes(sm) == before


def test_a_package_of_another_group_is_refused_before_anything_changes(sm, clients, config):
    foreign = sm.register("Approved", group="someone-else")
    for event in (step(foreign), package_event(foreign, "Approved", group="someone-else")):
        with pytest.raises(DeployError, match="belongs to group 'someone-else'"):
            handle(event, clients, config)
    # An event that does not say its group is refused once the package is read.
    unnamed = package_event(foreign, "Approved")
    del unnamed["detail"]["ModelPackageGroupName"]
    with pytest.raises(DeployError, match="belongs to group 'someone-else'"):
        handle(unnamed, clients, config)
    assert writes(sm) == []


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("not an event", "expected a JSON object"),
        ({"detail-type": "SageMaker Endpoint State Change", "detail": "x"}, "must be an object"),
        (
            {"detail-type": "SageMaker Model Package State Change", "detail": []},
            "must be an object",
        ),
        ({"detail-type": "SageMaker Endpoint State Change", "detail": {}}, "no EndpointName"),
        (
            {"detail-type": "SageMaker Model Package State Change", "detail": {}, "resources": 3},
            "'resources' is not a list",
        ),
        ({"detail-type": "SageMaker Model Package State Change", "detail": {}}, "no model package"),
        ({"detail-type": "Scheduled Event", "source": "aws.s3", "detail": {}}, "unsupported"),
        ({"detail-type": "Something Else", "detail": {}}, "unsupported EventBridge event"),
        ({"model_package_arn": 7}, "non-empty string"),
        ({"hello": "world"}, "unsupported event"),
        ({"RequestType": "Rename"}, "RequestType"),
    ],
)
def test_events_of_an_unexpected_shape_are_a_clear_value_error(clients, config, event, message):
    with pytest.raises(ValueError, match=message):
        handle(event, clients, config)


def test_not_approved_deploy_step_is_skipped_with_the_reason(sm, clients, config):
    arn = sm.register("PendingManualApproval")
    result = handle(step(arn), clients, config)
    assert result["status"] == "skipped"
    assert "PendingManualApproval" in result["reason"]
    assert writes(sm) == []


def test_endpoint_events_of_other_endpoints_are_skipped_without_calls(sm, clients, config):
    assert handle(endpoint_event(name="other"), clients, config)["status"] == "skipped"
    assert sm.log == []


def test_concurrent_creation_and_a_refused_update_from_a_concurrent_call_are_busy(
    sm, clients, config
):
    n = sm.register("Approved")
    name = config_of(sm, n)
    real_create = FakeSageMaker.create_endpoint

    def created_meanwhile(**request):
        real_create(sm, **request)  # the other caller won the race ...
        raise error("CreateEndpoint", "ValidationException", "Cannot create already existing x")

    sm.create_endpoint = created_meanwhile
    assert handle(step(n), clients, config)["status"] == "busy"
    assert sm.endpoint(ENDPOINT)["EndpointConfigName"] == name
    sm.finish(ENDPOINT)
    del sm.create_endpoint

    n1 = sm.register("Approved")
    sm.fail_next(
        "UpdateEndpoint", error("UpdateEndpoint", "ValidationException", "Cannot update x")
    )
    sm.endpoints[ENDPOINT]["EndpointStatus"] = "Updating"  # ... and updated it meanwhile
    real_describe = FakeSageMaker.describe_endpoint
    seen = []

    def describe(**request):
        seen.append(request)
        answer = real_describe(sm, **request)
        return {**answer, "EndpointStatus": "InService"} if len(seen) == 1 else answer

    sm.describe_endpoint = describe
    assert handle(step(n1), clients, config)["status"] == "busy"
    endpoint_tags = sm.tags[sm.endpoint(ENDPOINT)["EndpointArn"]]
    assert endpoint_tags.get("bincount:rollout", "") == ""  # no rollout recorded for it


def test_a_refused_update_raises_and_records_no_rollout(sm, clients, config):
    n = sm.register("Approved")
    serve(sm, clients, config, n)
    sm.fail_next(
        "UpdateEndpoint",
        error("UpdateEndpoint", "ValidationException", "Instance type not supported"),
    )
    with pytest.raises(Exception, match="Instance type not supported"):
        handle(package_event(sm.register("Approved"), "Approved"), clients, config)
    # Had it been recorded, the next reconcile would mark the version as rolled back.
    assert "rollout_failed_model_package_arn" not in handle(SCHEDULE, clients, config)


def test_the_endpoint_config_follows_the_config(sm, clients, config):
    arn = sm.register("Approved")
    handle(step(arn), clients, config)
    name = config_of(sm, arn)
    request = sm.configs[name]
    assert request["KmsKeyId"] == config.volume_kms_key_arn
    assert request["DataCaptureConfig"]["KmsKeyId"] == config.kms_key_arn
    assert request["ProductionVariants"][0]["InitialInstanceCount"] == 2
    model = sm.models[name]
    assert model["PrimaryContainer"]["Environment"]["BINCOUNT_MODEL_VERSION"] == arn
    assert sm.tags[model["Arn"]][PACKAGE_TAG] == arn
    sm.finish(ENDPOINT)
    assert live_package_arn(ENDPOINT, clients) == arn


# -- teardown -----------------------------------------------------------------------------------


def delete_event() -> dict:
    return {
        "RequestType": "Delete",
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:provider",
        "ResourceType": "Custom::DeployerTeardown",
        "LogicalResourceId": "Teardown",
        "PhysicalResourceId": f"{ENDPOINT}-deployer",
        "ResourceProperties": {"EndpointName": ENDPOINT},
    }


def test_create_and_update_of_the_custom_resource_do_nothing(sm, clients, config):
    for request in ("Create", "Update"):
        event = {**delete_event(), "RequestType": request}
        assert handle(event, clients, config) == {"PhysicalResourceId": f"{ENDPOINT}-deployer"}
    assert sm.log == []


def test_teardown_deletes_everything_it_created_and_is_idempotent(
    sm, autoscaling, clients, clock, config
):
    n = sm.register("Approved")
    serve(sm, clients, config, n)
    n1 = sm.register("Approved")
    serve(sm, clients, config, n1)
    handle(package_event(sm.register("Approved"), "Approved"), clients, config)  # mid-update
    # Someone else's endpoint whose name starts like ours keeps its resources.
    sm.models["bincount-dev-2-v1-0123abcd"] = {"Arn": "a", "CreationTime": 0}
    sm.configs["bincount-dev-2-v1-0123abcd"] = {"Arn": "b", "CreationTime": 0}
    packages_before = {arn: dict(p) for arn, p in sm.packages.items()}
    clock.on_sleep = lambda: sm.finish(ENDPOINT)  # the update, then the deletion, end
    sm.log.clear()

    answer = handle(delete_event(), clients, config)

    assert answer == {"PhysicalResourceId": f"{ENDPOINT}-deployer"}
    assert ENDPOINT not in sm.endpoints
    assert set(sm.models) == set(sm.configs) == {"bincount-dev-2-v1-0123abcd"}
    assert autoscaling.targets == autoscaling.policies == {}
    assert sm.packages == packages_before
    assert not [op for _, op, _ in sm.log if "ModelPackage" in op]  # the registry is not touched

    sm.log.clear()
    assert handle(delete_event(), clients, config) == answer  # already gone: fine
    assert [op for _, op, _ in sm.log if op.startswith("Delete")] == []


def test_teardown_gives_up_after_teardown_seconds_with_a_clear_error(sm, clients, config):
    serve(sm, clients, config, sm.register("Approved"))
    handle(package_event(sm.register("Approved"), "Approved"), clients, config)  # Updating
    with pytest.raises(DeployError, match=r"still Updating after 60 s"):
        handle(delete_event(), clients, replace(config, teardown_seconds=60))
    assert sm.configs  # nothing in use was deleted


# -- what the deployer may call -----------------------------------------------------------------


def documented_calls() -> tuple[set[str], set[str]]:
    text = ARCHITECTURE.read_text()
    section = text[text.index("## Deployer") :]
    section = section[: section.index("\n## ", 1)]
    sagemaker = section[section.index("exactly:") : section.index("Autoscaling:")]
    autoscaling = section[section.index("Autoscaling:") :].split(".")[0]
    return set(re.findall(r"`(\w+)`", sagemaker)), set(re.findall(r"`(\w+)`", autoscaling))


def test_the_calls_made_are_exactly_those_architecture_lists(sm, clients, config):
    from botocore import xform_name

    n = sm.register("Approved")
    serve(sm, clients, config, n)
    n1 = sm.register("Approved")
    handle(package_event(n1, "Approved"), clients, config)
    sm.finish(ENDPOINT, "rollback")
    handle(endpoint_event(), clients, config)
    sm.set_status(n1, "Rejected")
    handle(package_event(n1, "Rejected"), clients, config)
    handle(delete_event(), replace(clients, sleep=lambda s: sm.finish(ENDPOINT)), config)

    made = {(service, xform_name(op)) for service, op, _ in sm.log}
    sagemaker, autoscaling = documented_calls()
    assert {m for s, m in made if s == "sagemaker"} == sagemaker
    assert {m for s, m in made if s == "application-autoscaling"} == autoscaling
