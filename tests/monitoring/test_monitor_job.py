"""processing/monitor.py end to end: captured traffic in SageMaker's layout against a baseline,
shifted traffic flagged, unshifted traffic not, and the outputs in Model Monitor's shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import monitor
import numpy as np
import pytest
from monitoring_testing import (
    START,
    Traffic,
    bin_photos,
    jpeg,
    probabilities,
    write_test_baseline,
)

REPO = Path(__file__).resolve().parents[2]
METRICS = {
    "bincount_prediction_psi",
    "bincount_mean_confidence",
    "bincount_brightness_shift",
    "bincount_decode_failure_rate",
    "bincount_drift",
}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    return write_test_baseline(tmp_path_factory.mktemp("baseline"), np.random.default_rng(0))


def run_job(tmp_path: Path, baseline: Path, *extra: str, capture: str = "capture") -> dict:
    out = tmp_path / "out"
    code = monitor.main(
        ["--capture-dir", str(tmp_path / capture), "--baseline", str(baseline),
         "--output-dir", str(out), *extra]
    )  # fmt: skip
    assert code == 0
    return json.loads((out / "report.json").read_text())


def violations(tmp_path: Path) -> dict[str, str]:
    doc = json.loads((tmp_path / "out" / "constraint_violations.json").read_text())
    for v in doc["violations"]:
        assert set(v) == {"feature_name", "constraint_check_type", "description"}
    return {v["feature_name"]: v["constraint_check_type"] for v in doc["violations"]}


def traffic(tmp_path: Path, images: np.ndarray, probs: np.ndarray) -> None:
    t = Traffic(tmp_path / "capture")
    t.photos(np.random.default_rng(1), images, probs)
    t.close()


def test_unshifted_traffic_is_not_flagged(tmp_path, baseline):
    rng = np.random.default_rng(11)
    traffic(tmp_path, bin_photos(rng, 160), probabilities(rng, 160))
    report = run_job(tmp_path, baseline)
    assert report["images"] == 160 and report["decode_failures"] == 0
    assert report["records"] == 80 + 10  # 80 lone images, 80 more in batches of 8
    assert {c["status"] for c in report["checks"].values()} == {"ok"}
    assert report["drift"] is False
    assert violations(tmp_path) == {}
    assert report["checks"]["prediction_psi"]["value"] < 0.1
    assert abs(report["checks"]["brightness_shift"]["value"]) < 0.5
    assert (tmp_path / "out" / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_much_darker_images_are_flagged(tmp_path, baseline):
    rng = np.random.default_rng(12)
    dark = (bin_photos(rng, 160).astype(np.float32) * 0.35).astype(np.uint8)
    traffic(tmp_path, dark, probabilities(rng, 160))
    report = run_job(tmp_path, baseline)
    assert report["drift"] is True
    assert report["checks"]["brightness_shift"]["value"] < -3
    assert violations(tmp_path)["brightness"] == "baseline_drift_check"


def test_blank_images_are_flagged_even_at_the_baseline_brightness(tmp_path, baseline):
    """Blank frames as bright as the average photo: only their contrast gives them away, and
    a model that then answers one count for all of them moves the predicted distribution."""
    level = json.loads(baseline.read_text())["brightness"]["mean"]
    blank = np.full((150, 96, 96, 3), round(level), dtype=np.uint8)
    always_five = probabilities(np.random.default_rng(13), 150, shares=[0, 0, 0, 0, 1])
    traffic(tmp_path, blank, always_five)
    report = run_job(tmp_path, baseline)
    assert abs(report["checks"]["brightness_shift"]["value"]) < 0.1
    assert report["checks"]["contrast_shift"]["status"] == "violation"
    assert report["checks"]["prediction_psi"]["value"] > 1.0
    assert violations(tmp_path) == {
        "contrast": "baseline_drift_check",
        "predicted_count": "baseline_drift_check",
    }


def test_undecodable_inputs_and_unsure_answers_are_flagged(tmp_path, baseline):
    rng = np.random.default_rng(14)
    t = Traffic(tmp_path / "capture")
    t.photos(rng, bin_photos(rng, 120), probabilities(rng, 120, sure=0.5))
    for i in range(6):  # broken uploads the endpoint refused with a 400
        t.request([b"\xff\xd8 not really a jpeg %d" % i], None, batch=False)
    t.close()
    report = run_job(tmp_path, baseline)
    assert report["images"] == 126 and report["decode_failures"] == 6
    assert report["unanswered_records"] == 6
    assert report["checks"]["decode_failure_rate"]["value"] == pytest.approx(6 / 126)
    assert report["checks"]["confidence_drop"]["value"] == pytest.approx(0.3)
    assert violations(tmp_path) == {
        "image": "completeness_check",
        "confidence": "baseline_drift_check",
    }


def test_thresholds_are_arguments(tmp_path, baseline):
    rng = np.random.default_rng(15)
    dark = (bin_photos(rng, 120).astype(np.float32) * 0.35).astype(np.uint8)
    traffic(tmp_path, dark, probabilities(rng, 120))
    report = run_job(tmp_path, baseline, "--brightness-k", "50")
    assert report["checks"]["brightness_shift"]["status"] == "ok"
    assert report["thresholds"]["brightness_k"] == 50.0
    report = run_job(tmp_path, baseline, "--min-images", "1000")
    assert report["drift"] is False
    assert {c["status"] for c in report["checks"].values()} == {"not_enough_data"}


def test_an_empty_window_is_a_report_not_an_error(tmp_path, baseline):
    (tmp_path / "capture").mkdir()
    report = run_job(tmp_path, baseline)
    assert report["empty"] is True and report["images"] == 0
    assert report["note"] == "no captured records in the window"
    assert violations(tmp_path) == {}


def test_only_records_inside_the_window_count(tmp_path, baseline):
    rng = np.random.default_rng(16)
    t = Traffic(tmp_path / "capture")
    photos = [jpeg(p) for p in bin_photos(rng, 5)]
    probs = probabilities(rng, 5)
    for hours, photo, row in zip((-2, 0, 0, 1, 3), photos, probs, strict=True):
        when = START + timedelta(hours=hours, minutes=30)
        t.request([photo], row[None], batch=False, when=when)
    t.close()
    folders = sorted(
        p.relative_to(tmp_path / "capture").parent.as_posix()
        for p in (tmp_path / "capture").rglob("*.jsonl")
    )
    assert folders[0] == "ep/AllTraffic/2026/03/04/03"  # SageMaker's hour folders
    report = run_job(
        tmp_path, baseline, "--start-time", "2026-03-04T05:00:00Z",
        "--end-time", "2026-03-04T06:00:00Z",
    )  # fmt: skip
    assert report["records"] == 2 and report["images"] == 2
    assert report["window"]["first_record"] == "2026-03-04T05:30:00Z"


def test_ground_truth_is_merged_by_inference_id_else_event_id(tmp_path, baseline):
    rng = np.random.default_rng(17)
    t = Traffic(tmp_path / "capture")
    photos = [jpeg(p) for p in bin_photos(rng, 4)]
    rows = np.full((4, 5), 0.05)
    rows[[0, 1, 2, 3], [0, 2, 2, 4]] = 0.8  # predicted counts 1, 3, 3, 5
    t.request([photos[0]], rows[:1], batch=False, inference_id="caller-1", event_id="e-1")
    t.request(photos[1:3], rows[1:3], batch=True, event_id="e-2")
    t.request([photos[3]], rows[3:], batch=False, when=START + timedelta(hours=1), event_id="e-3")
    t.close()
    truth = tmp_path / "ground-truth" / "2026" / "03" / "04" / "07"
    truth.mkdir(parents=True)
    lines = [
        {"groundTruthData": {"data": "1", "encoding": "CSV"},
         "eventMetadata": {"eventId": "caller-1"}, "eventVersion": "0"},
        {"groundTruthData": {"data": "3,4", "encoding": "CSV"},
         "eventMetadata": {"eventId": "e-2"}, "eventVersion": "0"},
        {"groundTruthData": {"data": "[2]", "encoding": "JSON"},
         "eventMetadata": {"eventId": "e-3"}, "eventVersion": "0"},
        # Keyed by the event id of a record that has an inference id: not a match.
        {"groundTruthData": {"data": "5", "encoding": "CSV"},
         "eventMetadata": {"eventId": "e-1"}, "eventVersion": "0"},
    ]  # fmt: skip
    (truth / "labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    metrics = tmp_path / "metrics"
    env_dir = {"BINCOUNT_CLOUDWATCH_METRICS_DIR": str(metrics)}
    import os

    old = {k: os.environ.get(k) for k in env_dir}
    os.environ.update(env_dir)
    try:
        report = run_job(
            tmp_path, baseline, "--ground-truth-dir", str(tmp_path / "ground-truth"),
            "--publish-cloudwatch-metrics", "Enabled", "--endpoint-name", "ep",
            "--monitoring-schedule-name", "ep-hourly",
        )  # fmt: skip
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    # truth 1,3,4,2 against predicted 1,3,3,5: two right, errors 0+0+1+3.
    assert report["model_quality"] == {"images": 4, "accuracy": 0.5, "mae": 1.0}
    assert report["model_quality_by_hour"] == {
        "2026-03-04T05:00:00Z": {"images": 3, "accuracy": 2 / 3, "mae": 1 / 3},
        "2026-03-04T06:00:00Z": {"images": 1, "accuracy": 0.0, "mae": 3.0},
    }
    lines = [json.loads(x) for x in (metrics / "cloudwatch_metrics.jsonl").read_text().splitlines()]
    by_name = {x["MetricName"]: x for x in lines}
    assert by_name["bincount_accuracy"]["Value"] == 0.5
    assert by_name["bincount_mae"]["Value"] == 1.0
    assert by_name["bincount_drift"]["Value"] == 0.0
    # Four images are too few to judge drift: no drift figures to alarm on, only the verdict.
    assert "bincount_prediction_psi" not in by_name
    for line in lines:
        assert line["Dimensions"] == [
            {"Name": "Endpoint", "Value": "ep"},
            {"Name": "MonitoringSchedule", "Value": "ep-hourly"},
        ]
        assert set(line) == {"MetricName", "Timestamp", "Dimensions", "Value"}


def test_model_monitor_environment_drives_the_script(tmp_path, baseline):
    """Run as the container runs it: `python monitor.py` with Model Monitor's environment
    and no arguments; metrics published, the statistics in Model Monitor's shape."""
    rng = np.random.default_rng(18)
    dark = (bin_photos(rng, 110).astype(np.float32) * 0.3).astype(np.uint8)
    traffic(tmp_path, dark, probabilities(rng, 110))
    env = {
        "PATH": "/usr/bin:/bin",
        "dataset_format": '{"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput",'
        '"endpointOutput"]}}',
        "dataset_source": str(tmp_path / "capture"),
        "output_path": str(tmp_path / "out"),
        "baseline_statistics": str(baseline),
        "publish_cloudwatch_metrics": "Enabled",
        "sagemaker_endpoint_name": "ep",
        "sagemaker_monitoring_schedule_name": "ep-schedule",
        "start_time": "2026-03-04T05:00:00Z",
        "end_time": "2026-03-04T07:00:00Z",
        "BINCOUNT_CLOUDWATCH_METRICS_DIR": str(tmp_path / "cw"),
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "processing" / "monitor.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "DRIFT" in done.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["endpoint_name"] == "ep" and report["images"] == 110
    assert report["window"] == {
        "start": "2026-03-04T05:00:00Z", "end": "2026-03-04T07:00:00Z",
        "first_record": report["window"]["first_record"],
        "last_record": report["window"]["last_record"],
    }  # fmt: skip
    names = {
        json.loads(x)["MetricName"]
        for x in (tmp_path / "cw" / "cloudwatch_metrics.jsonl").read_text().splitlines()
    }
    assert names == METRICS
    stats = json.loads((tmp_path / "out" / "statistics.json").read_text())
    assert stats["dataset"]["item_count"] == 110
    features = {f["name"]: f for f in stats["features"]}
    brightness = features["brightness"]["numerical_statistics"]
    assert brightness["common"] == {"num_present": 110, "num_missing": 0}
    assert sum(b["count"] for b in brightness["distribution"]["kll"]["buckets"]) == 110
    assert features["predicted_count"]["inferred_type"] == "Integral"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--capture-dir", "{tmp}/capture", "--baseline", "{tmp}/none.json"], "does not exist"),
        (["--capture-dir", "{tmp}/nowhere", "--baseline", "{baseline}"], "capture folder"),
    ],
)
def test_a_job_that_cannot_judge_exits_2_naming_the_cause(tmp_path, baseline, args, message):
    (tmp_path / "capture").mkdir()
    argv = [a.format(tmp=tmp_path, baseline=baseline) for a in args]
    done = subprocess.run(
        [sys.executable, str(REPO / "processing" / "monitor.py"), *argv,
         "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.startswith("error: ")
    assert not (tmp_path / "out" / "report.json").exists()


def test_bad_arguments_are_refused(tmp_path, baseline, capsys):
    with pytest.raises(SystemExit) as exit_info:
        monitor.parse_args(["--baseline", str(baseline), "--output-dir", "x"], env={})
    assert exit_info.value.code == 2
    assert "--capture-dir is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        monitor.parse_args(
            ["--capture-dir", "c", "--baseline", "b", "--output-dir", "o", "--start-time", "soon"],
            env={},
        )
    assert "not ISO 8601" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        monitor.parse_args(["--capture-dir", "c", "--baseline", "b", "--output-dir", "o",
                            "--psi-threshold", "-1"], env={})  # fmt: skip
    assert "--psi-threshold must be" in capsys.readouterr().err


def test_a_malformed_ground_truth_line_is_named(tmp_path, baseline):
    (tmp_path / "capture").mkdir()
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "x.jsonl").write_text('{"groundTruthData": {"data": "three"}}\n')
    args = monitor.parse_args(
        ["--capture-dir", str(tmp_path / "capture"), "--baseline", str(baseline),
         "--output-dir", str(tmp_path / "out"), "--ground-truth-dir", str(tmp_path / "gt")],
        env={},
    )  # fmt: skip
    with pytest.raises(monitor.MonitorError, match=r"x.jsonl line 1 is not a ground-truth"):
        monitor.run(args)


def test_ground_truth_from_an_s3_prefix():
    """On AWS the job reads ground truth straight from its S3 prefix (moto here)."""
    import boto3
    from moto import mock_aws

    line = {"groundTruthData": {"data": "4", "encoding": "CSV"},
            "eventMetadata": {"eventId": "id-9"}, "eventVersion": "0"}  # fmt: skip
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="truth")
        s3.put_object(Bucket="truth", Key="gt/ep/2026/03/04/05/a.jsonl",
                      Body=(json.dumps(line) + "\n").encode())  # fmt: skip
        s3.put_object(Bucket="truth", Key="gt/ep/2026/03/04/05/notes.txt", Body=b"ignored")
        assert monitor.ground_truth("s3://truth/gt/ep/") == {"id-9": [4]}
        with pytest.raises(monitor.MonitorError, match="s3://nobucket/gt could not be read"):
            monitor.ground_truth("s3://nobucket/gt")
