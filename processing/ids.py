"""Which image ids and relative object names may reach the filesystem (cache, local source).

An id becomes a file name (`bin-images/<id>.jpg`, `metadata/<id>.json`) under the cache or
the source folder, so it must be one plain name: letters, digits, `.`, `_`, `-`, not
starting with a dot (no `..`, no hidden files), no separators, no absolute paths.
The dataset's ids are digits (`00710`, `104505`); anything else is refused, not guessed at.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
LAYOUT_FOLDERS = ("bin-images", "metadata")


def id_problem(image_id: object) -> str:
    """Why `image_id` cannot be used as an image id, or "" when it can."""
    if not isinstance(image_id, str):
        return f"{image_id!r} is not a string"
    if not SAFE_ID.fullmatch(image_id):
        return (
            f"{image_id!r} is not a plain name (letters, digits, '.', '_', '-', not starting "
            "with '.', at most 200 characters)"
        )
    return ""


def checked_path(root: Path, relative: str) -> Path:
    """root / relative, where relative must be `<layout folder>/<plain name>`; else ValueError.

    The last line of defence: ids are checked when selected, and this refuses anything that
    would still land outside `root`.
    """
    parts = PurePosixPath(relative).parts
    if len(parts) != 2 or parts[0] not in LAYOUT_FOLDERS or not SAFE_ID.fullmatch(parts[1]):
        raise ValueError(f"refusing object name {relative!r}: not <bin-images|metadata>/<name>")
    return root / parts[0] / parts[1]
