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
        "errors": list(report.errors)[:20],
    }
    write_bytes_atomic(_state_file(settings), json.dumps(state).encode())


def last_reconcile(settings: Settings) -> dict[str, Any] | None:
    path = settings.layout.reconcile_state
    return json.loads(path.read_text()) if path.is_file() else None
