"""Requests tried again on transient failures, until a generous budget is spent; never skipped.

Each object gets up to `max_attempts` tries with full-jitter exponential backoff
(uniform(0, min(cap, base * 2^n))); the whole job may spend at most `per_object` retries per
object requested so far (plus a floor) before it concludes the source is too degraded. When
either runs out the job stops with the cause, and every other request still waiting stops
too (the first cause is the one reported).

The counters, the stop signal and the first cause live in shared memory (`RetryState`), so
that Prepare's worker processes (workers.py) spend one budget, stop together and report one
cause, exactly as threads of one process would.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import random
from collections.abc import Callable
from typing import NoReturn, TypeVar

from failures import PrepareFailed

R = TypeVar("R")
CALLS, REQUESTS, RETRIES = range(3)
CAUSE_BYTES = 4096


class RetryState:
    """Counters, stop flag and first cause shared by every process of one job (picklable to a
    child process at its start, like any multiprocessing primitive)."""

    def __init__(self) -> None:
        self.lock = multiprocessing.Lock()
        self.counts = multiprocessing.RawArray(ctypes.c_longlong, 3)
        self.cause = multiprocessing.RawArray(ctypes.c_char, CAUSE_BYTES)
        self.stopped = multiprocessing.Event()


class Retrier:
    def __init__(
        self,
        is_transient: Callable[[BaseException], bool],
        max_attempts: int = 12,
        backoff_s: float = 0.25,
        max_backoff_s: float = 20.0,
        per_object: float = 3.0,
        floor: int = 100,
        state: RetryState | None = None,
    ) -> None:
        self.is_transient = is_transient
        self.max_attempts = max_attempts
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.per_object, self.floor = per_object, floor
        self.state = state or RetryState()

    @property
    def calls(self) -> int:
        return self.state.counts[CALLS]

    @property
    def requests(self) -> int:
        return self.state.counts[REQUESTS]

    @property
    def retries(self) -> int:
        return self.state.counts[RETRIES]

    @property
    def failure(self) -> str:
        return self.state.cause.value.decode("utf-8", "replace")

    def _add(self, which: int) -> None:
        with self.state.lock:
            self.state.counts[which] += 1

    def call(self, request: Callable[[], R], what: str) -> R:
        """request(), tried again while it fails transiently; PrepareFailed once out of budget."""
        self._add(CALLS)
        last: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            if self.state.stopped.is_set():
                self.stop(self.failure)
            self._add(REQUESTS)
            try:
                return request()
            except Exception as err:
                if not self.is_transient(err):
                    raise
                last = err
            if attempt < self.max_attempts:
                self._spend_retry(what, last)
                cap = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                self.state.stopped.wait(random.uniform(0, cap))
        self.stop(
            f"{what} still failing after {self.max_attempts} attempts (last: {describe(last)}); "
            "transient failures are retried, never skipped: rerun later or raise --max-attempts"
        )

    def _spend_retry(self, what: str, err: BaseException) -> None:
        counts = self.state.counts
        with self.state.lock:
            allowed = self.floor + self.per_object * counts[CALLS]
            over = counts[RETRIES] + 1 > allowed
            if not over:
                counts[RETRIES] += 1
            retries, calls = counts[RETRIES], counts[CALLS]
        if over:
            self.stop(
                f"the source fails too often: {retries} retries for {calls} objects "
                f"spent the budget (--retry-budget {self.per_object:g} per object + "
                f"{self.floor}); last: {what}: {describe(err)}"
            )

    def stop(self, cause: str) -> NoReturn:
        """Stop every request of this job; raise the first cause given."""
        self.record_failure(cause)
        raise PrepareFailed(self.failure)

    def record_failure(self, cause: str) -> None:
        encoded = cause.encode("utf-8")[: CAUSE_BYTES - 1]
        with self.state.lock:
            if not self.state.cause.value:
                self.state.cause.value = encoded or b"stopped"
        self.state.stopped.set()


def describe(err: BaseException | None) -> str:
    return f"{type(err).__name__}: {err}"
