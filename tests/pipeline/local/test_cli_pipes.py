"""A listing piped into a reader that stops early (`| head`) ends quietly, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.local.store import HOME_ENV

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "command",
    [["executions", "list"], ["models", "list"], ["endpoints", "list"]],
)
def test_a_closed_pipe_ends_a_listing_quietly(tmp_path, command):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before a line is written, as `head` after a line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", *command],
            cwd=REPO,
            env={**os.environ, HOME_ENV: str(tmp_path)},
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr.decode()
    assert "BrokenPipeError" not in done.stderr.decode()
