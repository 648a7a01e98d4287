"""`python -m pipeline report [ID]`: the page rebuilt from the local store and registry.

The home folder is laid out as the runner leaves it: Evaluate's real output (evaluate.py run
on a packaged model and test shards) under the execution's prefix in the store, the test
shards under Prepare's, versions in the local registry pointing at their evaluation.json, and
the execution records naming those outputs as step properties.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from pipeline.cli import main as pipeline_main
from pipeline.local import report as report_command
from pipeline.local.store import HOME_ENV, write_json
from pipeline.local.workspace import Workspace

BUCKET = "s3://bincount-local"


def packaged_model(folder: Path) -> Path:
    import torch
    from curves import write_curves
    from model import build_model
    from model_export import export_model_dir

    torch.manual_seed(0)
    model_dir = folder / "model"
    net = build_model("smallcnn", pretrained=False, num_classes=5)
    export_model_dir(model_dir, net.state_dict(), "smallcnn", 32, extra={"best_epoch": 2})
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "train_acc": 0.3 * e,
         "val_acc": 0.3 * e, "val_mae": 1.0 / e}
        for e in (1, 2)
    ]  # fmt: skip
    write_curves(history, model_dir)
    archive = folder / "archive"
    archive.mkdir()
    with tarfile.open(archive / "model.tar.gz", "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)
    return archive


def outputs(**uris: str) -> dict:
    return {
        "ProcessingOutputConfig": {
            "Outputs": [{"OutputName": k, "S3Output": {"S3Uri": v}} for k, v in uris.items()]
        }
    }


def record_execution(ws: Workspace, execution_id: str, start: str, steps: list[dict]) -> None:
    write_json(
        ws.home / "executions" / execution_id / "execution.json",
        {
            "PipelineExecutionId": execution_id,
            "PipelineExecutionArn": f"arn:local/execution/{execution_id}",
            "PipelineExecutionStatus": "Succeeded",
            "StartTime": start,
            "Steps": steps,
        },
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Two executions: e1 registered v1 (accuracy 0.9 by its evaluation.json), e2 evaluated
    the packaged model and registered v2; a third, e3, failed before Evaluate."""
    from evaluate import main as evaluate_main
    from shard_factory import write_shards

    root = tmp_path_factory.mktemp("report-home")
    ws = Workspace(root / "home")
    work = root / "work"
    test_uri = f"{BUCKET}/intermediate/e2/Prepare/test"
    test_dir = write_shards(ws.store.path(test_uri), n=30, size=32, seed=2, shard_size=16)
    evaluation_uri = f"{BUCKET}/executions/e2/Evaluate"
    output_dir = ws.store.path(evaluation_uri)
    argv = ["--model-dir", str(packaged_model(work)), "--test-dir", str(test_dir),
            "--output-dir", str(output_dir), "--min-test-images", "1"]  # fmt: skip
    assert evaluate_main(argv) == 0

    # v1: an earlier version with its own evaluation.json.
    v1_eval = f"{BUCKET}/executions/e1/Evaluate/evaluation.json"
    ws.store.put_bytes(
        json.dumps(
            {
                "multiclass_classification_metrics": {"accuracy": {"value": 0.9}},
                "counting_metrics": {"mae": {"value": 0.1}},
            }
        ).encode(),
        v1_eval,
    )
    arns = []
    for uri in (v1_eval, f"{evaluation_uri}/evaluation.json"):
        arns.append(
            ws.sagemaker.create_model_package(
                ModelPackageGroupName="bincount",
                ModelApprovalStatus="PendingManualApproval",
                InferenceSpecification={"Containers": [{"Image": "x", "ModelDataUrl": "s3://b/m"}]},
                ModelMetrics={
                    "ModelQuality": {
                        "Statistics": {"ContentType": "application/json", "S3Uri": uri}
                    }
                },
            )["ModelPackageArn"]
        )
    evaluate_step = {
        "StepName": "Evaluate",
        "StepStatus": "Succeeded",
        "Properties": outputs(evaluation=evaluation_uri),
    }
    prepare_step = {"StepName": "Prepare", "StepStatus": "Succeeded", "Properties": outputs(
        train=f"{BUCKET}/intermediate/e2/Prepare/train", test=test_uri)}  # fmt: skip
    register_step = {
        "StepName": "Register",
        "StepStatus": "Succeeded",
        "Properties": {"ModelPackageArn": arns[1], "ModelPackageGroupName": "bincount"},
    }
    record_execution(ws, "e1", "2026-12-01T10:00:00+00:00", [])
    record_execution(
        ws, "e2", "2026-12-01T11:00:00+00:00", [prepare_step, evaluate_step, register_step]
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HOME_ENV, str(ws.home))
        yield ws, arns


def test_newest_execution_by_default_with_the_registry_history(home, capsys):
    ws, _ = home
    assert pipeline_main(["report"]) == 0
    printed = capsys.readouterr().out.strip()
    page_path = ws.home / "executions" / "e2" / "report.html"
    assert printed == str(page_path)
    page = page_path.read_text()
    assert 'id="execution">e2<' in page
    history = json.loads((ws.home / "executions" / "e2" / "report-history.json").read_text())
    assert [(h["version"], h["accuracy"], h["current"]) for h in history] == [
        ("v1", 0.9, False),
        ("v2", history[1]["accuracy"], True),
    ]
    assert not any(h["live"] for h in history)  # no endpoint serves either version
    assert "No live version to compare with." in page
    assert "Best epoch (the one exported): 2." in page  # model.json's best_epoch
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) >= 3
    # The store's copy is Evaluate's, untouched: the registry points at it.
    evaluate_page = ws.store.path(f"{BUCKET}/executions/e2/Evaluate/report.html").read_text()
    assert 'id="execution">e2<' not in evaluate_page


def test_named_execution_and_open(home, monkeypatch, capsys):
    ws, _ = home
    opened = []
    monkeypatch.setattr(report_command.webbrowser, "open", opened.append)
    assert pipeline_main(["report", "e2", "--open"]) == 0
    page = ws.home / "executions" / "e2" / "report.html"
    assert opened == [page.as_uri()]
    assert capsys.readouterr().out.strip() == str(page)


def test_without_open_nothing_is_opened(home, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr(report_command.webbrowser, "open", opened.append)
    assert pipeline_main(["report", "e2"]) == 0
    assert opened == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "nope"], "no execution 'nope'"),
        (
            ["report", "e1"],
            "execution e1 has no evaluation to report: its Evaluate step is not run",
        ),
    ],
)
def test_what_cannot_be_reported_is_named(home, argv, message, capsys):
    assert pipeline_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err


def test_an_evaluation_gone_from_the_store_is_named(home, tmp_path, monkeypatch, capsys):
    ws, _ = home
    record_execution(
        ws,
        "e9",
        "2026-11-01T00:00:00+00:00",
        [
            {"StepName": "Prepare", "StepStatus": "Succeeded",
             "Properties": outputs(test=f"{BUCKET}/intermediate/e9/Prepare/test")},
            {"StepName": "Evaluate", "StepStatus": "Succeeded",
             "Properties": outputs(evaluation=f"{BUCKET}/executions/e9/Evaluate")},
        ],
    )  # fmt: skip
    assert pipeline_main(["report", "e9"]) == 2
    assert "is no longer in the store" in capsys.readouterr().err


def test_no_executions_at_all(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "empty"))
    assert pipeline_main(["report"]) == 2
    assert "no executions yet" in capsys.readouterr().err
