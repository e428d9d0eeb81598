"""A reconcile's per-key copies: fetched on a few threads, committed to the index in batches on a thread
of their own, so fetching never waits for a commit (actors/minio/mirror.py's `reconcile` drives it).

Each object is a round trip or two: done one after the other, the latency adds up, so `workers` threads
fetch, at most `4 x workers` in flight so memory stays flat. A batch of a bucket's objects is fsynced
together (one syncfs, then each temp's fsync finds nothing left to write: core/batch_sync.py; an fsync
per file on the fetching threads cost more CPU than the copy's write) and committed in two index
transactions (`MirrorStore.commit_many`). Batches go to `COMMITTERS` committer threads: one batch's
files are synced while another's index transactions run, and the index commits run one at a time, while the
fetches go on; at most `PENDING_COMMITS` batches wait for them, so temp files do not pile up on disk when
the index is the slower side. Before, the last batch of each bucket was committed by the listing's
thread after every fetch had finished, with the temps fsynced one by one, and nothing else ran meanwhile
(docs/benchmarks.md, "Issue 16: the per-object path").
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

COMMIT_BATCH = 64  # objects a reconcile commits to the index in one transaction
PENDING_COMMITS = 3  # batches waiting for the committers before a fetching thread waits too
COMMITTERS = 2  # a batch's sync (disk) overlaps the previous batch's index commit

Fetched = tuple[Path, Any]  # (temp file, its index entry)
FetchFn = Callable[[str, str, Any], tuple[str, Fetched | None]]  # (bucket, key, listed) -> (outcome, fetched)
CommitFn = Callable[[str, list[tuple[str, Path, Any]]], list[bool]]  # (bucket, items) -> committed per item
SyncFn = Callable[[list[tuple[str, Path, Any]]], None]  # make a batch's temp files durable (before its commit)


class Report(Protocol):
    def count(self, outcome: str) -> None: ...
    def fail(self, message: str) -> None: ...


class Copies:
    """`submit` a key (or a listed object) to sync; `drain` waits until everything submitted is fetched
    and committed; `close` drains and stops the threads. `metered` wraps each unit of work (the CPU
    budget's `metered`, actors/minio/mirror.py). `sync`: run on a batch before its commit, on a committer
    thread, not one at a time."""

    def __init__(self, fetch: FetchFn, commit: CommitFn, report: Report, workers: int,
                 metered: Callable[[], Any], sync: SyncFn | None = None):
        self.fetch, self.commit_batch, self.report, self.metered = fetch, commit, report, metered
        self.sync_batch = sync
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="reconcile") if workers > 1 else None
        self.committer = ThreadPoolExecutor(COMMITTERS, thread_name_prefix="reconcile-commit") if workers > 1 else None
        self.committing = threading.Lock()  # the index commits, one at a time
        self.window: deque[Future] = deque()
        self.limit = workers * 4
        self.batch: dict[str, list[tuple[str, Path, Any]]] = {}
        self.commits: deque[Future] = deque()
        self.lock = threading.Lock()
        self.room = threading.BoundedSemaphore(PENDING_COMMITS)

    def submit(self, bucket: str, key: str, listed: Any = None) -> None:
        """Sync one key; `listed`: its entry in a listing just made (fetched If-Match its ETag)."""
        if self.pool is None:
            self._sync(bucket, key, listed)
            return
        self.window.append(self.pool.submit(self._sync, bucket, key, listed))
        while len(self.window) > self.limit or (self.window and self.window[0].done()):
            self.window.popleft().result()

    def _sync(self, bucket: str, key: str, listed: Any) -> None:
        with self.metered():  # each object: the pool's threads share the budget
            try:
                outcome, fetched = self.fetch(bucket, key, listed)
            except Exception as exc:  # noqa: BLE001 - one object's failure must not stop the others
                self.report.fail(f"s3://{bucket}/{key} could not be mirrored: {type(exc).__name__}: {exc}")
                return
        if fetched is None:
            self.report.count(outcome)
            return
        with self.lock:
            waiting = self.batch.setdefault(bucket, [])
            waiting.append((key, *fetched))
            full = len(waiting) >= COMMIT_BATCH
            if full:
                self.batch[bucket] = []
        if full:
            self._hand_over(bucket, waiting)

    def _hand_over(self, bucket: str, items: list[tuple[str, Path, Any]]) -> None:
        """Commit a batch on the committer thread (inline without one)."""
        if self.committer is None:
            self._commit(bucket, items)
            return
        self.room.acquire()  # a fetching thread waits only when PENDING_COMMITS batches already wait
        future = self.committer.submit(self._commit, bucket, items)
        future.add_done_callback(lambda _: self.room.release())
        with self.lock:
            self.commits.append(future)
            while self.commits and self.commits[0].done():
                self.commits.popleft()

    def _commit(self, bucket: str, items: list[tuple[str, Path, Any]]) -> None:
        try:
            with self.metered():
                if self.sync_batch is not None:
                    self.sync_batch(items)
                with self.committing:
                    done = self.commit_batch(bucket, items)
        except Exception as exc:  # noqa: BLE001 - the next reconcile fetches them again
            for key, _, _ in items:
                self.report.fail(f"s3://{bucket}/{key} could not be mirrored: {type(exc).__name__}: {exc}")
            return
        for committed in done:
            self.report.count("copied" if committed else "unchanged")

    def flush(self) -> None:
        """Hand every partial batch to the committer without waiting (a bucket's listing has ended)."""
        with self.lock:
            waiting, self.batch = self.batch, {}
        for bucket, items in waiting.items():
            if items:
                self._hand_over(bucket, items)

    def drain(self) -> None:
        """Wait until everything submitted so far is fetched and committed."""
        while self.window:
            self.window.popleft().result()
        self.flush()
        while True:
            with self.lock:
                if not self.commits:
                    return
                future = self.commits.popleft()
            future.result()

    def close(self) -> None:
        try:
            self.drain()
        finally:
            for pool in (self.pool, self.committer):
                if pool is not None:
                    pool.shutdown()


__all__ = ["COMMIT_BATCH", "Copies"]
