"""Fetch, check and decode each selected image concurrently, in a bounded window.

Results come back in selection order (so outputs are reproducible), with at most `window`
items in flight: memory stays bounded however large the selection. With a cache folder,
fetched objects are kept there and reused on the next run when they are still valid.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from atomic_io import write_atomic
from decoding import BadImage, decode_image
from metadata import expected_quantity
from selection import Item
from sources import ObjectMissing

log = logging.getLogger("prepare")
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Outcome:
    image_id: str
    label: int
    image: np.ndarray | None = None
    reason: str = ""  # why it was skipped; empty when usable
    detail: str = ""
    downloaded: int = 0  # bytes fetched from the source (not from the cache)
    relabelled_from: int | None = None  # the list's class, when metadata disagreed


class Fetcher:
    """Turns one Item into an Outcome; never raises (one bad item never stops the job)."""

    def __init__(self, source, image_size: int, min_count: int, max_count: int, cache_dir=None):
        self.source = source
        self.size = image_size
        self.min_count, self.max_count = min_count, max_count
        self.cache = Path(cache_dir) if cache_dir else None

    def __call__(self, item: Item) -> Outcome:
        try:
            return self._fetch(item)
        except Exception as err:  # throttling past all retries, access denied, ...
            return Outcome(item.image_id, item.label, reason="fetch_error", detail=repr(err))

    def _fetch(self, item: Item) -> Outcome:
        out = Outcome(item.image_id, item.label)
        if not item.from_metadata:
            try:
                quantity = self._with_cache(
                    f"metadata/{item.image_id}.json", out, expected_quantity
                )
            except ObjectMissing as err:
                return self._skip(out, "missing_metadata", str(err))
            except (ValueError, KeyError, TypeError) as err:
                return self._skip(out, "bad_metadata", f"no EXPECTED_QUANTITY: {err!r}")
            if quantity != item.label:
                # The metadata is what the image was annotated with; a list is derived from
                # it and may be stale, so the metadata wins.
                out.relabelled_from, out.label = item.label, quantity
        if not self.min_count <= out.label <= self.max_count:
            detail = f"count {out.label} outside [{self.min_count}, {self.max_count}]"
            return self._skip(out, "label_out_of_range", detail)
        try:
            decode = lambda data: decode_image(data, self.size)  # noqa: E731
            out.image = self._with_cache(f"bin-images/{item.image_id}.jpg", out, decode)
        except ObjectMissing as err:
            return self._skip(out, "missing_image", str(err))
        except BadImage as err:
            return self._skip(out, err.reason, err.detail)
        return out

    @staticmethod
    def _skip(out: Outcome, reason: str, detail: str) -> Outcome:
        out.reason, out.detail = reason, detail
        return out

    def _with_cache(self, relative: str, out: Outcome, parse: Callable[[bytes], R]) -> R:
        """parse(bytes) from the cache if there and valid, else from the source (then cached)."""
        cached = self.cache / relative if self.cache else None
        if cached is not None and cached.is_file():
            try:
                return parse(cached.read_bytes())
            except Exception as err:  # a damaged cache entry: fetch it again
                log.debug("cached %s unusable (%r); fetching it again", cached, err)
        data = self.source.read(relative)
        out.downloaded += len(data)
        if cached is not None:
            write_atomic(cached, data)
        return parse(data)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, window: int) -> Iterator[R]:
    """fn over items on `workers` threads, results in input order, at most `window` pending."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        pending: deque = deque()
        source = iter(items)
        for item in source:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                break
        while pending:
            result = pending.popleft().result()
            for item in source:
                pending.append(pool.submit(fn, item))
                break
            yield result
