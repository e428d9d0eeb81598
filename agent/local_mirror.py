"""Event batches mirrored inside the agent's own process when it runs its workers too (`run`).

With separate processes (`agent` + `worker`) each batch of events is a Dramatiq message: a Redis enqueue,
a fetch and an acknowledgement, and Dramatiq's middleware around it. Over a burst that was about a quarter
of the agent's interpreter time and as many Redis round trips as batches (docs/benchmarks.md, "Issue 16:
figure 3, the event path"). When the same process runs the workers, a batch goes straight to one of
this pool's threads instead, which calls the same task function (actors/minio/mirror.py `mirror_objects`).

Durability is the task's, unchanged: it returns only once every object is fsynced (file and folder) and
indexed. An event handed here lives in memory until then, like the events in the listener's own queue
before they were sent: a crash loses it with the process, and the start-up reconcile of the next start
copies the object (tests/faults/test_kills.py, "agent SIGKILLed during a burst"). Nothing is dropped in
any other case: a batch that fails (MinIO down, disk full) is sent as a message, which Dramatiq retries
with its backoff and ends in the dead letters like any other; so is every batch beyond what the pool
holds (`backlog`: a long backlog waits in Redis, not in memory, and the Dramatiq workers share it), and
every batch not started when the agent stops. A batch that cannot even be sent (Redis down) is left to
the reconcile, as the dispatcher does with an event it cannot send (agent/sources/minio_events.py).

Each thread settles its CPU with the mirror's budget after each batch (core/cpu_budget.py): what the
task's metered blocks did not charge is charged, and the thread waits when the share is spent, as
Dramatiq's workers do for messages (actors/minio/intake.py).
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("ragflow_backup.local_mirror")

Batch = tuple[str, list[str]]  # (bucket, keys)
_STOP = None


class LocalMirror:
    """`mirror(bucket, keys)` on `threads` threads; `send(bucket, keys)` queues a message instead.
    `settle()` after each batch (the budget's). At most `backlog` batches waiting (default 4 x threads)."""

    def __init__(self, mirror: Callable[[str, list[str]], object], send: Callable[[str, list[str]], object],
                 threads: int, settle: Callable[[], object] = lambda: None, forget: Callable[[], object] = lambda: None,
                 backlog: int | None = None):
        self.mirror, self.send, self.settle, self.forget = mirror, send, settle, forget
        self.threads = max(1, threads)
        self._slots = threading.BoundedSemaphore(backlog if backlog is not None else 4 * self.threads)
        self._queue: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # submit and stop: nothing is queued behind the stop marks
        self._stopping = False
        self._workers: list[threading.Thread] = []
        self.mirrored = self.handed_over = self.lost = 0  # batches, for the log and tests

    def start(self) -> "LocalMirror":
        for n in range(self.threads):
            thread = threading.Thread(target=self._work, name=f"local-mirror-{n}", daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def submit(self, bucket: str, keys: list[str]) -> None:
        """Mirror these keys here, or send them as a message when the pool is full or stopping. Raises
        what sending raises (the dispatcher retries, then leaves the event to the reconcile)."""
        with self._lock:
            if not self._stopping and self._slots.acquire(blocking=False):
                self._queue.put((bucket, list(keys)))
                return
        self.send(bucket, keys)

    def stop(self, timeout: float | None = None) -> None:
        """Batches not started are sent as messages; the running ones finish (up to `timeout` each)."""
        with self._lock:
            self._stopping = True
            waiting = self._drain()
            for _ in self._workers:
                self._queue.put(_STOP)
        for bucket, keys in waiting:
            self._hand_over(bucket, keys, "the agent stops")
        for thread in self._workers:
            thread.join(timeout)

    def _drain(self) -> list[Batch]:
        items = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return items
            if item is not _STOP:
                self._slots.release()
                items.append(item)

    def _work(self) -> None:
        self.forget()  # its count starts here
        while (item := self._queue.get()) is not _STOP:
            bucket, keys = item
            self._slots.release()
            try:
                self.mirror(bucket, keys)
                self.mirrored += 1
            except Exception as exc:  # noqa: BLE001 - a message retries it, with Dramatiq's backoff
                self._hand_over(bucket, keys, f"{type(exc).__name__}: {exc}")
            finally:
                self.settle()

    def _hand_over(self, bucket: str, keys: list[str], why: str) -> None:
        try:
            self.send(bucket, keys)
            self.handed_over += 1
            log.info("mirror of %d key(s) of bucket %s queued for the workers (%s)", len(keys), bucket, why)
        except Exception as exc:  # noqa: BLE001 - Redis down too: the reconcile covers these keys
            self.lost += 1
            log.error("mirror of %d key(s) of bucket %s could not be queued (%s; %s: %s); the next reconcile of "
                      "the bucket covers them", len(keys), bucket, why, type(exc).__name__, exc)


__all__ = ["LocalMirror"]
