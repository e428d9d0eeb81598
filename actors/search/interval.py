"""Search snapshots between points (`search.snapshot_interval_minutes`), so `restore --at T` finds one near T.

An interval snapshot takes the indices a point's snapshot takes, into the same repository (incremental: only
the segments written since the last snapshot are copied), named `<snapshot_prefix>interval-<UTC time>`. Its
record, what a restore needs (the documents each index held, the aliases), is a `search_snapshot.json` like a
point's, in `<root>/search_intervals/<snapshot name>/` (core/layout.py), written atomically; the folder reads as
a point's for the restore (actors/search/restore.py), and its record is read back as untrusted.

It serves `restore --at T` when it was done by T (`done_at`: nothing later is in it); the documents changed after
it was begun (`taken_at`) are the ones listed as possibly out of step.

Retention: an interval snapshot older than `search.interval_keep_hours`, or than the oldest point, is deleted
(its record first: an unrecorded snapshot is one the point retention in actors/search/backup.py deletes, while
a recorded one it keeps). A point's backup or another interval snapshot holding the search lock skips this one
(the point's own snapshot covers that moment; `status` says so); a point's backup that finds an interval snapshot
holding it waits (search.lock_wait_seconds, actors/actions/runs.py).
"""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from actors.search import interval_state
from actors.search.backup import (
    ARTIFACT,
    FORMAT,
    NAME,
    RepositoryMissing,
    SnapshotRepo,
    classified,
    ensure_repository,
    index_aliases,
    index_doc_counts,
    public_url,
    wait_for_snapshot,
)
from core import clients, locks
from core.atomic import atomic_file
from core.config import Settings
from core.manifest import ComponentRecord
from core.points import Point, Storage
from core.redact import redact
from core.safe_paths import UnsafePath, opened, plain_name, private_folder

INFIX = "interval-"
RECORD_MAX = 64 << 20  # a record names every index and its aliases; more than this is not ours


@dataclass(frozen=True)
class IntervalSnapshot:
    name: str
    taken_at: datetime  # when it was begun: every change after this may be missing from it
    folder: Path
    document: dict[str, Any]
    done_at: datetime  # when it was done: nothing after this is in it, so it serves any moment from here

    def as_point(self, storage: Storage) -> Point:
        """The record's folder as the search restore reads a point's (search_snapshot.json in it)."""
        return Point(storage, self.folder)

    def record(self) -> ComponentRecord:
        """A component record as a point's manifest would hold it, from the (untrusted, checked) document."""
        doc = self.document
        return ComponentRecord(component=NAME, status="ok", started_at=self.taken_at, finished_at=self.done_at,
                               counts=doc["doc_counts"],
                               details={"snapshot": self.name, "uuid": doc.get("uuid"), "engine": doc.get("engine"),
                                        "repository": doc["repository"]["name"],
                                        "repository_path": doc["repository"].get("location")})


def interval_name(settings: Settings, at: datetime) -> str:
    return f"{settings.search.snapshot_prefix}{INFIX}{at.astimezone(timezone.utc):%Y%m%dt%H%M%Sz}".lower()


def _checked(folder: Path) -> IntervalSnapshot:
    """The record in `folder`, its fields type-checked (it comes back from the storage root)."""
    name = plain_name(folder.name, "interval snapshot name", folder)
    with opened(folder.parent, (name, ARTIFACT), "interval snapshot record") as handle:  # no symlink followed
        doc = json.loads(handle.read(RECORD_MAX))
    counts, repo = doc.get("doc_counts"), doc.get("repository")
    if not (isinstance(doc, dict) and doc.get("snapshot") == name and isinstance(counts, dict)
            and all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in counts.items())
            and isinstance(repo, dict) and isinstance(repo.get("name"), str)):
        raise ValueError("not an interval snapshot record (fields missing or of the wrong type)")
    taken, done = datetime.fromisoformat(str(doc.get("taken_at"))), datetime.fromisoformat(str(doc.get("done_at")))
    if taken.tzinfo is None or done.tzinfo is None or done < taken:
        raise ValueError("taken_at / done_at without a time zone, or out of order")
    return IntervalSnapshot(name, taken, folder, doc, done)


def interval_snapshots(settings: Settings, log: logging.Logger | None = None,
                       root: Path | None = None) -> list[IntervalSnapshot]:
    """The recorded interval snapshots, oldest first; an unreadable record is logged and left out. `root`: the
    records' folder when not this storage root's (a copy fetched from the offsite repository)."""
    root = root or settings.layout.search_intervals
    if not root.is_dir() or root.is_symlink():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            found.append(_checked(folder))
        except (OSError, ValueError, TypeError, AttributeError, UnsafePath) as exc:
            (log or logging.getLogger("ragflow_backup.search")).warning(
                "interval snapshot record %s is unreadable (%s): it is not used", folder, exc)
    return sorted(found, key=lambda item: item.taken_at)


def newest_at_or_before(settings: Settings, at: datetime, after: datetime | None = None,
                        root: Path | None = None) -> IntervalSnapshot | None:
    """The newest recorded interval snapshot done at or before `at` (and begun after `after`, when given)."""
    fits = [item for item in interval_snapshots(settings, root=root)
            if item.done_at <= at and (after is None or item.taken_at > after)]
    return fits[-1] if fits else None


@contextmanager
def holding_lock(storage: Storage) -> Iterator[locks.Held]:
    """The search lock, noted as an interval snapshot's (a backup that finds it taken names it); Busy when a
    point's backup or another interval snapshot holds it."""
    with locks.exclusive(storage.component_lock(NAME), "a search backup") as held:
        held.note(f"an interval search snapshot begun {datetime.now(timezone.utc):%H:%M:%S} UTC")
        yield held


def take(settings: Settings, log: logging.Logger, now: datetime | None = None) -> IntervalSnapshot | None:
    """Take one interval snapshot and record it, then apply interval retention; None when skipped (the search
    lock is held by a point's backup or another interval snapshot) or when no index exists yet. Each outcome
    is kept for status, metrics and alerts (actors/search/interval_state.py); a failure is raised after."""
    storage = Storage(settings.storage_root).prepare()
    try:
        with holding_lock(storage):
            try:
                taken = _take(settings, storage, log, now)
            except Exception as exc:
                interval_state.record_failed(settings, f"{type(exc).__name__}: {redact(str(exc))}")
                raise
            if taken is not None:
                interval_state.record_taken(settings, taken.name)
            prune(settings, log)
            return taken
    except locks.Busy as exc:
        reason = f"{exc}; the point's own snapshot covers this moment"
        log.info("interval search snapshot skipped: %s", reason)
        interval_state.record_skipped(settings, str(exc))
        return None


def _take(settings: Settings, storage: Storage, log: logging.Logger, at: datetime | None) -> IntervalSnapshot | None:
    """`at` (tests, the bench): the moment to record as both begun and done, instead of the clock's."""
    search = settings.search
    now = at or datetime.now(timezone.utc)
    with classified(search):
        client = clients.search_client(search)
        repo = SnapshotRepo(client, search.engine, search.repository)
        ensure_repository(search, repo, log)
        counts = index_doc_counts(client, search.indices)
        if not counts:
            log.info("interval search snapshot skipped: no open index matches %s", ", ".join(search.indices))
            return None
        name = interval_name(settings, now)
        if repo.info(name) is not None:
            raise RuntimeError(f"snapshot {name} is already in repository {repo.name}")
        aliases = index_aliases(client, search.indices, sorted(counts))
        repo.start(name, sorted(counts))
        info = wait_for_snapshot(repo, name, search.snapshot_timeout_seconds)
        if info.get("state") != "SUCCESS" or set(counts) - set(info.get("indices") or []):
            repo.delete(name)  # not a usable snapshot: never recorded, never kept
            raise RuntimeError(f"interval snapshot {name} ended {info.get('state')} or lacks indices; deleted")
    done = at or datetime.now(timezone.utc)
    document = {"format": FORMAT, "kind": "interval", "engine": search.engine, "url": public_url(search),
                "repository": {"name": repo.name, "type": "fs", "location": search.repository_path},
                "patterns": search.indices, "doc_counts": counts, "indices": sorted(counts), "aliases": aliases,
                "snapshot": name, "uuid": info.get("uuid"), "state": info.get("state"), "taken_at": now.isoformat(),
                "done_at": done.isoformat(),
                "start_time": info.get("start_time"), "end_time": info.get("end_time"),
                "duration_in_millis": info.get("duration_in_millis"), "shards": info.get("shards")}
    folder = private_folder(storage.root, (settings.layout.search_intervals.name, name))
    with atomic_file(folder / ARTIFACT, check=lambda path: json.loads(path.read_bytes())) as out:
        out.write(json.dumps(document, indent=2, sort_keys=True).encode() + b"\n")
    log.info("interval search snapshot %s of %d indices: %s", name, len(counts), info.get("state"))
    return IntervalSnapshot(name, now, folder, document, done)


def _oldest_daily(storage: Storage) -> datetime | None:
    """When the oldest complete daily point was made (an unreadable manifest is passed over)."""
    for point in storage.points("daily"):  # oldest first
        try:
            manifest = point.manifest()
        except (ValueError, OSError, LookupError):
            continue
        if manifest.status == "complete":
            return manifest.created_at
    return None


def prune(settings: Settings, log: logging.Logger, now: datetime | None = None) -> list[str]:
    """Delete interval snapshots older than search.interval_keep_hours or than the oldest point: the record,
    then the snapshot (a record must never name a deleted snapshot). The names deleted."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(hours=settings.search.interval_keep_hours)
    oldest_point = _oldest_daily(Storage(settings.storage_root))
    if oldest_point is not None:
        cutoff = max(cutoff, oldest_point)
    old = [item for item in interval_snapshots(settings, log) if item.taken_at < cutoff]
    if not old:
        return []
    search = settings.search
    deleted = []
    with classified(search):
        repo = SnapshotRepo(clients.search_client(search), search.engine, search.repository)
        for item in old:
            shutil.rmtree(item.folder)
            try:
                repo.delete(item.name)
            except RepositoryMissing:
                pass
            except Exception as exc:  # noqa: BLE001 - unrecorded now: the point retention deletes it later
                if getattr(exc, "status_code", None) != 404:
                    log.warning("interval snapshot %s: record removed, snapshot not deleted (%s)", item.name, exc)
            deleted.append(item.name)
            log.info("deleted interval snapshot %s (taken %s, before %s)", item.name,
                     item.taken_at.isoformat(timespec="seconds"), cutoff.isoformat(timespec="seconds"))
    return deleted

