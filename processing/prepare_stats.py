"""One stats.json for an execution, from the `stats-<host>.json` each Prepare host writes.

Hosts run independently and each reports its own share; Evaluate, the first step that sees
every host's report, merges them. Counts add up; what describes the whole execution (the
source, the selection, the image size) must agree between hosts; durations take the slowest
host's, since that is how long the step took. A host's report missing, or reports of two
different executions, is an error: a merged total that silently leaves a host out would say
the dataset is smaller than it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The same on every host of one execution.
SHARED = ("hosts", "source", "file_list", "image_size", "selected", "max_skip_fraction")
# Seconds: the step lasts as long as its slowest host.
SLOWEST = ("seconds",)
# Recomputed from the merged figures, not added up.
DERIVED = ("images_per_s", "host")


class StatsError(ValueError):
    """Prepare's reports are missing, unreadable or not of one execution."""


def merge_host_stats(report_dir: Path) -> dict[str, Any]:
    paths = sorted(report_dir.glob("stats-*.json")) if report_dir.is_dir() else []
    if not paths:
        raise StatsError(f"no stats-<host>.json in {report_dir}: did Prepare run?")
    reports = []
    for path in paths:
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise StatsError(f"{path.name} is unreadable: {exc}") from None
    first = reports[0]
    for key in SHARED:
        values = {json.dumps(r.get(key)) for r in reports}
        if len(values) > 1:
            raise StatsError(f"Prepare's host reports disagree on {key}: {sorted(values)}")
    hosts = [r.get("host") for r in reports]
    if first.get("hosts") != len(reports):
        raise StatsError(
            f"{len(reports)} host report(s) ({', '.join(map(str, hosts))}) for a Prepare that "
            f"ran on {first.get('hosts')} hosts: a host's report is missing"
        )
    merged: dict[str, Any] = {key: first[key] for key in SHARED if key in first}
    for key in sorted({k for r in reports for k in r} - set(SHARED) - set(DERIVED)):
        values = [r[key] for r in reports if key in r]
        merged[key] = _slowest(values) if key in SLOWEST else _add(key, values)
    merged["host_names"] = hosts
    fetch_seconds = merged.get("seconds", {}).get("fetch_decode_write")
    if fetch_seconds:
        merged["images_per_s"] = round(merged.get("assigned", 0) / fetch_seconds, 1)
    return merged


def _add(key: str, values: list[Any]) -> Any:
    if all(isinstance(v, dict) for v in values):
        keys = sorted({k for v in values for k in v})
        return {k: _add(f"{key}.{k}", [v[k] for v in values if k in v]) for k in keys}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return sum(values)
    if len({json.dumps(v) for v in values}) == 1:
        return values[0]
    raise StatsError(f"Prepare's host reports hold {key} values that cannot be merged: {values}")


def _slowest(values: list[Any]) -> Any:
    if all(isinstance(v, dict) for v in values):
        keys = sorted({k for v in values for k in v})
        return {k: _slowest([v[k] for v in values if k in v]) for k in keys}
    return max(values)
