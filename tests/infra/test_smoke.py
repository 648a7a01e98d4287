"""The smoke test: once a stage's endpoint is InService on a version, the shipped bin photos go
through it (sagemaker-runtime, strictly validated), the answer's shape and the p50 latency are
checked, and the result is recorded on the version once; it is not run again until the
version is rejected and approved again."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
from test_deployer_fakes import (
    ACCOUNT,
    FakeAutoscaling,
    FakeRuntime,
    FakeSageMaker,
    FakeSNS,
    error,
    good_answer,
)
from test_deployer_reconcile import SCHEDULE, Clock, endpoint_event, package_event

from infra.deployer_lambda import smoke
from infra.deployer_lambda.deployer import Clients, Config, handle

ENDPOINT = "bincount-prod-staging"
GROUP = "bincount-prod-staging"
RESULT = "bincount:smoke-test:staging"
P50 = "bincount:smoke-p50-ms:staging"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sm():
    return FakeSageMaker(group=GROUP)


@pytest.fixture
def runtime(sm, clock):
    return FakeRuntime(sm, clock, latency_ms=120)


@pytest.fixture
def sns():
    return FakeSNS()


@pytest.fixture
def clients(sm, runtime, sns, clock):
    return Clients(
        sagemaker=sm,
        autoscaling=FakeAutoscaling(sm.log),
        sleep=clock.sleep,
        clock=clock,
        runtime=runtime,
        sns=sns,
    )


@pytest.fixture
def config():
    return Config(
        endpoint_name=ENDPOINT,
        model_role_arn=f"arn:aws:iam::{ACCOUNT}:role/bincount-model",
        data_capture_uri="s3://bincount-data/data-capture",
        model_package_group=GROUP,
        wait_seconds=0,
        stage="staging",
        next_stage="prod",
        topic_arn=f"arn:aws:sns:us-east-1:{ACCOUNT}:bincount-prod",
        smoke_test=True,
        smoke_p50_ms=1000,
    )


def smoke_messages(sns) -> list[dict]:
    return [m for m in sns.messages if "smoke test" in m["Subject"]]


def invocations(sm) -> list[dict]:
    return [request for _, op, request in sm.log if op == "InvokeEndpoint"]


def go_live(sm, clients, config, arn: str) -> dict:
    result = handle(package_event(arn, "Approved", GROUP), clients, config)
    while sm.endpoint(ENDPOINT)["EndpointStatus"] != "InService":
        sm.finish(ENDPOINT)
        result = handle(endpoint_event(name=ENDPOINT), clients, config)
    return result


def test_a_version_that_answers_well_and_fast_passes_once_and_is_ready_to_promote(
    sm, sns, clients, config
):
    arn = sm.register("Approved")

    result = go_live(sm, clients, config, arn)

    assert result["smoke_test"] == "passed"
    metadata = sm.packages[arn]["CustomerMetadataProperties"]
    assert (metadata[RESULT], metadata[P50]) == ("passed", "120")
    calls = invocations(sm)
    assert len(calls) == smoke.ROUNDS * 3
    photos = dict(smoke.photos())
    assert {c["Body"] for c in calls} == set(photos.values())
    assert {(c["EndpointName"], c["ContentType"]) for c in calls} == {(ENDPOINT, "image/jpeg")}
    (message,) = smoke_messages(sns)
    assert message["Subject"].endswith("version 1 passed its smoke test, ready to promote to prod")

    for event in (SCHEDULE, endpoint_event(name=ENDPOINT), package_event(arn, "Approved", GROUP)):
        assert handle(event, clients, config)["smoke_test"] == "passed"
    assert len(invocations(sm)) == len(calls)  # recorded once, never run again
    assert len(smoke_messages(sns)) == 1


def test_the_last_stage_records_a_pass_without_announcing_a_promotion(sm, sns, clients, config):
    arn = sm.register("Approved")
    go_live(sm, clients, replace(config, next_stage=""), arn)
    assert smoke_messages(sns) == []
    assert sm.packages[arn]["CustomerMetadataProperties"][RESULT] == "passed"


def _answer(**change):
    def answer(request, version):
        body = json.loads(good_answer(request, version))
        body["predictions"][0].update(change.get("prediction", {}))
        body.update(change.get("top", {}))
        return json.dumps(body).encode()

    return answer


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (_answer(prediction={"count": 7}), "predictions.0.count is int 7: not a count in 1..5"),
        (_answer(prediction={"count": "3"}), "count is str 3: not a count"),
        (_answer(prediction={"probabilities": {"1": 0.9, "2": 0.9}}), "sum to 1.800 not 1"),
        (_answer(top={"predictions": []}), "no predictions.0"),
        (_answer(top={"model_version": "v-old"}), "model_version is v-old: expected arn:aws:"),
        (lambda request, version: b"<html>oops</html>", "not JSON"),
    ],
)
def test_a_bad_answer_shape_fails_it_with_the_reason(
    sm, sns, clients, config, runtime, answer, reason
):
    runtime.answer = answer
    arn = sm.register("Approved")

    result = go_live(sm, clients, config, arn)

    recorded = sm.packages[arn]["CustomerMetadataProperties"][RESULT]
    assert result["smoke_test"] == recorded
    assert recorded.startswith("failed: 00870_2.jpg: ") and reason in recorded
    assert len(recorded) <= 256
    assert len(invocations(sm)) == 1  # the first bad answer decides
    (message,) = smoke_messages(sns)
    assert "version 1 FAILED its smoke test" in message["Subject"]
    assert "cannot be promoted" in message["Message"]
    # The endpoint keeps serving it: a smoke test blocks promotion, it does not roll back.
    assert sm.serving_version(ENDPOINT) == arn


def test_a_slow_endpoint_fails_on_its_p50_latency(sm, clients, config, runtime):
    runtime.latency_ms = 1800
    arn = sm.register("Approved")

    go_live(sm, clients, config, arn)

    metadata = sm.packages[arn]["CustomerMetadataProperties"]
    assert metadata[RESULT] == "failed: p50 latency 1800 ms over the 1000 ms budget"
    assert metadata[P50] == "1800"
    assert len(invocations(sm)) == smoke.ROUNDS * 3


def test_a_model_error_fails_it_with_the_status_the_container_answered(
    sm, clients, config, runtime
):
    def model_error(request, version):
        raise _model_error(500, "Received server error (500) from primary with message 'boom'")

    runtime.answer = model_error
    arn = sm.register("Approved")

    go_live(sm, clients, config, arn)

    recorded = sm.packages[arn]["CustomerMetadataProperties"][RESULT]
    assert recorded.startswith("failed: HTTP 500 for 00870_2.jpg: Received server error")
    assert P50 not in sm.packages[arn]["CustomerMetadataProperties"]  # nothing measured


def _model_error(status: int, message: str):
    failure = error("InvokeEndpoint", "ModelError", message)
    failure.response["OriginalStatusCode"] = status
    return failure


def test_throttling_records_nothing_and_the_next_event_tests_again(
    sm, clients, config, runtime, caplog
):
    def throttled(request, version):
        raise error("InvokeEndpoint", "ThrottlingException", "Rate exceeded")

    runtime.answer = throttled
    arn = sm.register("Approved")
    with caplog.at_level(logging.WARNING, logger="bincount.deployer"):
        assert go_live(sm, clients, config, arn)["smoke_test"] == "unavailable"
    assert RESULT not in (sm.packages[arn].get("CustomerMetadataProperties") or {})
    assert "smoke_test_unavailable" in caplog.text

    runtime.answer = None
    assert handle(SCHEDULE, clients, config)["smoke_test"] == "passed"


def test_rejecting_and_approving_again_runs_the_smoke_test_again(sm, clients, config, runtime):
    arn = sm.register("Approved")
    runtime.latency_ms = 5000
    go_live(sm, clients, config, arn)
    assert sm.packages[arn]["CustomerMetadataProperties"][RESULT].startswith("failed")

    sm.set_status(arn, "Rejected")
    handle(package_event(arn, "Rejected", GROUP), clients, config)
    assert RESULT not in sm.packages[arn]["CustomerMetadataProperties"]
    assert P50 not in sm.packages[arn]["CustomerMetadataProperties"]

    runtime.latency_ms = 100
    sm.set_status(arn, "Approved")
    assert handle(package_event(arn, "Approved", GROUP), clients, config)["smoke_test"] == "passed"


def test_without_a_runtime_client_the_smoke_test_is_skipped_and_logged(sm, clients, config, caplog):
    arn = sm.register("Approved")
    with caplog.at_level(logging.WARNING, logger="bincount.deployer"):
        result = go_live(sm, replace(clients, runtime=None), config, arn)
    assert result["smoke_test"] == "skipped"
    assert "smoke_test_skipped" in caplog.text
    assert "CustomerMetadataProperties" not in sm.packages[arn]


def test_smoke_test_off_calls_nothing(sm, clients, config):
    result = go_live(sm, clients, replace(config, smoke_test=False), sm.register("Approved"))
    assert "smoke_test" not in result
    assert invocations(sm) == []


# -- the pieces ---------------------------------------------------------------------------------


def test_the_shipped_photos_are_the_three_real_bins():
    names = [name for name, _ in smoke.photos()]
    assert names == ["00870_2.jpg", "06098_3.jpg", "06638_1.jpg"]
    assert all(body[:3] == b"\xff\xd8\xff" for _, body in smoke.photos())  # JPEG


def test_a_reason_becomes_a_metadata_value_the_api_accepts():
    value = smoke.metadata_value("failed: 'x', (y) \"z\"\n" + "é" * 300)
    assert len(value) <= 256
    assert all(c.isalnum() or c in " _.:/=+-@" for c in value)
    assert smoke.metadata_value("!!!") == "none"


def test_an_answer_must_be_right_in_every_part():
    version = "arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1"
    assert smoke.answer_problem(good_answer({}, version), version) == ""
    assert "bool True" in smoke.answer_problem(
        json.dumps(
            {"predictions": [{"count": True, "probabilities": {"1": 1.0}}], "model_version": 1}
        ).encode(),
        version,
    )
    assert "not all numbers" in smoke.answer_problem(
        json.dumps(
            {"predictions": [{"count": 1, "probabilities": {"1": "1"}}], "model_version": version}
        ).encode(),
        version,
    )
