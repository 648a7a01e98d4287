"""Local endpoints: SageMaker's container contract over HTTP, started, swapped and stopped as
background processes through the local SageMaker client."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
from local_models import deployable_archive

from pipeline.local.endpoints import http_request
from pipeline.local.sagemaker_client import LocalSageMakerClient
from pipeline.local.serve import MAX_BODY_BYTES

HANDLER = """
import json
import os


class Refused(Exception):
    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def model_fn(model_dir):
    with open(os.path.join(model_dir, "model.json")) as f:
        return json.load(f)


def input_fn(body, content_type):
    if content_type != "application/json":
        raise Refused(415, f"unsupported content type {content_type}")
    data = json.loads(body)
    if "x" not in data:
        raise Refused(400, "missing field x")
    if data["x"] == "boom":
        raise RuntimeError("exploded")
    return data["x"]


def predict_fn(x, model):
    return {"y": x * model["scale"], "version": os.environ.get("BINCOUNT_MODEL_VERSION")}


def output_fn(prediction, accept):
    return json.dumps(prediction), accept
"""


def model_archive(scale: int, with_code: bool = True) -> bytes:
    raw = io.BytesIO()
    files = {"model.json": json.dumps({"scale": scale})}
    if with_code:
        files["code/inference.py"] = HANDLER
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.fixture
def sm(tmp_path):
    client = LocalSageMakerClient(tmp_path)
    yield client
    client.endpoints.stop_all()


def deployable(sm, name: str, scale: int, with_code: bool = True) -> str:
    return deployable_archive(sm, name, model_archive(scale, with_code))


def invoke(sm, body: bytes, content_type="application/json"):
    status, _, answer = sm.endpoints.invoke("ep", body, content_type)
    return status, answer.decode()


def test_endpoint_serves_the_container_contract(sm):
    sm.create_endpoint(EndpointName="ep", EndpointConfigName=deployable(sm, "m1", 2))
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointStatus"] == "InService"
    assert described["ProductionVariants"][0]["VariantName"] == "AllTraffic"
    port = sm.endpoints.get("endpoints", "ep")["Server"]["Port"]
    assert http_request(port, "GET", "/ping")[0] == 200

    assert invoke(sm, b'{"x": 21}') == (200, '{"y": 42, "version": "m1"}')
    status, message = invoke(sm, b"x", "text/plain")
    assert (status, message) == (415, "unsupported content type text/plain")
    assert invoke(sm, b"{}") == (400, "missing field x")
    status, message = invoke(sm, b'{"x": "boom"}')
    assert status == 500
    assert "RuntimeError: exploded" in message
    status, message = invoke(sm, b"0" * (MAX_BODY_BYTES + 1))
    assert status == 413
    assert "exceeds the limit" in message
    assert http_request(port, "GET", "/nothing")[0] == 404


def test_update_swaps_the_server_and_stop_then_invoke_restarts(sm):
    sm.create_endpoint(EndpointName="ep", EndpointConfigName=deployable(sm, "m1", 2))
    first = sm.endpoints.get("endpoints", "ep")["Server"]
    sm.update_endpoint(EndpointName="ep", EndpointConfigName=deployable(sm, "m2", 3))
    assert sm.describe_endpoint(EndpointName="ep")["EndpointConfigName"] == "m2"
    assert invoke(sm, b'{"x": 1}') == (200, '{"y": 3, "version": "m2"}')
    assert not os.path.exists(f"/proc/{first['Pid']}") or not _serving(first)

    assert sm.endpoints.stop("ep") is True
    # Scaled to zero, not broken: the deployer may still update it (no AWS-only remedy).
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"
    (server,) = sm.endpoints.describe_servers()
    assert (server["Running"], server["ServerState"]) == (False, "stopped")
    assert sm.endpoints.stop("ep") is False
    assert invoke(sm, b'{"x": 2}') == (200, '{"y": 6, "version": "m2"}')
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"

    sm.delete_endpoint(EndpointName="ep")
    assert sm.list_endpoints() == {"Endpoints": []}


def _serving(server: dict) -> bool:
    try:
        return http_request(server["Port"], "GET", "/ping", timeout=2)[0] == 200
    except OSError:
        return False


def test_a_model_that_cannot_load_leaves_the_endpoint_failed_with_the_reason(sm):
    sm.create_endpoint(EndpointName="ep", EndpointConfigName=deployable(sm, "bad", 1, False))
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointStatus"] == "Failed"
    assert "code/inference.py" in described["FailureReason"]


def test_a_stale_stopped_view_does_not_redeploy_a_server_restarted_meanwhile(sm, monkeypatch):
    sm.create_endpoint(EndpointName="ep", EndpointConfigName=deployable(sm, "m1", 2))
    running = sm.endpoints.get("endpoints", "ep")

    # The first read is unlocked (recover returns the record as it stands while another
    # process holds the lock): it sees the endpoint as another invoke saw it before
    # restarting it.
    def recover(name):
        return {**running, "Server": None}

    monkeypatch.setattr(sm.endpoints, "recover", recover)
    record = sm.endpoints.ensure_running("ep")
    assert record["Server"]["Pid"] == running["Server"]["Pid"]
    assert _serving(running["Server"])


def test_a_server_whose_ping_raises_is_killed(sm, monkeypatch):
    import pipeline.local.endpoints as endpoints_module

    started = []
    real_popen = endpoints_module.subprocess.Popen

    def popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        started.append(proc)
        return proc

    def refuse(*args, **kwargs):
        raise ConnectionResetError("reset by peer")

    monkeypatch.setattr(endpoints_module.subprocess, "Popen", popen)
    monkeypatch.setattr(endpoints_module, "http_request", refuse)
    sm.create_endpoint(EndpointName="ep", EndpointConfigName=deployable(sm, "m1", 2))
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointStatus"] == "Failed"
    assert "/ping failed: reset by peer" in described["FailureReason"]
    (proc,) = started
    assert proc.wait(timeout=30) is not None


def test_the_deployer_marks_a_version_the_local_endpoint_could_not_load_and_tears_down(
    sm, tmp_path
):
    """The reconciler over the local stand-ins: an update whose server cannot start leaves the
    endpoint on the old version (as a SageMaker rollback does); the version is marked and not
    retried; teardown removes the endpoint, configs, models and scalable target."""
    from infra.deployer_lambda.deployer import ROLLOUT_FAILED_PREFIX, Clients, Config, handle
    from pipeline.local.sagemaker_client import LocalAutoscalingClient

    autoscaling = LocalAutoscalingClient(tmp_path)
    clients = Clients(sagemaker=sm, autoscaling=autoscaling)
    config = Config(
        endpoint_name="ep",
        model_role_arn="arn:aws:iam::000000000000:role/model",
        data_capture_uri="s3://bincount-local/data-capture",
        model_package_group="bincount",
    )

    def register(scale: int, with_code: bool = True) -> str:
        uri = f"s3://bincount-local/models/{scale}/model.tar.gz"
        sm.store.put_bytes(model_archive(scale, with_code), uri)
        return sm.create_model_package(
            ModelPackageGroupName="bincount",
            ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": uri}]},
        )["ModelPackageArn"]

    good = register(2)
    assert handle({"model_package_arn": good}, clients, config)["status"] == "deployed"
    broken = register(3, with_code=False)  # no code/inference.py: the server cannot start
    event = {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change",
        "detail": {"ModelPackageGroupName": "bincount", "ModelPackageArn": broken},
    }

    result = handle(event, clients, config)

    assert result["status"] == "unchanged"
    assert result["rollout_failed_model_package_arn"] == broken
    metadata = sm.describe_model_package(ModelPackageName=broken)["CustomerMetadataProperties"]
    assert f"{ROLLOUT_FAILED_PREFIX}ep" in metadata
    assert json.loads(invoke(sm, b'{"x": 1}')[1])["version"] == good
    assert handle(event, clients, config)["status"] == "unchanged"  # not retried

    teardown = {"RequestType": "Delete", "PhysicalResourceId": "ep-deployer"}
    assert handle(teardown, clients, config) == {"PhysicalResourceId": "ep-deployer"}
    assert sm.list_endpoints() == {"Endpoints": []}
    assert sm.list_models(NameContains="ep")["Models"] == []
    assert sm.list_endpoint_configs(NameContains="ep")["EndpointConfigs"] == []
    assert autoscaling.records()["targets"] == {}
    assert handle(teardown, clients, config) == {"PhysicalResourceId": "ep-deployer"}
