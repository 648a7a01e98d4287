"""Prepare: select, fetch, validate, split and shard the bin images (a Processing job script).

    python prepare.py --source s3://aft-vbi-pds --file-list bundled --min-count 1 \
        --max-count 5 --per-class-cap 0 --val-ratio 0.1 --test-ratio 0.1 --image-size 224 \
        --shard-size 512 --workers 64 --output-dir /opt/ml/processing/output

Writes ARCHITECTURE.md's data contract: `train|validation|test/<host>-<nnnnn>.npz` and
`report/{manifest,skipped,stats}-<host>.*`. With several processing hosts each takes a
disjoint share of the selection. Unusable items (missing/forbidden/corrupt/truncated image,
missing or bad metadata, count out of range) are skipped and listed with the reason; when
metadata's EXPECTED_QUANTITY disagrees with the list's class, the metadata wins (and stats
count it). Transient source failures are retried, never skipped; a job that cannot deliver
(out of retries, disk full, permission denied, more skipped than --max-skip-fraction, an id
unaccounted for) exits non-zero with the cause and leaves the previous output untouched.
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
from pathlib import Path

import exit_message
from accounting import SkipGate, by_reason, check_accounting
from atomic_io import write_atomic
from cache import ContentCache
from failures import PrepareFailed
from fetching import Fetcher, Outcome, ordered_map
from hosts import current_host
from retrying import Retrier
from selection import Rejected, cap_per_class, in_range, load_file_list, scan
from shards import ShardWriter
from sources import is_transient, open_source
from splitting import SPLITS, check_ratios, split_of
from staging import Staging
from tqdm import tqdm

log = logging.getLogger("prepare")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Prepare the bin-image dataset as npz shards.")
    p.add_argument("--source", default="s3://aft-vbi-pds", help="s3://bucket[/prefix] or folder")
    p.add_argument("--file-list", default="bundled", help="bundled | scan | path | s3:// URI")
    p.add_argument("--min-count", type=int, default=1)
    p.add_argument("--max-count", type=int, default=5)
    p.add_argument("--per-class-cap", type=int, default=0, help="0 = no cap")
    p.add_argument("--val-ratio", type=float, default=0.1)
    p.add_argument("--test-ratio", type=float, default=0.1)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--shard-size", type=int, default=512)
    p.add_argument("--workers", type=int, default=64)
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
    if args.min_count > args.max_count:
        p.error(f"--min-count {args.min_count} is above --max-count {args.max_count}")
    return args


def select(args: argparse.Namespace, source) -> tuple[list, list[Rejected]]:
    """The selected items, and the ids a scan found unusable (reported as skipped)."""
    if args.file_list == "scan":
        return scan(
            source.list_names,
            source.read,
            args.min_count,
            args.max_count,
            args.per_class_cap,
            args.workers,
        )
    listed = load_file_list(args.file_list)
    # Out-of-range classes in a list are kept here so that the report names them.
    kept = in_range(listed, args.min_count, args.max_count)
    outside = [i for i in listed if not args.min_count <= i.label <= args.max_count]
    return cap_per_class(kept, args.per_class_cap) + outside, []


def progress(total: int, host: str) -> tqdm:
    """A bar on a terminal; a line every 30 s in a (non-tty) job log."""
    tty = sys.stderr.isatty()
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
    source = open_source(args.source, args.workers, retrier)
    source.check()
    cache = ContentCache(args.cache_dir) if args.cache_dir else None
    selection, rejected = select(args, source)
    if not selection and not rejected:
        raise SystemExit(f"prepare: the selection from {args.source} ({args.file_list}) is empty")
    share = [item for item in selection if host.owns(item.image_id)]
    unusable = [r for r in rejected if host.owns(r.image_id)]
    log.info(
        "selected %d images from %s (%s); host %s (%d of %d) takes %d",
        len(selection),
        args.source,
        args.file_list,
        host.name,
        host.index + 1,
        host.count,
        len(share),
    )
    selected_at = time.perf_counter()
    output_dir = Path(args.output_dir)
    fetcher = Fetcher(
        source, args.image_size, args.min_count, args.max_count, cache, retrier.record_failure
    )
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
            manifest.writerow(["id", "label", "split"])
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
            try:
                for outcome in ordered_map(fetcher, share, args.workers, window):
                    downloaded += outcome.downloaded
                    bar.update(1)
                    if outcome.reason:
                        skip(outcome.image_id, outcome.reason, outcome.detail)
                        continue
                    relabelled += outcome.relabelled_from is not None
                    split = split_of(outcome.image_id, args.val_ratio, args.test_ratio)
                    writers[split].add(outcome.image_id, outcome.label, outcome.image)
                    counts[split][outcome.label] += 1
                    manifest.writerow([outcome.image_id, outcome.label, split])
                    delivered.append(outcome.image_id)
            except BaseException as err:
                retrier.record_failure(str(err) or repr(err))  # stop the fetches still waiting
                raise
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
            log.warning("host %s got no share of the %d images", host.name, len(selection))
        stats = {
            "host": host.name,
            "hosts": host.count,
            "source": args.source,
            "file_list": args.file_list,
            "image_size": args.image_size,
            "selected": len(selection),
            "assigned": len(share) + len(unusable),
            "usable": usable,
            "counts": {s: {str(k): v for k, v in sorted(c.items())} for s, c in counts.items()},
            "skipped": dict(sorted(skipped.items())),
            "relabelled_from_metadata": relabelled,
            "shards": {s: len(w.written) for s, w in writers.items()},
            "bytes_downloaded": downloaded,
            "requests": retrier.requests,
            "retries": retrier.retries,
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
