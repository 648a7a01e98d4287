"""The one way Prepare stops when it cannot do what it was asked: a non-zero exit, one line.

`PrepareFailed` is a SystemExit, so it leaves the job with status 1 and its message as the
last line of the log however deep it was raised, worker threads included (a future re-raises
it in the main thread). Per-image content defects are never this: they are skips.
"""

from __future__ import annotations


class PrepareFailed(SystemExit):
    def __init__(self, message: str) -> None:
        text = message if message.startswith("prepare: ") else f"prepare: {message}"
        super().__init__(text)
        self.message = text

    def __str__(self) -> str:
        return self.message
