"""Group commit: mirror tasks committing at the same time share index transactions, each still durable."""
from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime, timezone

import pytest

from core.group_commit import GroupCommit
from core.mirror_store import Entry, MirrorStore


def fetched(store: MirrorStore, data: bytes) -> tuple:
    temp = store.temp_file("bkt")
    temp.write_bytes(data)
    return temp, Entry(size=len(data), etag=hashlib.md5(data).hexdigest(), md5=hashlib.md5(data).hexdigest())


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never came true")
        time.sleep(0.01)


def test_commits_arriving_during_a_commit_go_together_in_the_next_and_each_task_gets_its_own_result(
        tmp_path, monkeypatch):
    store, group = MirrorStore(tmp_path / "m"), GroupCommit()
    batches: list[list[str]] = []
    release = threading.Event()
    commit_many = store.commit_many

    def counted(bucket, items, now, **options):
        batches.append([key for key, _, _ in items])
        release.wait(30)  # the first commit is slow: the burst queues up behind it
        return commit_many(bucket, items, now, **options)

    monkeypatch.setattr(store, "commit_many", counted)
    results: dict[str, bool] = {}

    def task(key: str, data: bytes) -> None:
        results[key] = group.commit(store, "bkt", key, *fetched(store, data), datetime.now(timezone.utc))

    first = threading.Thread(target=task, args=("k0", b"first"))
    first.start()
    wait_for(lambda: batches)
    burst = [threading.Thread(target=task, args=(f"k{i}", f"bytes {i}".encode())) for i in range(1, 20)]
    for thread in burst:
        thread.start()
    wait_for(lambda: group.waiting == 19)
    release.set()
    for thread in [first, *burst]:
        thread.join()

    assert batches[0] == ["k0"] and sorted(batches[1]) == sorted(f"k{i}" for i in range(1, 20))
    assert len(batches) == 2  # twenty events, two group commits
    assert results == {f"k{i}": True for i in range(20)}
    for i in range(1, 20):
        entry = store.entry("bkt", f"k{i}")
        assert entry.path.read_bytes() == f"bytes {i}".encode()


def test_two_events_of_one_key_in_a_burst_are_committed_in_order_and_a_failure_reaches_its_task(tmp_path):
    store, group = MirrorStore(tmp_path / "m"), GroupCommit()
    now = datetime.now(timezone.utc)
    assert group.commit(store, "bkt", "k", *fetched(store, b"one"), now)
    assert group.commit(store, "bkt", "k", *fetched(store, b"two"), now)
    assert store.entry("bkt", "k").path.read_bytes() == b"two"
    assert [v.path.read_bytes() for v in store.versions("bkt", "k")] == [b"one"]

    temp, entry = fetched(store, b"gone")
    temp.unlink()  # a temp that is not there any more: the commit fails, and says so to its task
    with pytest.raises(FileNotFoundError):
        group.commit(store, "bkt", "lost", temp, entry, now)
    assert store.entry("bkt", "lost") is None


def test_two_events_of_one_key_queued_in_one_burst_are_committed_one_after_the_other_in_order(
        tmp_path, monkeypatch):
    store, group = MirrorStore(tmp_path / "m"), GroupCommit()
    batches: list[list[str]] = []
    release = threading.Event()
    commit_many = store.commit_many

    def counted(bucket, items, now, **options):
        batches.append([key for key, _, _ in items])
        release.wait(30)
        return commit_many(bucket, items, now, **options)

    monkeypatch.setattr(store, "commit_many", counted)
    now = datetime.now(timezone.utc)
    threads = [threading.Thread(target=group.commit, args=(store, "bkt", key, *fetched(store, data), now))
               for key, data in (("other", b"x"), ("k", b"older"), ("k", b"newer"))]
    threads[0].start()
    wait_for(lambda: batches)
    for queued, thread in enumerate(threads[1:], 1):
        thread.start()
        wait_for(lambda: group.waiting == queued)
    release.set()
    for thread in threads:
        thread.join()

    assert batches == [["other"], ["k"], ["k"]]
    assert store.entry("bkt", "k").path.read_bytes() == b"newer"
    assert [v.path.read_bytes() for v in store.versions("bkt", "k")] == [b"older"]


def test_keys_committed_together_are_all_indexed_and_a_failure_among_them_indexes_none_and_is_raised(tmp_path):
    store, group = MirrorStore(tmp_path / "m"), GroupCommit()
    now = datetime.now(timezone.utc)
    assert group.commit_all(store, "bkt", [("a", *fetched(store, b"1")), ("b", *fetched(store, b"2"))], now) == [True, True]
    assert {key: store.entry("bkt", key).path.read_bytes() for key in ("a", "b")} == {"a": b"1", "b": b"2"}

    temp, entry = fetched(store, b"gone")
    temp.unlink()
    with pytest.raises(FileNotFoundError):  # one transaction for the lot: none of it is indexed
        group.commit_all(store, "bkt", [("c", *fetched(store, b"3")), ("lost", temp, entry)], now)
    assert store.entry("bkt", "c") is None and store.entry("bkt", "lost") is None
