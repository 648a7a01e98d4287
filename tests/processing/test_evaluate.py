"""The Evaluate script: a packaged model judged on test shards, in the model-quality format."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from evaluate import (
    build_report,
    classification_metrics,
    counting_metrics,
    evaluate,
    main,
    majority_baseline,
    wilson_interval,
)
from shard_factory import write_shard, write_shards

REPO = Path(__file__).resolve().parents[2]
CLASSES = [1, 2, 3, 4, 5]


def packaged_model(folder: Path, image_size: int = 32) -> Path:
    """A smallcnn exported by training's own code, tarred the way SageMaker tars SM_MODEL_DIR."""
    from model import build_model
    from model_export import export_model_dir

    torch.manual_seed(0)
    net = build_model("smallcnn", pretrained=False, num_classes=5)
    model_dir = folder / "model"
    export_model_dir(model_dir, net.state_dict(), "smallcnn", image_size)
    archive_dir = folder / "input"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "model.tar.gz", "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)
    return archive_dir


def test_metrics_on_known_predictions():
    truth = np.array([1, 1, 2, 3, 3, 3, 4, 5])
    pred = np.array([1, 2, 2, 3, 3, 4, 4, 1])
    metrics = classification_metrics(truth, pred, CLASSES)
    assert metrics["accuracy"]["value"] == pytest.approx(5 / 8)
    assert metrics["accuracy"]["standard_deviation"] == pytest.approx((5 / 8 * 3 / 8 / 8) ** 0.5)
    assert metrics["confusion_matrix"]["1"] == {"1": 1, "2": 1, "3": 0, "4": 0, "5": 0}
    assert metrics["confusion_matrix"]["5"]["1"] == 1
    # Recall weighted by support is the accuracy.
    assert metrics["weighted_recall"]["value"] == pytest.approx(5 / 8)
    # Class 1: precision 1/2, recall 1/2; class 2: 1/2, 1; class 3: 1, 2/3; 4: 1/2, 1; 5: 0, 0.
    precision = (2 * 0.5 + 1 * 0.5 + 3 * 1 + 1 * 0.5 + 1 * 0) / 8
    assert metrics["weighted_precision"]["value"] == pytest.approx(precision)

    counting = counting_metrics(truth, pred)
    errors = np.array([0, 1, 0, 0, 0, 1, 0, 4])
    assert counting["mae"]["value"] == pytest.approx(errors.mean())
    assert counting["rmse"]["value"] == pytest.approx(np.sqrt((errors**2).mean()))
    assert counting["within_one_accuracy"]["value"] == pytest.approx(7 / 8)

    baseline = majority_baseline(truth, CLASSES)
    assert baseline == {
        "majority_class": 3,
        "accuracy": pytest.approx(3 / 8),
        "mae": pytest.approx(np.abs(3 - truth).mean()),
        "rmse": pytest.approx(np.sqrt(((3 - truth) ** 2).mean())),
    }


def test_report_is_what_the_quality_gate_reads():
    # The pipeline package needs the SageMaker SDK, which the container-fidelity run lacks.
    pipeline_definition = pytest.importorskip(
        "pipeline.definition", reason="needs the project package (SageMaker SDK)"
    )
    truth = np.array([1, 2, 3, 4, 5])
    report = build_report(truth, truth.copy(), CLASSES, {"arch": "smallcnn", "image_size": 32})
    value = report
    for key in pipeline_definition.ACCURACY_JSON_PATH.split("."):
        value = value[key]
    assert value == 1.0
    assert report["per_class_accuracy"] == dict.fromkeys(map(str, CLASSES), 1.0)
    json.dumps(report)  # plain JSON all the way down


def test_packaged_model_evaluated_through_its_serving_code(tmp_path: Path):
    model_input = packaged_model(tmp_path)
    test_dir = write_shards(tmp_path / "test", n=70, size=32, seed=3, shard_size=32)
    out = tmp_path / "evaluation"

    report = evaluate(model_input, test_dir, out, batch_size=16, min_test_images=70)

    on_disk = json.loads((out / "evaluation.json").read_text())
    assert on_disk["test_images"] == 70 == report["test_images"]
    metrics = on_disk["multiclass_classification_metrics"]
    assert set(metrics) == {
        "accuracy",
        "weighted_precision",
        "weighted_recall",
        "weighted_f1",
        "confusion_matrix",
    }
    for name in ("accuracy", "weighted_precision", "weighted_recall", "weighted_f1"):
        assert 0.0 <= metrics[name]["value"] <= 1.0
    assert sum(sum(row.values()) for row in metrics["confusion_matrix"].values()) == 70
    assert set(on_disk["counting_metrics"]) == {"rmse", "mae", "within_one_accuracy"}
    assert on_disk["baseline"]["majority_class"] in CLASSES
    assert on_disk["model"]["arch"] == "smallcnn"
    low, high = on_disk["accuracy_confidence_interval_95"]
    assert low <= metrics["accuracy"]["value"] <= high and 0 < high - low < 0.25
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "id,label,predicted,p1,p2,p3,p4,p5"
    assert len(rows) == 71
    assert not list(out.glob(".*tmp"))


def test_runs_as_the_processing_job_runs_it(tmp_path: Path):
    """A bare `python evaluate.py ...` from a copy of processing/ alone, as in the container."""
    model_input = packaged_model(tmp_path)
    test_dir = write_shards(tmp_path / "test", n=20, size=32, seed=4)
    code = tmp_path / "code"
    code.mkdir()
    for script in (REPO / "processing").glob("*.py"):
        (code / script.name).write_bytes(script.read_bytes())
    done = subprocess.run(
        [sys.executable, "evaluate.py", "--model-dir", str(model_input), "--test-dir",
         str(test_dir), "--output-dir", str(tmp_path / "out"), "--min-test-images", "20"],
        cwd=code, capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "20 test images" in done.stdout and "95% interval" in done.stdout
    assert (tmp_path / "out" / "evaluation.json").is_file()


def test_every_prepare_hosts_report_merges_into_one_stats_json(tmp_path: Path, capsys):
    model_input = packaged_model(tmp_path)
    test_dir = write_shards(tmp_path / "test", n=20, size=32, seed=4)
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    for host, usable in (("algo-1", 12), ("algo-2", 8)):
        stats = {"host": host, "hosts": 2, "image_size": 32, "usable": usable,
                 "counts": {"test": {"1": usable}}, "seconds": {"total": usable / 4}}  # fmt: skip
        (report_dir / f"stats-{host}.json").write_text(json.dumps(stats))
    args = ["--model-dir", str(model_input), "--test-dir", str(test_dir), "--report-dir",
            str(report_dir), "--output-dir", str(tmp_path / "out"),
            "--min-test-images", "20"]  # fmt: skip
    assert main(args) == 0
    merged = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert merged["usable"] == 20 and merged["counts"] == {"test": {"1": 20}}
    assert merged["seconds"] == {"total": 3.0} and merged["host_names"] == ["algo-1", "algo-2"]

    (report_dir / "stats-algo-2.json").unlink()  # a host's report lost: no partial totals
    assert main([*args[:-4], "--output-dir", str(tmp_path / "again"), *args[-2:]]) == 2
    assert "a host's report is missing" in capsys.readouterr().err
    assert not (tmp_path / "again" / "evaluation.json").exists()


def test_missing_test_split_is_named(tmp_path: Path, capsys):
    model_input = packaged_model(tmp_path)
    code = main(
        ["--model-dir", str(model_input), "--test-dir", str(tmp_path / "nothing"),
         "--output-dir", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 2
    assert "no test shards" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_model_dir_without_a_model_is_named(tmp_path: Path, capsys):
    test_dir = write_shards(tmp_path / "test", n=5, size=32)
    (tmp_path / "empty").mkdir()
    code = main(
        ["--model-dir", str(tmp_path / "empty"), "--test-dir", str(test_dir),
         "--output-dir", str(tmp_path / "out"), "--min-test-images", "5"]
    )  # fmt: skip
    assert code == 2
    assert "neither model.json nor exactly one model.tar.gz" in capsys.readouterr().err


def test_archive_escaping_its_folder_is_refused(tmp_path: Path, capsys):
    test_dir = write_shards(tmp_path / "test", n=5, size=32)
    archive_dir = tmp_path / "input"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "model.tar.gz", "w:gz") as tar:
        payload = b"{}"
        info = tarfile.TarInfo("../../escaped.json")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    code = main(
        ["--model-dir", str(archive_dir), "--test-dir", str(test_dir),
         "--output-dir", str(tmp_path / "out"), "--min-test-images", "5"]
    )  # fmt: skip
    assert code == 2
    assert "not a readable model archive" in capsys.readouterr().err
    assert not (tmp_path.parent / "escaped.json").exists()


def test_labels_outside_the_model_counts_are_named(tmp_path: Path, capsys):
    model_input = packaged_model(tmp_path)
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    write_shard(
        test_dir / "algo-1-00000", np.zeros((2, 32, 32, 3), np.uint8), np.array([3, 7]), ["a", "b"]
    )
    code = main(
        ["--model-dir", str(model_input), "--test-dir", str(test_dir),
         "--output-dir", str(tmp_path / "out"), "--min-test-images", "2"]
    )  # fmt: skip
    assert code == 2
    assert "test labels [7] are outside the model's counts" in capsys.readouterr().err


def test_a_test_split_below_its_minimum_is_refused_before_the_model_is_loaded(
    tmp_path: Path, capsys
):
    """One test image once gave accuracy 1.0 and passed the gate."""
    test_dir = write_shards(tmp_path / "test", n=1, size=32)
    (tmp_path / "no-model").mkdir()  # never looked at
    code = main(
        ["--model-dir", str(tmp_path / "no-model"), "--test-dir", str(test_dir),
         "--output-dir", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert (
        "the test split has 1 image, fewer than the 200 required to judge a model: lower "
        "--min-test-images (MinTestImages) only if that is intended"
    ) in err
    assert not (tmp_path / "out").exists()


def test_minimum_test_images_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--model-dir", "m", "--test-dir", "t", "--output-dir", "o", "--min-test-images", "0"])
    assert exited.value.code == 2
    assert "--min-test-images must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (1, 1, [0.2065, 1.0]),  # one right answer proves little
        (0, 10, [0.0, 0.2775]),
        (81, 100, [0.7222, 0.8749]),
        (710, 1000, [0.6811, 0.7373]),
    ],
)
def test_accuracy_interval_is_wilsons(successes, n, expected):
    assert wilson_interval(successes, n) == pytest.approx(expected, abs=1e-4)


def test_report_states_the_interval_beside_the_test_set_size():
    truth = np.array([1, 2, 3, 4, 5] * 40)
    pred = truth.copy()
    pred[:50] = 1
    report = build_report(truth, pred, CLASSES, {"arch": "smallcnn", "image_size": 32})
    accuracy = report["multiclass_classification_metrics"]["accuracy"]
    assert set(accuracy) == {"value", "standard_deviation"}  # SageMaker's shape, unchanged
    assert report["test_images"] == 200
    correct = int((truth == pred).sum())
    assert report["accuracy_confidence_interval_95"] == wilson_interval(correct, 200)
