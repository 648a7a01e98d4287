"""The local commands as a newcomer meets them: `run` offline by default, an unreachable source
refused at once, listings with headers and --json, readable endpoint answers, a stopped
endpoint that stays stopped, and exit codes (2 usage, 1 runtime)."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from local_models import deployable_archive

from pipeline.cli import main
from pipeline.local.sagemaker_client import LocalSageMakerClient
from pipeline.local.store import HOME_ENV, write_json

REPO = Path(__file__).resolve().parents[3]

# A model whose serving code answers as training/inference.py does (counts, probabilities
# keyed by count, the version), without torch: the request says the count to answer.
HANDLER = """
import json
import os


def model_fn(model_dir):
    return None


def input_fn(body, content_type):
    return json.loads(body)["x"]


def predict_fn(x, model):
    probabilities = {str(c): (0.8123456789012345 if c == x else 0.0469135802) for c in range(1, 6)}
    return {
        "predictions": [{"count": x, "probabilities": probabilities}],
        "model_version": os.environ.get("BINCOUNT_MODEL_VERSION"),
    }


def output_fn(prediction, accept):
    return json.dumps(prediction), accept
"""


def deployable(sm, name: str) -> str:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        data = HANDLER.encode()
        info = tarfile.TarInfo("code/inference.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return deployable_archive(sm, name, raw.getvalue())


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    return tmp_path / "home"


# -- run: offline by default -------------------------------------------------------------------


def test_an_unreachable_s3_source_is_one_line_at_once_before_any_step(home, monkeypatch, capsys):
    # Nothing listens on port 9: the connection is refused, as offline it fails to resolve.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    monkeypatch.setattr(
        "pipeline.local.workspace.Workspace.definition",
        lambda self: pytest.fail("the definition is built only after the source answers"),
    )
    assert main(["run", "--param", "SourceUri=s3://aft-vbi-pds", "--param", "Epochs=3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: SourceUri s3://aft-vbi-pds is ")
    assert "unreachable" in err and "leave SourceUri out" in err and "Traceback" not in err
    assert not (home / "executions").exists()


def test_a_missing_source_folder_is_a_usage_error(home, tmp_path, capsys):
    assert main(["run", "--param", f"SourceUri={tmp_path / 'nope'}"]) == 2
    assert capsys.readouterr().err == f"error: SourceUri {tmp_path / 'nope'}: no such folder\n"


def test_run_defaults_to_the_generated_dataset(home, capsys):
    from pipeline.local.cli import with_local_source
    from pipeline.local.quickstart import GENERATED_PER_CLASS, GENERATED_SEED
    from pipeline.local.workspace import Workspace

    # The quickstart's dataset folder, already there: reused, not generated again.
    dataset = home / "datasets" / f"synthetic-{GENERATED_PER_CLASS}-seed{GENERATED_SEED}"
    dataset.mkdir(parents=True)
    (dataset / "file_list.json").write_text("{}")
    ws = Workspace.default()
    declared = {"SourceUri", "FileListUri", "PerClassCap", "ImageSize", "LearningRate", "Epochs"}
    assert with_local_source(ws, {"Epochs": "3"}, declared) == {
        "SourceUri": str(dataset),
        "FileListUri": str(dataset / "file_list.json"),
        "PerClassCap": "0",
        "ImageSize": "48",
        "LearningRate": "0.005",
        "Epochs": "3",
    }
    out = capsys.readouterr().out
    assert f"source: the generated dataset {dataset}, at the quickstart's CPU-sized " in out
    assert "ImageSize=48, LearningRate=0.005 " in out
    # What the user gives wins.
    given = with_local_source(ws, {"FileListUri": "bundled", "ImageSize": "96"}, declared)
    assert (given["FileListUri"], given["ImageSize"]) == ("bundled", "96")
    source = {"SourceUri": str(dataset)}
    assert with_local_source(ws, source, declared) == source
    # Another pipeline's definition, without a SourceUri: exactly what was given.
    assert with_local_source(ws, {"Epochs": "3"}, {"Epochs"}) == {"Epochs": "3"}


def test_quickstart_with_an_unknown_architecture_is_a_clear_error(home, capsys):
    argv = ["quickstart", "--architecture", "vgg", "--per-class", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: --architecture 'vgg': Architecture must be one of resnet18, resnet34, resnet50, "
        "smallcnn\n"
    )
    assert not (home / "datasets").exists()  # refused before any work


# -- listings: headers and --json ----------------------------------------------------------------


def test_executions_list_has_a_header_and_json(home, capsys):
    record = {
        "PipelineExecutionId": "20260101T000000-abcd",
        "PipelineExecutionStatus": "Succeeded",
        "StartTime": "2026-01-01T00:00:00+00:00",
        "Seconds": 12.5,
        "Steps": [],
    }
    write_json(home / "executions" / record["PipelineExecutionId"] / "execution.json", record)
    assert main(["executions", "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["EXECUTION", "STATUS", "SECONDS", "STARTED"]
    assert row.split()[:3] == ["20260101T000000-abcd", "Succeeded", "12.5"]
    assert main(["executions", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [record]
    assert main(["executions", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == record


def test_empty_listings_say_so_and_json_is_an_empty_list(home, capsys):
    for command in (["executions", "list"], ["endpoints", "list"], ["models", "list"]):
        assert main([*command, "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == []
        assert main(command) == 0
        assert "no " in capsys.readouterr().out


def test_executions_show_without_executions_exits_1(home, capsys):
    assert main(["executions", "show"]) == 1
    assert "no executions yet" in capsys.readouterr().err


# -- endpoints ---------------------------------------------------------------------------------


@pytest.fixture
def endpoint(home):
    sm = LocalSageMakerClient(home)
    sm.create_endpoint(EndpointName="ep", EndpointConfigName=deployable(sm, "m1"))
    yield sm
    sm.endpoints.stop_all()


def test_a_stopped_endpoint_stays_stopped_until_started(endpoint, tmp_path, capsys):
    body = tmp_path / "x.json"
    body.write_text('{"x": 2}')
    assert main(["endpoints", "invoke", "ep", str(body)]) == 0
    assert capsys.readouterr().out == "count 2 (confidence 81%)  [model m1]\n"
    assert main(["endpoints", "invoke", "ep", str(body), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["predictions"][0]["probabilities"]["2"] == 0.8123456789012345

    assert main(["endpoints", "stop", "ep"]) == 0
    assert capsys.readouterr().out == "ep: stopped\n"
    assert main(["endpoints", "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["ENDPOINT", "STAGE", "STATUS", "MODIFIED", "DETAILS"]
    assert row.split()[:3] == ["ep", "-", "Stopped"] and "endpoints start ep" in row
    # As on AWS, invoking what is not serving is an error, not a silent restart.
    assert main(["endpoints", "invoke", "ep", str(body)]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: endpoint "ep" is stopped') and "endpoints start ep" in err
    assert not endpoint.endpoints.is_running(endpoint.endpoints.get("endpoints", "ep"))

    assert main(["endpoints", "start", "ep"]) == 0
    assert capsys.readouterr().out.startswith("ep: serving on http://127.0.0.1:")
    assert main(["endpoints", "invoke", "ep", str(body)]) == 0
    assert capsys.readouterr().out == "count 2 (confidence 81%)  [model m1]\n"
    assert main(["endpoints", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["EndpointName"], listed["Status"]) == ("ep", "InService")
    assert listed["Details"].startswith("http://127.0.0.1:")


def test_a_crashed_server_is_still_restarted_by_invoke(endpoint, tmp_path, capsys):
    # Not stopped on purpose (a crash, a reboot): the endpoint is in service, so invoke serves.
    server = endpoint.endpoints.get("endpoints", "ep")["Server"]
    endpoint.endpoints.stop_server(server, remove_files=False)
    body = tmp_path / "x.json"
    body.write_text('{"x": 3}')
    assert main(["endpoints", "invoke", "ep", str(body)]) == 0
    assert capsys.readouterr().out == "count 3 (confidence 81%)  [model m1]\n"


def test_endpoint_usage_errors_exit_2(home, tmp_path, capsys):
    assert main(["endpoints", "invoke", "ep", str(tmp_path / "none.jpg")]) == 2
    assert capsys.readouterr().err == f"error: no such file: {tmp_path / 'none.jpg'}\n"
    assert main(["endpoints", "stop"]) == 2
    assert capsys.readouterr().err == "error: name an endpoint or pass --all\n"
    assert main(["endpoints", "start", "nope"]) == 2
    assert 'Could not find endpoint "nope"' in capsys.readouterr().err
    assert main(["models", "approve", "7"]) == 2
    assert "has no version 7" in capsys.readouterr().err
    assert main(["models", "approve", "seven"]) == 2
    assert "expected a version number" in capsys.readouterr().err


def test_an_answer_is_one_readable_line(monkeypatch):
    from pipeline.local.listings import readable_answer

    monkeypatch.syspath_prepend(str(REPO / "training"))
    sys.modules.pop("inference", None)
    from inference import output_fn  # the serving code's own answer

    probabilities = np.array([[0.0123456789012345, 0.05, 0.8123456789012345, 0.1, 0.0253086]])
    body, _ = output_fn(
        {
            "counts": [3],
            "probabilities": probabilities,
            "classes": [1, 2, 3, 4, 5],
            "version": "7",
        }
    )
    assert readable_answer(body) == "count 3 (confidence 81%)  [model 7]"
    two = json.loads(body)
    two["predictions"].append({"count": 1, "probabilities": {"1": 0.5, "2": 0.5}})
    assert readable_answer(json.dumps(two)) == (
        "count 3 (confidence 81%); count 1 (confidence 50%)  [model 7]"
    )
    assert readable_answer('{"y": 4}') == '{"y": 4}'
    assert readable_answer("not json") == "not json"
