"""The agent's own pool for event batches (`run`): mirrored here, anything it cannot do sent as a message."""
from __future__ import annotations

import threading

from agent.local_mirror import LocalMirror


class Calls:
    """What the pool did with each batch: mirrored here, or sent as a message."""

    def __init__(self, fail: set[str] = frozenset(), gate: threading.Event | None = None, send_fails: bool = False):
        self.mirrored: list[tuple[str, list[str]]] = []
        self.sent: list[tuple[str, list[str]]] = []
        self.settled = 0
        self.fail, self.gate, self.send_fails = fail, gate, send_fails
        self.started = threading.Semaphore(0)
        self.lock = threading.Lock()

    def mirror(self, bucket: str, keys: list[str]) -> None:
        self.started.release()
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        if set(keys) & self.fail:
            raise OSError("No space left on device")
        with self.lock:
            self.mirrored.append((bucket, keys))

    def send(self, bucket: str, keys: list[str]) -> None:
        if self.send_fails:
            raise ConnectionError("Redis is down")
        with self.lock:
            self.sent.append((bucket, keys))

    def settle(self) -> None:
        with self.lock:
            self.settled += 1


def settled(calls: Calls, count: int) -> None:
    """Wait until `count` batches were done with (mirrored or failed and settled) before stopping the pool."""
    done = threading.Event()
    while not done.wait(0.01):
        with calls.lock:
            if calls.settled >= count:
                return


def pool(calls: Calls, threads: int = 2, backlog: int | None = None) -> LocalMirror:
    return LocalMirror(calls.mirror, calls.send, threads, settle=calls.settle, backlog=backlog).start()


def test_batches_are_mirrored_on_the_pool_threads_and_settled_with_the_budget():
    calls = Calls()
    local = pool(calls, backlog=20)
    for n in range(20):
        local.submit("kb", [f"doc-{n}"])
    settled(calls, 20)
    local.stop(timeout=30)
    assert sorted(keys[0] for _, keys in calls.mirrored) == sorted(f"doc-{n}" for n in range(20))
    assert calls.sent == [] and calls.settled == 20 and local.mirrored == 20


def test_a_batch_that_fails_here_is_sent_as_a_message_for_the_workers_to_retry():
    calls = Calls(fail={"doc-1"})
    local = pool(calls)
    local.submit("kb", ["doc-0"])
    local.submit("kb", ["doc-1", "doc-2"])
    settled(calls, 2)
    local.stop(timeout=30)
    assert calls.mirrored == [("kb", ["doc-0"])]
    assert calls.sent == [("kb", ["doc-1", "doc-2"])] and local.handed_over == 1


def test_batches_beyond_the_backlog_go_to_redis_instead_of_waiting_in_memory():
    gate = threading.Event()
    calls = Calls(gate=gate)
    local = pool(calls, threads=1, backlog=2)
    local.submit("kb", ["running"])
    assert calls.started.acquire(timeout=30)  # the only thread is busy with it
    for n in range(5):
        local.submit("kb", [f"doc-{n}"])
    assert calls.sent == [("kb", ["doc-2"]), ("kb", ["doc-3"]), ("kb", ["doc-4"])]
    gate.set()
    settled(calls, 3)
    local.stop(timeout=30)
    assert calls.mirrored == [("kb", ["running"]), ("kb", ["doc-0"]), ("kb", ["doc-1"])]


def test_on_stop_the_running_batch_finishes_and_those_not_started_are_sent_as_messages():
    gate = threading.Event()
    calls = Calls(gate=gate)
    local = pool(calls, threads=1)
    local.submit("kb", ["running"])
    assert calls.started.acquire(timeout=30)
    local.submit("kb", ["waiting-1"])
    local.submit("kb", ["waiting-2"])
    stopper = threading.Thread(target=local.stop, kwargs={"timeout": 30})
    stopper.start()
    while len(calls.sent) < 2 and stopper.is_alive():
        stopper.join(0.05)
    gate.set()
    stopper.join(30)
    assert calls.mirrored == [("kb", ["running"])]
    assert calls.sent == [("kb", ["waiting-1"]), ("kb", ["waiting-2"])]
    local.submit("kb", ["after-stop"])  # e.g. the listener's last events: sent, never left in memory
    assert calls.sent[-1] == ("kb", ["after-stop"])


def test_a_failed_batch_that_cannot_be_sent_either_is_counted_and_left_to_the_reconcile():
    calls = Calls(fail={"doc-0"}, send_fails=True)
    local = pool(calls, threads=1)
    local.submit("kb", ["doc-0"])
    settled(calls, 1)
    local.stop(timeout=30)
    assert calls.mirrored == [] and calls.sent == [] and local.lost == 1
