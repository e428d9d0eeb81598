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
    """One per store (it holds none: items waiting do)."""

    def __init__(self):
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
        mine = _Commit(store, bucket, key, temp, entry, now)
        with self._cond:
            self._queue.append(mine)
            while self._committing and not mine.finished:
                self._cond.wait()
            if not mine.finished:
                self._committing = True
                batch, self._queue = self._queue, []
        if not mine.finished:
            try:
                self._commit(batch)
            finally:
                with self._cond:
                    self._committing = False
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _commit(self, batch: list[_Commit]) -> None:
        for group in _groups(batch):
            try:
                results = group[0].store.commit_many(group[0].bucket, [(c.key, c.temp, c.entry) for c in group],
                                                 max(c.now for c in group))
            except BaseException as exc:  # noqa: BLE001 - raised in each task it concerns
                for item in group:
                    item.error = exc
            else:
                for item, result in zip(group, results):
                    item.result = result
            for item in group:
                item.finished = True


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
