"""The evaluation report page (processing/report_page.py) and its place in Evaluate's output."""

from __future__ import annotations

import base64
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import report_page
from PIL import Image
from report_page import (
    Predictions,
    ReportError,
    build_page,
    check_history,
    execution_from_job_name,
    read_predictions,
    worst_misclassified,
    write_report_files,
)
from shard_factory import read_split, write_shards

CLASSES = [1, 2, 3, 4, 5]
VERSION = "pipelines-abc123def456-train-1a2b3c4d5e6f-0123456789ab"
EXECUTION = "abc123def456"
CURVES = [
    {"epoch": e, "train_loss": 1.5 / e, "val_loss": 1.6 / e, "train_acc": a, "val_acc": a,
     "val_mae": m, "lr": 0.001}
    for e, a, m in ((1, 0.40, 0.9), (2, 0.62, 0.5), (3, 0.71, 0.35), (4, 0.69, 0.36))
]  # fmt: skip


def images_in(page: str) -> list[tuple[str, bytes]]:
    """(alt, decoded PNG) of every <img> in the page; fails on any src that is not data:."""
    found = []
    for tag in re.findall(r"<img [^>]*>", page):
        alt = re.search(r'alt="([^"]*)"', tag).group(1)
        src = re.search(r'src="([^"]*)"', tag).group(1)
        assert src.startswith("data:image/png;base64,"), src[:60]
        found.append((alt, base64.b64decode(src.split(",", 1)[1], validate=True)))
    return found


def report_for(truth: np.ndarray, pred: np.ndarray) -> dict:
    """evaluation.json's content for these predictions, computed by Evaluate itself."""
    from evaluate import build_report

    report = build_report(truth, pred, CLASSES, {"arch": "smallcnn", "image_size": 32,
                                                 "version": VERSION})  # fmt: skip
    report["seconds"] = 1.0
    return report


@pytest.fixture
def evaluated(tmp_path: Path):
    """60 test images in two shards, and predictions with a known pattern of mistakes."""
    test_dir = write_shards(tmp_path / "test", n=60, size=32, seed=5, shard_size=32)
    _, truth, ids = read_split(test_dir)
    pred = truth.copy()
    probabilities = np.full((60, 5), 0.05)
    probabilities[np.arange(60), truth - 1] = 0.8
    # Three wrong answers, of confidence 0.9 (row 40), 0.7 (row 3) and 0.55 (row 33).
    for row, wrong_conf in ((3, 0.7), (33, 0.55), (40, 0.9)):
        pred[row] = truth[row] % 5 + 1
        probabilities[row] = (1 - wrong_conf) / 4
        probabilities[row, pred[row] - 1] = wrong_conf
    predictions = Predictions([str(i) for i in ids], truth, pred, probabilities, CLASSES)
    return test_dir, predictions, report_for(truth, pred)


def test_worst_misclassified_are_the_most_confident_wrong_answers(evaluated):
    _, predictions, _ = evaluated
    assert worst_misclassified(predictions) == [40, 3, 33]
    assert worst_misclassified(predictions, limit=2) == [40, 3]
    right = Predictions(["a"], np.array([2]), np.array([2]), np.array([[0, 1.0, 0, 0, 0]]), CLASSES)
    assert worst_misclassified(right) == []


def test_page_is_self_contained_with_gallery_of_wrong_answers(evaluated):
    test_dir, predictions, report = evaluated
    page, plots = build_page(report, predictions, test_dir, CURVES, [], EXECUTION)
    # Nothing fetched from anywhere: no scripts, stylesheets, fonts or remote images.
    assert not re.search(r"<script|<link|@import|url\(|https?://", page)
    images = images_in(page)
    gallery = [(alt, png) for alt, png in images if alt.startswith("test image")]
    assert [alt for alt, _ in gallery] == [f"test image {predictions.ids[r]}" for r in (40, 3, 33)]
    # Each thumbnail is the shard's own pixels, enlarged.
    shard_images, _, _ = read_split(test_dir)
    thumb = Image.open(io.BytesIO(gallery[0][1]))
    assert thumb.size == (report_page.THUMBNAIL, report_page.THUMBNAIL)
    small = np.asarray(thumb.convert("RGB").resize((32, 32), Image.NEAREST))
    assert np.array_equal(small, shard_images[40])
    caption = f"true {predictions.truth[40]} · predicted {predictions.predicted[40]} (p=0.90)"
    assert caption in page
    assert {alt for alt, _ in images} >= {"confusion matrix, row-normalised", "training curves"}
    assert set(plots) == {"confusion", "curves", "trend"}
    for png in plots.values():
        assert Image.open(io.BytesIO(png)).format == "PNG"


def test_confusion_matrix_rows_are_percentages_and_the_weakest_class_is_named(evaluated):
    test_dir, predictions, _ = evaluated
    # 100 images of count 4: 71 right, 29 called 3; every other count all right.
    truth = np.repeat(CLASSES, 100)
    pred = truth.copy()
    pred[300:329] = 3
    page, _ = build_page(report_for(truth, pred), predictions, test_dir)
    rows = dict(re.findall(r"<tr><td>(\d)</td><td>(\d+%)</td>", page))
    assert rows == {"1": "100%", "2": "100%", "3": "100%", "4": "71%", "5": "100%"}
    assert "Weakest class: count 4 at 71% correct." in page
    _, counts, fractions = report_page.row_normalised(
        report_for(truth, pred)["multiclass_classification_metrics"]["confusion_matrix"]
    )
    assert np.allclose(fractions.sum(axis=1), 1.0)
    assert fractions[3, 2] == pytest.approx(0.29) and counts[3, 2] == 29


def test_every_plot_title_names_the_execution_and_the_model_version(evaluated, monkeypatch):
    test_dir, predictions, report = evaluated
    titles = []
    real_png = report_page._png

    def record(fig, plt):
        texts = [fig._suptitle.get_text()] if fig._suptitle else []
        texts += [ax.get_title() for ax in fig.axes]
        titles.append(" | ".join(texts))
        return real_png(fig, plt)

    monkeypatch.setattr(report_page, "_png", record)
    build_page(report, predictions, test_dir, CURVES, [], EXECUTION)
    assert len(titles) == 3
    for title in titles:
        assert f"execution {EXECUTION}" in title and f"model {VERSION}" in title, title


def test_curves_mark_the_best_epoch(evaluated, monkeypatch):
    test_dir, predictions, report = evaluated
    marks = []
    real = report_page.curves_plot

    def spy(curves, best, title):
        marks.append(best)
        return real(curves, best, title)

    monkeypatch.setattr(report_page, "curves_plot", spy)
    page, _ = build_page(report, predictions, test_dir, CURVES, [], EXECUTION)
    # Highest val_acc wins (epoch 3), as train.py picks the epoch it exports.
    assert marks == [3] and "Best epoch (the one exported): 3." in page
    page, _ = build_page(report, predictions, test_dir, CURVES, [], EXECUTION, best=2)
    assert marks[-1] == 2 and "Best epoch (the one exported): 2." in page
    page, _ = build_page(report, predictions, test_dir, None, [], EXECUTION)
    assert "carries no training curves" in page


def test_headline_compares_with_the_baseline_and_the_previous_live_version(evaluated):
    test_dir, predictions, report = evaluated
    history = [
        {"version": "v1", "accuracy": 0.70, "mae": 0.40, "live": False},
        {"version": "v2", "accuracy": 0.99, "mae": 0.01, "live": True},
    ]
    page, _ = build_page(report, predictions, test_dir, None, history, EXECUTION)
    headline = re.search(r'<table id="headline">.*?</table>', page, re.S).group(0)
    accuracy = report["multiclass_classification_metrics"]["accuracy"]["value"]
    baseline = report["baseline"]
    assert "previous live (v2)" in headline
    row = re.search(r"<tr><td>accuracy</td>(.*?)</tr>", headline).group(1)
    assert f">{accuracy:.3f}" in row and f"<td>{baseline['accuracy']:.3f}</td>" in row
    assert "<td>0.990</td>" in row and 'class="worse"' in row  # 0.95 < the live 0.99
    mae_row = re.search(r"<tr><td>count MAE</td>(.*?)</tr>", headline).group(1)
    assert "<td>0.010</td>" in mae_row and 'class="worse"' in mae_row
    # No live version: said so, nothing invented.
    page, _ = build_page(report, predictions, test_dir, None, history[:1], EXECUTION)
    assert "No live version to compare with." in page


def test_trend_points_append_this_run_unless_the_history_holds_it(evaluated):
    _, _, report = evaluated
    history = check_history([{"version": 1, "accuracy": 0.5, "mae": 0.8, "live": True}])
    points = report_page.trend_points(history, report)
    assert [p["version"] for p in points] == ["1", "this run"]
    assert points[-1]["current"] and points[0]["live"]
    history = check_history(
        [{"version": 1, "accuracy": 0.5, "mae": 0.8, "live": True},
         {"version": 2, "accuracy": 0.95, "mae": 0.05, "live": False, "current": True}]
    )  # fmt: skip
    assert [p["version"] for p in report_page.trend_points(history, report)] == ["1", "2"]


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ({"version": 1}, "expected a JSON list"),
        ([{"accuracy": 0.5, "mae": 1.0, "live": True}], "entry 0 needs a 'version'"),
        ([{"version": "v1", "accuracy": 1.5, "mae": 1.0}], "entry 0 (v1): 'accuracy' must be"),
        ([{"version": "v1", "accuracy": 0.5, "mae": "x"}], "'mae' must be a number"),
        ([{"version": "v1", "accuracy": 0.5, "mae": 1.0, "live": "yes"}], "'live' must be"),
    ],
)
def test_bad_history_is_named(history, message):
    with pytest.raises(ReportError, match=re.escape(message)):
        check_history(history)


def test_predictions_that_do_not_match_the_shards_are_refused(evaluated):
    test_dir, predictions, report = evaluated
    predictions.ids[40] = "someone-else"
    with pytest.raises(ReportError, match="predictions and shards differ"):
        build_page(report, predictions, test_dir)


def test_without_matplotlib_the_page_still_stands(evaluated, monkeypatch):
    test_dir, predictions, report = evaluated
    monkeypatch.setattr(report_page, "_pyplot", lambda: None)
    page, plots = build_page(report, predictions, test_dir, CURVES, [], EXECUTION)
    assert plots == {}
    assert page.count("matplotlib is not installed") == 3
    assert len(images_in(page)) == 3  # the gallery is Pillow's


def test_execution_id_from_a_pipeline_job_name():
    assert execution_from_job_name("pipelines-4ic5wt6ajmsq-Evaluate-nYf2OZBVsg") == "4ic5wt6ajmsq"
    assert execution_from_job_name("pipelines-20261202163000a1b2c3-evaluate") == (
        "20261202163000a1b2c3"
    )
    assert execution_from_job_name("my-own-job") is None
    assert execution_from_job_name("") is None


def test_command_line_rebuilds_the_page_from_an_evaluation_folder(evaluated, tmp_path, capsys):
    test_dir, predictions, report = evaluated
    out = tmp_path / "evaluation"
    write_report_files(out, report, predictions, test_dir, CURVES, [], EXECUTION)
    assert {p.name for p in out.iterdir()} == {"report.html", "curves.json", "curves.png"}
    (out / "evaluation.json").write_text(json.dumps(report))
    with open(out / "predictions.csv", "w") as f:
        f.write("id,label,predicted,p1,p2,p3,p4,p5\n")
        for i, t, p, probs in zip(
            predictions.ids,
            predictions.truth,
            predictions.predicted,
            predictions.probabilities,
            strict=True,
        ):
            f.write(f"{i},{t},{p}," + ",".join(f"{x:.5f}" for x in probs) + "\n")
    assert read_predictions(out / "predictions.csv").ids == predictions.ids
    history = tmp_path / "history.json"
    history.write_text(json.dumps([{"version": "v7", "accuracy": 0.5, "mae": 0.9, "live": True}]))
    target = tmp_path / "page.html"
    args = ["--evaluation-dir", str(out), "--test-dir", str(test_dir), "--output", str(target)]
    assert report_page.main([*args, "--history", str(history), "--execution-id", "e1"]) == 0
    page = target.read_text()
    assert 'id="execution">e1<' in page and "previous live (v7)" in page
    assert "Best epoch (the one exported): 3." in page  # from curves.json in the folder

    history.write_text("[{")
    assert report_page.main([*args, "--history", str(history)]) == 2
    assert "history.json is not readable JSON" in capsys.readouterr().err
    (out / "predictions.csv").write_text("nothing,here\n")
    assert report_page.main(args) == 2
    assert "expected a header id,label,predicted" in capsys.readouterr().err


def packaged_model_with_curves(folder: Path) -> Path:
    """A smallcnn exported and tarred as Train does it, curves.json and curves.png included."""
    import torch
    from curves import curves_title, execution_of, write_curves
    from model import build_model
    from model_export import export_model_dir

    torch.manual_seed(0)
    net = build_model("smallcnn", pretrained=False, num_classes=5)
    model_dir = folder / "model"
    meta = export_model_dir(
        model_dir, net.state_dict(), "smallcnn", 32, extra={"best_epoch": 3, "val_acc": 0.71}
    )
    write_curves(CURVES, model_dir, curves_title(meta["version"], execution_of(meta["version"])), 3)
    archive_dir = folder / "input"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "model.tar.gz", "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)
    return archive_dir


def test_evaluate_publishes_the_page_and_the_training_curves(tmp_path, monkeypatch):
    from evaluate import main

    # SageMaker describes the job to its container: the page names the job's execution.
    config = tmp_path / "config"
    config.mkdir()
    (config / "resourceconfig.json").write_text('{"current_host": "algo-1", "hosts": ["algo-1"]}')
    (config / "processingjobconfig.json").write_text(
        json.dumps({"ProcessingJobName": "pipelines-q1w2e3r4t5y6-Evaluate-AbCdEf1234"})
    )
    monkeypatch.setenv("SM_RESOURCE_CONFIG_PATH", str(config / "resourceconfig.json"))
    model_input = packaged_model_with_curves(tmp_path)
    test_dir = write_shards(tmp_path / "test", n=40, size=32, seed=3, shard_size=16)
    out = tmp_path / "evaluation"
    history = tmp_path / "history.json"
    history.write_text(json.dumps([{"version": "v1", "accuracy": 0.3, "mae": 1.2, "live": True}]))
    argv = ["--model-dir", str(model_input), "--test-dir", str(test_dir), "--output-dir", str(out),
            "--min-test-images", "40", "--batch-size", "16", "--history", str(history)]  # fmt: skip
    assert main(argv) == 0
    names = {p.name for p in out.iterdir()}
    assert {"report.html", "curves.json", "curves.png", "evaluation.json"} <= names
    assert json.loads((out / "curves.json").read_text()) == CURVES
    page = (out / "report.html").read_text()
    version = json.loads((out / "evaluation.json").read_text())["model"]["version"]
    assert 'id="execution">q1w2e3r4t5y6<' in page and f">{version}<" in page
    assert "previous live (v1)" in page and "Best epoch (the one exported): 3." in page
    # evaluation.json is still the last file written: a report on disk has its page.
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert mtimes["evaluation.json"] == max(mtimes.values())

    # A history that cannot be read fails the job (exit 2) and leaves no evaluation.json.
    history.write_text('[{"version": "v1"}]')
    again = tmp_path / "again"
    argv[argv.index(str(out))] = str(again)
    assert main(argv) == 2
    assert not (again / "evaluation.json").exists()


def test_training_curves_title_and_best_epoch(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    from curves import curves_title, execution_of, write_curves

    assert execution_of("pipelines-4ic5wt6ajmsq-Train-nYf2OZBVsg-0123456789ab") == "4ic5wt6ajmsq"
    assert execution_of("0123456789ab") is None
    title = curves_title(VERSION, execution_of(VERSION))
    assert title == f"Training curves\nexecution {EXECUTION} · model {VERSION}"
    seen = {}
    real_savefig = plt.Figure.savefig

    def capture(fig, *args, **kwargs):
        seen["title"] = fig._suptitle.get_text()
        seen["lines"] = [line.get_label() for line in fig.axes[0].get_lines()]
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", capture)
    write_curves(CURVES, tmp_path, title, best_epoch=3)
    assert seen["title"] == title
    assert "best epoch 3" in seen["lines"]
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
