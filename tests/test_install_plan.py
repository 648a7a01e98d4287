"""tools/install_plan.py: what `make` says before pip installs (pip's own report, summarised)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("install_plan", REPO / "tools" / "install_plan.py")
install_plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(install_plan)


def item(name: str, version: str, url: str) -> dict:
    """One entry of `pip install --report`'s "install" list, as pip writes it."""
    return {"metadata": {"name": name, "version": version}, "download_info": {"url": url}}


def test_local_files_are_sized_and_downloads_named(tmp_path):
    wheel = tmp_path / "torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"x" * 2_500_000)
    lines = install_plan.describe(
        [
            item("torch", "2.14.1", wheel.as_uri()),
            item("bincount", "0.1.0", tmp_path.as_uri()),  # the project itself: a folder
            item("boto3", "1.43.117", "https://files.pythonhosted.org/packages/b/boto3.whl"),
        ]
    )
    text = "\n".join(lines)
    assert lines[0] == "  3 packages to install"
    assert "1 from files on this machine's disk (copied, not downloaded): 2.5 MB" in text
    assert "torch 2.14.1" in text
    assert "1 to download from files.pythonhosted.org: boto3 1.43.117" in text
    assert "CUDA" not in text  # torch is not among the downloads here


def test_a_torch_download_says_how_big_it_is():
    lines = install_plan.describe(
        [item("torch", "2.14.1", "https://files.pythonhosted.org/packages/t/torch.whl")]
    )
    assert "1 to download from files.pythonhosted.org: torch 2.14.1" in lines[1]
    assert "about 3 GB to download" in lines[2]


def test_nothing_to_install():
    assert install_plan.describe([]) == [
        "  nothing to install: every pinned package is there already"
    ]


def test_human_sizes():
    assert install_plan.human(999) == "999 B"
    assert install_plan.human(554_600_000) == "554.6 MB"
    assert install_plan.human(3_000_000_000) == "3.0 GB"
