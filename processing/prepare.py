"""Prepare: select, fetch, validate, split and shard the bin images (a Processing job script).

    python prepare.py --source s3://aft-vbi-pds --file-list bundled --min-count 1 \
        --max-count 5 --per-class-cap 0 --val-ratio 0.1 --test-ratio 0.1 --image-size 224 \
        --shard-size 512 --workers 64 --output-dir /opt/ml/processing/output

Writes ARCHITECTURE.md's data contract: `train|validation|test/<host>-<nnnnn>.*.npy` shards
and `report/{manifest,skipped,stats}-<host>.*` (the manifest: id, label, split, and the
original JPEG's bytes, width, height). With several processing hosts each takes a disjoint
share of the selection; with `--file-list scan` each host also reads only its share of the
metadata (and takes its part of --per-class-cap). Fetching and decoding run in one worker
process per core (workers.py), `--workers` concurrent requests in all. Unusable items
(missing/forbidden/corrupt/truncated image, missing or bad metadata, count out of range) are
skipped and listed with the reason. A list's labels are trusted (the published list is
derived from the metadata); with --validate-metadata each image's metadata is read too and,
when its EXPECTED_QUANTITY disagrees with the list, the metadata wins (and stats count it).
Transient source failures are retried, never skipped; a job that cannot deliver (out of
retries, disk full, permission denied, more skipped than --max-skip-fraction, an id
unaccounted for, a worker process killed) exits non-zero with the cause and leaves the
previous output untouched.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import exit_message
from accounting import SkipGate, by_reason, check_accounting
from atomic_io import write_atomic
from cache import ContentCache
from failures import PrepareFailed
from fetching import Outcome
from hosts import HostShare, current_host
from retrying import Retrier
from selection import cap_per_class, cap_share, in_range, load_file_list, scan
from shards import ShardWriter
from sources import is_transient, open_source
from splitting import SPLITS, check_ratios, split_of
from staging import Staging
from tqdm import tqdm
from workers import FETCH, QUANTITY, FetchSpec, open_workers, usable_cores

log = logging.getLogger("prepare")
# The manifest's columns; bytes/width/height (the original JPEG's) were appended later, for
# the monitoring baseline: readers go by name.
MANIFEST_COLUMNS = ("id", "label", "split", "bytes", "width", "height")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Prepare the bin-image dataset as .npy shards.")
    p.add_argument("--source", default="s3://aft-vbi-pds", help="s3://bucket[/prefix] or folder")
    p.add_argument("--file-list", default="bundled", help="bundled | scan | path | s3:// URI")
    p.add_argument("--min-count", type=int, default=1)
    p.add_argument("--max-count", type=int, default=5)
    p.add_argument("--per-class-cap", type=int, default=0, help="0 = no cap")
    p.add_argument("--val-ratio", type=float, default=0.1)
    p.add_argument("--test-ratio", type=float, default=0.1)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--shard-size", type=int, default=512)
    p.add_argument("--workers", type=int, default=64, help="concurrent requests, in all")
    p.add_argument(
        "--processes",
        type=int,
        default=0,
        help="worker processes fetching and decoding (0 = one per usable core)",
    )
    p.add_argument(
        "--validate-metadata",
        action="store_true",
        help="with a file list, also read each image's metadata and let its count win",
    )
    p.add_argument("--output-dir", default="/opt/ml/processing/output")
    p.add_argument(
        "--cache-dir",
        default=os.environ.get("BINCOUNT_PREPARE_CACHE") or None,
        help="keep fetched objects here and reuse them on the next run (resume)",
    )
    p.add_argument(
        "--max-skip-fraction",
        type=float,
        default=0.01,
        help="fail when more of this host's selection is skipped (label_out_of_range excepted)",
    )
    p.add_argument("--max-attempts", type=int, default=12, help="tries per S3 request")
    p.add_argument(
        "--retry-budget",
        type=float,
        default=3.0,
        help="retries the whole job may spend per object requested (plus 100)",
    )
    p.add_argument("--backoff-seconds", type=float, default=0.25, help="first retry's backoff")
    args = p.parse_args(argv)
    if not 0 <= args.max_skip_fraction <= 1:
        p.error(f"--max-skip-fraction must be in [0, 1], got {args.max_skip_fraction}")
    if args.max_attempts < 1:
        p.error(f"--max-attempts must be >= 1, got {args.max_attempts}")
    if args.retry_budget < 0 or args.backoff_seconds < 0:
        p.error("--retry-budget and --backoff-seconds must be >= 0")
    if args.image_size < 8:
        p.error(f"--image-size must be >= 8, got {args.image_size}")
    if args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    if args.processes < 0:
        p.error(f"--processes must be >= 0, got {args.processes}")
    args.processes = min(args.processes or usable_cores(), args.workers)
    if args.min_count > args.max_count:
        p.error(f"--min-count {args.min_count} is above --max-count {args.max_count}")
    return args


def select(args: argparse.Namespace, source, host: HostShare, workers) -> tuple[list, list, int]:
    """This host's selected items, the ids a scan found unusable (reported as skipped), and
    the size of the selection before hosts take their shares, the same on every host: a
    list's items, or the metadata files a scan listed (every host lists them all)."""
    if args.file_list == "scan":
        cap, owns = args.per_class_cap, host.owns
        if cap > 0:
            cap = cap_share(cap, host.index, host.count)
            if cap == 0:  # more hosts than the cap: nothing for this one to read
                owns = lambda image_id: False  # noqa: E731
        listed = 0

        def names(folder: str) -> Iterator[str]:
            nonlocal listed
            for name in source.list_names(folder):
                listed += name.endswith(".json")
                yield name

        window = max(256, args.workers * 8)
        chosen, rejected = scan(
            names,
            source.read,
            args.min_count,
            args.max_count,
            cap,
            args.workers,
            owns=owns,
            quantities=lambda chunk: workers.ordered(QUANTITY, chunk, window),
        )
        return chosen, rejected, listed
    items = load_file_list(args.file_list)
    # Out-of-range classes in a list are kept here so that the report names them.
    kept = in_range(items, args.min_count, args.max_count)
    outside = [i for i in items if not args.min_count <= i.label <= args.max_count]
    selection = cap_per_class(kept, args.per_class_cap) + outside
    return selection, [], len(selection)


def progress(total: int, host: str) -> tqdm:
    """A bar on a terminal; a line every 30 s in a (non-tty) job log."""
    tty = sys.stderr.isatty()
    tqdm.monitor_interval = 0  # no monitor thread: nothing to share with a later fork
    return tqdm(
        total=total,
        desc=f"prepare {host}",
        unit="img",
        file=sys.stderr,
        mininterval=0.5 if tty else 30,
        ascii=not tty,
    )


def run(args: argparse.Namespace) -> dict:
    check_ratios(args.val_ratio, args.test_ratio)
    started = time.perf_counter()
    host = current_host()
    retrier = Retrier(
        is_transient, args.max_attempts, args.backoff_seconds, per_object=args.retry_budget
    )
    spec = FetchSpec(
        source=args.source,
        threads=-(-args.workers // args.processes),
        image_size=args.image_size,
        min_count=args.min_count,
        max_count=args.max_count,
        cache_dir=args.cache_dir,
        validate_metadata=args.validate_metadata,
        max_attempts=args.max_attempts,
        backoff_seconds=args.backoff_seconds,
        retry_budget=args.retry_budget,
    )
    # Workers first: forked before this process has any thread or connection to share.
    workers = open_workers(spec, retrier.state, args.processes)
    try:
        stats = _run(args, host, retrier, workers, started)
    except BaseException as err:
        retrier.record_failure(str(err) or repr(err))  # stop the work still waiting
        getattr(workers, "kill", workers.close)()
        raise
    workers.close()
    return stats


def _run(args: argparse.Namespace, host: HostShare, retrier: Retrier, workers, started) -> dict:
    source = open_source(args.source, args.workers, retrier)
    source.check()
    if args.cache_dir:
        ContentCache(args.cache_dir)  # fail now, naming the folder, if it cannot be used
    selection, rejected, candidates = select(args, source, host, workers)
    scanned = args.file_list == "scan"
    # A scan's host may own nothing (few images, many hosts); a job as a whole may not.
    alone = not scanned or host.count == 1
    if not candidates or (alone and not selection and not rejected):
        raise SystemExit(f"prepare: the selection from {args.source} ({args.file_list}) is empty")
    share = [item for item in selection if host.owns(item.image_id)]
    unusable = [r for r in rejected if host.owns(r.image_id)]
    log.info(
        "selected %d images from %s (%s); host %s (%d of %d) takes %d; %d processes",
        candidates,
        args.source,
        args.file_list,
        host.name,
        host.index + 1,
        host.count,
        len(share),
        args.processes,
    )
    selected_at = time.perf_counter()
    output_dir = Path(args.output_dir)
    counts: dict[str, Counter] = {split: Counter() for split in SPLITS}
    gate = SkipGate(args.max_skip_fraction, len(share) + len(unusable), host.name)
    skipped = gate.counts
    delivered: list[str] = []
    skipped_ids: list[str] = []
    relabelled = downloaded = 0
    with Staging(output_dir, host.name) as staging:
        writers = {
            split: ShardWriter(staging.folder(split), host.name, args.shard_size, args.image_size)
            for split in SPLITS
        }
        report = staging.folder("report")
        with (
            open(report / f"manifest-{host.name}.csv", "w", newline="", encoding="utf-8") as mf,
            open(report / f"skipped-{host.name}.csv", "w", newline="", encoding="utf-8") as sf,
            progress(len(share), host.name) as bar,
        ):
            manifest, skips = csv.writer(mf), csv.writer(sf)
            manifest.writerow(MANIFEST_COLUMNS)
            skips.writerow(["id", "reason", "detail"])

            def skip(image_id: str, reason: str, detail: str) -> None:
                log.warning("skipped %s: %s (%s)", image_id, reason, detail)
                skips.writerow([image_id, reason, detail])
                skipped_ids.append(image_id)
                gate.add(reason)

            for unused in unusable:
                skip(unused.image_id, unused.reason, unused.detail)
            window = max(64, args.workers * 4)
            outcome: Outcome
            for outcome in fetch_outcomes(workers, share, window):
                downloaded += outcome.downloaded
                bar.update(1)
                if outcome.reason:
                    skip(outcome.image_id, outcome.reason, outcome.detail)
                    continue
                relabelled += outcome.relabelled_from is not None
                split = split_of(outcome.image_id, args.val_ratio, args.test_ratio)
                writers[split].add(outcome.image_id, outcome.label, outcome.image)
                counts[split][outcome.label] += 1
                manifest.writerow([outcome.image_id, outcome.label, split, outcome.nbytes,
                                   outcome.width, outcome.height])  # fmt: skip
                delivered.append(outcome.image_id)
        for writer in writers.values():
            writer.flush()
        usable = sum(w.count for w in writers.values())
        fetched_at = time.perf_counter()
        check_accounting([i.image_id for i in share] + [r.image_id for r in unusable],
                         delivered, skipped_ids)  # fmt: skip
        if usable != len(delivered):
            raise PrepareFailed(
                f"prepare: {usable} images in the shards but {len(delivered)} in the manifest"
            )
        if (share or unusable) and not usable:
            raise SystemExit(
                f"prepare: no usable image among the {len(share) + len(unusable)} selected for "
                f"host {host.name} from {args.source} (skipped: {by_reason(skipped)}); "
                "see the log above"
            )
        if not share:
            log.warning("host %s got no share of the %d images", host.name, candidates)
        stats = {
            "host": host.name,
            "hosts": host.count,
            "source": args.source,
            "file_list": args.file_list,
            "image_size": args.image_size,
            "selected": candidates,  # the same on every host (prepare_stats.py checks)
            "assigned": len(share) + len(unusable),
            "usable": usable,
            "counts": {s: {str(k): v for k, v in sorted(c.items())} for s, c in counts.items()},
            "skipped": dict(sorted(skipped.items())),
            "relabelled_from_metadata": relabelled,
            "validate_metadata": args.validate_metadata or scanned,
            "shards": {s: len(w.written) for s, w in writers.items()},
            "bytes_downloaded": downloaded,
            "requests": retrier.requests,
            "retries": retrier.retries,
            "processes": args.processes,
            "max_skip_fraction": args.max_skip_fraction,
            "seconds": {
                "select": round(selected_at - started, 3),
                "fetch_decode_write": round(fetched_at - selected_at, 3),
            },
            "images_per_s": round(len(share) / max(fetched_at - selected_at, 1e-9), 1),
        }
        stats["seconds"]["total"] = round(time.perf_counter() - started, 3)
        _write_json(report / f"stats-{host.name}.json", stats)
        staging.commit()
    log.info(
        "host %s: %d usable (%s), %d skipped (%s), %.1f MB downloaded, %.0f images/s -> %s",
        host.name,
        usable,
        ", ".join(f"{s} {sum(c.values())}" for s, c in counts.items()),
        sum(skipped.values()),
        ", ".join(f"{r} {n}" for r, n in sorted(skipped.items())) or "none",
        downloaded / 1e6,
        stats["images_per_s"],
        output_dir,
    )
    return stats


def fetch_outcomes(workers, share: list, window: int) -> Iterator[Outcome]:
    """One Outcome per item of the share, in order (a seam for the accounting test)."""
    return workers.ordered(FETCH, share, window)


def _write_json(path: Path, payload: dict) -> None:
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=True).encode())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    args = parse_args(argv)
    try:
        run(args)
    except OSError as err:  # disk full, permission denied, ... on the output: stop, say why
        raise PrepareFailed(f"prepare: stopped by the environment: {err}") from err
    return 0


if __name__ == "__main__":
    # A failure's reason also goes to /opt/ml/output/message: Studio shows it for the step.
    raise SystemExit(exit_message.run(main))
