"""MinIO point-in-time restore from the versioned mirror (core/mirror_store.py).

`plan_restore` compares, bucket by bucket, what the mirror says the store held at `at` with what the
target holds now (listing: ETag + size) and `restore` applies that diff: each object is put back from
its mirror file (streamed, with its content type, content headers and user metadata, its MD5 checked
while it is read so a corrupt mirror file is never uploaded), then the keys that did not exist at `at`
are removed, then the target is listed again and compared with the state at `at`. Before that, what it will
overwrite or remove in the live buckets and the mirror does not hold yet is copied into the mirror
(actors/minio/keep_live.py): the mirror as at the restore's start is its way back.

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
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from minio.error import S3Error

from actors.minio.exact import removable, remove_buckets
from actors.minio.keep_live import keep_live_objects
from actors.minio.mirror import open_store
from actors.minio.plan import (
    CHUNK,
    KB_ID,
    PUT_WINDOW,
    BucketPlan,
    MinioRestoreResult,
    RestoreIncomplete,
    RestorePlan,
    bucket_listing,
    first_mirrored,
    has_keys_under,
    kb_scope,
    matches_mirror,
    mirror_file,
    mirrored_buckets,
    part_size,
    plan_restore,
    scope_prefix,
    target_bucket_name,
)
from actors.minio.put_headers import UnsafeHeaders, put_headers
from core import clients
from core.atomic import digest_of_file
from core.component import NothingChanged, PermanentError
from core.config import MinioSettings, Settings
from core.mirror_records import DamagedIndex
from core.mirror_store import MirrorStore, ObjectRef
from core.safe_paths import UnsafePath

# ---------------------------------------------------------------- applying


LOG = logging.getLogger("ragflow_backup.minio_restore")


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


def _check_mirror_files(plan: RestorePlan) -> None:
    """Every file to upload is there with its size and MD5, and what the index says of its object can be
    sent back (actors/minio/put_headers.py), before anything is written."""
    bad = []
    for bp in plan.buckets:
        for key in bp.put:
            ref, where = bp.state[key], f"s3://{bp.bucket}/{key}"
            try:
                put_headers(ref.content_type, ref.metadata, ref.headers)
            except UnsafeHeaders as exc:
                bad.append(f"{where}: the mirror index gives {exc}")
                continue
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
        raise NothingChanged(f"nothing was restored: {len(bad)} object(s) cannot be put back as the mirror holds "
                             f"them ({shown}); choose another time or repair the mirror")


def _put(client, bp: BucketPlan, key: str, root: Path) -> int:
    ref = bp.state[key]
    with mirror_file(root, ref) as handle:
        content_type, headers = put_headers(ref.content_type, ref.metadata, ref.headers)
        client.put_object(bp.target, key, _CheckedReader(handle, ref, f"s3://{bp.bucket}/{key}"), ref.size,
                          content_type=content_type, metadata=headers or None, part_size=part_size(ref.size))
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
    found = bucket_listing(client, bp.target, scope, settings)
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
        elif not matches_mirror(ref, etag, size, root):
            problems.append(f"{where}: its ETag {etag} does not match the bytes it had at the restore time")
    extra = sorted(set(found) - set(bp.state))
    if extra:
        problems.append(f"bucket {bp.target} holds {len(extra)} object(s) that did not exist at the restore time "
                        f"(e.g. {extra[0]}); written meanwhile?")
    return len(found), problems


def restore(settings: Settings, at: datetime, buckets: list[str] | None = None,
            target_endpoint_settings: MinioSettings | None = None, target_bucket_prefix: str = "",
            dry_run: bool = False, store: MirrorStore | None = None, log: logging.Logger | None = None,
            *, key_prefix: str = "", exact: bool = False, keeper: Settings | None = None) -> MinioRestoreResult:
    """Bring MinIO (or the drill target) back to what it held at `at`; see the module docstring. `exact`: RAGFlow's
    buckets created after `at` are removed too, once emptied (actors/minio/exact.py). `keeper`: the settings whose
    mirror is this restore's way back; what the restore replaces in the live buckets is copied there first
    (actors/minio/keep_live.py).

    Raises PermanentError before writing anything for a bad time, bucket or mirror file, and
    RestoreIncomplete (with `.result`) if a write fails midway. The final comparison's findings are in
    `result.problems` (empty when the target matches the state at `at`).
    """
    started = time.monotonic()
    log = log or LOG
    def planned() -> RestorePlan:
        try:
            return plan_restore(settings, at, buckets, store, target_endpoint_settings=target_endpoint_settings,
                                target_bucket_prefix=target_bucket_prefix, key_prefix=key_prefix)
        except DamagedIndex as exc:  # read while planning, before anything is written
            raise NothingChanged(f"nothing was restored: {exc}") from None

    plan = planned()
    if keeper is not None and not dry_run and target_endpoint_settings is None and not target_bucket_prefix:
        kept = store if keeper is settings and store is not None else open_store(keeper)
        if keep_live_objects(keeper, plan, kept):
            log.info("minio restore: objects the restore replaces were copied into the mirror first")
            plan = planned()  # the mirror changed under the plan: what it holds of `at` may be a version now
    result = MinioRestoreResult(at=plan.at, plan=plan, dry_run=dry_run,
                                expected={bp.target: bp.expected for bp in plan.buckets})
    log.info("minio restore to %s: %d to put (%d bytes), %d to remove, %d unchanged in %d bucket(s)%s",
             plan.at.isoformat(), plan.put, plan.bytes, plan.remove, plan.unchanged, len(plan.buckets),
             " (dry run)" if dry_run else "")
    if dry_run:
        result.seconds = time.monotonic() - started
        return result
    _check_mirror_files(plan)
    gone = set()
    if exact and not key_prefix and not target_bucket_prefix and target_endpoint_settings is None:
        mirror = store or open_store(settings)
        gone = {bp.bucket for bp in plan.buckets if removable(settings, bp, mirror)}  # decided before any write
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
        if exact:
            remove_buckets(client, settings, plan.buckets, gone, result, log)
    except Exception as exc:
        result.seconds = time.monotonic() - started
        raise RestoreIncomplete(
            f"the MinIO restore to {plan.at.isoformat()} stopped: {result.put} of {plan.put} objects put back, "
            f"{result.removed} of {plan.remove} removed ({type(exc).__name__}: {exc}); run the same restore again "
            "to complete it (it only does what is still missing)", result) from exc
    scope = key_prefix or scope_prefix(settings)
    for bp in plan.buckets:
        if bp.target in result.removed_buckets:
            continue
        result.found[bp.target], problems = _compare(client, bp, scope, settings, plan.mirror_root)
        result.problems += problems
    result.seconds = time.monotonic() - started
    log.info("minio restore to %s: %d put, %d removed, %d bucket(s) created in %.1fs; %s", plan.at.isoformat(),
             result.put, result.removed, len(result.created_buckets), result.seconds,
             "verified" if result.ok else f"{len(result.problems)} problem(s): {result.problems[0]}")
    return result


def restore_kb(settings: Settings, kb_id: str, at: datetime, target_endpoint_settings: MinioSettings | None = None,
               target_bucket_prefix: str = "", dry_run: bool = False, store: MirrorStore | None = None,
               log: logging.Logger | None = None, keeper: Settings | None = None) -> MinioRestoreResult:
    """Restore one knowledge base's files (its bucket; in single-bucket mode its folder) to `at`."""
    if not KB_ID.match(kb_id or ""):
        raise PermanentError(f"{kb_id!r} is not a knowledge base id (32 lower-case hex digits, as in RAGFlow's "
                             "knowledgebase.id)")
    store = store or open_store(settings)
    bucket, key_prefix = kb_scope(settings, kb_id)
    known = has_keys_under(store, bucket, key_prefix) if key_prefix else bucket in mirrored_buckets(store)
    if not known:
        raise PermanentError(f"knowledge base {kb_id} is unknown to the MinIO mirror ({store.root}): no file of it "
                             "was ever mirrored; check the id (RAGFlow's knowledgebase.id)")
    return restore(settings, at, [bucket], target_endpoint_settings, target_bucket_prefix, dry_run, store, log,
                   key_prefix=key_prefix, keeper=keeper)


__all__ = ["BucketPlan", "MinioRestoreResult", "RestoreIncomplete", "RestorePlan", "first_mirrored",
           "mirrored_buckets", "plan_restore", "restore", "restore_kb", "target_bucket_name"]
