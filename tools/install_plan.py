"""Say what `make` is about to install, where each package comes from, and how big it is.

Usage: python tools/install_plan.py EXTRAS  (run by the venv's own python, before its pip
install). Asks pip itself (`pip install --dry-run --report`, same constraints and extras as the
real install), so the answer is pip's: a package whose file lies on this machine (a file://
index or --find-links folder, as some machines have for torch) is copied, anything else is
downloaded. Sizes of local files are read off the disk; downloads show their size and a
progress bar in pip's own output that follows. Exit code: pip's, when it cannot plan.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

# What the `ml` extra weighs where nothing is on disk (Linux x86_64, PyPI's torch with its
# CUDA wheels): measured for torch 2.14.1 + torchvision 0.29.1 in a fresh venv.
ML_DOWNLOAD_NOTE = "torch with its CUDA wheels: about 3 GB to download, 5.5 GB installed"


def plan(extras: str, constraints: str = "constraints.txt") -> list[dict]:
    """pip's install report for `-e .[extras]`: the packages it would install."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet"]
        cmd += ["--disable-pip-version-check", "--report", str(report), "-c", constraints]
        cmd += ["-e", f".[{extras}]"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(done.returncode)
        return json.loads(report.read_text())["install"]


def human(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def describe(items: list[dict]) -> list[str]:
    """The lines to print: counts, local bytes, download hosts, the largest local files."""
    local, remote = [], {}
    for item in items:
        meta = item["metadata"]
        name = f"{meta['name']} {meta['version']}"
        url = item["download_info"]["url"]
        parsed = urlparse(url)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
            if path.is_file():  # a directory is this project itself (-e .)
                local.append((path.stat().st_size, name))
        else:
            remote.setdefault(parsed.netloc, []).append(name)
    lines = [f"  {len(items)} packages to install"]
    if local:
        total = sum(size for size, _ in local)
        lines.append(
            f"  {len(local)} from files on this machine's disk (copied, not downloaded): "
            f"{human(total)}; the largest:"
        )
        for size, name in sorted(local, reverse=True)[:5]:
            lines.append(f"      {name:<40} {human(size):>9}")
    for host, names in sorted(remote.items()):
        shown = ", ".join(sorted(names)[:6]) + (", ..." if len(names) > 6 else "")
        lines.append(f"  {len(names)} to download from {host}: {shown}")
        if any(n.split()[0] in ("torch", "torchvision") for n in names):
            lines.append(f"      ({ML_DOWNLOAD_NOTE}; pip shows each size and its progress)")
    if not items:
        lines = ["  nothing to install: every pinned package is there already"]
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: install_plan.py EXTRAS (e.g. ml,cdk,dev)", file=sys.stderr)
        return 2
    venv = Path(sys.prefix).name if sys.prefix != sys.base_prefix else sys.prefix
    print(f"Planning the install into {venv}: bincount[{argv[0]}], pinned by constraints.txt")
    print("\n".join(describe(plan(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    raise SystemExit(main(sys.argv[1:]))
