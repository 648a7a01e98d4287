"""Every id of a host's share ends in the manifest or the skipped list, and few are skipped.

`SkipGate` enforces --max-skip-fraction as skips happen: once more of the share is lost than
allowed the job cannot succeed, so it stops there, naming the counts by reason.
`label_out_of_range` is not a loss but the count range asked for (a list may name classes
outside it), so it is reported and not counted. `check_accounting` is Prepare's own check,
at the end, that manifest + skipped == the share, id for id.
"""

from __future__ import annotations

import math
from collections import Counter

from failures import PrepareFailed

NOT_A_LOSS = frozenset({"label_out_of_range"})


def by_reason(counts: Counter) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in counts.most_common()) or "none"


class SkipGate:
    def __init__(self, max_fraction: float, assigned: int, host: str) -> None:
        self.max_fraction = max_fraction
        self.assigned = assigned
        self.allowed = math.floor(max_fraction * assigned + 1e-9)
        self.host = host
        self.counts: Counter = Counter()

    @property
    def lost(self) -> int:
        return sum(n for reason, n in self.counts.items() if reason not in NOT_A_LOSS)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1
        if self.lost > self.allowed:
            raise PrepareFailed(
                f"prepare: {self.lost} of the {self.assigned} images selected for host "
                f"{self.host} were skipped, more than --max-skip-fraction {self.max_fraction:g} "
                f"allows ({self.allowed}); skipped so far by reason: {by_reason(self.counts)} "
                "(each one is logged above)"
            )


def check_accounting(expected: list[str], delivered: list[str], skipped: list[str]) -> None:
    """PrepareFailed naming the ids unless delivered + skipped is exactly `expected`."""
    want, got = Counter(expected), Counter(delivered) + Counter(skipped)
    if want == got:
        return
    problems = []
    for what, ids in (
        ("lost (neither in the manifest nor skipped)", list((want - got).elements())),
        ("reported twice or never selected", list((got - want).elements())),
    ):
        if ids:
            problems.append(f"{len(ids)} {what}: {', '.join(sorted(ids)[:5])}")
    raise PrepareFailed(
        f"prepare: the outputs do not account for the selection ({len(expected)} ids, "
        f"{len(delivered)} delivered, {len(skipped)} skipped): {'; '.join(problems)}"
    )
