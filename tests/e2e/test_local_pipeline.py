"""The whole pipeline, run locally on a tiny generated dataset, from data to a live endpoint.

One home folder for the module: the first execution trains and deploys; later ones hit the
step cache, register a second version, approve and reject it through the CLI, and fail at
the quality gate.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from pipeline.local import cli, stages
from pipeline.local.runner import ExecutionFailed
from pipeline.local.store import HOME_ENV
from pipeline.local.workspace import Workspace

pytestmark = pytest.mark.slow

# The Deploy step names no endpoint: the local deployer serves the first stage's.
ENDPOINT = stages.STAGES[0].endpoint_name
JOB_STEPS = ("Prepare", "Train", "Evaluate")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    import synthetic

    home = tmp_path_factory.mktemp("bincount-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HOME_ENV, str(home))
        workspace = Workspace(home)
        synthetic.generate(
            home / "dataset", per_class=10, seed=1, file_list=home / "dataset" / "file_list.json"
        )
        workspace.definition_text = workspace.definition()
        yield workspace
        workspace.sagemaker.endpoints.stop_all()


def params(ws, **changes) -> dict:
    dataset = ws.home / "dataset"
    return {
        "Architecture": "smallcnn",
        "ImageSize": 32,
        "Epochs": 1,
        "BatchSize": 16,
        "SourceUri": str(dataset),
        "FileListUri": str(dataset / "file_list.json"),
        "AccuracyThreshold": 0.0,
        "ModelApprovalStatus": "Approved",
        # A 50-image dataset: the split minimums are for real runs.
        "MinTrainImages": 1,
        "MinValidationImages": 1,
        "MinTestImages": 1,
        **changes,
    }


def run(ws, **changes) -> dict:
    return ws.runner(echo=lambda line: None).run(ws.definition_text, params(ws, **changes))


def steps(record: dict) -> dict[str, dict]:
    return {s["StepName"]: s for s in record["Steps"]}


@pytest.fixture(scope="module")
def first(ws) -> dict:
    return run(ws)


@pytest.fixture(scope="module")
def second(ws, first) -> dict:
    return run(ws, ModelApprovalStatus="PendingManualApproval")


def invoke(ws, body: bytes, content_type: str = "image/jpeg") -> tuple[int, str]:
    status, _, answer = ws.sagemaker.endpoints.invoke(ENDPOINT, body, content_type)
    return status, answer.decode()


def live_version(ws, real_bins) -> str:
    status, answer = invoke(ws, real_bins[0][0].read_bytes())
    assert status == 200, answer
    return json.loads(answer)["model_version"]


def test_passing_gate_registers_and_deploys(ws, first, real_bins):
    by_name = steps(first)
    assert first["PipelineExecutionStatus"] == "Succeeded"
    assert {n: s["StepStatus"] for n, s in by_name.items()} == {
        "Prepare": "Succeeded",
        "Train": "Succeeded",
        "Evaluate": "Succeeded",
        "QualityGate": "Succeeded",
        "Register": "Succeeded",
        "Deploy": "Succeeded",
        "QualityGateFailed": "NotExecuted",
    }
    model_uri = by_name["Train"]["Properties"]["ModelArtifacts"]["S3ModelArtifacts"]
    assert model_uri.endswith("/output/model.tar.gz")
    assert ws.store.path(model_uri).is_file()
    assert set(by_name["Train"]["Metrics"]) >= {"train_loss", "val_acc"}
    package = by_name["Register"]["Properties"]
    assert (package["ModelPackageVersion"], package["ModelApprovalStatus"]) == (1, "Approved")
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == model_uri
    assert by_name["Deploy"]["Properties"]["OutputParameters"]["endpoint_name"] == ENDPOINT
    assert live_version(ws, real_bins) == package["ModelPackageArn"]


def test_endpoint_answers_counts_and_refuses_bad_requests(ws, first, real_bins):
    status, answer = invoke(ws, real_bins[0][0].read_bytes())
    prediction = json.loads(answer)["predictions"][0]
    assert prediction["count"] in {1, 2, 3, 4, 5}
    status, answer = invoke(ws, b"not an image at all")
    assert status == 400, answer
    status, answer = invoke(ws, b"hello", "text/plain")
    assert status == 415, answer
    # A small image, so the batch is refused for its length, not its bytes.
    small = io.BytesIO()
    Image.open(real_bins[0][0]).resize((64, 48)).save(small, "JPEG")
    one = base64.b64encode(small.getvalue()).decode()
    batch = json.dumps({"instances": [{"b64": one}] * 65}).encode()
    status, answer = invoke(ws, batch, "application/json")
    assert status == 413, answer
    assert "65 images" in answer
    # SageMaker's 6 MB payload limit, enforced by the local endpoint as on AWS.
    big = json.dumps({"instances": [{"b64": "A" * 4}] * 2_000_000}).encode()
    status, answer = invoke(ws, big, "application/json")
    assert status == 413, answer
    assert "exceeds the limit" in answer


def test_second_run_reuses_cached_steps(ws, first, second):
    before, after = steps(first), steps(second)
    for name in JOB_STEPS:
        assert after[name]["Cached"] is True
        assert (
            after[name]["CacheHitResult"]["SourcePipelineExecutionId"]
            == (first["PipelineExecutionId"])
        )
        assert after[name]["Properties"] == before[name]["Properties"]
        assert after[name]["Seconds"] < before[name]["Seconds"]
    assert after["Register"]["Properties"]["ModelPackageVersion"] == 2
    assert after["Deploy"]["LambdaResponse"]["status"] == "skipped"


def test_approve_deploys_and_reject_rolls_back_through_the_cli(
    ws, first, second, real_bins, capsys
):
    v1 = steps(first)["Register"]["Properties"]["ModelPackageArn"]
    v2 = steps(second)["Register"]["Properties"]["ModelPackageArn"]
    assert live_version(ws, real_bins) == v1

    assert cli.main(["models", "approve", "2", "--endpoint", ENDPOINT]) == 0
    assert '"status": "deployed"' in capsys.readouterr().out
    assert live_version(ws, real_bins) == v2

    assert cli.main(["models", "reject", "2", "--endpoint", ENDPOINT]) == 0
    assert '"status": "rolled_back"' in capsys.readouterr().out
    assert live_version(ws, real_bins) == v1

    assert cli.main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "v1    Approved" in listing
    assert listing.splitlines()[0] == "stage staging: model package group bincount"
    (v1_line,) = [line for line in listing.splitlines() if line.startswith("v1 ")]
    assert f"live on {ENDPOINT}" in v1_line
    assert "v2    Rejected" in listing


def test_failing_gate_names_both_numbers(ws, first):
    with pytest.raises(ExecutionFailed) as failed:
        run(ws, AccuracyThreshold=1.0)  # the threshold's range ends at 1
    record = failed.value.record
    evaluation = steps(record)["Evaluate"]["PropertyFiles"]["EvaluationReport"]
    accuracy = json.loads(ws.store.path(evaluation).read_text())[
        "multiclass_classification_metrics"
    ]["accuracy"]["value"]
    assert accuracy < 1.0
    assert record["FailureReason"].startswith(f"Test accuracy {accuracy} is below")
    assert "AccuracyThreshold 1.0" in record["FailureReason"]
    assert steps(record)["QualityGateFailed"]["StepStatus"] == "Failed"
    assert steps(record)["Register"]["StepStatus"] == "NotExecuted"


def test_cli_lists_executions_and_stops_endpoints(ws, first, capsys):
    assert cli.main(["executions", "list"]) == 0
    assert first["PipelineExecutionId"] in capsys.readouterr().out
    assert cli.main(["executions", "show", first["PipelineExecutionId"]]) == 0
    assert "QualityGate" in capsys.readouterr().out
    assert cli.main(["endpoints", "list"]) == 0
    assert "http://127.0.0.1:" in capsys.readouterr().out
    assert cli.main(["endpoints", "stop", ENDPOINT]) == 0
    assert "stopped" in capsys.readouterr().out
    assert not ws.sagemaker.endpoints.is_running(ws.sagemaker.endpoints.get("endpoints", ENDPOINT))


def test_a_network_isolated_definition_runs_locally(ws, tmp_path_factory):
    """VPC mode's definition: Train has no network, so its code arrives as the `code` channel;
    the local runner refuses what SageMaker would (a download from S3) and runs this one."""
    isolated = Workspace(tmp_path_factory.mktemp("isolated-home"))
    isolated.settings = isolated.settings.replace(network_isolation=True)
    definition = isolated.definition()
    train = next(s for s in json.loads(definition)["Steps"] if s["Name"] == "Train")
    assert train["Arguments"]["EnableNetworkIsolation"] is True
    record = isolated.runner(echo=lambda line: None).run(
        definition, params(ws, ModelApprovalStatus="PendingManualApproval")
    )
    assert record["PipelineExecutionStatus"] == "Succeeded"
    assert steps(record)["Train"]["StepStatus"] == "Succeeded"
