"""The Dramatiq actors: thin wrappers that load settings and call plain functions.

Queues: "backup" (one message per component of a point), "mirror" (one message per MinIO key),
"events" (config commits), "maintenance" (reconcile, verify, prune), "offsite" (copies to the restic
repository: slow uploads never hold up the others).
"""
from __future__ import annotations

import logging

import dramatiq

from actors.actions.drill import run_drill
from actors.actions.offsite import OffsitePermanent, check, copy_mirror, copy_point, forget
from actors.actions.retention import prune as apply_retention
from actors.actions.runs import backup_run, notify_outcome, record_final_failure, run_component_attempt
from actors.actions.verify import newest_point
from actors.actions.verify import verify_point as verify
from actors.broker import PENDING, on_final_failure
from actors.components import enabled_components
from actors.config.backup import commit_config as commit
from actors.minio.mirror import mirror_object as mirror
from actors.minio.mirror import mirror_objects as mirror_many
from actors.minio.mirror import reconcile as run_reconcile
from actors.minio.upkeep import prune_versions
from actors.search import interval as search_interval
from core import ragflow_version, runtime
from core.component import PermanentError
from core.config import Settings
from core.locks import Busy
from core.manifest import ComponentRecord
from core.mirror_status import record_reconcile
from core.notify import Notifier
from core.ping import ping
from core.points import Point, Storage
from core.staging import staged_services

log = logging.getLogger("ragflow_backup.actors")

BACKUP_RETRIES = 5
OFFSITE_RETRIES = 8  # with backoff from 1 minute to 1 hour: a day's outage of the remote end
SIX_HOURS_MS = 6 * 3600 * 1000
# Not retried: Dramatiq's Retries fails the message at once (then the actor's final-failure hook runs).
PERMANENT = (PermanentError,)


def start_backup(settings: Settings, components: list[str] | None = None) -> Point | None:
    """Create a point and queue one message per component; the workers fill it in.

    While a `backup --local` is taking a point (it holds the run lock) the scheduled run is skipped, not
    queued behind it: that run is taking today's point, and two at once would break both."""
    names = components or enabled_components(settings)
    storage = Storage(settings.storage_root)
    try:
        with backup_run(storage):
            point = storage.new_point(names, ragflow=ragflow_version.detect(settings))
    except Busy as exc:
        log.warning("scheduled backup skipped: %s (it is taking a point now)", exc)
        return None
    ping(settings.notify, "start", point.ref)
    for name in names:
        backup_component.send(point.ref, name)
    return point


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="backup", max_retries=BACKUP_RETRIES, min_backoff=5_000, max_backoff=300_000,
                time_limit=SIX_HOURS_MS)
def backup_component(point_ref: str, component: str) -> None:
    """Back up one component into an existing point; transient failures are retried with backoff."""
    settings = runtime.settings()
    point = Storage(settings.storage_root).point(point_ref)
    # A transient failure is raised for Dramatiq's Retries; the last one is recorded by backup_failed.
    record = run_component_attempt(settings, point, component)
    component_done(settings, point, component, record)


@on_final_failure(backup_component)
def backup_failed(point_ref: str, component: str, exc: BaseException) -> None:
    """The retries are spent: the component's failure goes into the point like any other outcome."""
    settings = runtime.settings()
    point = Storage(settings.storage_root).point(point_ref)
    if component in point.manifest().components:
        return  # its outcome was recorded; what failed came after (finishing the point): already reported
    record = record_final_failure(settings, point, component, exc)
    component_done(settings, point, component, record)


def component_done(settings: Settings, point: Point, component: str, record: ComponentRecord | None) -> None:
    manifest = point.manifest()
    if manifest.status != "running":
        point_finished(settings, point)
    elif record is not None and component not in manifest.components:
        unrecorded(settings, point, record)


def unrecorded(settings: Settings, point: Point, record: ComponentRecord) -> None:
    """The storage root could not take a component's outcome (full): the point will read as interrupted and
    no 'finished' notification would come, so say it now."""
    ping(settings.notify, "fail", f"{point.ref} cannot record {record.component}")
    try:
        Notifier(settings.notify, settings.layout.notify_state).failure(
            "backup", f"ragflow-backup: {point.ref} cannot record {record.component}", record.error or "")
    except OSError:
        pass  # sent before the notifier's state is saved under the (full) storage root


def point_finished(settings: Settings, point: Point) -> None:
    """Tell the operator how the run ended, then apply retention (after the run, as the PRD asks)."""
    notify_outcome(settings, point)
    if point.manifest().status == "complete" and point.tier == "daily" and settings.offsite.enabled:
        offsite_copy.send(point.ref)  # never blocks nor changes the local point
    prune.send()


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="maintenance", max_retries=3, time_limit=SIX_HOURS_MS)
def scheduled_backup() -> None:
    start_backup(runtime.settings())


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="maintenance", max_retries=3, time_limit=SIX_HOURS_MS)
def verify_point(point_ref: str | None = None) -> None:
    """Verify a point (default: the newest daily one); problems are notified, not retried."""

    settings = runtime.settings()
    storage = Storage(settings.storage_root)
    point = storage.point(point_ref) if point_ref else newest_point(storage)
    if point is None:
        return
    report = verify(settings, point)
    notifier = Notifier(settings.notify, settings.layout.notify_state)
    if report.ok:
        notifier.recovered("verify", "ragflow-backup: verify passes again", f"{point.ref} verified.")
    else:
        notifier.failure("verify", f"ragflow-backup: verify of {point.ref} found problems", "\n".join(report.problems()))


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="maintenance", max_retries=3, time_limit=SIX_HOURS_MS)
def prune() -> None:

    settings = runtime.settings()
    apply_retention(Storage(settings.storage_root), settings, dry_run=False)


# ---------------------------------------------------------------- MinIO mirror


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="mirror", max_retries=20, min_backoff=1_000, max_backoff=300_000, time_limit=SIX_HOURS_MS)
def mirror_object(bucket: str, key: str) -> None:
    """Make the mirror match the source for one key, whatever the event said (level-triggered)."""

    mirror(runtime.settings(), bucket, key)


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="mirror", max_retries=20, min_backoff=1_000, max_backoff=300_000, time_limit=SIX_HOURS_MS)
def mirror_objects(bucket: str, keys: list[str]) -> None:
    """mirror_object for keys whose events arrived together (one message, one index commit for a burst)."""

    mirror_many(runtime.settings(), bucket, keys)


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="maintenance", max_retries=5, min_backoff=10_000, time_limit=SIX_HOURS_MS)
def reconcile(buckets: list[str] | None = None) -> None:
    """Listing diff of the source against the mirror: heals missed events, restarts and outages."""

    settings = runtime.settings()
    report = run_reconcile(settings, buckets)
    log.info("reconcile of %s: %s copied, %s removed, %s unchanged%s", ", ".join(buckets) if buckets else "all buckets",
             report.copied, report.removed, report.unchanged, "" if report.complete else " (INCOMPLETE)")
    record_reconcile(settings, report, buckets)
    if not report.complete:
        raise RuntimeError(f"reconcile incomplete: {'; '.join(report.errors)}")


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="maintenance", max_retries=3, time_limit=SIX_HOURS_MS)
def prune_mirror_versions() -> None:

    prune_versions(runtime.settings())


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="maintenance", max_retries=2, time_limit=SIX_HOURS_MS)
def search_interval_snapshot() -> None:
    """A search snapshot between points (skipped, not queued, while a search backup holds the lock)."""
    search_interval.take(runtime.settings(), logging.getLogger("ragflow_backup.search"))


# ---------------------------------------------------------------- config watcher


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="events", max_retries=10, min_backoff=1_000, max_backoff=60_000)
def commit_config(paths: list[str]) -> None:
    """One commit per debounced burst of edits in RAGFlow's docker/ folder."""

    settings = runtime.settings()
    sha = commit(settings, "watcher")
    log.info("config change in %s: %s", ", ".join(paths), f"commit {sha[:10]}" if sha else "nothing new to commit")


# ---------------------------------------------------------------- offsite copy


def run_offsite_job(settings: Settings, key: str, title: str, job, final_attempt: bool = False) -> None:
    """Run an offsite job; a permanent failure (wrong password, no repository) is notified at once and
    not retried, a transient one is retried by the actor and notified on the last attempt."""

    notifier = Notifier(settings.notify, settings.layout.notify_state)
    try:
        job()
    except OffsitePermanent as exc:
        log.error("%s failed: %s", title, exc)
        notifier.failure(key, f"ragflow-backup: {title} failed", str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - retried by the actor; notified when it gives up
        if final_attempt:
            notifier.failure(key, f"ragflow-backup: {title} failed after retries", str(exc))
        raise
    notifier.recovered(key, f"ragflow-backup: {title} works again", f"{title} succeeded.")


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="offsite", max_retries=OFFSITE_RETRIES, min_backoff=60_000, max_backoff=3_600_000,
                time_limit=SIX_HOURS_MS)
def offsite_copy(point_ref: str) -> None:
    """Send a complete point to the offsite repository."""

    settings = runtime.settings()
    point = Storage(settings.storage_root).point(point_ref)
    run_offsite_job(settings, "offsite", f"offsite copy of {point_ref}", lambda: copy_point(settings, point))


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="offsite", max_retries=OFFSITE_RETRIES, min_backoff=60_000, max_backoff=3_600_000,
                time_limit=SIX_HOURS_MS)
def offsite_mirror() -> None:
    """Scheduled: the MinIO mirror and config history to the repository, then its retention."""

    settings = runtime.settings()
    run_offsite_job(settings, "offsite", "offsite copy of the MinIO mirror",
                    lambda: (copy_mirror(settings), forget(settings)))


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="offsite", max_retries=3, min_backoff=60_000, max_backoff=3_600_000, time_limit=SIX_HOURS_MS)
def offsite_check(read_data: bool = False) -> None:
    """Scheduled: restic check (structure weekly; a subset of the data monthly)."""

    settings = runtime.settings()
    run_offsite_job(settings, "offsite-check", "offsite repository check" + (" (data)" if read_data else ""),
                    lambda: check(settings, read_data))


# ---------------------------------------------------------------- restore drill


@dramatiq.actor(broker=PENDING, throws=PERMANENT, queue_name="maintenance", max_retries=0, time_limit=SIX_HOURS_MS)
def drill() -> None:
    """The monthly restore drill (into the staging RAGFlow when the config names one); a failure is notified (a
    drill is not retried: it reports)."""


    settings = runtime.settings()
    notifier = Notifier(settings.notify, settings.layout.notify_state)
    try:
        report = run_drill(settings, staging=bool(staged_services(settings)))
    except PermanentError as exc:  # no point yet, or an encrypted one (the agent holds no identity)
        notifier.failure("drill", "ragflow-backup: the restore drill could not run", str(exc))
        return
    if report.ok:
        notifier.recovered("drill", "ragflow-backup: the restore drill passes again", f"{report.point} in {report.seconds:.0f}s")
    else:
        failed = "\n".join(f"{i.component}: {i.detail}" for i in report.components if not i.ok)
        notifier.failure("drill", f"ragflow-backup: restore drill of {report.point} failed",
                         f"{failed}\ntook {report.seconds:.0f}s of the {report.objective_seconds // 60}-minute objective")


# ---------------------------------------------------------------- when the retries are spent


def offsite_failed(key: str, title: str, exc: BaseException) -> None:
    settings = runtime.settings()
    Notifier(settings.notify, settings.layout.notify_state).failure(key, f"ragflow-backup: {title} failed after retries",
                                                                    str(exc))


@on_final_failure(offsite_copy)
def offsite_copy_failed(point_ref: str, exc: BaseException) -> None:
    offsite_failed("offsite", f"offsite copy of {point_ref}", exc)


@on_final_failure(offsite_mirror)
def offsite_mirror_failed(exc: BaseException) -> None:
    offsite_failed("offsite", "offsite copy of the MinIO mirror", exc)


@on_final_failure(offsite_check)
def offsite_check_failed(*args: object) -> None:
    *given, exc = args
    read_data = bool(given[0]) if given else False
    offsite_failed("offsite-check", "offsite repository check" + (" (data)" if read_data else ""), exc)  # type: ignore[arg-type]
