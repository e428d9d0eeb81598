"""`--json`: each command's result objects as JSON-able dicts, and the one way they are printed.

The schema of every document is in docs/json.md; `schema_version` goes up when a field changes meaning or
goes away (new fields may appear without it). Every document is one JSON object on stdout, nothing else
there: messages and errors go to stderr, exit codes are those of the tables.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from agent.commands.common import console
from core.redact import redact_data

SCHEMA_VERSION = 1

def quiet_for_json(ctx: typer.Context, as_json: bool) -> bool:
    """The --json flag's callback: the command's tables and notes print nothing (stdout is the document's
    alone) until the command ends."""
    if as_json:
        console.quiet = True
        ctx.call_on_close(lambda: setattr(console, "quiet", False))  # in-process runs (tests) go on loud
    return as_json


JsonOption = Annotated[bool, typer.Option("--json", callback=quiet_for_json,
                                          help="Print one JSON document (docs/json.md) and nothing else on stdout.")]


def emit(command: str, payload: dict[str, Any]) -> None:
    """Print the document: schema_version, command, then the payload; secrets masked like every message."""
    document = redact_data(json.loads(json.dumps({"schema_version": SCHEMA_VERSION, "command": command, **payload},
                                                 default=_plain)))
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# ---------------------------------------------------------------- one function per command


def status_view(report, alerts: list, ticks: dict[str, datetime]) -> dict[str, Any]:
    mirror = report.mirror or {}
    reconcile = mirror.get("last_reconcile") or {}
    return {
        "generated_at": when(report.generated_at),
        "components": [{"component": item.component, "last_success": when(item.last_success_at),
                        "age_seconds": item.age_seconds, "point": item.point,
                        "last_failure": when(item.last_failure_at), "last_failure_point": item.last_failure_point,
                        "last_failure_error": item.last_failure_error} for item in report.components],
        "newest_point": ({"ref": report.newest_point.ref, "status": report.newest_point.status,
                          "created_at": when(report.newest_point.created_at)} if report.newest_point else None),
        "mirror": None if report.mirror is None else {
            "objects": mirror.get("objects"), "bytes": mirror.get("bytes"), "versions": mirror.get("versions"),
            "lag_seconds": mirror.get("lag_seconds"),
            "last_reconcile": reconcile.get("time") if isinstance(reconcile, dict) else reconcile,
            "reconcile_complete": reconcile.get("complete", True) if isinstance(reconcile, dict) else True},
        "storage": {"root": str(report.storage_root), "used_bytes": report.storage_used_bytes,
                    "used_ratio": report.storage_used_ratio},
        "queues": report.queues,
        "offsite": report.offsite,
        "search_intervals": interval_view(report.search_intervals),
        "next_runs": {name: when(moment) for name, moment in sorted(ticks.items())},
        "alerts": [{"key": alert.key, "level": alert.level, "title": alert.title} for alert in alerts],
        "problems": list(report.problems),
    }


def interval_view(intervals: dict[str, Any] | None) -> dict[str, Any] | None:
    """Interval search snapshots (actors/search/interval_state.py's summary), times as ISO text."""
    if intervals is None:
        return None
    events = {key: intervals[key] for key in ("last_taken", "last_failed", "last_skipped")}
    return {**intervals, "newest_at": when(intervals["newest_at"]),
            **{key: {**event, "time": when(event["time"])} if event else None for key, event in events.items()}}


def point_row(point, manifest, size_bytes: int) -> dict[str, Any]:
    return {"tier": point.tier, "name": point.name, "ref": point.ref, "status": point.status(),
            "bytes": size_bytes, "created_at": when(manifest.created_at),
            "finished_at": when(manifest.finished_at),
            "components": {name: record.status for name, record in manifest.components.items()},
            "bases": {name: record.base_of for name, record in manifest.components.items() if record.base_of},
            "problem": None}


def broken_point_row(point, size_bytes: int, problem: str) -> dict[str, Any]:
    return {"tier": point.tier, "name": point.name, "ref": point.ref, "status": "unreadable", "bytes": size_bytes,
            "created_at": None, "finished_at": None, "components": {}, "bases": {}, "problem": problem}


def verify_view(report, encrypted_unchecked: bool) -> dict[str, Any]:
    return {"point": report.point, "status": report.status, "ok": report.ok, "seconds": report.seconds,
            "content_checked": not encrypted_unchecked,
            "components": [{"component": check.component, "ok": check.ok, "seconds": check.seconds,
                            "problems": list(check.problems)} for check in report.components]}


def doctor_view(checks: list) -> dict[str, Any]:
    return {"ok": not any(check.status == "fail" for check in checks),
            "checks": [{"name": check.name, "status": check.status, "detail": check.detail, "fix": check.fix}
                       for check in checks]}


def offsite_status_view(repository: str, rows: list, stats: dict[str, Any], count: int) -> dict[str, Any]:
    return {"repository": repository, "snapshots": count, "total_size_bytes": stats.get("total_size", 0),
            "components": [{"component": row.component, "last_copy": when(row.last_copy), "point": row.point,
                            "lag_seconds": row.lag_seconds} for row in rows]}


def queue_view(namespace: str, stats: list) -> dict[str, Any]:
    return {"namespace": namespace, "queues": [dict(vars(item)) for item in stats]}


def drill_view(report) -> dict[str, Any]:
    return {"point": report.point, "ok": report.ok, "seconds": report.seconds,
            "objective_seconds": report.objective_seconds,
            "components": [{"component": item.component, "ok": item.ok, "seconds": item.seconds,
                            "detail": item.detail, "restored_into": item.target, "expected": item.expected,
                            "found": item.found} for item in report.components]}


def restore_plan_view(plan, config_diff: str | None) -> dict[str, Any]:
    components = []
    manifest = plan.point.manifest() if plan.point else None
    for name in plan.components:
        record = manifest.components.get(name) if manifest else None
        components.append({"component": name,
                           "bytes": sum(a.bytes for a in record.artifacts) if record else None,
                           "items": sum(record.counts.values()) if record else None,
                           "moment": plan.moments.get(name)})
    return {"dry_run": True, "point": plan.point.ref if plan.point else None, "objects_at": when(plan.at),
            "kb": plan.kb, "components": components, "config_diff": config_diff}
