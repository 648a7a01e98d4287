"""Train/validation/test assignment from the image id alone.

A stable hash of the id maps each image to a point in [0, 1); the ratios cut that interval.
Each class is thus split in the given ratios (stratified in expectation, independently per
class), and adding images never moves an existing image to another split.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "validation", "test")


def unit_hash(image_id: str) -> float:
    digest = hashlib.blake2b(image_id.encode(), digest_size=8, person=b"bincount-split").digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(image_id: str, val_ratio: float, test_ratio: float) -> str:
    point = unit_hash(image_id)
    if point < test_ratio:
        return "test"
    if point < test_ratio + val_ratio:
        return "validation"
    return "train"


def check_ratios(val_ratio: float, test_ratio: float) -> None:
    if not (0 <= val_ratio < 1 and 0 <= test_ratio < 1 and val_ratio + test_ratio < 1):
        raise SystemExit(
            f"prepare: --val-ratio {val_ratio} and --test-ratio {test_ratio} must each be in "
            "[0, 1) and leave room for training (sum < 1)"
        )
