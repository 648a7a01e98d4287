"""Staging -> prod, locally, through every step a person takes on AWS: an execution deploys
its Approved version to staging, the staging deployer smoke-tests it, the version is promoted
into prod's group as PendingManualApproval, a release approver approves it there and prod
serves it; rejection rolls back per stage; every step leaves a notification."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.local import cli, stages
from pipeline.local.store import HOME_ENV
from pipeline.local.workspace import Workspace

pytestmark = pytest.mark.slow

STAGING, PROD = stages.STAGES
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    import synthetic

    home = tmp_path_factory.mktemp("promotion-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HOME_ENV, str(home))
        workspace = Workspace(home)
        synthetic.generate(
            home / "dataset", per_class=10, seed=2, file_list=home / "dataset" / "file_list.json"
        )
        definition = workspace.definition()
        dataset = home / "dataset"

        def run(**changes):
            parameters = {
                "Architecture": "smallcnn",
                "ImageSize": 32,
                "Epochs": 1,
                "BatchSize": 16,
                "SourceUri": str(dataset),
                "FileListUri": str(dataset / "file_list.json"),
                "AccuracyThreshold": 0.0,
                "MinTrainImages": 1,
                "MinValidationImages": 1,
                "MinTestImages": 1,
                **changes,
            }
            return workspace.runner(echo=lambda line: None).run(definition, parameters)

        workspace.run = run
        yield workspace
        workspace.sagemaker.endpoints.stop_all()


def serving(ws, endpoint: str) -> str:
    photo = sorted((REPO / "infra" / "deployer_lambda" / "smoke").glob("*.jpg"))[0]
    status, _, answer = ws.sagemaker.endpoints.invoke(endpoint, photo.read_bytes(), "image/jpeg")
    assert status == 200, answer
    return json.loads(answer)["model_version"]


def metadata(ws, arn: str) -> dict:
    return ws.sagemaker.describe_model_package(ModelPackageName=arn).get(
        "CustomerMetadataProperties", {}
    )


def subjects(ws) -> list[str]:
    return [m["Subject"] for m in stages.LocalNotifications(ws.home).messages()]


def test_staging_to_prod_with_smoke_test_promotion_and_separate_approval(ws, capsys):
    record = ws.run(ModelApprovalStatus="Approved")
    assert record["PipelineExecutionStatus"] == "Succeeded"
    v1 = next(s for s in record["Steps"] if s["StepName"] == "Register")["Properties"][
        "ModelPackageArn"
    ]
    # Staging serves it and its deployer smoke-tested it with the real bin photos.
    assert serving(ws, STAGING.endpoint_name) == v1
    assert metadata(ws, v1)[f"bincount:smoke-test:{STAGING.name}"] == "passed"
    assert float(metadata(ws, v1)[f"bincount:smoke-p50-ms:{STAGING.name}"]) > 0

    # Promotion: a PendingManualApproval copy in prod's group; prod serves nothing yet.
    assert cli.main(["models", "promote", "1"]) == 0
    assert "promoted" in capsys.readouterr().out
    (copy,) = ws.sagemaker.list_model_packages(ModelPackageGroupName=PROD.group)[
        "ModelPackageSummaryList"
    ]
    assert copy["ModelApprovalStatus"] == "PendingManualApproval"
    assert metadata(ws, copy["ModelPackageArn"])["bincount:promoted-from"] == v1
    assert cli.main(["models", "promote", "1"]) == 0  # idempotent
    assert "already_promoted" in capsys.readouterr().out
    assert len(ws.sagemaker.list_model_packages(ModelPackageGroupName=PROD.group)[
        "ModelPackageSummaryList"
    ]) == 1  # fmt: skip

    # The release approver approves it in prod: the prod deployer puts it live there.
    assert cli.main(["models", "approve", "1", "--stage", "prod"]) == 0
    capsys.readouterr()
    assert serving(ws, PROD.endpoint_name) == copy["ModelPackageArn"]
    assert serving(ws, STAGING.endpoint_name) == v1

    # Both stages show in the listings.
    assert cli.main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "stage staging: model package group bincount" in listing
    assert "stage prod: model package group bincount-prod" in listing
    assert cli.main(["endpoints", "list"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert any(r.split()[:2] == [STAGING.endpoint_name, "staging"] for r in rows), rows
    assert any(r.split()[:2] == [PROD.endpoint_name, "prod"] for r in rows), rows

    # Every step reached the topic.
    said = "\n".join(subjects(ws))
    assert "[staging]" in said and "is live" in said
    assert "passed its smoke test" in said
    assert "waiting for approval in prod" in said
    assert "[prod]" in said


def test_a_version_without_a_passed_smoke_test_cannot_be_promoted(ws, capsys):
    # Registered but never approved into staging: never deployed, never smoke-tested.
    ws.run(ModelApprovalStatus="PendingManualApproval")
    assert cli.main(["models", "promote", "2"]) != 0
    assert "smoke" in capsys.readouterr().err.lower()
    assert len(ws.sagemaker.list_model_packages(ModelPackageGroupName=PROD.group)[
        "ModelPackageSummaryList"
    ]) == 1  # fmt: skip


def test_rejection_rolls_back_per_stage(ws, capsys):
    # v2 approved into staging replaces v1 there; prod keeps its copy of v1.
    v2 = ws.sagemaker.list_model_packages(
        ModelPackageGroupName=STAGING.group, SortOrder="Descending"
    )["ModelPackageSummaryList"][0]["ModelPackageArn"]
    assert cli.main(["models", "approve", "2"]) == 0
    prod_live = serving(ws, PROD.endpoint_name)
    assert serving(ws, STAGING.endpoint_name) == v2
    assert cli.main(["models", "reject", "2"]) == 0
    capsys.readouterr()
    assert serving(ws, STAGING.endpoint_name).endswith("/bincount/1")
    assert serving(ws, PROD.endpoint_name) == prod_live
