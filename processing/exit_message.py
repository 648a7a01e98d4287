"""Why a processing job ended, where SageMaker shows it: a processing container's
`/opt/ml/output/message` becomes DescribeProcessingJob's ExitMessage (its first 1 KB), which
Studio shows for a failed step. Without it a failed Prepare or Evaluate says only "exited
with code 1".
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

MESSAGE_FILE = Path("/opt/ml/output/message")
LIMIT = 1024  # bytes SageMaker keeps


def write(text: str, path: Path = MESSAGE_FILE) -> None:
    """Write `text`, cut to SageMaker's limit on a character boundary (the file must be UTF-8,
    or the job fails with a ClientError). Outside a processing container (no /opt/ml/output)
    nothing is written."""
    if not path.parent.is_dir():
        return
    data = text.encode("utf-8")[:LIMIT].decode("utf-8", errors="ignore")
    path.write_text(data, encoding="utf-8")


def run(main: Callable[[], int | None], path: Path = MESSAGE_FILE) -> int:
    """Run a script's `main`, leaving the reason in the message file when it fails; the exit
    status and the exception stay exactly as they were."""
    try:
        code = main()
    except SystemExit as stop:
        if stop.code not in (None, 0):
            reason = stop.code if isinstance(stop.code, str) else f"exit status {stop.code}"
            write(reason, path)
        raise
    except BaseException as error:
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        write(last, path)
        raise
    if code:
        write(f"exit status {code}; see the job's log", path)
    return code or 0
