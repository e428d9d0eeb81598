"""What the agent knows about the mirror beyond its index: when reconcile last ran and how it went."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from core.atomic import write_bytes_atomic
from core.config import Settings


def _state_file(settings: Settings):
    return settings.layout.made_state_file("reconcile.json")


def record_reconcile(settings: Settings, report: Any, buckets: list[str] | None) -> None:
    """Keep the last reconcile of all buckets (a per-bucket one after discovery does not count)."""
    if buckets:
        return
    state = {
        "time": datetime.now(timezone.utc).isoformat(),
        "complete": report.complete,
        "copied": report.copied, "removed": report.removed, "unchanged": report.unchanged,
        "catch_up": getattr(report, "catch_up", False),
        "errors": list(report.errors)[:20],
    }
    write_bytes_atomic(_state_file(settings), json.dumps(state).encode())


def last_reconcile(settings: Settings) -> dict[str, Any] | None:
    path = settings.layout.reconcile_state
    return json.loads(path.read_text()) if path.is_file() else None


def record_mode(settings: Settings, mode: str) -> None:
    """The mirror's pacing mode (core/cpu_budget.py), for status and metrics of other processes."""
    state = {"mode": mode, "since": datetime.now(timezone.utc).isoformat()}
    write_bytes_atomic(settings.layout.made_state_file("mirror_mode.json"), json.dumps(state).encode())


def mirror_mode(settings: Settings) -> dict[str, Any]:
    """mode ("steady" | "catch-up"), since and cpu_percent; steady when nothing was recorded (or unreadable)."""
    path = settings.layout.state_file("mirror_mode.json")
    try:
        state = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        state = {}
    if not isinstance(state, dict) or state.get("mode") not in ("steady", "catch-up"):
        state = {"mode": "steady"}
    catch_up = state["mode"] == "catch-up"
    since = state.get("since") if isinstance(state.get("since"), str) else None  # read back: untrusted
    return {"mode": state["mode"], "since": since,
            "cpu_percent": settings.minio.catch_up_cpu_percent if catch_up else settings.minio.cpu_budget_percent}
