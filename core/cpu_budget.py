"""The agent's own pacing of mirror work, so steady state stays inside the requirement's "< 10 % CPU".

Steady state is held to its share averaged over a minute, as the requirement says: a sliding window of
the last WINDOW_SECONDS of wall time, in which the mirror's charged CPU may reach `percent` of the
machine (percent / 100 x cores x WINDOW_SECONDS CPU seconds). A quarter of it is a trickle that work
takes first, so steady work inside the share never fills the window; a burst spends the other three
quarters at full speed and then goes on at the trickle's pace (not waiting up to a minute for the oldest
spending to leave the window), so no minute spends more than the share, whatever the load. (A bucket of
capacity C refilled at rate r lets a minute spend C + 60 r: with only a few seconds of capacity, a burst
that a minute could easily hold was paced from its sixth second; with a minute of capacity, a minute
after a quiet one could spend twice the share.) Spending is charged when a unit ends, so a minute may
exceed the share by the units in flight when the trickle ran dry (one per worker thread, a few ms each
for events); the next waits pay that back.

Each unit of mirror work (an object copied, a page of a listing) is charged the CPU time its thread
spent on it (time.thread_time: the downloads, hashing and index writes it did, not a backup running in
another thread of the process). `nice` alone would not do that: it yields only to others' demand.

Catch-up (a first mirror, or a reconcile that finds a large backlog after an outage) may use more: its
own share (minio.catch_up_cpu_percent), paced smoothly by a token bucket holding BURST_SECONDS of it,
and reported in `status` and metrics (core/mirror_status.py). Worker threads share one budget per
process; a separate `worker` process paces itself with a budget of its own.

Taking events in is charged too (`settle`): the listener and dispatcher threads, and Dramatiq's own work
around each mirror message (fetching, decoding, acknowledging). Those threads are never made to wait
(a listener that stalls makes MinIO drop events); their CPU is debt that the copies pay back by sleeping,
so the share is that of the whole mirror path, not only of the copies.
"""
from __future__ import annotations

import collections
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STEADY, CATCH_UP = "steady", "catch-up"
WINDOW_SECONDS = 60.0  # steady state: the requirement's "averaged over a minute"
SLOT_SECONDS = 0.25  # the window sums charges per slot: at most 240 of them, whatever the rate of charges
TRICKLE = 0.25  # the steady share's part that goes on while the window is full (MinuteWindow)
BURST_SECONDS = 5.0  # catch-up's bucket holds this many seconds of its share


class TokenBucket:
    """CPU seconds filling at `rate` up to `seconds` of it; a charge beyond them is slept off."""

    def __init__(self, rate: float, now: float, seconds: float = BURST_SECONDS):
        self.rate, self.capacity = rate, rate * seconds
        self.tokens, self.wall = self.capacity, now

    def wait(self, spent: float, now: float) -> float:
        """How long a charge of `spent` now would wait (nothing is charged)."""
        self.tokens = min(self.capacity, self.tokens + self.rate * (now - self.wall))
        self.wall = now
        return max(0.0, spent - self.tokens) / self.rate

    def charge(self, spent: float, now: float) -> float:
        wait = self.wait(spent, now)
        self.tokens -= spent
        return wait

    def take(self, spent: float, now: float) -> float:
        """Charge as much of `spent` as the bucket holds (never going into debt); returns how much."""
        self.wait(0.0, now)
        taken = min(spent, max(0.0, self.tokens))
        self.tokens -= taken
        return taken


class MinuteWindow:
    """Steady pacing: `rate` x WINDOW_SECONDS CPU seconds in any window of WINDOW_SECONDS, as a trickle (a
    quarter of the rate, in a bucket of one slot) and a window (the charges of the last minute in slots of
    SLOT_SECONDS, up to `limit`: three quarters of the minute's share, spent at any pace). Worst minute:
    limit + the trickle's bucket and its minute = the share.

    A charge takes what the trickle holds first, then what the window can hold, and waits until the trickle
    has paid for the rest or the window has room for it, whichever is sooner. So work at a steady pace
    inside the share never waits (the trickle keeps the window from filling up); a burst spends three
    quarters of a minute's share at full speed, then goes on at the trickle's pace; and the window never
    holds more than its limit. (It did: once charges that did not wait had put it over, every charge went
    on landing in it and each worker slept until a slot a minute old left, so a steady 20 events/s inside
    the share saw 13 s waits; docs/benchmarks.md, figure 3.)"""

    def __init__(self, rate: float, now: float):
        self.trickle = TokenBucket(rate * TRICKLE, now, seconds=SLOT_SECONDS)
        self.limit = rate * (1 - TRICKLE) * WINDOW_SECONDS - self.trickle.capacity
        self.slots: collections.deque[list[float]] = collections.deque()  # [slot's end, CPU seconds]
        self.total = 0.0

    def charge(self, spent: float, now: float) -> float:
        """Charge `spent` CPU seconds at `now`; returns how long to wait: until the trickle has paid what
        neither held, or until the window has room for it, whichever comes first. What the window gets room
        for is moved into it by the next charge."""
        while self.slots and self.slots[0][0] + WINDOW_SECONDS <= now:
            self.total -= self.slots.popleft()[1]
        rest = spent - self.trickle.take(spent, now)
        self.trickle.tokens -= rest  # debt, moved into the window as far as it has room
        into_window = min(max(0.0, -self.trickle.tokens), max(0.0, self.limit - self.total))
        if into_window > 0:
            end = (math.floor(now / SLOT_SECONDS) + 1) * SLOT_SECONDS  # a slot leaves a minute after it ends
            if self.slots and self.slots[-1][0] == end:
                self.slots[-1][1] += into_window
            else:
                self.slots.append([end, into_window])
            self.total += into_window
            self.trickle.tokens += into_window
        owed = max(0.0, -self.trickle.tokens)
        return min(owed / self.trickle.rate, self._room_in(owed, now)) if owed > 0 else 0.0

    def _room_in(self, owed: float, now: float) -> float:
        """How long until enough of the oldest slots have left the window to hold `owed` CPU seconds."""
        freed = self.limit - self.total
        for slot_end, slot_spent in self.slots:
            freed += slot_spent
            if freed >= owed:
                return max(0.0, slot_end + WINDOW_SECONDS - now)
        return math.inf  # more than a whole window: only the trickle pays it


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
        self._pacer = self._fresh_pacer()

    @property
    def rate(self) -> float:
        """CPU seconds per wall-clock second the current mode allows (0: unpaced)."""
        return self.shares[self.mode] / 100 * self.cores

    def _fresh_pacer(self) -> MinuteWindow | TokenBucket | None:
        if self.rate <= 0:
            return None
        return MinuteWindow(self.rate, self.clock()) if self.mode == STEADY else TokenBucket(self.rate, self.clock())

    def catching_up(self, starts: bool) -> str:
        """A catch-up starts (True) or ends (False); returns the mode now. Catch-up lasts while any runs
        (two reconciles may overlap). A new mode starts afresh: catch-up's use is no debt of steady state."""
        with self._lock:
            self._holders = max(0, self._holders + (1 if starts else -1))
            mode = CATCH_UP if self._holders else STEADY
            if mode != self.mode:
                self.mode = mode
                self._pacer = self._fresh_pacer()
            return mode

    def pace(self, spent: float, wait: bool = True) -> float:
        """Charge `spent` CPU seconds and sleep until the mode's share allows more; returns the seconds slept.
        wait=False: only charge (a thread that must not stall); the excess is slept off by the next to pace."""
        with self._lock:
            if self._pacer is None:  # unpaced
                return 0.0
            debt = self._pacer.charge(spent, self.clock())
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


__all__ = ["CATCH_UP", "STEADY", "WINDOW_SECONDS", "CpuBudget", "MinuteWindow", "TokenBucket"]
