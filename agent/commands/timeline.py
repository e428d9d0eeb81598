"""`timeline`: per component, the stretches that can be restored (earliest and latest second), the gaps, and the
points. MySQL's stretch runs from the oldest point whose binlog coordinates the archive continues to the newest
archived event (actors/binlog/summary.py); MinIO's is the mirror's history; search has its points and the
interval snapshots between them (actors/search/interval.py); Redis and config have their points only."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rich.table import Table

from actors.binlog.index import load_index
from actors.binlog.summary import archive_summary, mysql_spans
from actors.components import COMPONENTS
from actors.search.interval import interval_snapshots
from agent.commands.common import console, state
from agent.commands.json_views import JsonOption, emit
from agent.mirror_stats import mirror_stats
from core.config import Settings
from core.points import Storage

SECONDS = "seconds"


def _moment(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec=SECONDS)


def point_moments(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Each component's good points (ref, finished at, and MySQL's binlog coordinates), oldest first."""
    found: dict[str, list[dict[str, Any]]] = {}
    seen = set()
    for point in Storage(settings.storage_root).points():  # daily first: a promoted copy names its daily point
        try:
            manifest = point.manifest()
        except Exception:  # noqa: BLE001 - an unreadable manifest is `list`'s and `verify`'s to report
            continue
        if manifest.status != "complete" or manifest.created_at in seen:
            continue
        seen.add(manifest.created_at)
        for name, record in manifest.components.items():
            if record.status == "ok":
                entry = {"ref": point.ref, "at": record.finished_at}
                if name == "mysql" and isinstance(record.details.get("binlog"), dict):
                    entry["binlog"] = record.details["binlog"]
                found.setdefault(name, []).append(entry)
    for entries in found.values():
        entries.sort(key=lambda entry: entry["at"])
    return found


def build_timeline(settings: Settings) -> dict[str, Any]:
    points = point_moments(settings)
    components: dict[str, Any] = {}
    for name, component in COMPONENTS.items():
        if not component.restorable or not component.enabled(settings):  # the binlog archive: mysql's spans
            continue
        own = points.get(name, [])
        entry: dict[str, Any] = {"spans": [], "gaps": [],
                                 "points": [{"ref": p["ref"], "at": _moment(p["at"])} for p in own]}
        if name == "mysql" and settings.binlog.enabled:
            index = load_index(settings.layout)
            spans = mysql_spans(index, [(p["at"], p["binlog"]) for p in own if "binlog" in p])
            entry["spans"] = [{"start": _moment(s.start), "end": _moment(s.end)} for s in spans]
            entry["gaps"] = archive_summary(settings, index)["gaps"]
        elif name == "minio":
            since = mirror_stats(settings).get("pitr_since")
            if since:
                entry["spans"] = [{"start": _moment(datetime.fromisoformat(since)),
                                   "end": _moment(datetime.now(timezone.utc))}]
        elif name == "search":
            entry["intervals"] = [{"snapshot": item.name, "at": _moment(item.taken_at)}
                                  for item in interval_snapshots(settings)]
        components[name] = entry
    return {"components": components}


def timeline_lines(timeline: dict[str, Any]) -> list[str]:
    """One line per component, for `status`."""
    lines = []
    for name, entry in timeline["components"].items():
        spans = ", ".join(f"{span['start']} .. {span['end']}" for span in entry["spans"])
        text = f"{name}: " + (f"any second in {spans}" if spans else "its points only")
        text += f"; {len(entry['points'])} points"
        if entry.get("intervals"):
            text += f", {len(entry['intervals'])} interval snapshots (newest {entry['intervals'][-1]['at']})"
        if entry["gaps"]:
            text += f"; {len(entry['gaps'])} GAP(S) in the binlog archive (see `ragflow-backup timeline`)"
        lines.append(text)
    return lines


def timeline(as_json: JsonOption = False) -> None:
    """Per component: the stretches that can be restored to any second, the gaps between them, the points."""
    settings = state.settings()
    found = build_timeline(settings)
    if as_json:
        emit("timeline", found)
        return
    table = Table(title="what can be restored")
    for column in ("component", "any second from", "to", "points"):
        table.add_column(column, overflow="fold")
    for name, entry in found["components"].items():
        points = entry["points"]
        listed = f"{len(points)}: {points[0]['at']} .. {points[-1]['at']}" if points else "none"
        intervals = entry.get("intervals") or []
        if intervals:
            listed += f"; {len(intervals)} interval snapshots: {intervals[0]['at']} .. {intervals[-1]['at']}"
        if not entry["spans"]:
            table.add_row(name, "-", "-", listed)
        for span in entry["spans"]:
            table.add_row(name, span["start"], span["end"], listed)
    console.print(table)
    for name, entry in found["components"].items():
        for gap in entry["gaps"]:
            console.print(f"{name}: GAP before {gap['before']} (found {gap['detected_at']}): {gap['reason']}. "
                          "Restores cannot cross it; a backup taken now starts a new restorable stretch.",
                          soft_wrap=True, markup=False, highlight=False)
