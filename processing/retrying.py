"""Requests tried again on transient failures, until a generous budget is spent; never skipped.

Each object gets up to `max_attempts` tries with full-jitter exponential backoff
(uniform(0, min(cap, base * 2^n))); the whole job may spend at most `per_object` retries per
object requested so far (plus a floor) before it concludes the source is too degraded. When
either runs out the job stops with the cause, and every other request still waiting stops
too (the first cause is the one reported).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import NoReturn, TypeVar

from failures import PrepareFailed

R = TypeVar("R")


class Retrier:
    def __init__(
        self,
        is_transient: Callable[[BaseException], bool],
        max_attempts: int = 12,
        backoff_s: float = 0.25,
        max_backoff_s: float = 20.0,
        per_object: float = 3.0,
        floor: int = 100,
    ) -> None:
        self.is_transient = is_transient
        self.max_attempts = max_attempts
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.per_object, self.floor = per_object, floor
        self.calls = self.requests = self.retries = 0
        self.failure = ""
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def call(self, request: Callable[[], R], what: str) -> R:
        """request(), tried again while it fails transiently; PrepareFailed once out of budget."""
        with self._lock:
            self.calls += 1
        last: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            if self._stopped.is_set():
                self.stop(self.failure)
            with self._lock:
                self.requests += 1
            try:
                return request()
            except Exception as err:
                if not self.is_transient(err):
                    raise
                last = err
            if attempt < self.max_attempts:
                self._spend_retry(what, last)
                cap = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                self._stopped.wait(random.uniform(0, cap))
        self.stop(
            f"{what} still failing after {self.max_attempts} attempts (last: {describe(last)}); "
            "transient failures are retried, never skipped: rerun later or raise --max-attempts"
        )

    def _spend_retry(self, what: str, err: BaseException) -> None:
        with self._lock:
            allowed = self.floor + self.per_object * self.calls
            over = self.retries + 1 > allowed
            if not over:
                self.retries += 1
        if over:
            self.stop(
                f"the source fails too often: {self.retries} retries for {self.calls} objects "
                f"spent the budget (--retry-budget {self.per_object:g} per object + "
                f"{self.floor}); last: {what}: {describe(err)}"
            )

    def stop(self, cause: str) -> NoReturn:
        """Stop every request of this job; raise the first cause given."""
        self.record_failure(cause)
        raise PrepareFailed(self.failure)

    def record_failure(self, cause: str) -> None:
        with self._lock:
            if not self.failure:
                self.failure = cause
        self._stopped.set()


def describe(err: BaseException | None) -> str:
    return f"{type(err).__name__}: {err}"
