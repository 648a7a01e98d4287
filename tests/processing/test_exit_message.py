"""A failed processing job says why in /opt/ml/output/message (DescribeProcessingJob's
ExitMessage, what Studio shows), UTF-8 and within SageMaker's 1 KB."""

from __future__ import annotations

import exit_message
import pytest


def test_a_failure_leaves_its_reason_and_keeps_its_exit_status(tmp_path):
    path = tmp_path / "output" / "message"
    path.parent.mkdir()

    def refuses() -> int:
        raise SystemExit("prepare: 16 of 206 images unusable, more than 1%")

    with pytest.raises(SystemExit) as stopped:
        exit_message.run(refuses, path)
    assert stopped.value.code == "prepare: 16 of 206 images unusable, more than 1%"
    assert path.read_text() == "prepare: 16 of 206 images unusable, more than 1%"


def test_an_exception_leaves_its_last_line(tmp_path):
    path = tmp_path / "message"

    def crashes() -> int:
        raise RuntimeError("model.tar.gz holds no model.pt")

    with pytest.raises(RuntimeError):
        exit_message.run(crashes, path)
    assert path.read_text() == "RuntimeError: model.tar.gz holds no model.pt"


def test_success_writes_nothing_and_a_long_reason_is_cut_on_a_character(tmp_path):
    path = tmp_path / "message"
    assert exit_message.run(lambda: 0, path) == 0
    assert not path.exists()
    with pytest.raises(SystemExit):
        exit_message.run(lambda: (_ for _ in ()).throw(SystemExit("é" * 2000)), path)
    data = path.read_bytes()
    assert len(data) <= 1024
    data.decode("utf-8")  # still valid UTF-8


def test_outside_a_container_nothing_is_written(tmp_path):
    exit_message.write("why", tmp_path / "missing" / "message")
    assert not (tmp_path / "missing").exists()
