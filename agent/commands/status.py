"""`status`: how old each component's last good backup is, the mirror, storage, queues, next ticks."""
from __future__ import annotations

from datetime import datetime, timezone

from rich.markup import escape
from rich.table import Table

from actors.actions.offsite import last_runs, search_repo_skipped
from actors.broker import configure
from actors.minio.checks import mirror_rpo
from agent.agent import scheduled_jobs
from agent.commands.common import console, human_bytes, state, styled
from agent.commands.json_views import JsonOption, emit, status_view
from agent.commands.pins import old_pin_lines
from agent.commands.timeline import build_timeline, timeline_lines
from agent.health import collect
from agent.mirror_stats import mirror_stats
from agent.scheduler import Scheduler
from agent.upgrade_report import prepared_line
from core import ragflow_version
from core.points import Storage
from core.queues import inspect
from core.redact import redact


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def status(as_json: JsonOption = False) -> None:
    """Last success and age per component, mirror lag, storage, queues and the next scheduled runs."""
    settings = state.settings()
    broker = configure(settings)

    storage = Storage(settings.storage_root)

    def queue_depth() -> dict[str, int]:
        return {q.queue: q.ready + q.delayed for q in inspect(broker.client, broker.namespace)}

    report = collect(settings, storage, queue_depth=queue_depth, mirror_stats=lambda: mirror_stats(settings, broker))
    table = Table(title="components")
    for column in ("component", "last success", "age", "point", "last failure"):
        table.add_column(column, overflow="fold")
    for item in report.components:
        when = item.last_success_at.isoformat(timespec="seconds") if item.last_success_at else "never"
        table.add_row(item.component, when, _age(item.age_seconds), item.point or "", item.last_failure or "")
    console.print(table)

    mirror = report.mirror or {}
    reconcile = mirror.get("last_reconcile") or {}
    console.print(
        f"mirror: {mirror.get('objects', 0)} objects, {human_bytes(mirror.get('bytes', 0))}, "
        f"{mirror.get('versions', 0)} kept versions"
        + (f" ({human_bytes(mirror.get('version_bytes', 0))}, any moment since {mirror['pitr_since'][:16]}: "
           f"{mirror.get('pitr_seconds', 0) / 3600:.1f} h)" if mirror.get("pitr_since") else "")
        + f"; lag {mirror.get('lag_seconds', 0):.1f} s; "
        f"last reconcile {reconcile.get('time', 'never')}"
        + ("" if reconcile.get("complete", True) else " (incomplete)")
        + _pacing(mirror.get("pacing"))
    )
    if settings.offsite.enabled:
        console.print(_offsite_line(settings))
    if report.search_intervals is not None:
        console.print(_interval_line(report.search_intervals), soft_wrap=True, markup=False, highlight=False)
    console.print(f"storage: {human_bytes(report.storage_used_bytes)} in backups; file system "
                  f"{report.storage_used_ratio:.0%} used")
    console.print("queues: " + (", ".join(f"{name} {depth}" for name, depth in sorted((report.queues or {}).items())) or "empty"))

    scheduler = Scheduler(scheduled_jobs(settings), settings.layout.scheduler_state, lambda *_: None)
    ticks = scheduler.next_ticks()
    console.print("next: " + ", ".join(f"{name} {when:%Y-%m-%d %H:%M}" for name, when in sorted(ticks.items(), key=lambda kv: kv[1])))
    console.print(_ragflow_line(settings, storage), soft_wrap=True, markup=False, highlight=False)
    prepared = prepared_line(storage)
    if prepared:  # the way back stays in sight until the pin is let go
        console.print(redact(prepared), soft_wrap=True, markup=False, highlight=False)
    if settings.minio.enabled:
        console.print(f"mirror RPO: {mirror_rpo(settings)}", soft_wrap=True, markup=False, highlight=False)
    found = build_timeline(settings)
    for line in timeline_lines(found):  # what can be restored, per component (`timeline` has the details)
        console.print(f"timeline: {line}", soft_wrap=True, markup=False, highlight=False)
    alerts = report.alerts(settings)
    for alert in alerts:
        console.print(f"{styled('warn')} {alert.title}")
    pins = old_pin_lines(settings)
    for line in pins:
        console.print(f"{styled('warn')} {escape(line)}", soft_wrap=True)
    if as_json:
        emit("status", {**status_view(report, alerts, ticks), "old_pins": pins, "timeline": found})


def _interval_line(intervals) -> str:
    """Interval search snapshots: the newest one's age, failures, and the last skip (a point's backup held the
    search lock: its own snapshot covers that moment)."""
    newest = intervals["newest_at"]
    text = (f"search interval snapshots (every {intervals['interval_minutes']} min): "
            + (f"newest {newest.isoformat(timespec='seconds')} ({_age(intervals['age_seconds'])} ago)" if newest
               else "none yet"))
    if intervals["failures_in_a_row"]:
        failed = intervals["last_failed"] or {}
        text += f"; {intervals['failures_in_a_row']} failed in a row, the last: {failed.get('error', '?')}"
    skipped = intervals["last_skipped"]
    if skipped:
        text += (f"; last skipped {skipped['time'].isoformat(timespec='seconds')}: {skipped['reason']} "
                 "(the point's own search snapshot covers that moment)")
    return text


def _ragflow_line(settings, storage) -> str:
    """The RAGFlow installed now and the one the newest point was taken from, flagged when that one is newer."""
    installed = ragflow_version.detect(settings)
    text = f"RAGFlow: {ragflow_version.describe(installed)}"
    newest = None
    for point in storage.points():
        try:
            manifest = point.manifest()
        except Exception:  # noqa: BLE001 - an unreadable manifest is `list`'s and `verify`'s to report
            continue
        if newest is None or manifest.created_at > newest[1].created_at:
            newest = (point, manifest)
    if newest is not None:
        taken = newest[1].ragflow
        text += f"; newest point {newest[0].ref} taken under {ragflow_version.describe(taken)}"
        if ragflow_version.newer_than(taken, installed):
            text += " (NEWER than the RAGFlow installed: restoring it needs that image, or --force)"
    return text


def _offsite_line(settings) -> str:
    """From the agent's state file, so `status` never waits on a remote repository (`offsite status` asks it)."""


    runs = last_runs(settings)
    last_ok, last_failed = runs.get("offsite-copy:ok"), runs.get("offsite-copy:failed")

    def ago(run) -> str:
        seconds = (datetime.now(timezone.utc) - datetime.fromisoformat(run["time"])).total_seconds()
        return f"{_age(seconds)} ago ({run.get('target')})"

    text = f"offsite: last copy {ago(last_ok) if last_ok else 'never'}"
    if last_failed and (not last_ok or last_failed["time"] > last_ok["time"]):
        text += f"; last attempt FAILED {ago(last_failed)}: {str(last_failed.get('error') or '')[:200]}"
    skipped = search_repo_skipped(settings)
    if skipped:  # the offsite copy alone would bring back no search chunks
        text += f"; the search snapshot repository is NOT copied offsite: {skipped}"
    return text + " (details: `ragflow-backup offsite status`)"


def _pacing(pacing) -> str:
    """The mirror's CPU pacing (core/cpu_budget.py): steady, or catch-up with its larger share."""
    if not isinstance(pacing, dict):
        return ""
    share = f"{pacing.get('cpu_percent', 0):g} % CPU" if pacing.get("cpu_percent") else "unpaced"
    since = f" since {str(pacing['since'])[:16]}" if pacing.get("mode") == "catch-up" and pacing.get("since") else ""
    return f"; {pacing.get('mode', 'steady')} ({share}){since}"
