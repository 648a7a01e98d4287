"""Which images Prepare takes: the bundled published list, a scan of metadata/, or a list file.

A list maps a count (the class, as a string key) to metadata paths, e.g.
`{"1": ["data/metadata/00710.json", ...]}`; the id is the file name without `.json` and
stays a string (`01044` and `1044` are different images). The selection is returned in a
fixed order (by a hash of the id), so shards are reproducible and mix the classes.

Ids become file names, so they must be plain names (ids.py): a list naming anything else is
malformed and refused whole; a scanned bucket key that is no plain name is reported as a
`bad_id` skip, as are metadata files a scan could not use (missing, forbidden, no count).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from ids import id_problem
from metadata import expected_quantity
from s3http import S3Error
from sources import ObjectForbidden, ObjectMissing, read_uri

log = logging.getLogger("prepare")
BUNDLED_LIST = Path(__file__).resolve().parent / "file_list.json"


@dataclass(frozen=True)
class Item:
    image_id: str
    label: int  # the count the selection claims; metadata's EXPECTED_QUANTITY is checked later
    from_metadata: bool = False  # True when `label` was read from the metadata itself (scan)


@dataclass(frozen=True)
class Rejected:
    """A scanned id that cannot be selected, reported as skipped with the reason."""

    image_id: str
    reason: str
    detail: str


def order_key(image_id: str) -> bytes:
    return hashlib.blake2b(image_id.encode(), digest_size=8, person=b"bincount-order").digest()


def parse_file_list(payload: bytes, origin: str) -> list[Item]:
    """Items of a list in the published format; SystemExit naming the problem and the file."""
    try:
        listing = json.loads(payload)
    except ValueError as err:
        raise SystemExit(f"prepare: file list {origin} is not valid JSON: {err}") from err
    if not isinstance(listing, dict):
        raise SystemExit(
            f"prepare: file list {origin} must be an object mapping counts to metadata paths, "
            f"got {type(listing).__name__}"
        )
    items: dict[str, Item] = {}
    for key, paths in listing.items():
        if not (isinstance(key, str) and key.isdigit()):
            raise SystemExit(f"prepare: file list {origin}: class key {key!r} is not a count")
        if not isinstance(paths, list):
            raise SystemExit(f"prepare: file list {origin}: class {key} must map to a list")
        for path in paths:
            name = PurePosixPath(path).name if isinstance(path, str) else ""
            if not name.endswith(".json") or name == ".json":
                raise SystemExit(
                    f"prepare: file list {origin}: class {key}: {path!r} is not a path to "
                    "metadata/<id>.json"
                )
            image_id = name.removesuffix(".json")
            problem = id_problem(image_id)
            if problem:
                raise SystemExit(f"prepare: file list {origin}: class {key}: image id {problem}")
            previous = items.get(image_id)
            if previous is not None and previous.label != int(key):
                raise SystemExit(
                    f"prepare: file list {origin}: image {image_id} is listed under both "
                    f"{previous.label} and {key}"
                )
            items[image_id] = Item(image_id, int(key))
    return sorted(items.values(), key=lambda item: order_key(item.image_id))


def load_file_list(selector: str) -> list[Item]:
    """`bundled`, or a path / s3:// URI of a list in the published format."""
    origin = str(BUNDLED_LIST) if selector == "bundled" else selector
    try:
        payload = read_uri(origin)
    except (OSError, ObjectMissing, ObjectForbidden, S3Error) as err:
        raise SystemExit(f"prepare: cannot read file list {origin}: {err}") from err
    return parse_file_list(payload, origin)


def in_range(items: Iterable[Item], min_count: int, max_count: int) -> list[Item]:
    return [item for item in items if min_count <= item.label <= max_count]


def quantity_of(read: Callable[[str], bytes], image_id: str) -> int | Rejected:
    """The metadata's count of one scanned id, or why it cannot be selected."""
    try:
        data = read(f"metadata/{image_id}.json")
    except ObjectMissing as err:  # listed, then deleted
        return Rejected(image_id, "missing_metadata", str(err))
    except ObjectForbidden as err:
        return Rejected(image_id, "forbidden_metadata", str(err))
    try:
        return expected_quantity(data)
    except (ValueError, KeyError, TypeError) as err:
        return Rejected(image_id, "bad_metadata", f"no EXPECTED_QUANTITY: {err!r}")


def scan(
    list_names: Callable[[str], Iterable[str]],
    read: Callable[[str], bytes],
    min_count: int,
    max_count: int,
    per_class_cap: int,
    workers: int,
    *,
    owns: Callable[[str], bool] | None = None,
    quantities: Callable[[list[str]], Iterable[int | Rejected]] | None = None,
) -> tuple[list[Item], list[Rejected]]:
    """List metadata/, read metadata in hash order, keep counts in range, cap each class.

    With `owns` (a host's share), only the ids it owns are read and returned: the hosts of a
    job split the reading (~536k objects for the whole dataset) instead of each reading it all,
    and `per_class_cap` is then this host's part of the cap. Listing is cheap (1,000 keys a
    request) and every host lists everything. The order is fixed (a hash of the id), so a
    rerun selects the same; reading stops as soon as every class in range is full, so a small
    cap reads little. `quantities` maps a batch of ids to their counts (default: `read` on
    `workers` threads; Prepare passes its worker processes). Returns the items and the ids
    read that could not be used (with the reason). Failures to read (throttling past all
    retries, ...) are not rejections: they stop the job.
    """
    ids, rejected, seen = [], [], set()
    for name in list_names("metadata"):
        image_id = name.removesuffix(".json")
        if not name.endswith(".json") or image_id in seen:
            continue
        seen.add(image_id)
        if owns is not None and not owns(image_id):
            continue
        problem = id_problem(image_id)
        if problem:
            rejected.append(Rejected(image_id, "bad_id", f"metadata/{name}: {problem}"))
        else:
            ids.append(image_id)
    ids.sort(key=order_key)
    log.info("scan: %d metadata files listed, %d to read here", len(seen), len(ids) + len(rejected))
    wanted = range(min_count, max_count + 1)
    taken: dict[int, list[Item]] = {count: [] for count in wanted}

    def full() -> bool:
        return per_class_cap > 0 and all(len(v) >= per_class_cap for v in taken.values())

    batch = max(256, workers * 8)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        if quantities is None:
            quantities = lambda chunk: pool.map(partial(quantity_of, read), chunk)  # noqa: E731
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            for image_id, count in zip(chunk, quantities(chunk), strict=True):
                if isinstance(count, Rejected):
                    rejected.append(count)
                elif count in taken and (per_class_cap <= 0 or len(taken[count]) < per_class_cap):
                    taken[count].append(Item(image_id, count, from_metadata=True))
            if full():
                break
    chosen = [item for count in wanted for item in taken[count]]
    rejected.sort(key=lambda r: order_key(r.image_id))
    return sorted(chosen, key=lambda item: order_key(item.image_id)), rejected


def cap_share(per_class_cap: int, host_index: int, host_count: int) -> int:
    """Host `host_index`'s part of a positive per-class cap split over `host_count` hosts.

    The parts add up to the cap exactly; a part may be 0 (more hosts than the cap).
    """
    return per_class_cap // host_count + (1 if host_index < per_class_cap % host_count else 0)


def cap_per_class(items: list[Item], per_class_cap: int) -> list[Item]:
    """At most `per_class_cap` per class, taken in the (hash) order of `items`; 0 = no cap."""
    if per_class_cap <= 0:
        return items
    seen: dict[int, int] = {}
    kept = []
    for item in items:
        if seen.get(item.label, 0) < per_class_cap:
            seen[item.label] = seen.get(item.label, 0) + 1
            kept.append(item)
    return kept
