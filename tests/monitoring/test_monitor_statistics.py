"""The monitor's statistics on known inputs: PSI, summaries, brightness/contrast, baseline."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from baseline import BaselineError, build_baseline, load_baseline, write_baseline
from monitor import image_statistics
from monitor_stats import Summary, brightness_and_contrast, entropy, psi
from monitoring_testing import bin_photos, decoded, jpeg


def test_psi_of_known_distributions():
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    # (0.5 - 0.25) ln(0.5/0.25) + (0.5 - 0.75) ln(0.5/0.75), by hand.
    expected = 0.25 * math.log(2) - 0.25 * math.log(2 / 3)
    assert psi([1, 3], [2, 2]) == pytest.approx(expected)
    # An empty baseline bin costs a large but finite amount (floored share).
    assert 1.0 < psi([0, 10], [5, 5]) < 10.0
    with pytest.raises(ValueError, match="non-empty"):
        psi([0, 0], [1, 1])


def test_summary_mean_std_histogram_match_numpy():
    values = np.array([0.0, 1.0, 2.0, 10.0, 300.0])
    one, many = Summary([0, 5, 10, 256]), Summary([0, 5, 10, 256])
    for v in values:
        one.add(v)
    many.add_many(values)
    for s in (one, many):
        assert s.n == 5
        assert s.mean == pytest.approx(values.mean())
        assert s.std == pytest.approx(values.std())
        # 300 is past the last edge: it lands in the last bin, not nowhere.
        assert s.counts == [3, 0, 2]
        assert s.to_json()["min"] == 0.0 and s.to_json()["max"] == 300.0
    assert Summary([0, 1]).to_json()["mean"] is None


def test_brightness_and_contrast_of_known_images():
    grey = np.full((2, 40, 40, 3), 100, dtype=np.uint8)
    grey[1] = (10, 20, 30)
    brightness, contrast = brightness_and_contrast(grey)
    assert brightness == pytest.approx([100.0, 0.299 * 10 + 0.587 * 20 + 0.114 * 30], abs=1e-3)
    assert contrast == pytest.approx([0.0, 0.0], abs=1e-6)
    halves = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    halves[0, :, 16:] = 200
    brightness, contrast = brightness_and_contrast(halves)
    assert brightness[0] == pytest.approx(100.0, abs=0.01)
    assert contrast[0] == pytest.approx(100.0, abs=0.01)


def test_entropy():
    rows = np.array([[1.0, 0, 0, 0, 0], [0.2] * 5])
    assert entropy(rows) == pytest.approx([0.0, math.log(5)])


def test_the_monitor_measures_a_captured_jpeg_as_the_baseline_measures_its_shard():
    """Brightness and contrast from the captured JPEG (draft decode) agree with those from
    Prepare's decoded shard image, whatever size the model trained at."""
    photos = bin_photos(np.random.default_rng(3), 12, side=160)
    for size in (64, 224):
        for photo in photos:
            data = jpeg(photo)
            width, height, brightness, contrast = image_statistics(data)
            assert (width, height) == (160, 160)
            b, c = brightness_and_contrast(decoded(data, size)[None])
            assert brightness == pytest.approx(b[0], abs=2.0)
            assert contrast == pytest.approx(c[0], abs=2.5)


def test_image_statistics_refuses_what_is_not_an_image():
    with pytest.raises(Exception):  # noqa: B017 (PIL's own error types)
        image_statistics(b"not an image")
    with pytest.raises(Exception):  # noqa: B017
        image_statistics(jpeg(np.zeros((40, 40, 3), np.uint8))[:200])


def test_build_baseline_on_known_inputs(tmp_path):
    images = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    images[:, :, :] = np.array([50, 100, 150, 200], dtype=np.uint8)[:, None, None, None]
    probs = np.array(
        [
            [0.7, 0.1, 0.1, 0.05, 0.05],
            [0.1, 0.6, 0.1, 0.1, 0.1],
            [0.1, 0.6, 0.1, 0.1, 0.1],
            [0.2, 0.2, 0.2, 0.2, 0.2],
        ]
    )
    report = tmp_path / "report"
    report.mkdir()
    (report / "manifest-algo-1.csv").write_text(
        "id,label,split,bytes,width,height\na,1,test,1000,500,400\nb,2,train,3000,700,600\n"
    )
    # An older manifest without the columns is read too (its rows count, no sizes).
    (report / "manifest-algo-2.csv").write_text("id,label,split\nc,3,test\n")
    baseline = build_baseline([images[:3], images[3:]], probs, report)
    assert baseline["images"] == 4
    assert baseline["image_size"] == [32, 32]
    assert baseline["predicted_counts"] == {"1": 2, "2": 2, "3": 0, "4": 0, "5": 0}
    assert baseline["brightness"]["mean"] == pytest.approx(125.0, abs=0.01)
    assert baseline["brightness"]["std"] == pytest.approx(np.std([50, 100, 150, 200]), abs=0.01)
    assert baseline["contrast"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert baseline["confidence"]["mean"] == pytest.approx((0.7 + 0.6 + 0.6 + 0.2) / 4)
    assert baseline["entropy"]["max"] == pytest.approx(math.log(5))
    assert baseline["manifest_rows"] == 3
    assert baseline["jpeg_bytes"]["mean"] == 2000.0
    assert baseline["width"]["mean"] == 600.0 and baseline["height"]["max"] == 600.0
    path = write_baseline(tmp_path / "baseline.json", baseline)
    assert load_baseline(path) == json.loads(path.read_text())
    assert not list(tmp_path.glob(".*.tmp"))


def test_build_baseline_without_a_report_and_its_refusals():
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    probs = np.full((2, 5), 0.2)
    baseline = build_baseline([images], probs, None)
    assert baseline["jpeg_bytes"] is None and baseline["manifest_rows"] == 0
    with pytest.raises(BaselineError, match="3 rows of probabilities"):
        build_baseline([images], np.full((3, 5), 0.2), None)
    with pytest.raises(BaselineError, match="uint8"):
        build_baseline([images.astype(np.float32)], probs, None)
    with pytest.raises(BaselineError, match="non-finite"):
        build_baseline([images], np.full((2, 5), np.nan), None)


def test_load_baseline_names_what_is_wrong(tmp_path):
    with pytest.raises(BaselineError, match="does not exist"):
        load_baseline(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BaselineError, match="not readable JSON"):
        load_baseline(bad)
    bad.write_text(json.dumps({"kind": "something-else"}))
    with pytest.raises(BaselineError, match="not a bincount monitoring baseline"):
        load_baseline(bad)
