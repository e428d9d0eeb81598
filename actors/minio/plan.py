"""Planning a point-in-time MinIO restore: what the mirror can vouch for, and which objects go where.
Split from actors/minio/restore.py, which applies the plan."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

from minio.error import S3Error

from actors.minio.body import PLAIN_ETAG
from actors.minio.mirror import in_scope, open_store
from actors.minio.put_headers import UnsafeHeaders, put_headers
from core import clients
from core.component import PermanentError
from core.config import MinioSettings, Settings
from core.mirror_paths import INDEX_FILE
from core.mirror_records import DamagedIndex
from core.mirror_records import parse_stamp as _stamp
from core.mirror_store import STAMP, MirrorStore, ObjectRef
from core.safe_paths import UnsafePath, open_dir, opened, relative_parts

PUT_WINDOW = 256  # puts submitted to the threads at a time

LOG = logging.getLogger("ragflow_backup.minio_restore")
CHUNK = 1 << 20
PART_SIZE = 16 << 20  # held in memory per upload
KB_ID = re.compile(r"^[0-9a-f]{32}$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PREFIX_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,39}$")
FUTURE_SLACK = timedelta(seconds=5)  # clocks of agent and MinIO may differ a little


class RestoreIncomplete(Exception):
    """A restore stopped midway (a put or delete failed); `.result` says what was done. Running the
    same restore again completes it."""

    def __init__(self, message: str, result: MinioRestoreResult):
        super().__init__(message)
        self.result = result


@dataclass
class BucketPlan:
    bucket: str  # in the mirror (the source)
    target: str  # where it is restored (the same name unless a drill prefix is given)
    put: list[str] = field(default_factory=list)  # missing at the target or different now
    remove: list[str] = field(default_factory=list)  # exist at the target, did not exist at `at`
    unchanged: int = 0
    bytes: int = 0  # to write
    create: bool = False  # the target bucket does not exist: it is created
    born_after: bool = False  # the source bucket was created after `at` (an exact restore may remove it)
    note: str = ""
    state: dict[str, ObjectRef] = field(default_factory=dict, repr=False)  # the objects at `at`
    live: dict[str, tuple[str, int]] = field(default_factory=dict, repr=False)  # the target's now: key -> (ETag, size)

    @property
    def expected(self) -> int:
        return len(self.state)


@dataclass
class RestorePlan:
    at: datetime
    endpoint: str  # the target MinIO
    buckets: list[BucketPlan] = field(default_factory=list)
    mirror_root: Path | None = None  # every mirror file read must lie beneath it, with no symlink on the way

    @property
    def put(self) -> int:
        return sum(len(b.put) for b in self.buckets)

    @property
    def remove(self) -> int:
        return sum(len(b.remove) for b in self.buckets)

    @property
    def unchanged(self) -> int:
        return sum(b.unchanged for b in self.buckets)

    @property
    def bytes(self) -> int:
        return sum(b.bytes for b in self.buckets)

    def summary(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "endpoint": self.endpoint, "put": self.put, "remove": self.remove,
                "unchanged": self.unchanged, "bytes": self.bytes,
                "buckets": [{"bucket": b.bucket, "target": b.target, "put": len(b.put), "remove": len(b.remove),
                             "unchanged": b.unchanged, "bytes": b.bytes, "create": b.create, "expected": b.expected,
                             "note": b.note} for b in self.buckets]}


@dataclass
class MinioRestoreResult:
    at: datetime
    plan: RestorePlan
    dry_run: bool
    created_buckets: list[str] = field(default_factory=list)
    put: int = 0
    removed: int = 0
    bytes_written: int = 0
    expected: dict[str, int] = field(default_factory=dict)  # target bucket -> objects at `at`
    found: dict[str, int] = field(default_factory=dict)  # target bucket -> objects listed afterwards
    problems: list[str] = field(default_factory=list)  # what the final comparison found wrong
    removed_buckets: list[str] = field(default_factory=list)  # exact: created after `at`, removed
    left_buckets: list[str] = field(default_factory=list)  # exact: created after `at`, kept (see actors/minio/exact.py)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------- what the mirror can vouch for


def mirrored_buckets(store: MirrorStore) -> list[str]:
    """Buckets the mirror knows, with current objects or only as versions (deleted at the source).

    Read from the index directly: MirrorStore.buckets() lists only buckets with current objects.
    """
    with closing(sqlite3.connect(store.index, timeout=30)) as conn:
        return [row[0] for row in conn.execute("SELECT bucket FROM objects UNION SELECT bucket FROM versions "
                                               "ORDER BY 1")]


def has_keys_under(store: MirrorStore, bucket: str, prefix: str) -> bool:
    with closing(sqlite3.connect(store.index, timeout=30)) as conn:
        for table in ("objects", "versions"):
            if conn.execute(f"SELECT 1 FROM {table} WHERE bucket=? AND substr(key, 1, ?)=? LIMIT 1",
                            (bucket, len(prefix), prefix)).fetchone():
                return True
    return False


def first_mirrored(store: MirrorStore, bucket: str) -> datetime | None:
    """When the mirror first copied something of `bucket` (None: never): before that it cannot know
    what the bucket held (objects deleted or overwritten earlier were never seen).

    The index keeps `mirrored_at` only for current objects; for a superseded version the time its bytes
    were downloaded is its file's mtime (a version is a hard link to the downloaded file), bounded by
    its valid_from and superseded_at.
    """
    with closing(sqlite3.connect(store.index, timeout=30)) as conn:
        best = _stamp(conn.execute("SELECT MIN(mirrored_at) FROM objects WHERE bucket=?", (bucket,)).fetchone()[0])
        rows = conn.execute("SELECT path, valid_from, superseded_at FROM versions WHERE bucket=? AND "
                            "(? IS NULL OR COALESCE(valid_from, '') < ?)",
                            (bucket, best and best.strftime(STAMP), best and best.strftime(STAMP))).fetchall()
    for path, valid_from, superseded_at in rows:
        superseded = _stamp(superseded_at)
        try:
            relative_parts(store.root, store.root / path, "mirror index path")  # an index row never leaves the mirror
            downloaded = datetime.fromtimestamp(os.lstat(store.root / path).st_mtime, timezone.utc)
        except (FileNotFoundError, UnsafePath, TypeError):  # TypeError: a path that is not text
            downloaded = superseded
        when = min(downloaded, superseded)
        if valid_from is not None:
            when = max(when, _stamp(valid_from))  # never earlier than the source says it was written
        best = when if best is None else min(best, when)
    return best


# ---------------------------------------------------------------- planning


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise PermanentError(f"the restore time {at.isoformat()} has no time zone: give one "
                             "(e.g. 2026-11-24T10:00:00+01:00 or ...Z for UTC)")
    return at.astimezone(timezone.utc)


def scope_prefix(settings: Settings) -> str:
    prefix = (settings.minio.prefix_path or "").strip("/")
    return f"{prefix}/" if prefix else ""


def target_bucket_name(bucket: str, prefix: str) -> str:
    """`prefix + bucket`, shortened with a hash of the bucket name where it would exceed 63 chars."""
    if not prefix:
        return bucket
    if not PREFIX_NAME.match(prefix):
        raise PermanentError(f"target bucket prefix {prefix!r} is not usable in bucket names: use at most 40 "
                             "lower-case letters, digits, '.' or '-', starting with a letter or digit (e.g. 'drill-')")
    name = prefix + bucket
    if len(name) > 63:
        digest = hashlib.sha256(bucket.encode()).hexdigest()[:8]
        name = f"{prefix}{bucket[:63 - len(prefix) - 9].rstrip('.-')}-{digest}"
    if not BUCKET_NAME.match(name) or ".." in name:
        raise PermanentError(f"restoring bucket {bucket} under prefix {prefix!r} gives {name!r}, not a valid bucket "
                             "name; choose another prefix")
    return name


def bucket_listing(client, bucket: str, prefix: str, settings: Settings) -> dict[str, tuple[str, int]] | None:
    """key -> (etag, size) of the keys in scope; None when the bucket does not exist."""
    try:
        return {obj.object_name: (obj.etag, obj.size)
                for obj in client.list_objects(bucket, prefix=prefix or None, recursive=True)
                if in_scope(settings, bucket, obj.object_name) and obj.object_name.startswith(prefix)}
    except S3Error as exc:
        if exc.code == "NoSuchBucket":
            return None
        raise


def part_size(size: int) -> int:
    """Our uploads' part size: fixed, so the ETag an upload of ours gets can be computed (at most 10,000 parts)."""
    return max(PART_SIZE, (size // 10_000 // (1 << 20) + 1) << 20)


def _upload_etag(path: Path | BinaryIO, size: int) -> str | None:
    """The ETag our put_object gives these bytes when it uploads them in parts (the MD5 of the parts'
    MD5s, '-' their count); None when it uploads them in one piece (the ETag is then their MD5)."""
    part = part_size(size)
    if size <= part:
        return None
    digests = []
    with open(path, "rb") if isinstance(path, Path) else nullcontext(path) as handle:
        while block := handle.read(part):
            digests.append(hashlib.md5(block).digest())
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def matches_mirror(ref: ObjectRef, etag: str, size: int, root: Path) -> bool:
    """The object holds the bytes of `ref`: the same ETag, or the ETag our own upload of them gets (a plain
    one is their MD5; in parts, see _upload_etag). Sizes must agree in any case."""
    if size != ref.size:
        return False
    if etag == ref.etag:
        return True
    md5 = ref.md5 or (ref.etag if PLAIN_ETAG.match(ref.etag) else None)
    if PLAIN_ETAG.match(etag or ""):
        return etag == md5
    try:
        with mirror_file(root, ref) as handle:
            return etag == _upload_etag(handle, size)
    except (FileNotFoundError, UnsafePath):  # missing or planted: it never matches (and is refused at upload)
        return False


def buckets_in_scope(settings: Settings, store: MirrorStore) -> list[str]:
    """The mirrored buckets a restore covers: all of them, or single-bucket mode's one."""
    return [b for b in mirrored_buckets(store) if not settings.minio.bucket or b == settings.minio.bucket]


def kb_scope(settings: Settings, kb_id: str) -> tuple[str, str]:
    """Where a knowledge base's files are: (bucket, key prefix). RAGFlow names the bucket by the KB's id, or in
    single-bucket mode keeps them under `<prefix_path>/<kb_id>/` in the one bucket."""
    if settings.minio.bucket:
        return settings.minio.bucket, f"{scope_prefix(settings)}{kb_id}/"
    return kb_id, ""


def index_problems(settings: Settings, at: datetime, kb: str | None = None) -> list[str]:
    """What the mirror index says of the objects at `at` (of knowledge base `kb` only, if given) that a
    restore could not put back: a row no mirror wrote, headers MinIO never sent (actors/minio/put_headers.py).
    Read before a restore changes anything, even its safety point; the files themselves are checked later,
    before the first write (restore.py)."""
    _refuse_a_linked_mirror(settings)
    if not (settings.layout.mirror / INDEX_FILE).is_file():
        return []  # no mirror yet: the restore's plan says so
    store = open_store(settings)
    if kb:
        bucket, prefix = kb_scope(settings, kb)
        buckets = [bucket]
    else:
        buckets, prefix = buckets_in_scope(settings, store), scope_prefix(settings)
    problems = []
    try:
        store.pitr_since()
    except DamagedIndex as exc:
        problems.append(str(exc))
    for bucket in buckets:
        try:
            first_mirrored(store, bucket)
            state = store.state_at(bucket, at)
        except DamagedIndex as exc:
            problems.append(f"s3://{bucket}: {exc}")
            continue
        for key, ref in state.items():
            if key.startswith(prefix):
                try:
                    put_headers(ref.content_type, ref.metadata, ref.headers)
                except UnsafeHeaders as exc:
                    problems.append(f"s3://{bucket}/{key}: the mirror index gives {exc}")
    if len(problems) > 10:
        problems = [*problems[:10], f"and {len(problems) - 10} more objects"]
    return problems


def _refuse_a_linked_mirror(settings: Settings) -> None:
    """A mirror folder inside the storage root reached through a symlink (a planted `minio_mirror` link
    to another tree) is refused: its index could name any file there. One configured elsewhere is trusted."""
    root = settings.layout.mirror
    try:
        parts = relative_parts(settings.storage_root, root, "mirror folder")
    except UnsafePath:
        return  # outside the storage root: the config's own choice
    try:
        os.close(open_dir(settings.storage_root, parts))
    except FileNotFoundError:
        return  # no mirror yet: the plan says so


def plan_restore(settings: Settings, at: datetime, buckets: list[str] | None = None, store: MirrorStore | None = None,
                 *, target_endpoint_settings: MinioSettings | None = None, target_bucket_prefix: str = "",
                 key_prefix: str = "") -> RestorePlan:
    """What a restore to `at` would do, bucket by bucket; nothing is changed.

    `buckets` None: every bucket the mirror knows or the source has (in scope). A bucket whose history
    the mirror does not reach back to `at` is refused (PermanentError), unless the source shows it was
    created after `at` (then it held nothing at `at` and its keys are removed; the bucket is kept).
    """
    at = _aware(at)
    now = datetime.now(timezone.utc)
    if at > now + FUTURE_SLACK:
        raise PermanentError(f"the restore time {at.isoformat()} is in the future (now {now.isoformat()})")
    oldest = now - timedelta(days=settings.minio.version_retention_days)
    if at < oldest:
        raise PermanentError(
            f"{at.isoformat()} is outside the mirror's retention window: superseded objects are kept "
            f"minio.version_retention_days={settings.minio.version_retention_days} days, so the oldest restorable "
            f"time is {oldest.isoformat()}; choose a later time (or restore from an older copy of the mirror)")
    if store is None:
        _refuse_a_linked_mirror(settings)
        store = open_store(settings)
    horizon, pruned = store.pitr_since()
    if pruned and horizon is not None and at < horizon:
        raise PermanentError(
            f"{at.isoformat()} is before the mirror's point-in-time window: to stay inside "
            f"minio.version_budget_percent={settings.minio.version_budget_percent} (and version_retention_days), "
            f"versions superseded until {horizon.isoformat()} were dropped; choose a later time (`ragflow-backup status` shows the "
            "window); a larger minio.version_budget_percent keeps more history from now on")
    source = clients.minio_client(settings.minio)
    target_settings = target_endpoint_settings or settings.minio
    target = clients.minio_client(target_settings) if target_endpoint_settings else source
    scope = key_prefix or scope_prefix(settings)
    known = buckets_in_scope(settings, store)
    if settings.minio.bucket:  # single-bucket mode: the credentials may not allow listing buckets
        created = {settings.minio.bucket: None} if source.bucket_exists(settings.minio.bucket) else {}
    else:
        created = {b.name: b.creation_date for b in source.list_buckets()}
    live = list(created)

    firsts = {b: first_mirrored(store, b) for b in known}
    starts = [t for t in firsts.values() if t is not None]
    if not starts or at < min(starts):
        since = f"since {min(starts).isoformat()}" if starts else "nothing yet"
        raise PermanentError(f"{at.isoformat()} is before the MinIO mirror's first copy ({since}, in "
                             f"{store.root}): the mirror cannot say what the store held then; choose a later time")
    if buckets is None:
        chosen = sorted(set(known) | set(live))
    else:
        chosen = list(dict.fromkeys(buckets))
        unknown = [b for b in chosen if b not in known and b not in created]
        if unknown:
            raise PermanentError(f"bucket(s) {', '.join(unknown)} neither in the MinIO mirror ({store.root}) nor at "
                                 f"{settings.minio.endpoint}; check the names (`ragflow-backup status` lists the "
                                 "mirror)")

    targets = {b: target_bucket_name(b, target_bucket_prefix) for b in chosen}
    if target_endpoint_settings is None and target_bucket_prefix:
        clash = sorted(b for b, t in targets.items() if t in targets and t != b)
        if clash:
            raise PermanentError(f"restoring {', '.join(clash)} under prefix {target_bucket_prefix!r} would write into "
                                 "buckets that are restored themselves; choose another prefix")

    plan = RestorePlan(at=at, endpoint=target_settings.endpoint, mirror_root=store.root)
    for bucket in chosen:
        bp = BucketPlan(bucket=bucket, target=targets[bucket])
        now_keys = bucket_listing(target, bp.target, scope, settings)
        first = firsts.get(bucket)
        if first is None or at < first:
            born = created.get(bucket)
            if born is not None and born > at:
                bp.note = f"created at {born.isoformat()}, after the restore time: it held nothing then"
                bp.born_after = True
            elif not now_keys:
                bp.note = "unknown to the mirror and empty: nothing to do"
            else:
                since = f"only since {first.isoformat()}" if first else "never"
                raise PermanentError(
                    f"the MinIO mirror has copied bucket {bucket} {since}, so it cannot say what the bucket held at "
                    f"{at.isoformat()}; choose a later time or leave the bucket out (buckets=[...])")
        else:
            bp.state = {key: ref for key, ref in store.state_at(bucket, at).items()
                        if in_scope(settings, bucket, key) and key.startswith(scope)}
        if now_keys is None:
            if not bp.state:
                continue  # held nothing then, does not exist now
            bp.create, now_keys = True, {}
        for key, ref in sorted(bp.state.items()):
            current = now_keys.get(key)
            if current is not None and matches_mirror(ref, *current, store.root):
                bp.unchanged += 1
            else:
                bp.put.append(key)
                bp.bytes += ref.size
        bp.remove = sorted(key for key in now_keys if key not in bp.state)
        bp.live = now_keys
        plan.buckets.append(bp)
    return plan


def mirror_file(root: Path, ref: ObjectRef):
    """The mirror file of `ref` opened for reading: the index's path (read from disk, untrusted) must
    name a regular file beneath the mirror folder with no symlink on the way (UnsafePath otherwise)."""
    return opened(root, relative_parts(root, ref.path, "mirror index path"), "mirror file")
