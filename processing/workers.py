"""Fetching and decoding on every core: worker processes, each with its own threads and pool.

One Python process holds its GIL for about a millisecond an image (HTTP, signing, the
Python parts of decoding), which caps it at ~1,000 images/s on any instance, whatever its
cores. So Prepare starts `processes` workers (by default one per core it may use), each
running `threads` threads over its own source (S3 connection pool) and cache; the main
process selects, hands out items through one queue, puts the results back in selection
order, and writes the shards. Workers are forked before the main process starts any thread
or opens any connection; where fork is not available they are spawned.

Every worker shares the job's RetryState (one retry budget, one stop signal, the first
cause), so a failure anywhere stops everyone and is reported once. A worker that dies (killed
for memory, say) fails the job, naming its exit code, instead of leaving it waiting.

`Workers.ordered(kind, items, window)` is the same with one process (`InProcess`: threads in
this process, no queue), which tests and small jobs use.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cache import ContentCache
from failures import PrepareFailed
from fetching import Fetcher, ordered_map
from retrying import Retrier, RetryState
from selection import quantity_of
from sources import is_transient, open_source

log = logging.getLogger("prepare")
FETCH, QUANTITY = "fetch", "quantity"
POLL_S = 1.0  # how often a waiting main process checks that its workers are alive


@dataclass(frozen=True)
class FetchSpec:
    """Everything a worker needs to build its own Fetcher (picklable, for spawn)."""

    source: str
    threads: int
    image_size: int
    min_count: int
    max_count: int
    cache_dir: str | None
    validate_metadata: bool
    max_attempts: int
    backoff_seconds: float
    retry_budget: float


@dataclass(frozen=True)
class Failure:
    """What a worker sends back instead of a result when the job must stop."""

    message: str
    prepare_failed: bool  # a PrepareFailed (the cause, for the job's last line) vs a bug


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def build_fetcher(spec: FetchSpec, state: RetryState) -> Fetcher:
    retrier = Retrier(
        is_transient, spec.max_attempts, spec.backoff_seconds, per_object=spec.retry_budget,
        state=state,
    )  # fmt: skip
    source = open_source(spec.source, spec.threads, retrier)
    cache = ContentCache(spec.cache_dir) if spec.cache_dir else None
    return Fetcher(
        source, spec.image_size, spec.min_count, spec.max_count, cache,
        retrier.record_failure, spec.validate_metadata,
    )  # fmt: skip


def handle(fetcher: Fetcher, kind: str, payload):
    if kind == FETCH:
        return fetcher(payload)
    if kind == QUANTITY:
        return quantity_of(fetcher.source.read, payload)
    raise ValueError(f"unknown task kind {kind!r}")


class InProcess:
    """The workers as threads of this process (one process: no queue, no pickling)."""

    def __init__(self, spec: FetchSpec, state: RetryState) -> None:
        self.fetcher = build_fetcher(spec, state)
        self.threads = spec.threads

    def ordered(self, kind: str, items: Iterable, window: int) -> Iterator:
        return ordered_map(lambda item: handle(self.fetcher, kind, item), items, self.threads,
                           window)  # fmt: skip

    def close(self) -> None:
        pass


class Processes:
    """`processes` worker processes fed from one task queue; results put back in order."""

    def __init__(self, spec: FetchSpec, state: RetryState, processes: int) -> None:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.state = state
        self.tasks = context.Queue()
        self.results = context.Queue()
        self.threads = spec.threads
        self.procs = [
            context.Process(
                target=serve,
                args=(spec, state, self.tasks, self.results, os.getpid()),
                name=f"prepare-worker-{n}",
                daemon=True,
            )
            for n in range(processes)
        ]
        for proc in self.procs:
            proc.start()
        self.next_seq = 0

    def ordered(self, kind: str, items: Iterable, window: int) -> Iterator:
        """Results of `kind` over items, in input order, at most `window` in flight."""
        source = iter(items)
        first = self.next_seq
        sent = done = first
        ready: dict[int, object] = {}
        exhausted = False
        while True:
            while not exhausted and sent - done < window:
                item = next(source, _END)
                if item is _END:
                    exhausted = True
                    break
                self.tasks.put((sent, kind, item))
                sent += 1
            self.next_seq = sent
            if done == sent:
                return
            while done not in ready:
                seq, result = self._receive()
                if isinstance(result, Failure):
                    self._fail(result)
                ready[seq] = result
            result = ready.pop(done)
            done += 1
            yield result

    def _receive(self) -> tuple[int, object]:
        while True:
            try:
                return self.results.get(timeout=POLL_S)
            except queue.Empty:
                dead = [p for p in self.procs if p.exitcode is not None]
                if dead:
                    causes = ", ".join(f"{p.name} exit code {p.exitcode}" for p in dead)
                    raise PrepareFailed(
                        f"prepare: a worker process ended while the job ran ({causes}; -9 is "
                        "a kill, e.g. for memory)"
                    ) from None

    def _fail(self, failure: Failure):
        if failure.prepare_failed:
            # The first cause any worker recorded is the one reported.
            raise PrepareFailed(
                self.state.cause.value.decode("utf-8", "replace") or failure.message
            )
        raise RuntimeError(f"a worker process failed:\n{failure.message}")

    def close(self) -> None:
        """Stop the workers: politely when idle, by force when work may be left."""
        for _ in range(len(self.procs) * self.threads):
            self.tasks.put(None)
        for proc in self.procs:
            proc.join(timeout=5)
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.tasks.close()
        self.results.close()
        self.tasks.cancel_join_thread()  # what is left in the pipe does not matter now
        self.results.cancel_join_thread()

    def kill(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
        for proc in self.procs:
            proc.join()
        self.tasks.cancel_join_thread()
        self.results.cancel_join_thread()


_END = object()


def serve(spec: FetchSpec, state: RetryState, tasks, results, parent: int) -> None:
    """A worker process: `spec.threads` threads taking tasks until each gets a None, or
    until `parent`, the main process, is gone."""
    try:
        fetcher: Fetcher | None = build_fetcher(spec, state)
        broken = None
    except BaseException as err:  # e.g. an unusable cache: answer every task with the cause
        fetcher, broken = None, Failure(str(err), isinstance(err, PrepareFailed))
        Retrier(is_transient, state=state).record_failure(str(err))

    def loop() -> None:
        while True:
            try:
                task = tasks.get(timeout=POLL_S)
            except queue.Empty:
                task = ()
            if os.getppid() != parent:  # the main process is gone (killed): so are we
                # Nobody reads the results any more: exiting must not wait to flush them.
                results.cancel_join_thread()
                return
            if task == ():
                continue
            if task is None:
                return
            seq, kind, payload = task
            if broken is not None:
                results.put((seq, broken))
                continue
            try:
                results.put((seq, handle(fetcher, kind, payload)))
            except PrepareFailed as err:
                results.put((seq, Failure(str(err), True)))
            except BaseException:
                results.put((seq, Failure(traceback.format_exc(), False)))

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(spec.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def open_workers(spec: FetchSpec, state: RetryState, processes: int) -> InProcess | Processes:
    if processes <= 1:
        return InProcess(spec, state)
    return Processes(spec, state, processes)
