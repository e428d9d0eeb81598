"""What the interval search snapshots (actors/search/interval.py) did lately, for `status`, the metrics and the
agent's alerts: the last one taken, skipped (a point's backup held the search lock: the point's own snapshot
covers that moment) or failed, the failures in a row and in all. A small JSON file in the state folder
(core/layout.py), written atomically; read back as untrusted (a field of the wrong type counts as missing).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from core import locks
from core.atomic import write_bytes_atomic
from core.config import Settings

STATE_FILE = "search_intervals.json"
STATE_LOCK = "search-intervals-state.lock"
ERROR_MAX = 500  # characters of an error kept

log = logging.getLogger("ragflow_backup.search")


def load(settings: Settings) -> dict[str, Any]:
    path = settings.layout.state_file(STATE_FILE)
    try:
        state = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


@contextmanager
def _updating(settings: Settings) -> Iterator[dict[str, Any]]:
    """The state to change in place, saved after; one writer at a time (a skipped tick writes while the
    interval snapshot that holds the search lock may be writing its own outcome). A storage root that cannot
    take it (full, read-only) is logged: the snapshot's own outcome must not turn on its bookkeeping."""
    try:
        with locks.exclusive(settings.layout.made_lock(STATE_LOCK), "an update of the interval snapshots' state",
                             wait=True):
            state = load(settings)
            yield state
            write_bytes_atomic(settings.layout.made_state_file(STATE_FILE), json.dumps(state, indent=2).encode())
    except OSError as exc:
        log.warning("the interval snapshots' state (for status, metrics and alerts) cannot be written: %s", exc)


def _count(state: dict[str, Any], key: str) -> int:
    value = state.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_taken(settings: Settings, name: str) -> None:
    with _updating(settings) as state:
        state.update(last_taken={"time": _now(), "snapshot": name}, failures_in_a_row=0)


def record_skipped(settings: Settings, reason: str) -> None:
    """A skip is neither a failure nor a success: the failures in a row stay as they were."""
    with _updating(settings) as state:
        state["last_skipped"] = {"time": _now(), "reason": reason[:ERROR_MAX]}


def record_failed(settings: Settings, error: str) -> None:
    with _updating(settings) as state:
        state.update(last_failed={"time": _now(), "error": error[:ERROR_MAX]},
                     failures_in_a_row=_count(state, "failures_in_a_row") + 1,
                     failures_total=_count(state, "failures_total") + 1)


def _event(state: dict[str, Any], key: str, text_key: str) -> dict[str, Any] | None:
    """{"time": aware datetime, text_key: str} from the state, or None when missing or malformed."""
    entry = state.get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get(text_key), str):
        return None
    try:
        moment = datetime.fromisoformat(str(entry.get("time")))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return {"time": moment, text_key: entry[text_key]}


def summary(settings: Settings, newest_done_at: datetime | None, now: datetime | None = None) -> dict[str, Any]:
    """For status, metrics and alerts: the newest snapshot's age (from its record, `newest_done_at`), the
    failures in a row and in all, and the last skip and failure."""
    now = now or datetime.now(timezone.utc)
    state = load(settings)
    return {"interval_minutes": settings.search.snapshot_interval_minutes,
            "newest_at": newest_done_at,
            "age_seconds": max((now - newest_done_at).total_seconds(), 0.0) if newest_done_at else None,
            "failures_in_a_row": _count(state, "failures_in_a_row"),
            "failures_total": _count(state, "failures_total"),
            "last_taken": _event(state, "last_taken", "snapshot"),
            "last_failed": _event(state, "last_failed", "error"),
            "last_skipped": _event(state, "last_skipped", "reason")}
