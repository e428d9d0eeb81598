"""The agent's view of its own health: last good backup per component, storage, queues, mirror; alerts.

Read-only: it reads manifests under the storage root and calls the probes it is given. A probe that
fails (Redis down for the queue depth) becomes a `problem` of the report instead of an exception, so
status, metrics and alerts still show everything else.

"Last success" of a component counts only COMPLETE points: a partial point is never the last good
backup (DESIGN.md), even for the components that succeeded in it.
"""
from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from actors.actions.offsite import last_runs
from actors.actions.retention import storage_bytes
from actors.actions.runs import describe
from actors.binlog.summary import archive_summary
from actors.components import enabled_components
from actors.search import interval_state
from actors.search.interval import interval_snapshots
from core.config import Settings
from core.points import Point, Storage

log = logging.getLogger("ragflow_backup.health")

ALERT_PREFIX = "health:"  # alert keys carry it, so the agent can tell its own alerts apart
TIER_ORDER = {"daily": 0, "weekly": 1, "monthly": 2}  # a promotion repeats its daily point


@dataclass(frozen=True)
class Alert:
    key: str
    level: Literal["failure", "warning"]
    title: str
    body: str


@dataclass
class ComponentHealth:
    component: str
    last_success_at: datetime | None = None  # the component's finish time in the newest complete point
    age_seconds: float | None = None
    point: str | None = None  # ref of that point
    last_failure_at: datetime | None = None
    last_failure_point: str | None = None
    last_failure_error: str | None = None

    @property
    def last_failure(self) -> str | None:
        """One line for people: when, where, what."""
        if self.last_failure_at is None:
            return None
        return f"{self.last_failure_at.isoformat(timespec='seconds')} {self.last_failure_point}: {self.last_failure_error or 'failed'}"


@dataclass
class PointSummary:
    ref: str
    status: str
    created_at: datetime


@dataclass
class HealthReport:
    generated_at: datetime
    components: list[ComponentHealth]
    newest_point: PointSummary | None
    storage_root: Path
    storage_used_bytes: int
    storage_used_ratio: float  # of the file system holding the storage root, like df's Use%
    queues: dict[str, int] | None = None
    mirror: dict[str, Any] | None = None  # objects, bytes, lag_seconds, last_reconcile, ...
    problems: list[str] = field(default_factory=list)  # probes that failed
    offsite: dict[str, Any] | None = None  # last offsite runs (actors.actions.offsite.last_runs) when offsite is on
    binlog: dict[str, Any] | None = None  # the binlog archive (actors/binlog/summary.py; the agent adds its lag)
    search_intervals: dict[str, Any] | None = None  # interval search snapshots (actors/search/interval_state.py)

    def component(self, name: str) -> ComponentHealth | None:
        return next((item for item in self.components if item.component == name), None)

    @property
    def mirror_lag_seconds(self) -> float | None:
        value = (self.mirror or {}).get("lag_seconds")
        return float(value) if value is not None else None

    @property
    def last_reconcile_at(self) -> datetime | None:
        """last_reconcile may be a datetime, an ISO string, epoch seconds or a dict with 'time'."""
        value = (self.mirror or {}).get("last_reconcile")
        if isinstance(value, dict):
            value = value.get("time")
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, timezone.utc)
        if isinstance(value, str):
            return _aware(datetime.fromisoformat(value))
        return _aware(value) if isinstance(value, datetime) else None

    def binlog_alerts(self, settings: Settings) -> list[Alert]:
        return _binlog_alerts(self, settings)

    def alerts(self, settings: Settings) -> list[Alert]:
        notify = settings.notify
        alerts: list[Alert] = []
        watched = enabled_components(settings)
        for item in self.components:
            rpo = notify.rpo_hours.get(item.component)
            if rpo is None or item.component not in watched:
                continue
            if item.age_seconds is None:
                alerts.append(Alert(f"{ALERT_PREFIX}{item.component} backups", "failure",
                                    f"ragflow-backup: no good {item.component} backup yet",
                                    f"No complete backup point holds {item.component} (objective: one every {rpo:g} h)."
                                    + _failure_line(item)))
            elif item.age_seconds > rpo * 3600:
                alerts.append(Alert(f"{ALERT_PREFIX}{item.component} backups", "failure",
                                    f"ragflow-backup: {item.component} backup is {item.age_seconds / 3600:.1f} h old",
                                    f"The last good {item.component} backup is {item.point} from "
                                    f"{item.last_success_at.isoformat(timespec='minutes') if item.last_success_at else '?'}, "
                                    f"older than the objective of {rpo:g} h." + _failure_line(item)))
        if self.storage_used_ratio > notify.storage_threshold:
            alerts.append(Alert(f"{ALERT_PREFIX}storage space", "warning",
                                f"ragflow-backup: storage {self.storage_used_ratio:.0%} full",
                                f"The file system of {self.storage_root} is {self.storage_used_ratio:.0%} used "
                                f"(threshold {notify.storage_threshold:.0%}); backups take "
                                f"{self.storage_used_bytes / 2**30:.2f} GiB. Free space or lower retention."))
        lag = self.mirror_lag_seconds
        if lag is not None and lag > notify.mirror_lag_seconds:
            alerts.append(Alert(f"{ALERT_PREFIX}mirror lag", "warning",
                                f"ragflow-backup: MinIO mirror {lag / 60:.0f} min behind",
                                f"The oldest waiting mirror task is {lag:.0f} s old (threshold "
                                f"{notify.mirror_lag_seconds} s): are the workers running?"))
        window, floor = (self.mirror or {}).get("pitr_seconds"), settings.minio.min_pitr_hours
        if (self.mirror or {}).get("pitr_pruned") and isinstance(window, float) and window < floor * 3600:
            alerts.append(Alert(f"{ALERT_PREFIX}mirror history", "warning",
                                f"ragflow-backup: MinIO history only {window / 3600:.1f} h",
                                f"Objects can be restored as of any moment of the last {window / 3600:.1f} h only "
                                f"(minio.min_pitr_hours: {floor:g}): minio.version_budget_percent dropped older "
                                "versions. Raise the budget (and make room), or expect less churn."))
        alerts += self.binlog_alerts(settings)
        alerts += _search_interval_alerts(self, settings)
        reconcile = (self.mirror or {}).get("last_reconcile")
        if isinstance(reconcile, dict) and reconcile.get("complete") is False:
            errors = reconcile.get("errors") or []
            alerts.append(Alert(f"{ALERT_PREFIX}mirror reconcile", "failure",
                                "ragflow-backup: the MinIO mirror's reconcile is incomplete",
                                f"The reconcile of {reconcile.get('time', '?')} could not finish; nothing was removed "
                                "from the mirror. " + "\n".join(errors[:5])))
        if self.problems:  # e.g. the broker's Redis is down: queues (and so mirror lag) cannot be seen
            alerts.append(Alert(f"{ALERT_PREFIX}checks", "failure", "ragflow-backup: health checks are failing",
                                "The agent cannot check everything it watches:\n" + "\n".join(self.problems[:10])))
        newest = self.newest_point
        if newest is not None and newest.status in ("partial", "failed"):
            failures = [f"{item.component}: {item.last_failure_error}" for item in self.components
                        if item.last_failure_point == newest.ref and item.last_failure_error]
            alerts.append(Alert(f"{ALERT_PREFIX}newest point", "failure",
                                f"ragflow-backup: the newest backup {newest.ref} is {newest.status}",
                                f"Backup point {newest.ref} ({newest.created_at.isoformat(timespec='minutes')}) "
                                f"is {newest.status}." + ("\n" + "\n".join(failures) if failures else "")))
        return alerts


def _binlog_alerts(report: HealthReport, settings: Settings) -> list[Alert]:
    """The agent's binlog archive: not streaming, or further behind the server than binlog.lag_alert_seconds."""
    binlog = report.binlog or {}
    alerts = []
    if binlog.get("streaming") is False and not binlog.get("log_bin_off"):
        alerts.append(Alert(f"{ALERT_PREFIX}binlog archive", "failure",
                            "ragflow-backup: the MySQL binary log is not being archived",
                            f"{binlog.get('last_error') or 'not connected yet'}. It resumes from its newest file by "
                            "itself; files the server purges meanwhile become a gap (see `ragflow-backup timeline`)."))
    lag = binlog.get("lag_seconds")
    if isinstance(lag, (int, float)) and lag > settings.binlog.lag_alert_seconds:
        alerts.append(Alert(f"{ALERT_PREFIX}binlog lag", "warning",
                            f"ragflow-backup: the binlog archive is {lag:.0f} s behind MySQL",
                            f"The newest archived event is {lag:.0f} s older than the server's (threshold "
                            f"{settings.binlog.lag_alert_seconds:g} s, binlog.lag_alert_seconds): restores to the last "
                            "moments cannot be exact until it catches up."))
    return alerts


def _search_interval_alerts(report: HealthReport, settings: Settings) -> list[Alert]:
    """Interval search snapshots failing search.interval_alert_failures times in a row, or no search snapshot
    (interval or a point's: either covers its moment) for twice search.snapshot_interval_minutes."""
    state = report.search_intervals
    if not state:
        return []
    alerts = []
    failed, limit = state["failures_in_a_row"], settings.search.interval_alert_failures
    if failed >= limit:
        last = state.get("last_failed") or {}
        alerts.append(Alert(f"{ALERT_PREFIX}search interval snapshots", "failure",
                            f"ragflow-backup: {failed} interval search snapshots failed in a row",
                            f"The last one ({last['time'].isoformat(timespec='minutes') if last else '?'}): "
                            f"{last.get('error', '?')}. `restore --at` falls back to the point's search snapshot "
                            f"until one succeeds (search.interval_alert_failures: {limit})."))
    # Once one was ever taken (its record, or the state once retention removed the records): before that, the
    # component's own alert speaks for search.
    taken = state.get("newest_at") or (state.get("last_taken") or {}).get("time")
    item = report.component("search")
    newest = max([m for m in (taken, item.last_success_at if item else None) if m], default=None)
    limit_seconds = 2 * state["interval_minutes"] * 60
    if taken is not None and newest is not None and (report.generated_at - newest).total_seconds() > limit_seconds:
        age = (report.generated_at - newest).total_seconds()
        alerts.append(Alert(f"{ALERT_PREFIX}search interval age", "warning",
                            f"ragflow-backup: the newest search snapshot is {age / 3600:.1f} h old",
                            f"No interval search snapshot nor point since {newest.isoformat(timespec='minutes')}, "
                            f"twice search.snapshot_interval_minutes ({state['interval_minutes']}) ago: is the "
                            "agent's scheduler running, and do the workers take the maintenance queue?"))
    return alerts


def _failure_line(item: ComponentHealth) -> str:
    return f"\nLast failure: {item.last_failure}" if item.last_failure else ""


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def used_ratio(path: Path) -> float:
    """Used share of the file system holding `path` (the nearest existing parent), as df computes it."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    usable = usage.used + usage.free  # blocks reserved for root do not count, like df
    return usage.used / usable if usable else 0.0


def _storage_bytes(storage: Storage, attempts: int = 3) -> int:
    """storage_bytes, tolerating files that retention removes while they are counted."""
    for attempt in range(attempts):
        try:
            return storage_bytes(storage)
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
    return 0


def _probe(name: str, probe: Callable[[], Any] | None, problems: list[str]) -> Any:
    if probe is None:
        return None
    try:
        return probe()
    except Exception as exc:  # noqa: BLE001 - reported as a problem, the rest of the report stands
        log.warning("health: %s failed: %s", name, describe(exc))
        problems.append(f"{name}: {describe(exc)}")
        return None


def collect(settings: Settings, storage: Storage, queue_depth: Callable[[], dict[str, int]] | None = None,
            mirror_stats: Callable[[], dict[str, Any]] | None = None, now: datetime | None = None,
            binlog_stats: Callable[[], dict[str, Any]] | None = None) -> HealthReport:
    now = _aware(now or datetime.now(timezone.utc))
    problems: list[str] = []
    # Newest first; a promotion comes after its daily original, so refs name the daily point.
    points: list[tuple[Point, Any]] = []
    for point in storage.points():
        try:
            points.append((point, point.manifest()))
        except FileNotFoundError:
            continue  # deleted by retention since it was listed
        except Exception as exc:  # noqa: BLE001 - one unreadable manifest must not hide the others
            problems.append(f"point {point.ref}: unreadable manifest ({describe(exc)})")
    points.sort(key=lambda pm: (_aware(pm[1].created_at), -TIER_ORDER.get(pm[0].tier, 9)), reverse=True)

    names = list(dict.fromkeys([*enabled_components(settings), *(c for _, m in points for c in m.components)]))
    health = {name: ComponentHealth(name) for name in names}
    for point, manifest in points:
        for name, record in manifest.components.items():
            item = health[name]
            if item.last_success_at is None and manifest.status == "complete" and record.status == "ok":
                item.last_success_at = _aware(record.finished_at)
                item.age_seconds = max((now - item.last_success_at).total_seconds(), 0.0)
                item.point = point.ref
            if item.last_failure_at is None and record.status == "failed":
                item.last_failure_at = _aware(record.finished_at)
                item.last_failure_point = point.ref
                item.last_failure_error = record.error

    newest = None
    if points:
        point, manifest = points[0]
        try:
            status = point.status()  # tells a dead run ('interrupted') from a running one
        except FileNotFoundError:
            status = manifest.status
        newest = PointSummary(point.ref, status, _aware(manifest.created_at))
    offsite = None
    if settings.offsite.enabled:

        offsite = last_runs(settings)
    binlog = None
    if settings.mysql.enabled and settings.binlog.enabled:
        binlog = _probe("binlog archive", binlog_stats or (lambda: archive_summary(settings)), problems)
    intervals = None
    if settings.search.enabled and settings.search.snapshot_interval_minutes:
        intervals = _probe("interval search snapshots", lambda: interval_state.summary(
            settings, max((item.done_at for item in interval_snapshots(settings)), default=None), now), problems)
    return HealthReport(
        binlog=binlog, search_intervals=intervals,
        offsite=offsite, generated_at=now, components=list(health.values()), newest_point=newest, storage_root=storage.root,
        storage_used_bytes=_storage_bytes(storage), storage_used_ratio=used_ratio(storage.root),
        queues=_probe("queue depth", queue_depth, problems), mirror=_probe("mirror stats", mirror_stats, problems),
        problems=problems)
