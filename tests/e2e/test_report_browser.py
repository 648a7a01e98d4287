"""The evaluation report page in a real browser: Debian's Chromium, headless.

Evaluate writes the page from a packaged model and test shards; Chromium renders it
(screenshot), dumps its DOM (every <img> a data: URI that decodes, and drawn: a copy of the
page carries a probe that records each image's natural size) and logs the console (nothing
may be logged: the page has no script, so any console line is a failed load or an error).
Skipped, saying why, where /usr/bin/chromium is absent (`make browser` installs it).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1200, 2000)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"{CHROMIUM} is not installed (Debian: `make browser`, or apt-get install chromium)",
)

# Appended to a copy of the page only: writes each image's natural size into the DOM.
PROBE = """<script>
window.addEventListener('load', () => {
  const sizes = [...document.images].map(i => [i.alt, i.complete ? i.naturalWidth : -1]);
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify(sizes); document.body.appendChild(out);
});
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    command = [
        str(CHROMIUM),
        "--headless=new",
        "--disable-gpu",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=3000",
        *args,
    ]
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def console_lines(stderr: str) -> list[str]:
    """What the page logged: Chromium writes console messages as `...:CONSOLE(n)] "..."`."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """report.html as Evaluate writes it: a smallcnn with curves, 40 test images, a history."""
    import torch
    from curves import write_curves
    from evaluate import main as evaluate_main
    from model import build_model
    from model_export import export_model_dir
    from shard_factory import write_shards

    root = tmp_path_factory.mktemp("browser")
    torch.manual_seed(0)
    model_dir = root / "model"
    net = build_model("smallcnn", pretrained=False, num_classes=5)
    export_model_dir(model_dir, net.state_dict(), "smallcnn", 32, extra={"best_epoch": 2})
    curves = [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "train_acc": 0.2 * e,
         "val_acc": 0.2 * e, "val_mae": 1.0 / e}
        for e in (1, 2, 3)
    ]  # fmt: skip
    write_curves(curves, model_dir)
    (root / "input").mkdir()
    with tarfile.open(root / "input" / "model.tar.gz", "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)
    history = root / "history.json"
    history.write_text(json.dumps([{"version": "v1", "accuracy": 0.4, "mae": 0.9, "live": True}]))
    test_dir = write_shards(root / "test", n=40, size=32, seed=9, shard_size=16)
    out = root / "evaluation"
    argv = ["--model-dir", str(root / "input"), "--test-dir", str(test_dir), "--output-dir",
            str(out), "--min-test-images", "1", "--history", str(history),
            "--execution-id", "browser1"]  # fmt: skip
    assert evaluate_main(argv) == 0
    return out / "report.html"


def test_page_renders_without_errors_and_is_not_blank(page, tmp_path):
    shot = tmp_path / "report.png"
    result = chromium(f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_lines(result.stderr) == []
    picture = Image.open(shot)
    assert picture.format == "PNG" and picture.size == WINDOW
    pixels = np.asarray(picture.convert("RGB"))
    # Not a blank (one-colour) or nearly blank page: text, plots and thumbnails drawn.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500
    assert (pixels.mean(axis=2) < 128).mean() > 0.01  # some dark pixels: text and plots


def test_dom_holds_every_image_decodable_and_drawn(page, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    result = chromium("--dump-dom", probed.as_uri(), profile=tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_lines(result.stderr) == []
    dom = result.stdout
    assert 'id="execution">browser1<' in dom
    sources = re.findall(r'<img [^>]*src="([^"]+)"', dom)
    # Confusion matrix, curves, trend, and the 12 most confident mistakes at most.
    assert 4 <= len(sources) <= 15
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:50]
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True))).verify()
    sizes = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1))
    assert len(sizes) == len(sources)
    assert all(width > 0 for _, width in sizes), sizes
    alts = {alt for alt, _ in sizes}
    assert {"confusion matrix, row-normalised", "training curves",
            "accuracy and MAE by version"} <= alts  # fmt: skip


def test_a_broken_page_is_caught(tmp_path):
    """The checks above can fail: a missing image and a console error are both seen."""
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!DOCTYPE html><html><body><img alt="gone" src="missing.png">'
        '<script>console.error("boom")</script>' + PROBE + "</body></html>"
    )
    result = chromium("--dump-dom", broken.as_uri(), profile=tmp_path / "profile")
    assert any("boom" in line for line in console_lines(result.stderr)), result.stderr[-2000:]
    sizes = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S).group(1))
    assert sizes == [["gone", 0]]
