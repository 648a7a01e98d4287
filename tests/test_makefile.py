"""The Makefile's own behaviour: `make clean` and the local home, the Python version check, and
the light/full dependency split it installs.

Each make run uses the real Makefile (`make -f`) from a scratch folder, so nothing in the
checkout is created or removed.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parent.parent
MAKEFILE = REPO / "Makefile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# What only the `ml` extra brings: `make synth`/`make deploy` must never install these.
ML_ONLY = {"torch", "torchvision", "sagemaker-training", "waitress"}


def make(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean_env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"BINCOUNT_HOME", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    }
    # The Makefile hashes these at parse time; copies keep its stderr quiet.
    for name in ("pyproject.toml", "constraints.txt", "package-lock.json"):
        shutil.copy(REPO / name, cwd / name)
    return subprocess.run(
        ["make", "--no-print-directory", "-f", str(MAKEFILE), *args],
        cwd=cwd,
        env={**clean_env, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def fill_home(home: Path) -> None:
    """What the local runner and the benchmarks leave in a home folder."""
    for name in ("s3/bincount-local/code/x", "executions/e1/execution.json", "registry/g.json"):
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text("{}")
    (home / "bench-cache" / "synthetic").mkdir(parents=True)
    (home / "autoscaling.json").write_text("{}")
    (home / ".autoscaling.json.lock").write_text("")
    (home / ".notifications.jsonl.lock").write_text("")


def test_clean_removes_bincount_home_not_the_default(tmp_path):
    work = tmp_path / "checkout"
    (work / ".bincount").mkdir(parents=True)
    (work / ".bincount" / "keep.txt").write_text("not the home in use")
    (work / "cdk.out").mkdir()
    home = tmp_path / "elsewhere" / "home"
    fill_home(home)

    done = make(work, "clean", BINCOUNT_HOME=str(home))

    assert done.returncode == 0, done.stderr
    assert not home.exists()
    assert home.parent.is_dir()  # only the home itself goes
    assert (work / ".bincount" / "keep.txt").is_file()
    assert not (work / "cdk.out").exists()


def test_clean_removes_the_default_home(tmp_path):
    fill_home(tmp_path / ".bincount")
    done = make(tmp_path, "clean")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / ".bincount").exists()


def test_clean_refuses_a_home_holding_anything_else(tmp_path):
    home = tmp_path / "projects"
    fill_home(home)
    (home / "thesis.tex").write_text("mine")

    done = make(tmp_path, "clean", BINCOUNT_HOME=str(home))

    assert done.returncode != 0
    assert "does not look like a bincount home" in done.stderr
    assert "thesis.tex" in done.stderr
    assert (home / "thesis.tex").is_file() and (home / "s3").is_dir()  # nothing removed


def test_clean_refuses_a_home_that_is_a_file(tmp_path):
    home = tmp_path / "home"
    home.write_text("a file")
    done = make(tmp_path, "clean", BINCOUNT_HOME=str(home))
    assert done.returncode != 0
    assert "is not a folder" in done.stderr
    assert home.read_text() == "a file"


def test_clean_without_a_home_is_fine(tmp_path):
    done = make(tmp_path, "clean", BINCOUNT_HOME=str(tmp_path / "never-made"))
    assert done.returncode == 0, done.stderr


def _other_python() -> str | None:
    """A Python that is not 3.11 (pyenv's or on PATH), checked by running it."""
    candidates = [shutil.which(f"python3.{minor}") for minor in (12, 13, 10)]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[02]*/bin/python3")))
    for candidate in filter(None, candidates):
        done = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] != (3, 11))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.stdout.strip() == "True":
            return candidate
    return None


@pytest.mark.parametrize("target", ["install", "install-light"])
def test_another_python_is_refused_before_a_venv_exists(tmp_path, target):
    other = _other_python()
    if other is None:
        pytest.skip("no Python other than 3.11 on this machine")
    done = make(tmp_path, target, f"PYTHON_BOOT={other}")
    assert done.returncode != 0
    assert "bincount needs Python 3.11" in done.stderr
    assert other in done.stderr
    assert not (tmp_path / ".venv").exists()


def test_the_makefile_python_is_what_pyproject_requires():
    version = re.search(r"^PYTHON_VERSION := (\S+)$", MAKEFILE.read_text(), re.M).group(1)
    allowed = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert f"{version}.0" in allowed and f"{version}.99" in allowed
    major, minor = map(int, version.split("."))
    assert f"{major}.{minor + 1}.0" not in allowed and f"{major}.{minor - 1}.99" not in allowed


def _names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements}


def test_the_light_set_has_no_ml_package():
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    light = _names(project["dependencies"]) | _names(extras["cdk"])
    assert not light & ML_ONLY
    assert _names(extras["ml"]) >= ML_ONLY
    makefile = MAKEFILE.read_text()
    assert re.search(r"^LIGHT_EXTRAS := cdk$", makefile, re.M)
    for target in ("synth", "deploy", "bootstrap", "destroy", "doctor"):
        assert re.search(rf"^{target}: \$\(LIGHT_STAMP\)", makefile, re.M), target


def test_constraints_pin_every_direct_dependency():
    project = PYPROJECT["project"]
    pins = {
        line.split("==")[0].strip().lower().replace("_", "-")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    direct = _names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        direct |= _names(extra)
    direct = {n.replace("_", "-").replace(".", "-") for n in direct}
    pins = {n.replace(".", "-") for n in pins}
    assert direct <= pins, f"not in constraints.txt (make lock): {sorted(direct - pins)}"
