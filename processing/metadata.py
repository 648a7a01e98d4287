"""The one reading of a bin's metadata JSON that selection and fetching share."""

from __future__ import annotations

import json


def expected_quantity(data: bytes) -> int:
    """`EXPECTED_QUANTITY` of a metadata file; an integer or nothing (no 2.7, "3" or true).

    Raises ValueError (bad JSON), KeyError (no such field) or TypeError (not an integer).
    """
    value = json.loads(data)["EXPECTED_QUANTITY"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"EXPECTED_QUANTITY is {value!r}, not an integer")
    return value
