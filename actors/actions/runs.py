"""Running a component's backup into a point: the one place that takes locks and records outcomes.

Both ways of running share it: in-process (`backup --local`, tests) and the Dramatiq actors.
"""
from __future__ import annotations

import errno
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

from actors.actions.retention import promote
from actors.components import component
from core import locks
from core.component import ComponentResult, PermanentError
from core.config import Settings
from core.encryption import encrypt_artifacts
from core.manifest import ComponentRecord, now
from core.notify import Notifier
from core.ping import ping
from core.points import Point, Storage
from core.redact import redact

RUN_LOCK = "backup-run.lock"
NOTED_POINT = re.compile(r"daily/\d{4}-\d{2}-\d{2}(_\d{6}(_\d{6})?)?")  # what new_point names a daily point
HISTORY_CATCH_UP = 30  # the newest daily points looked at for a missing history line


def describe(exc: BaseException) -> str:
    # Keep line breaks: some messages carry a compose snippet to paste.
    # Client errors quote URLs and commands, which may carry a password: masked (core/redact.py).
    text = redact(str(exc).strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


STORAGE_ERRORS = {
    errno.ENOSPC: "is full: free space there (see `ragflow-backup prune --dry-run` and `df -h`) or move storage_root",
    errno.EDQUOT: "is over its quota: raise the quota or free space there",
    errno.EROFS: "is read-only: remount it read-write (a NAS does this after disk errors: check the disks first)",
}
STORAGE_WORDS = {errno.ENOSPC: "storage full", errno.EDQUOT: "storage full (quota)", errno.EROFS: "storage read-only"}


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRORS


def storage_hint(exc: BaseException, root) -> str:
    """What to do when a write of ours failed because of the storage root's file system; '' otherwise.
    The kernel's message ("No space left on device") names neither the path nor the fix."""
    if is_storage_error(exc):
        return f" (the file system of the storage root {root} {STORAGE_ERRORS[exc.errno]})"  # type: ignore[attr-defined]
    return ""


def failure_text(exc: BaseException, root) -> str:
    """A component's error: 'storage full: OSError: ... (the file system of ... is full: ...)' for the storage
    root's own trouble, the exception's text otherwise."""
    prefix = f"{STORAGE_WORDS[exc.errno]}: " if is_storage_error(exc) else ""  # type: ignore[attr-defined]
    return prefix + describe(exc) + storage_hint(exc, root)


def run_lock(storage: Storage) -> Path:
    return storage.layout.lock(RUN_LOCK)


@contextmanager
def backup_run(storage: Storage, on_busy: Callable[[str], None] | None = None) -> Iterator[locks.Held]:
    """One backup run at a time per storage root, held from before its point is created; the run notes its
    point in the lock (`held.note(point.ref)`) so that the next run can finish it if it could not.

    Busy: without `on_busy`, raise locks.Busy naming the holder's pid; with it, say so through `on_busy`
    and wait for the holder to finish (README.md, "What a backup point holds", says why). Raises OSError
    when the storage root cannot be written at all."""
    storage.prepare()
    path, what = run_lock(storage), f"a backup into {storage.root}"
    stack = ExitStack()
    try:
        held = stack.enter_context(locks.exclusive(path, what))
    except locks.Busy as exc:
        if on_busy is None:
            raise
        on_busy(str(exc))
        held = stack.enter_context(locks.exclusive(path, what, wait=True))
    with stack:
        finish_abandoned(storage, held.previous)
        catch_up_history(storage)
        yield held


def finish_abandoned(storage: Storage, previous: str) -> None:
    """The point the last local run noted in the run lock, if it is still running: that run ended (killed, or
    the storage root full) before it could record every outcome. We hold the run lock, so nobody works on
    it: its missing outcomes are recorded as failed, which finishes it (manifest, history, audit)."""
    parts = previous.split()
    if len(parts) != 2 or not NOTED_POINT.fullmatch(parts[1]):  # the lock file is in the storage root: untrusted
        return
    try:
        point = storage.point(parts[1])
        manifest = point.manifest()
    except (LookupError, OSError, ValueError):
        return
    if manifest.status != "running" or point.status() != "interrupted":
        return
    for name in manifest.requested:
        if name not in manifest.components:
            at = now()
            point.save_record(ComponentRecord(
                component=name, status="failed", started_at=manifest.created_at, finished_at=at,
                error="interrupted: the run that took this point ended before recording this component's outcome "
                      "(killed, or the storage root was full: see its backup.log)"))


def catch_up_history(storage: Storage) -> None:
    """Finished points whose history line could not be written (storage full) get it now."""
    for point in storage.points("daily")[-HISTORY_CATCH_UP:]:
        try:
            if point.manifest().status != "running":
                point.log_history()
        except (OSError, ValueError):
            continue  # an unreadable manifest is verify's to report, not the history's


def run_component(settings: Settings, point: Point, name: str) -> ComponentRecord:
    """Back up one component into `point` in one attempt (`backup --local`, safety points) and record the
    outcome: any failure is recorded as failed at once, there being no retry to wait for."""
    started = now()
    with point.working():  # held until the outcome is saved: the point never reads as interrupted meanwhile
        try:
            result = back_up(settings, point, name)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded
            return record_failure(settings, point, name, exc, started)
        return record_success(settings, point, name, result, started)


def run_component_attempt(settings: Settings, point: Point, name: str) -> ComponentRecord:
    """One of the worker's attempts at backing up one component (actors/tasks.py): a transient failure is
    raised for Dramatiq's retries and nothing is recorded (the retries spent, `record_final_failure` records
    it); success, or a permanent failure, is recorded."""
    first = point.first_attempt(name)
    started = now()
    with point.working():
        try:
            result = back_up(settings, point, name)
        except PermanentError as exc:
            return record_failure(settings, point, name, exc, first)
        return record_success(settings, point, name, result, started)


def record_final_failure(settings: Settings, point: Point, name: str, exc: BaseException) -> ComponentRecord:
    """The worker's retries are spent: the last failure recorded, started when the first attempt began."""
    return record_failure(settings, point, name, exc, point.first_attempt(name))


def back_up(settings: Settings, point: Point, name: str) -> ComponentResult:
    """Back up one component into `point` under its lock, encrypting its artifacts when asked (the caller holds
    `point.working()`); raises on failure, having logged it as permanent or transient."""
    module = component(name)
    log = point.logger(name)
    try:
        with component_lock(settings, point, name, log) as held:
            held.note(f"the backup into {point.ref}")  # named to whoever finds the lock taken
            log.info("backup of %s into %s started", name, point.ref)
            result = module.backup(settings, point, log)
            if settings.encryption.enabled and result.artifacts:
                result.artifacts = encrypt_artifacts(settings, point, result.artifacts)
                log.info("%s: %d artifact(s) encrypted with age", name, len(result.artifacts))
    except Exception as exc:
        kind = "permanent" if isinstance(exc, PermanentError) else "transient"
        log.error("backup of %s failed (%s): %s", name, kind, describe(exc))
        raise
    return result


def record_failure(settings: Settings, point: Point, name: str, exc: BaseException,
                   started: datetime) -> ComponentRecord:
    return save_outcome(settings, point, ComponentRecord(component=name, status="failed", started_at=started,
                                                         finished_at=now(), error=failure_text(exc, settings.storage_root)))


def record_success(settings: Settings, point: Point, name: str, result: ComponentResult,
                   started: datetime) -> ComponentRecord:
    record = ComponentRecord(component=name, status="ok", started_at=started, finished_at=now(),
                             artifacts=result.artifacts, counts=result.counts, details=result.details)
    point.logger(name).info("backup of %s finished in %.1fs", name, record.seconds)
    return save_outcome(settings, point, record)


@contextmanager
def component_lock(settings: Settings, point: Point, name: str, log: logging.Logger) -> Iterator[locks.Held]:
    """The component's lock for its backup. Search's is also held for moments between points, by an interval
    snapshot (actors/search/interval.py) or the offsite copy's frozen view: a backup waits for it up to
    search.lock_wait_seconds (saying so in its log), then fails naming the holder. Any other holder is another
    backup: refused at once."""
    path, what = point.storage.component_lock(name), f"a {name} backup"
    wait = float(settings.search.lock_wait_seconds) if name == "search" else 0.0
    with ExitStack() as stack:
        try:
            held = stack.enter_context(locks.exclusive(path, what))
        except locks.Busy as exc:
            if not wait:
                raise
            log.warning("%s; waiting up to %gs for it (search.lock_wait_seconds)", exc, wait)
            try:
                held = stack.enter_context(locks.exclusive(path, what, wait_seconds=wait))
            except locks.Busy as again:
                raise locks.Busy(f"{again}: if it is an interval snapshot still at work, raise "
                                 "search.lock_wait_seconds; if it is stuck, look at that process (`ps -p PID`) and "
                                 "its log") from None
        yield held


def save_outcome(settings: Settings, point: Point, record: ComponentRecord) -> ComponentRecord:
    """Save a component's record; when the storage root cannot take it, record it as failed instead (after
    removing the artifacts an ok record would have claimed, to make room). Returns the record that holds;
    if even the failed one cannot be written, that one, unsaved: the point then reads as interrupted once
    the run ends (nobody holds its work lock), never as complete."""
    log = point.logger(record.component)
    try:
        manifest = point.save_record(record)
    except OSError as exc:
        if not is_storage_error(exc):
            raise
        log.error("the outcome of %s cannot be written into %s: %s", record.component, point.ref, describe(exc))
        point.forget_record(record.component)  # an ok record on disk must not outlive its artifacts
        if record.status == "ok":
            for artifact in record.artifacts:  # no record claims them: they are no part of any point now
                point.path(artifact.encrypted.name if artifact.encrypted else artifact.name).unlink(missing_ok=True)
        record = record.model_copy(update={"status": "failed", "artifacts": [], "counts": {}, "details": {},
                                           "error": failure_text(exc, settings.storage_root), "finished_at": now()})
        try:
            manifest = point.save_record(record)
        except OSError as again:
            if not is_storage_error(again):
                raise
            log.error("the failed outcome of %s cannot be written either: %s", record.component, describe(again))
            return record
    if manifest.status == "complete":
        promote_complete(settings, point)
    return record


def promote_complete(settings: Settings, point: Point) -> None:
    """A complete daily point becomes this week's and this month's point if they have none yet.

    A promotion that fails does not make the backup fail: the daily point is sound; prune retries.
    """

    log = point.logger("retention")
    try:
        for promoted in promote(point.storage, point, policy=settings.retention):
            log.info("promoted %s to %s (hard links)", point.ref, promoted.ref)
    except Exception as exc:  # noqa: BLE001
        log.error("could not promote %s: %s", point.ref, describe(exc))


def notify_outcome(settings: Settings, point: Point) -> None:
    """Tell the operator how a finished run ended: a failure naming each component's error, or a
    recovery once a run is complete again. Used by the workers and by `backup --local` alike."""

    manifest = point.manifest()
    ping(settings.notify, "success" if manifest.status == "complete" else "fail", f"{point.ref} is {manifest.status}")
    notifier = Notifier(settings.notify, settings.layout.notify_state)
    if manifest.status == "complete":
        notifier.recovered("backup", "ragflow-backup: backups are complete again", f"{point.ref} is complete.")
    else:
        failed = {name: rec.error for name, rec in manifest.components.items() if rec.status != "ok"}
        body = "\n".join(f"{name}: {error}" for name, error in failed.items())
        notifier.failure("backup", f"ragflow-backup: {point.ref} is {manifest.status}", body)
