"""Fetch, check and decode each selected image concurrently, in a bounded window.

Results come back in selection order (so outputs are reproducible), with at most `window`
items in flight: memory stays bounded however large the selection. Each item ends as an
Outcome: usable, or skipped for a content defect with its reason (missing or forbidden
object, bad metadata, count out of range, undecodable image). Nothing else is a skip:
transient source failures are retried by the source, and what remains (out of retries, disk
full, permission denied on the cache) stops the job, and every other fetch with it.
With a cache, objects are reused while the source confirms they are unchanged. An item whose
label comes from a list is not checked against its metadata unless `validate_metadata` (the
published list is derived from the metadata: one request an image instead of two).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from cache import ContentCache
from decoding import BadImage, decode_photo
from metadata import expected_quantity
from selection import Item
from sources import ObjectForbidden, ObjectMissing

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
    nbytes: int = 0  # the original JPEG's size, width and height (for the manifest)
    width: int = 0
    height: int = 0


class Fetcher:
    """Turns one Item into an Outcome; raises only what must stop the job."""

    def __init__(
        self,
        source,
        image_size: int,
        min_count: int,
        max_count: int,
        cache: ContentCache | None = None,
        on_failure: Callable[[str], None] | None = None,
        validate_metadata: bool = True,
    ):
        self.source = source
        self.size = image_size
        self.min_count, self.max_count = min_count, max_count
        self.cache = cache
        self.on_failure = on_failure
        self.validate_metadata = validate_metadata

    def __call__(self, item: Item) -> Outcome:
        try:
            return self._fetch(item)
        except BaseException as err:
            if self.on_failure is not None:  # stop the other fetches: this job has failed
                self.on_failure(str(err) or repr(err))
            raise

    def _fetch(self, item: Item) -> Outcome:
        out = Outcome(item.image_id, item.label)
        if self.validate_metadata and not item.from_metadata:
            try:
                data = self._bytes(f"metadata/{item.image_id}.json", out)
            except ObjectMissing as err:
                return self._skip(out, "missing_metadata", str(err))
            except ObjectForbidden as err:
                return self._skip(out, "forbidden_metadata", str(err))
            try:
                quantity = expected_quantity(data)
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
            data = self._bytes(f"bin-images/{item.image_id}.jpg", out)
        except ObjectMissing as err:
            return self._skip(out, "missing_image", str(err))
        except ObjectForbidden as err:
            return self._skip(out, "forbidden_image", str(err))
        out.nbytes = len(data)
        try:
            out.image, (out.width, out.height) = decode_photo(data, self.size)
        except BadImage as err:
            return self._skip(out, err.reason, err.detail)
        return out

    @staticmethod
    def _skip(out: Outcome, reason: str, detail: str) -> Outcome:
        out.reason, out.detail = reason, detail
        return out

    def _bytes(self, relative: str, out: Outcome) -> bytes:
        """The object's bytes: the cached copy while the source confirms it, else fetched."""
        entry = self.cache.load(relative) if self.cache else None
        fetched = self.source.fetch(relative, entry.identity if entry else None)
        if fetched.data is None and entry is not None:
            return entry.data
        if fetched.data is None:  # a source that answers "unchanged" to nothing known
            raise AssertionError(f"{relative}: no data and nothing cached")
        out.downloaded += len(fetched.data)
        if self.cache is not None:
            self.cache.store(relative, fetched.identity, fetched.data)
        return fetched.data


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, window: int) -> Iterator[R]:
    """fn over items on `workers` threads, results in input order, at most `window` pending.

    When fn raises, the items not yet started are cancelled and the error is raised here.
    """
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        pending: deque = deque()
        source = iter(items)
        try:
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
        finally:
            for future in pending:
                future.cancel()
