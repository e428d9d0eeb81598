"""What the status page shows, gathered into plain values: every text read back from the storage root or a
server passes through core/redact.py here (the template escapes it too); a part that cannot be read
becomes a problem shown in red, never an error page."""
from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from actors.actions.drill import OBJECTIVE_SECONDS
from actors.actions.retention import pin_of
from actors.actions.runs import describe
from actors.components import enabled_components
from agent.console import charts
from agent.console.history import HistoryStore, Run, Sample
from agent.health import HealthReport
from agent.upgrade_report import prepared_line
from core.audit import audit_path
from core.config import Settings
from core.points import Storage
from core.redact import redact

AUDIT_TAIL_BYTES = 1 << 20  # the page reads the end of the audit log only
AUDIT_LINES = 20
DRILLS = 5
POINTS = 60
DAY = 86400
FORECAST_FIT_DAYS = 14
FORECAST_MAX_DAYS = 30
CHART_POINTS = 720  # samples per plot: enough for a day at two minutes, small SVG
AMBER_SHARE = 0.75  # of the RPO: older than this is amber, older than the RPO red


def when(moment: datetime | float | None) -> str:
    if moment is None:
        return "never"
    if isinstance(moment, (int, float)):
        moment = datetime.fromtimestamp(moment, timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def stamp(value: Any) -> str:
    """An ISO time read back from a file, shown like the others; anything else as bounded text."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return text(value, 40)
        return when(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))
    return text(value, 40)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for size, unit in ((DAY, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def text(value: Any, limit: int = 300) -> str:
    """Untrusted text for the page: masked, one bounded line."""
    if value is None:
        return ""
    shown = redact(str(value)).replace("\n", " ")
    return shown if len(shown) <= limit else shown[:limit] + "…"


@dataclass
class ComponentRow:
    name: str
    state: str  # ok | amber | red | off
    last_success: str
    age: str
    rpo: str
    point: str
    last_failure: str
    failure_message: str


@dataclass
class Page:
    generated: str
    storage_root: str
    problems: list[str] = field(default_factory=list)  # shown in red at the top
    upgrade: str | None = None  # the newest point `upgrade prepare` took, and the way back to it
    components: list[ComponentRow] = field(default_factory=list)
    points: list[dict[str, str]] = field(default_factory=list)
    timeline: list[dict[str, str]] = field(default_factory=list)
    mirror: dict[str, str] | None = None
    queues: dict[str, int] | None = None
    offsite: list[dict[str, str]] | None = None
    drills: list[dict[str, str]] = field(default_factory=list)
    storage: dict[str, str] = field(default_factory=dict)
    audit: list[dict[str, str]] = field(default_factory=list)
    charts: list[tuple[str, str | None]] = field(default_factory=list)  # (title, data: URI or None: no data)

    @property
    def overall(self) -> str:
        if self.problems or any(row.state == "red" for row in self.components):
            return "red"
        return "amber" if any(row.state == "amber" for row in self.components) else "ok"


def component_state(settings: Settings, item, enabled: list[str]) -> str:
    if item.component not in enabled:
        return "off"
    if item.age_seconds is None:
        return "red"
    if item.last_failure_at is not None and item.last_failure_at > item.last_success_at:
        return "red"  # its latest attempt failed
    rpo = settings.notify.rpo_hours.get(item.component)
    if rpo is None:
        return "ok"
    if item.age_seconds > rpo * 3600:
        return "red"
    return "amber" if item.age_seconds > rpo * 3600 * AMBER_SHARE else "ok"


def _components(page: Page, settings: Settings, report: HealthReport) -> None:
    enabled = enabled_components(settings)
    for item in report.components:
        rpo = settings.notify.rpo_hours.get(item.component)
        page.components.append(ComponentRow(
            name=text(item.component, 60), state=component_state(settings, item, enabled),
            last_success=when(item.last_success_at), age=age(item.age_seconds),
            rpo=f"{rpo:g} h" if rpo is not None else "none", point=text(item.point, 80),
            last_failure=f"{when(item.last_failure_at)} {text(item.last_failure_point, 80)}" if item.last_failure_at else "",
            failure_message=text(item.last_failure_error)))


def ragflow_label(manifest) -> str:
    """The RAGFlow the point was taken from, when the manifest records it (core/manifest.py)."""
    recorded = getattr(manifest, "ragflow", None)
    return text(recorded.label(), 60) if recorded is not None and hasattr(recorded, "label") else "?"


def _points(page: Page, storage: Storage) -> None:
    restorable: dict[str, list[datetime]] = {}
    readable = []
    for point in storage.points():
        try:
            readable.append((point, point.manifest(), point.status()))
        except Exception as exc:  # noqa: BLE001 - one unreadable manifest is shown, the rest still are
            page.points.append({"tier": point.tier, "name": text(point.name, 80), "status": "unreadable",
                                "size": "", "ragflow": "", "created": "", "components": text(describe(exc)),
                                "pin": text(pin_of(point), 120)})
    readable.sort(key=lambda item: item[1].created_at, reverse=True)  # newest first, whatever the tier
    for point, manifest, status in readable:
        for name, record in manifest.components.items():
            if record.status == "ok" and status == "complete":
                restorable.setdefault(name, []).append(record.finished_at)
        if len(page.points) < POINTS:
            page.points.append({
                "tier": point.tier, "name": text(point.name, 80), "status": text(status, 20),
                "size": charts.human(manifest.added_bytes), "ragflow": ragflow_label(manifest),
                "created": when(manifest.created_at), "pin": text(pin_of(point), 120),
                "components": ", ".join(f"{text(n, 40)}: {text(r.status, 20)}" + (f" (base {text(r.base_of, 80)})" if r.base_of else "")
                                       for n, r in manifest.components.items())})
    for name, moments in sorted(restorable.items()):
        page.timeline.append({"component": text(name, 60), "points": str(len(set(moments))),
                              "oldest": when(min(moments)), "newest": when(max(moments))})


def _upgrade(page: Page, storage: Storage) -> None:
    """The newest point `upgrade prepare` took (pinned pre-upgrade-...), with the command that goes back to it."""
    line = prepared_line(storage)
    page.upgrade = text(line, 400) if line else None


def _mirror(page: Page, settings: Settings, report: HealthReport) -> None:
    if not settings.minio.enabled:
        return
    mirror = report.mirror or {}
    reconcile = mirror.get("last_reconcile") if isinstance(mirror.get("last_reconcile"), dict) else {}
    # The window status and the metrics show (agent/mirror_stats.py): bounded by the prune's horizon once the
    # version budget or retention has dropped versions, not by the oldest version left.
    since = stamp(mirror["pitr_since"]) if isinstance(mirror.get("pitr_since"), str) else None
    pruned = " (older versions dropped by the version budget or retention)" if mirror.get("pitr_pruned") else ""
    page.mirror = {
        "objects": str(int(mirror.get("objects") or 0)), "bytes": charts.human(float(mirror.get("bytes") or 0)),
        "lag": age(report.mirror_lag_seconds) if report.mirror else "unknown",
        "versions": f"{int(mirror.get('versions') or 0)} ({charts.human(float(mirror.get('version_bytes') or 0))})",
        "pitr": f"any moment since {since}{pruned}" if since else
        "now only (no kept versions)" if not mirror.get("versions") else "unknown (the mirror index cannot be read)",
        "reconcile": (stamp(reconcile.get("time")) if reconcile.get("time") else "never")
        + ("" if reconcile.get("complete", True) else " (incomplete)")}
    if since:
        page.timeline.append({"component": "minio (mirror)", "points": "continuous", "oldest": since,
                              "newest": "now"})


def _offsite(page: Page, report: HealthReport) -> None:
    if report.offsite is None:
        return
    page.offsite = []
    for key in ("offsite-copy:ok", "offsite-copy:failed", "offsite-check:ok", "offsite-check:failed"):
        run = report.offsite.get(key) if isinstance(report.offsite, dict) else None
        if isinstance(run, dict):
            page.offsite.append({"what": key.replace(":", " "), "time": stamp(run.get("time")),
                                 "detail": text(run.get("error") or run.get("target") or "")})


def audit_tail(storage_root, limit_bytes: int = AUDIT_TAIL_BYTES) -> list[dict[str, Any]]:
    """The last lines of the audit log (JSON objects only), oldest first; bounded whatever its size."""
    path = audit_path(storage_root)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - limit_bytes))
            data = handle.read(limit_bytes)
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")[1:] if size > limit_bytes else data.split(b"\n")
    found = []
    for line in lines:
        try:
            item = json.loads(line.decode("utf-8", "replace"))
        except ValueError:
            continue
        if isinstance(item, dict):
            found.append(item)
    return found


def _audit(page: Page, storage: Storage) -> None:
    try:
        lines = audit_tail(storage.root)
    except OSError as exc:
        page.problems.append(f"audit log: {text(describe(exc))}")
        return
    for line in reversed(lines[-AUDIT_LINES:]):
        page.audit.append({"time": stamp(line.get("time")),
                           **{key: text(line.get(key), 120) for key in ("actor", "action", "target", "result")}})
    for line in reversed([line for line in lines if line.get("action") == "drill"][-DRILLS:]):
        seconds = line.get("seconds")
        seconds = float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else None
        within = seconds is not None and seconds <= OBJECTIVE_SECONDS
        page.drills.append({"time": stamp(line.get("time")), "point": text(line.get("point") or line.get("target"), 80),
                            "result": text(line.get("result"), 20), "seconds": age(seconds),
                            "objective": "within 30 min" if within else "over 30 min" if seconds else "?",
                            "state": "ok" if line.get("result") == "ok" and within else "red",
                            "failures": text(line.get("failures") or "")})


def forecast(samples: list[Sample], now: float) -> tuple[float | None, list[tuple[float, float]]]:
    """(days until the file system is full at the recent growth, the line to draw), from the last
    FORECAST_FIT_DAYS of samples; None when storage is not growing or too little is known."""
    recent = [(s.at, float(s.storage_bytes)) for s in samples
              if s.storage_bytes is not None and s.at >= now - FORECAST_FIT_DAYS * DAY]
    free = next((s.fs_free_bytes for s in reversed(samples) if s.fs_free_bytes is not None), None)
    if len(recent) < 2 or free is None or len({at for at, _ in recent}) < 2:
        return None, []
    slope, intercept = statistics.linear_regression([at for at, _ in recent], [size for _, size in recent])
    if slope <= 0:
        return None, []
    days = free / slope / DAY
    start = recent[-1][0]
    end = start + min(days, FORECAST_MAX_DAYS) * DAY
    return days, [(start, slope * start + intercept), (end, slope * end + intercept)]


def full_in(days: float | None) -> str:
    if days is None:
        return "not growing (or too little history)"
    return f"about {days:.0f} days" if days < 3650 else "more than 10 years"


def _history(page: Page, report: HealthReport | None, store: HistoryStore, now: float) -> None:
    try:
        samples = store.samples(now - 30 * DAY, limit=CHART_POINTS)
        last_day = store.samples(now - DAY, limit=CHART_POINTS)
        runs: list[Run] = store.runs(now - 180 * DAY)
    except Exception as exc:  # noqa: BLE001 - the page stands without its plots
        page.problems.append(f"history ({store.path}): {text(describe(exc))}")
        samples, last_day, runs = [], [], []
    days, line = forecast(samples, now)
    if report is not None:
        page.storage = {"used": charts.human(report.storage_used_bytes), "ratio": f"{report.storage_used_ratio:.0%}",
                        "free": charts.human(samples[-1].fs_free_bytes) if samples and samples[-1].fs_free_bytes else "?",
                        "full_in": full_in(days)}
    page.charts = [("Backup size per component", charts.backup_sizes(runs)),
                   ("Backup duration per component", charts.backup_durations(runs)),
                   ("Mirror lag, last 24 h", charts.mirror_lag(last_day)),
                   ("Queue depth, last 24 h", charts.queue_depth(last_day)),
                   ("Storage used, with forecast", charts.storage_growth(samples, line))]


def build(settings: Settings, storage: Storage, report: Callable[[], HealthReport], store: HistoryStore) -> Page:
    now = time.time()
    page = Page(generated=when(now), storage_root=text(storage.root))
    if not storage.root.is_dir():  # a share not mounted reads as an empty storage: said, not hidden
        page.problems.append(f"the storage root {text(storage.root)} is not there (is its share mounted?)")
    try:
        health: HealthReport | None = report()
    except Exception as exc:  # noqa: BLE001 - e.g. the storage root unreadable: said in red
        health = None
        page.problems.append(f"the storage root {text(storage.root)} cannot be read: {text(describe(exc))}")
        page.components = [ComponentRow(name, "red", "unknown", "unknown", "", "", "", "") for name in
                           enabled_components(settings)]
    if health is not None:
        page.problems += [text(problem) for problem in health.problems]
        _components(page, settings, health)
        for name, part in (("points", lambda: _points(page, storage)), ("upgrade", lambda: _upgrade(page, storage)),
                           ("mirror", lambda: _mirror(page, settings, health)),
                           ("offsite", lambda: _offsite(page, health)), ("audit log", lambda: _audit(page, storage))):
            try:
                part()
            except Exception as exc:  # noqa: BLE001 - one part failing leaves the rest of the page
                page.problems.append(f"{name}: {text(describe(exc))}")
        page.queues = dict(sorted(health.queues.items())) if health.queues is not None else None
    _history(page, health, store, now)
    return page
