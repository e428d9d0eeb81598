"""Group commit of the mirror's event tasks: a burst of events costs a few index transactions, not two each.

Each task that has fetched an object hands its commit here. Whoever finds no commit in progress commits
everything waiting, with MirrorStore.commit_many (per bucket: every temp file fsynced, then one
transaction to stage them all and one to settle them; see core/mirror_store.py), while the others wait
for their own result. What arrives during a commit goes in the next one, so a lone event waits for
nobody and a burst shares the fsyncs of the index. Each task still returns only once its object is
durable and indexed, and a failure is raised in every task whose object it concerned (the actor retries).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.mirror_store import Entry, MirrorStore


@dataclass
class _Commit:
    store: MirrorStore
    bucket: str
    key: str
    temp: Path
    entry: Entry
    now: datetime
    finished: bool = False
    result: bool = False
    error: BaseException | None = None


class GroupCommit:
    """One per store (it holds none: items waiting do). synced=True: every temp file handed in is already
    fsynced (MirrorStore.commit_many's `synced`)."""

    def __init__(self, synced: bool = False):
        self.synced = synced
        self._cond = threading.Condition()
        self._queue: list[_Commit] = []
        self._committing = False

    @property
    def waiting(self) -> int:
        """Commits queued behind the one in progress."""
        with self._cond:
            return len(self._queue)

    def commit(self, store: MirrorStore, bucket: str, key: str, temp: Path, entry: Entry, now: datetime) -> bool:
        """store.commit, shared with whatever other threads commit to it at the same time."""
        return self.commit_all(store, bucket, [(key, temp, entry)], now)[0]

    def commit_all(self, store: MirrorStore, bucket: str, items: list[tuple[str, Path, Entry]],
                   now: datetime) -> list[bool]:
        """store.commit_many of several keys of a bucket (events handed over together), shared likewise.
        Raises the first failure among them, after all of them are settled either way."""
        mine = [_Commit(store, bucket, key, temp, entry, now) for key, temp, entry in items]
        with self._cond:
            self._queue.extend(mine)  # all at once: one committer takes them all
            while self._committing and not _finished(mine):
                self._cond.wait()
            if not _finished(mine):
                self._committing = True
                batch, self._queue = self._queue, []
        if not _finished(mine):
            try:
                self._commit(batch)
            finally:
                with self._cond:
                    self._committing = False
                    self._cond.notify_all()
        for item in mine:
            if item.error is not None:
                raise item.error
        return [item.result for item in mine]

    def _commit(self, batch: list[_Commit]) -> None:
        for group in _groups(batch):
            try:
                results = group[0].store.commit_many(group[0].bucket, [(c.key, c.temp, c.entry) for c in group],
                                                     max(c.now for c in group), synced=self.synced)
            except BaseException as exc:  # noqa: BLE001 - raised in each task it concerns
                for item in group:
                    item.error = exc
            else:
                for item, result in zip(group, results):
                    item.result = result
            for item in group:
                item.finished = True


def _finished(items: list[_Commit]) -> bool:
    return all(item.finished for item in items)


def _groups(batch: list[_Commit]) -> list[list[_Commit]]:
    """One group per bucket, and a key at most once in a group (two events of one key: in order)."""
    groups: list[list[_Commit]] = []
    for item in batch:
        for group in groups:
            if (group[0].store, group[0].bucket) == (item.store, item.bucket) and all(other.key != item.key for other in group):
                group.append(item)
                break
        else:
            groups.append([item])
    return groups


__all__ = ["GroupCommit"]
