"""MinIO mirror tasks: plain functions the Dramatiq actors wrap (see core/mirror_store.py for the disk side).

`mirror_object` is level-triggered: whatever event caused it, it looks at the source's state now, so
duplicates, late and reordered calls are harmless. Only a positive "no such key/bucket" from the source
removes anything from the mirror; any other failure raises (the actor retries) and removes nothing.
`reconcile` heals missed events by a full listing diff, and deletes only after a listing that completed.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from minio.error import S3Error

from actors.minio.body import download
from actors.minio.copies import Copies
from actors.minio.headers import content_headers, http_date, user_metadata
from actors.minio.listing import list_objects
from actors.minio.object_get import NotModified, ObjectGets
from core import clients
from core.batch_sync import fsync_files
from core.config import Settings
from core.cpu_budget import CpuBudget
from core.group_commit import GroupCommit
from core.mirror_records import stamp
from core.mirror_status import record_mode
from core.mirror_store import Entry, MirrorStore
from core.source_root import read_only_mirror

GONE = ("NoSuchKey", "NoSuchBucket")  # the source positively says the object is not there
LIST_PAGE = 500  # listing entries compared with the index per query

_cache: dict[tuple, object] = {}
_cache_lock = threading.Lock()
_groups: weakref.WeakKeyDictionary[MirrorStore, GroupCommit] = weakref.WeakKeyDictionary()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def source_client(settings: Settings):
    """One client (one connection pool) per process and endpoint: a task per event must stay cheap."""
    m = settings.minio
    key = ("client", m.endpoint, m.access_key, clients.secret(m.secret_key), m.secure)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = clients.minio_client(m)
        return _cache[key]


def object_gets(settings: Settings) -> ObjectGets:
    """The mirror's lean GETs (actors/minio/object_get.py), one connection pool per process and endpoint."""
    client, m = source_client(settings), settings.minio
    key = ("gets", m.endpoint, m.access_key, clients.secret(m.secret_key), m.secure)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = ObjectGets(client, m)
        return _cache[key]  # type: ignore[return-value]


def open_store(settings: Settings) -> MirrorStore:
    root = settings.layout.mirror
    with _cache_lock:
        if ("store", root) not in _cache:
            # Another installation's mirror (restore --from-root) is only ever read: core/source_root.py
            _cache[("store", root)] = read_only_mirror(root) or MirrorStore(root)
        return _cache[("store", root)]  # type: ignore[return-value]


def group_commit(store: MirrorStore) -> GroupCommit:
    """Event tasks of one store commit together (core/group_commit.py): a burst shares index transactions."""
    with _cache_lock:
        if store not in _groups:
            _groups[store] = GroupCommit(synced=True)  # every download fsyncs its temp file (actors/minio/body.py)
        return _groups[store]


def cpu_budget(settings: Settings) -> CpuBudget:
    """One budget per process: every thread's mirror work draws on it (see core/cpu_budget.py)."""
    m = settings.minio
    key = ("budget", m.cpu_budget_percent, m.catch_up_cpu_percent)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = CpuBudget(m.cpu_budget_percent, m.catch_up_cpu_percent)
        return _cache[key]  # type: ignore[return-value]


def _catching_up(settings: Settings, report: "ReconcileReport", starts: bool) -> None:
    """A reconcile enters catch-up once, and leaves it when it ends."""
    with report._lock:
        if report._holding == starts:
            return
        report._holding = starts
        report.catch_up = report.catch_up or starts
    mode = cpu_budget(settings).catching_up(starts)
    try:
        record_mode(settings, mode)
    except OSError:  # status only; the mirror's work goes on
        pass


def _prefix(settings: Settings) -> str:
    prefix = (settings.minio.prefix_path or "").strip("/")
    return f"{prefix}/" if prefix else ""


def in_scope(settings: Settings, bucket: str, key: str) -> bool:
    """RAGFlow's single-bucket mode mirrors one bucket, and prefix_path limits the keys."""
    if settings.minio.bucket and bucket != settings.minio.bucket:
        return False
    return key.startswith(_prefix(settings))


def source_buckets(settings: Settings) -> list[str]:
    if settings.minio.bucket:
        return [settings.minio.bucket]
    return sorted(b.name for b in source_client(settings).list_buckets())


def _entry(headers, md5: str, seen: datetime, listed: datetime | None = None) -> Entry:
    """What the mirror records of an object, from the headers of the GET that fetched it (and the listing
    that described it: `listed`, see `_modified`)."""
    return Entry(size=int(headers.get("content-length")), etag=(headers.get("etag") or "").strip('"'),
                 content_type=headers.get("content-type"), metadata=user_metadata(headers),
                 last_modified=_modified(headers.get("last-modified"), listed), md5=md5, seen_at=seen,
                 headers=content_headers(headers))


def _modified(header: str | None, listed: datetime | None) -> datetime | None:
    """When the object was written. A GET's Last-Modified says it to the second, a listing to the millisecond:
    the listing's is kept when it is the same moment (the GET was If-Match the listed ETag). Restoring to a
    point's time needs the finer one: an object written 0.9 s after the point must not come back with it."""
    said = http_date(header) if header else None
    if listed is not None and (said is None or said == listed.replace(microsecond=0)):
        return listed
    return said


def mirror_object(settings: Settings, bucket: str, key: str, store: MirrorStore | None = None) -> str:
    """Bring the mirror of one key in line with the source: "copied" | "unchanged" | "removed" | "absent"
    ("skipped" for a key outside single-bucket mode's bucket/prefix). Raises on any failure but a
    positive "not found", so the actor retries."""
    store = store or open_store(settings)
    with cpu_budget(settings).metered():
        outcome, fetched = _fetch(settings, bucket, key, store)
        if fetched is None:
            return outcome
        temp, entry = fetched
        return "copied" if group_commit(store).commit(store, bucket, key, temp, entry, _now()) else "unchanged"


def mirror_objects(settings: Settings, bucket: str, keys: list[str], store: MirrorStore | None = None) -> dict[str, str]:
    """mirror_object for keys of one bucket whose events were handed over together: each fetched in turn,
    then all committed at once (one group commit). {key: outcome}. The first failure is raised once the
    others are committed, so the actor retries the lot (level-triggered: what is done comes back "unchanged")."""
    store = store or open_store(settings)
    budget, outcomes, fetched = cpu_budget(settings), {}, []
    failure: BaseException | None = None
    for key in dict.fromkeys(keys):
        try:
            with budget.metered():
                outcome, got = _fetch(settings, bucket, key, store)
        except Exception as exc:  # noqa: BLE001 - the other keys are still mirrored; raised below
            failure = failure or exc
            continue
        if got is None:
            outcomes[key] = outcome
        else:
            fetched.append((key, *got))
    if fetched:
        with budget.metered():
            done = group_commit(store).commit_all(store, bucket, fetched, _now())
        outcomes.update((key, "copied" if result else "unchanged") for (key, _, _), result in zip(fetched, done))
    if failure is not None:
        raise failure
    return outcomes


def _fetch(settings: Settings, bucket: str, key: str, store: MirrorStore,
           sync: bool = True) -> tuple[str, tuple[Path, Entry] | None]:
    """mirror_object up to the commit: ("fetched", (temp, entry)) for new bytes to commit, else the outcome.
    One round trip: a GET unless the source still has the ETag the mirror holds. sync=False: the temp is
    not fsynced (the caller's commit does it, see actors/minio/body.py)."""
    if not in_scope(settings, bucket, key):
        return "skipped", None
    gets = object_gets(settings)
    mirrored = store.entry(bucket, key)
    held = mirrored.etag if mirrored is not None and mirrored.path is not None and mirrored.path.is_file() else None
    seen = _now()
    temp, fd = store.open_temp(bucket)
    try:
        md5, headers = download(gets, bucket, key, temp, fd, unless=held, sync=sync)
    except NotModified:
        temp.unlink(missing_ok=True)
        return "unchanged", None
    except S3Error as exc:
        temp.unlink(missing_ok=True)
        if exc.code not in GONE:
            raise
        return ("removed" if store.remove(bucket, key, _now(), seen_at=seen) else "absent"), None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return "fetched", (temp, _entry(headers, md5, seen))


def _fetch_listed(settings: Settings, bucket: str, obj, store: MirrorStore,
                  sync: bool = True) -> tuple[str, tuple[Path, Entry] | None]:
    """Fetch a key a listing just described (If-Match the listed ETag). Should the object have changed or
    gone since, `_fetch` looks again."""
    gets, seen = object_gets(settings), _now()
    temp, fd = store.open_temp(bucket)
    try:
        md5, headers = download(gets.for_size(obj.size), bucket, obj.object_name, temp, fd, etag=obj.etag, size=obj.size,
                                sync=sync)
    except S3Error as exc:
        temp.unlink(missing_ok=True)
        if exc.code in (*GONE, "PreconditionFailed"):
            return _fetch(settings, bucket, obj.object_name, store, sync)
        raise
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return "fetched", (temp, _entry(headers, md5, seen, obj.last_modified))


@dataclass
class ReconcileReport:
    copied: int = 0
    removed: int = 0
    unchanged: int = 0
    listed: int = 0
    to_copy: int = 0  # keys the listing found missing or different
    catch_up: bool = False  # ran (at least partly) in catch-up mode: a first mirror or a large backlog
    complete: bool = True
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _holding: bool = field(default=False, repr=False, compare=False)  # catch-up held on the budget now

    def count(self, outcome: str) -> None:
        if outcome in ("copied", "removed", "unchanged"):
            with self._lock:  # copies run in a pool of threads
                setattr(self, outcome, getattr(self, outcome) + 1)

    def fail(self, message: str) -> None:
        with self._lock:
            self.complete = False
            self.errors.append(message)


def _copies(settings: Settings, store: MirrorStore, report: ReconcileReport) -> Copies:
    """A reconcile's copies (actors/minio/copies.py): listed keys fetched If-Match their listed ETag,
    others looked at afresh; each batch's temps fsynced together (one syncfs, then an fsync each that finds
    nothing left to write: core/batch_sync.py) before the transaction that indexes them."""
    def fetch(bucket: str, key: str, listed: Any) -> tuple[str, tuple[Path, Entry] | None]:
        if listed is not None:
            return _fetch_listed(settings, bucket, listed, store, sync=False)
        return _fetch(settings, bucket, key, store, sync=False)

    def sync(items: list[tuple[str, Path, Entry]]) -> None:
        try:
            fsync_files(temp for _, temp, _ in items)
        except BaseException:
            for _, temp, _ in items:
                temp.unlink(missing_ok=True)  # never committed: nobody's
            raise

    def commit(bucket: str, items: list[tuple[str, Path, Entry]]) -> list[bool]:
        return store.commit_many(bucket, items, _now(), synced=True)

    return Copies(fetch, commit, report, settings.minio.reconcile_workers, cpu_budget(settings).metered, sync)


def _pages(listing, size: int = LIST_PAGE):
    page = []
    for obj in listing:
        page.append(obj)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _compare_page(settings: Settings, bucket: str, page: list, store: MirrorStore, report: ReconcileReport,
                  copies: Copies, listed: set[str]) -> None:
    # One index query per page of the listing instead of one per key.
    known = store.brief(bucket, [obj.object_name for obj in page])
    finer = []
    for obj in page:
        listed.add(obj.object_name)
        report.listed += 1
        mirrored = known.get(obj.object_name)
        if mirrored is not None and mirrored.holds(obj.etag, obj.size):  # the listing and one stat: no request
            report.count("unchanged")
            if _to_the_second(mirrored.last_modified, obj.last_modified):
                finer.append((obj.object_name, obj.etag, obj.last_modified))
        else:
            report.to_copy += 1
            if report.to_copy > settings.minio.catch_up_backlog:
                _catching_up(settings, report, True)  # e.g. after an outage
            copies.submit(bucket, obj.object_name, obj)
    store.refine_times(bucket, finer)


def _to_the_second(held: str | None, listed: datetime | None) -> bool:
    """Does the index hold to the second (mirrored on an event: `_modified`) the time a listing gives finer?
    Cheap first (string and integer tests: this runs for every unchanged key of a reconcile)."""
    return bool(held and listed is not None and listed.microsecond and held.endswith(".000000Z")
                and held == stamp(listed.replace(microsecond=0)))


def _reconcile_bucket(settings: Settings, bucket: str, store: MirrorStore, report: ReconcileReport,
                      copies: Copies) -> None:
    listed: set[str] = set()
    try:
        listing = list_objects(source_client(settings), bucket, _prefix(settings) or None)  # listing.py: cheaper
        budget, pages = cpu_budget(settings), _pages(listing)
        while True:
            with budget.metered():  # a page of listing (HTTP, XML) and its index query cost CPU too
                page = next(pages, None)
                if page is None:
                    break
                _compare_page(settings, bucket, page, store, report, copies, listed)
    except S3Error as exc:
        if exc.code != "NoSuchBucket":  # a bucket deleted at the source: its keys are re-checked below
            report.fail(f"listing bucket {bucket} at {settings.minio.endpoint} failed ({exc.code}: {exc.message}); "
                        f"nothing was removed from it")
            return
    except Exception as exc:  # noqa: BLE001 - an unfinished listing never leads to deletions
        report.fail(f"listing bucket {bucket} at {settings.minio.endpoint} failed ({type(exc).__name__}: {exc}); "
                    f"nothing was removed from it")
        return
    finally:
        copies.flush()  # the bucket's last batch is committed while the next bucket is listed
    for key in store.keys(bucket):
        if key not in listed and in_scope(settings, bucket, key):
            copies.submit(bucket, key)  # re-stats the key: removes only on "no such key"


def reconcile(settings: Settings, buckets: list[str] | None = None,
              store: MirrorStore | None = None) -> ReconcileReport:
    """List every source bucket completely and make the mirror match; see the module docstring."""
    store = store or open_store(settings)
    report = ReconcileReport()
    copies = _copies(settings, store, report)
    if store.empty():
        _catching_up(settings, report, True)  # a first mirror
    try:
        _reconcile(settings, buckets, store, report, copies)
    finally:
        try:
            copies.close()
        finally:
            _catching_up(settings, report, False)
    return report


def _reconcile(settings: Settings, buckets: list[str] | None, store: MirrorStore, report: ReconcileReport,
               copies: Copies) -> None:
    gone: list[str] = []
    if buckets is not None and settings.minio.bucket:
        buckets = [b for b in buckets if b == settings.minio.bucket]
    if buckets is None:
        try:
            buckets = source_buckets(settings)
        except Exception as exc:  # noqa: BLE001 - without the bucket list nothing may be removed
            report.fail(f"listing the buckets of MinIO at {settings.minio.endpoint} failed "
                        f"({type(exc).__name__}: {exc}); nothing was removed")
            return
        gone = [b for b in store.buckets() if b not in buckets and not settings.minio.bucket]
    for bucket in buckets:
        _reconcile_bucket(settings, bucket, store, report, copies)
    for bucket in gone:  # deleted at the source: each key is re-checked, then kept only as versions
        for key in store.keys(bucket):
            copies.submit(bucket, key)
        copies.drain()


__all__ = ["ReconcileReport", "in_scope", "mirror_object", "mirror_objects", "open_store", "reconcile", "source_buckets",
           "source_client"]
