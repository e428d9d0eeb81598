"""MinIO point-in-time restore from the versioned mirror (agent/mirror_store.py).

`plan_restore` compares, bucket by bucket, what the mirror says the store held at `at` with what the
target holds now (listing: ETag + size) and `restore` applies that diff: each object is put back from
its mirror file (streamed, with its content type and user metadata, its MD5 checked while it is read
so a corrupt mirror file is never uploaded), then the keys that did not exist at `at` are removed,
then the target is listed again and compared with the state at `at`.

Not all-or-nothing across objects: each put and each delete is atomic in S3 and the plan is a diff,
so a run that stops midway (RestoreIncomplete says how far it got) is completed by running it again.
Mirror files are checked (present, size, MD5) before the first write, so a bad mirror refuses early.

The agent may keep running during a restore: our writes cause bucket events and the mirror
re-mirrors level-triggered, i.e. the same bytes again (a new version only where the ETag differs,
e.g. an object first uploaded in parts), and keys we delete become versions superseded now, after
`at`, so state_at(at) is not changed by the restore itself. A drill (target_bucket_prefix, e.g.
"drill-") writes to other buckets and never touches the live ones; a running agent will mirror the
drill buckets too until they are removed.

RAGFlow keeps a knowledge base's files in the bucket named by its id (single-bucket mode: under
`<prefix_path>/<kb_id>/` in the one bucket); `restore_kb` restores just that.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

from minio.error import S3Error

from actors.minio_mirror import PLAIN_ETAG, in_scope, open_store
from agent import clients
from agent.atomic import digest_of_file
from agent.component import PermanentError
from agent.config import MinioSettings, Settings
from agent.mirror_store import STAMP, MirrorStore, ObjectRef
from agent.safe_paths import UnsafePath, open_dir, opened, relative_parts

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
    note: str = ""
    state: dict[str, ObjectRef] = field(default_factory=dict, repr=False)  # the objects at `at`

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
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------- what the mirror can vouch for


def _stamp(text: str | None) -> datetime | None:
    return None if text is None else datetime.strptime(text, STAMP).replace(tzinfo=timezone.utc)


def mirrored_buckets(store: MirrorStore) -> list[str]:
    """Buckets the mirror knows, with current objects or only as versions (deleted at the source).

    Read from the index directly: MirrorStore.buckets() lists only buckets with current objects.
    """
    with closing(sqlite3.connect(store.index, timeout=30)) as conn:
        return [row[0] for row in conn.execute("SELECT bucket FROM objects UNION SELECT bucket FROM versions "
                                               "ORDER BY 1")]


def _has_keys_under(store: MirrorStore, bucket: str, prefix: str) -> bool:
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
        except (FileNotFoundError, UnsafePath):
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


def _scope_prefix(settings: Settings) -> str:
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


def _listing(client, bucket: str, prefix: str, settings: Settings) -> dict[str, tuple[str, int]] | None:
    """key -> (etag, size) of the keys in scope; None when the bucket does not exist."""
    try:
        return {obj.object_name: (obj.etag, obj.size)
                for obj in client.list_objects(bucket, prefix=prefix or None, recursive=True)
                if in_scope(settings, bucket, obj.object_name) and obj.object_name.startswith(prefix)}
    except S3Error as exc:
        if exc.code == "NoSuchBucket":
            return None
        raise


def _part_size(size: int) -> int:
    """Our uploads' part size: fixed, so the ETag an upload of ours gets can be computed (at most 10,000 parts)."""
    return max(PART_SIZE, (size // 10_000 // (1 << 20) + 1) << 20)


def _upload_etag(path: Path | BinaryIO, size: int) -> str | None:
    """The ETag our put_object gives these bytes when it uploads them in parts (the MD5 of the parts'
    MD5s, '-' their count); None when it uploads them in one piece (the ETag is then their MD5)."""
    part = _part_size(size)
    if size <= part:
        return None
    digests = []
    with open(path, "rb") if isinstance(path, Path) else nullcontext(path) as handle:
        while block := handle.read(part):
            digests.append(hashlib.md5(block).digest())
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def _matches(ref: ObjectRef, etag: str, size: int, root: Path) -> bool:
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


def _refuse_a_linked_mirror(settings: Settings) -> None:
    """A mirror folder inside the storage root reached through a symlink (a planted `minio_mirror` link
    to another tree) is refused: its index could name any file there. One configured elsewhere is trusted."""
    root = settings.storage_root / settings.minio.mirror_dir
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
    scope = key_prefix or _scope_prefix(settings)
    known = [b for b in mirrored_buckets(store) if not settings.minio.bucket or b == settings.minio.bucket]
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
        now_keys = _listing(target, bp.target, scope, settings)
        first = firsts.get(bucket)
        if first is None or at < first:
            born = created.get(bucket)
            if born is not None and born > at:
                bp.note = f"created at {born.isoformat()}, after the restore time: it held nothing then"
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
            if current is not None and _matches(ref, *current, store.root):
                bp.unchanged += 1
            else:
                bp.put.append(key)
                bp.bytes += ref.size
        bp.remove = sorted(key for key in now_keys if key not in bp.state)
        plan.buckets.append(bp)
    return plan


# ---------------------------------------------------------------- applying


class _CheckedReader:
    """Reads a mirror file for upload and fails before its last byte is handed over if the bytes are not
    the ones mirrored: the upload is then never completed."""

    def __init__(self, handle, ref: ObjectRef, where: str):
        self.handle, self.ref, self.where = handle, ref, where
        self.md5, self.count = hashlib.md5(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.md5.update(data)
        self.count += len(data)
        if self.count >= self.ref.size or not data:
            self._check()
        return data

    def _check(self) -> None:
        if self.count != self.ref.size:
            raise PermanentError(f"the mirror file of {self.where} ({self.ref.path}) holds {self.count} bytes, "
                                 f"{self.ref.size} were mirrored: it is damaged; choose another time")
        if self.ref.md5 and self.md5.hexdigest() != self.ref.md5:
            raise PermanentError(f"the mirror file of {self.where} ({self.ref.path}) no longer matches the MD5 it was "
                                 "mirrored with: it is damaged; choose another time")


def mirror_file(root: Path, ref: ObjectRef):
    """The mirror file of `ref` opened for reading: the index's path (read from disk, untrusted) must
    name a regular file beneath the mirror folder with no symlink on the way (UnsafePath otherwise)."""
    return opened(root, relative_parts(root, ref.path, "mirror index path"), "mirror file")


def _check_mirror_files(plan: RestorePlan) -> None:
    """Every file to upload is there with its size and MD5, before anything is written."""
    bad = []
    for bp in plan.buckets:
        for key in bp.put:
            ref, where = bp.state[key], f"s3://{bp.bucket}/{key}"
            try:
                with mirror_file(plan.mirror_root, ref) as handle:
                    size = os.fstat(handle.fileno()).st_size
                    if size != ref.size:
                        bad.append(f"{where}: mirror file {ref.path} has {size} bytes, {ref.size} expected")
                    elif ref.md5 and digest_of_file(handle, "md5", CHUNK) != ref.md5:
                        bad.append(f"{where}: mirror file {ref.path} does not match its recorded MD5")
            except FileNotFoundError:
                bad.append(f"{where}: mirror file {ref.path} is missing")
            except UnsafePath as exc:
                bad.append(f"{where}: the mirror index names {exc}")
    if bad:
        shown = "; ".join(bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise PermanentError(f"nothing was restored: {len(bad)} mirror file(s) are damaged ({shown}); "
                             "choose another time or repair the mirror")


def _put(client, bp: BucketPlan, key: str, root: Path) -> int:
    ref = bp.state[key]
    with mirror_file(root, ref) as handle:
        client.put_object(bp.target, key, _CheckedReader(handle, ref, f"s3://{bp.bucket}/{key}"), ref.size,
                          content_type=ref.content_type or "application/octet-stream",
                          metadata=dict(ref.metadata) or None, part_size=_part_size(ref.size))
    return ref.size


def _put_all(client, bp: BucketPlan, keys: list[str], result: MinioRestoreResult, workers: int, root: Path) -> None:
    """Put `keys` back on a few threads (each put is a round trip: one after the other, the latency adds
    up), a window at a time; after a failure the puts under way finish, no new one starts, and it is raised."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(keys), PUT_WINDOW):
            futures = [pool.submit(_put, client, bp, key, root) for key in keys[start:start + PUT_WINDOW]]
            failure = None
            for future in futures:
                try:
                    result.bytes_written += future.result()
                    result.put += 1
                except Exception as exc:  # noqa: BLE001 - the first one is raised once the others are done
                    failure = failure or exc
            if failure is not None:
                raise failure


def _compare(client, bp: BucketPlan, scope: str, settings: Settings, root: Path) -> tuple[int, list[str]]:
    """List the target again: exactly the keys of `at`, with their sizes and (where MD5-based) ETags."""
    found = _listing(client, bp.target, scope, settings)
    if found is None:
        return 0, [f"bucket {bp.target} does not exist after the restore"] if bp.state else []
    problems = []
    for key, ref in sorted(bp.state.items()):
        where = f"s3://{bp.target}/{key}"
        if key not in found:
            problems.append(f"{where} is missing after the restore")
            continue
        etag, size = found[key]
        if size != ref.size:
            problems.append(f"{where} has {size} bytes, {ref.size} expected")
        elif not _matches(ref, etag, size, root):
            problems.append(f"{where}: its ETag {etag} does not match the bytes it had at the restore time")
    extra = sorted(set(found) - set(bp.state))
    if extra:
        problems.append(f"bucket {bp.target} holds {len(extra)} object(s) that did not exist at the restore time "
                        f"(e.g. {extra[0]}); written meanwhile?")
    return len(found), problems


def restore(settings: Settings, at: datetime, buckets: list[str] | None = None,
            target_endpoint_settings: MinioSettings | None = None, target_bucket_prefix: str = "",
            dry_run: bool = False, store: MirrorStore | None = None, log: logging.Logger | None = None,
            *, key_prefix: str = "") -> MinioRestoreResult:
    """Bring MinIO (or the drill target) back to what it held at `at`; see the module docstring.

    Raises PermanentError before writing anything for a bad time, bucket or mirror file, and
    RestoreIncomplete (with `.result`) if a write fails midway. The final comparison's findings are in
    `result.problems` (empty when the target matches the state at `at`).
    """
    started = time.monotonic()
    log = log or LOG
    plan = plan_restore(settings, at, buckets, store, target_endpoint_settings=target_endpoint_settings,
                        target_bucket_prefix=target_bucket_prefix, key_prefix=key_prefix)
    result = MinioRestoreResult(at=plan.at, plan=plan, dry_run=dry_run,
                                expected={bp.target: bp.expected for bp in plan.buckets})
    log.info("minio restore to %s: %d to put (%d bytes), %d to remove, %d unchanged in %d bucket(s)%s",
             plan.at.isoformat(), plan.put, plan.bytes, plan.remove, plan.unchanged, len(plan.buckets),
             " (dry run)" if dry_run else "")
    if dry_run:
        result.seconds = time.monotonic() - started
        return result
    _check_mirror_files(plan)
    client = clients.minio_client(target_endpoint_settings or settings.minio)
    try:
        for bp in plan.buckets:
            if bp.create:
                try:
                    client.make_bucket(bp.target)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
                result.created_buckets.append(bp.target)
            _put_all(client, bp, bp.put, result, settings.minio.reconcile_workers, plan.mirror_root)
            for key in bp.remove:
                client.remove_object(bp.target, key)
                result.removed += 1
    except Exception as exc:
        result.seconds = time.monotonic() - started
        raise RestoreIncomplete(
            f"the MinIO restore to {plan.at.isoformat()} stopped: {result.put} of {plan.put} objects put back, "
            f"{result.removed} of {plan.remove} removed ({type(exc).__name__}: {exc}); run the same restore again "
            "to complete it (it only does what is still missing)", result) from exc
    scope = key_prefix or _scope_prefix(settings)
    for bp in plan.buckets:
        result.found[bp.target], problems = _compare(client, bp, scope, settings, plan.mirror_root)
        result.problems += problems
    result.seconds = time.monotonic() - started
    log.info("minio restore to %s: %d put, %d removed, %d bucket(s) created in %.1fs; %s", plan.at.isoformat(),
             result.put, result.removed, len(result.created_buckets), result.seconds,
             "verified" if result.ok else f"{len(result.problems)} problem(s): {result.problems[0]}")
    return result


def restore_kb(settings: Settings, kb_id: str, at: datetime, target_endpoint_settings: MinioSettings | None = None,
               target_bucket_prefix: str = "", dry_run: bool = False, store: MirrorStore | None = None,
               log: logging.Logger | None = None) -> MinioRestoreResult:
    """Restore one knowledge base's files (its bucket; in single-bucket mode its folder) to `at`."""
    if not KB_ID.match(kb_id or ""):
        raise PermanentError(f"{kb_id!r} is not a knowledge base id (32 lower-case hex digits, as in RAGFlow's "
                             "knowledgebase.id)")
    store = store or open_store(settings)
    if settings.minio.bucket:  # RAGFlow's single-bucket mode: <prefix_path>/<kb_id>/<file>
        bucket, key_prefix = settings.minio.bucket, f"{_scope_prefix(settings)}{kb_id}/"
        known = _has_keys_under(store, bucket, key_prefix)
    else:
        bucket, key_prefix = kb_id, ""
        known = kb_id in mirrored_buckets(store)
    if not known:
        raise PermanentError(f"knowledge base {kb_id} is unknown to the MinIO mirror ({store.root}): no file of it "
                             "was ever mirrored; check the id (RAGFlow's knowledgebase.id)")
    return restore(settings, at, [bucket], target_endpoint_settings, target_bucket_prefix, dry_run, store, log,
                   key_prefix=key_prefix)


__all__ = ["BucketPlan", "MinioRestoreResult", "RestoreIncomplete", "RestorePlan", "first_mirrored",
           "mirrored_buckets", "plan_restore", "restore", "restore_kb", "target_bucket_name"]
