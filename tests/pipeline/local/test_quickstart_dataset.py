"""The quickstart's generated dataset: made in a subprocess while the definition is built,
renamed into place only when whole, reused after, and never left half-made by a failure."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.local import quickstart
from pipeline.local.quickstart import DatasetJob


def leftovers(home: Path) -> list[str]:
    folder = home / "datasets"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_dataset_is_generated_once_then_reused(tmp_path: Path, capsys):
    job = DatasetJob(tmp_path, per_class=2, seed=0)
    assert job.proc is not None  # generating in the background
    root = job.wait()
    assert root == tmp_path / "datasets" / "synthetic-2-seed0"
    listing = json.loads((root / "file_list.json").read_text())
    assert sorted(listing) == ["1", "2", "3", "4", "5"]
    assert sum(len(v) for v in listing.values()) == 10
    for entries in listing.values():
        for entry in entries:
            assert (root / "bin-images" / f"{Path(entry).stem}.jpg").is_file()
    assert leftovers(tmp_path) == ["synthetic-2-seed0"]  # no temp folder left
    assert "dataset: generated 10 images in " in capsys.readouterr().out

    again = DatasetJob(tmp_path, per_class=2, seed=0)
    assert again.proc is None
    assert again.wait() == root
    assert capsys.readouterr().out == f"dataset: reusing {root}\n"


def began_writing(home: Path) -> None:
    deadline = time.monotonic() + 30
    while not leftovers(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(home), "the generator never began writing"


def failing_generator(tmp_path: Path, monkeypatch, code: str) -> None:
    script = tmp_path / "generator.py"
    script.write_text(code)
    monkeypatch.setattr(quickstart, "SYNTHETIC", script)


def test_a_failed_generator_raises_and_leaves_nothing(tmp_path: Path, monkeypatch):
    # Writes part of a dataset, then fails: nothing of it may look like a dataset after.
    failing_generator(
        tmp_path,
        monkeypatch,
        "import sys, pathlib\n"
        "out = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
        "out.mkdir(parents=True)\n"
        "(out / 'file_list.json').write_text('{}')\n"
        "sys.exit(3)\n",
    )
    home = tmp_path / "home"
    with pytest.raises(subprocess.CalledProcessError) as failed:
        DatasetJob(home, per_class=2, seed=0).wait()
    assert failed.value.returncode == 3
    assert leftovers(home) == []


def hanging_job(tmp_path: Path, home: Path, monkeypatch) -> DatasetJob:
    """A DatasetJob whose generator has begun writing its temp folder, then hangs."""
    failing_generator(
        tmp_path,
        monkeypatch,
        "import sys, time, pathlib\n"
        "out = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
        "out.mkdir(parents=True)\n"
        "time.sleep(60)\n",
    )
    job = DatasetJob(home, per_class=2, seed=0)
    began_writing(home)
    return job


def test_cancel_stops_the_generator_and_removes_its_work(tmp_path: Path, monkeypatch):
    home = tmp_path / "home"
    job = hanging_job(tmp_path, home, monkeypatch)
    proc = job.proc
    assert leftovers(home) == [job.tmp.name]
    job.cancel()
    assert proc.poll() is not None  # stopped, not left running
    assert leftovers(home) == []
    job.cancel()  # twice is harmless


def test_quickstart_cancels_the_generator_when_the_definition_fails(tmp_path, monkeypatch):
    import argparse

    from pipeline.local.workspace import Workspace

    jobs: list[DatasetJob] = []

    class Recorded(DatasetJob):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            jobs.append(self)

    class Broken(RuntimeError):
        pass

    def broken_definition(self):
        raise Broken("the definition could not be built")

    monkeypatch.setenv("BINCOUNT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(quickstart, "DatasetJob", Recorded)
    monkeypatch.setattr(Workspace, "definition", broken_definition)
    parser = argparse.ArgumentParser()
    quickstart.add_arguments(parser)
    with pytest.raises(Broken):
        quickstart.quickstart(parser.parse_args(["--per-class", "2"]))
    assert len(jobs) == 1 and jobs[0].proc is None  # cancelled
    assert leftovers(tmp_path / "home") == []


def test_an_interrupted_wait_stops_the_generator_and_leaves_nothing(tmp_path: Path, monkeypatch):
    home = tmp_path / "home"
    job = hanging_job(tmp_path, home, monkeypatch)
    proc = job.proc
    real_wait = proc.wait
    calls = []

    def interrupted(timeout=None):
        calls.append(timeout)
        if len(calls) == 1:  # the job's own wait: Ctrl-C arrives
            raise KeyboardInterrupt
        return real_wait(timeout)

    monkeypatch.setattr(proc, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        job.wait()
    assert len(calls) == 2  # cancel() waited for the killed generator
    assert proc.returncode is not None  # killed, not left running
    assert leftovers(home) == []
