"""The agent's own pacing of mirror work, so steady state stays inside the requirement's "< 10 % CPU".

A token bucket of CPU seconds: it fills at `percent` of the machine (percent / 100 x cores CPU seconds per
second of wall time) up to a few seconds' worth, and each unit of mirror work (an object copied, a page
of a listing) is charged the CPU time its thread spent on it (time.thread_time: the downloads, hashing
and index writes it did, not a backup running in another thread of the process). When the bucket is in
debt the unit's thread sleeps until it is paid back, so averaged over a minute mirror work uses no more
than its share, whatever the load. `nice` alone would not do that: it yields only to others'
demand.

Catch-up (a first mirror, or a reconcile that finds a large backlog after an outage) may use more: its
own share (minio.catch_up_cpu_percent), reported in `status` and metrics (core/mirror_status.py).
Worker threads share one budget per process; a separate `worker` process paces itself with a budget of
its own.

Taking events in is charged too (`settle`): the listener and dispatcher threads, and Dramatiq's own work
around each mirror message (fetching, decoding, acknowledging). Those threads are never made to wait
(a listener that stalls makes MinIO drop events); their CPU is debt that the copies pay back by sleeping,
so the share is that of the whole mirror path, not only of the copies.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STEADY, CATCH_UP = "steady", "catch-up"
BURST_SECONDS = 5.0  # the bucket holds this many seconds of the share: short bursts are not slowed


class CpuBudget:
    def __init__(self, percent: float, catch_up_percent: float, cores: int | None = None,
                 clock: Callable[[], float] = time.monotonic, cpu: Callable[[], float] = time.thread_time,
                 sleep: Callable[[float], None] = time.sleep):
        self.cores = cores or os.cpu_count() or 1
        self.shares = {STEADY: percent, CATCH_UP: catch_up_percent}
        self.clock, self.cpu, self.sleep = clock, cpu, sleep
        self.mode, self._holders = STEADY, 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._wall, self._tokens = clock(), self.capacity

    @property
    def rate(self) -> float:
        """CPU seconds per wall-clock second the current mode allows (0: unpaced)."""
        return self.shares[self.mode] / 100 * self.cores

    @property
    def capacity(self) -> float:
        return self.rate * BURST_SECONDS

    def catching_up(self, starts: bool) -> str:
        """A catch-up starts (True) or ends (False); returns the mode now. Catch-up lasts while any runs
        (two reconciles may overlap). A new mode starts with a full bucket: catch-up's use is no debt."""
        with self._lock:
            self._holders = max(0, self._holders + (1 if starts else -1))
            mode = CATCH_UP if self._holders else STEADY
            if mode != self.mode:
                self.mode = mode
                self._wall, self._tokens = self.clock(), self.capacity
            return mode

    def pace(self, spent: float, wait: bool = True) -> float:
        """Charge `spent` CPU seconds and sleep until the bucket is out of debt; returns the seconds slept.
        wait=False: only charge (a thread that must not stall); the debt is slept off by the next to pace."""
        with self._lock:
            wall = self.clock()
            self._tokens = min(self.capacity, self._tokens + self.rate * (wall - self._wall)) - spent
            self._wall = wall
            if self.rate <= 0:  # unpaced
                self._tokens = 0.0
                return 0.0
            debt = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if debt > 0 and wait:
            self.sleep(debt)
            return debt
        return 0.0

    def settle(self, wait: bool = True) -> float:
        """Charge the CPU this thread used since its previous settle() that no metered block charged, then
        pace (wait=False: charge only). The first call in a thread starts its count and charges nothing."""
        now, local = self.cpu(), self._local
        mark, charged = getattr(local, "mark", None), getattr(local, "charged", 0.0)
        local.mark, local.charged = now, 0.0
        if mark is None:
            return 0.0
        return self.pace(max(0.0, now - mark - charged), wait)

    def forget(self) -> None:
        """Start this thread's count again without charging (its CPU since went to work of another kind)."""
        self._local.mark, self._local.charged = self.cpu(), 0.0

    @contextmanager
    def metered(self) -> Iterator[None]:
        """Charge the CPU time this thread spends inside the block, then pace (even if the block raised).
        A block inside another (a copy done inline by a listing's page) is charged by the outer one."""
        if getattr(self._local, "depth", 0):  # inside another metered block, which charges it all
            yield
            return
        start, self._local.depth = self.cpu(), 1
        try:
            yield
        finally:
            self._local.depth = 0
            spent = max(0.0, self.cpu() - start)
            self._local.charged = getattr(self._local, "charged", 0.0) + spent  # settle() charges the rest
            self.pace(spent)


__all__ = ["CATCH_UP", "STEADY", "CpuBudget"]
