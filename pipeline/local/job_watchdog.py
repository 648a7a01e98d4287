"""Ends a runner's jobs when the runner dies, however it dies (SIGKILL included).

Jobs lead process groups of their own (like containers), so nothing delivers the runner's
death to them: a killed runner would leave training at full CPU to its end. Each execution
therefore starts one watchdog process, `python -m pipeline.local.job_watchdog`, reading a pipe
from the runner: `+<pgid>` when a job starts, `-<pgid>` when it has ended. The kernel closes
the runner's end of the pipe when the runner exits, for any reason; at that end of input the
watchdog SIGKILLs every group still listed, and exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading

MODULE = "pipeline.local.job_watchdog"


class JobWatchdog:
    """The runner's side: start the watchdog, tell it which process groups are running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            # Its own session: Ctrl-C in the terminal stops the runner, which then stops the
            # jobs itself; the watchdog must outlive the runner to act when that cannot happen.
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": _repo_root()},
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, line: str) -> None:
        with self._lock, contextlib.suppress(BrokenPipeError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.write(f"{line}\n".encode())
            self._proc.stdin.flush()

    def track(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def untrack(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    def close(self) -> None:
        """End of input: the watchdog ends whatever is still listed and exits."""
        with self._lock, contextlib.suppress(BrokenPipeError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=10)


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def watch(stream) -> set[int]:
    """Read +pgid / -pgid lines to the end of input; the groups still running then."""
    groups: set[int] = set()
    for raw in stream:
        line = raw.strip()
        if line[:1] in (b"+", b"-") and line[1:].isdigit():
            (groups.add if line[:1] == b"+" else groups.discard)(int(line[1:]))
    return groups


def main() -> int:
    # Terminal signals are the runner's business; only the end of the pipe matters here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for pgid in watch(sys.stdin.buffer):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
