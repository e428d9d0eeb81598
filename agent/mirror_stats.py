"""Mirror figures for status and metrics: size from the index, lag from the mirror queue."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Any

from core.config import Settings
from core.mirror_status import last_reconcile, mirror_mode
from core.mirror_store import MirrorStore
from core.queues import inspect


def pitr_window(store: Any) -> dict[str, Any]:
    """pitr_since (ISO time), pitr_seconds (how far back any moment can be restored) and pitr_pruned (the
    budget or retention set that bound, so a short window is worth an alert; a young mirror's is not)."""
    try:
        since, pruned = store.pitr_since()
    except ValueError:  # the index is read back from the storage root: untrusted
        return {}
    if since is None:
        return {}
    seconds = max(0.0, (datetime.now(timezone.utc) - since).total_seconds())
    return {"pitr_since": since.isoformat(), "pitr_seconds": seconds, "pitr_pruned": pruned}


def mirror_stats(settings: Settings, broker: Any | None = None) -> dict[str, Any]:
    """objects, bytes, versions, pitr_* (see pitr_window), lag_seconds (age of the oldest queued mirror task; 0 when none), last_reconcile."""

    root = settings.layout.mirror
    stats: dict[str, Any] = {"objects": 0, "bytes": 0}
    if root.exists():
        try:
            store = MirrorStore(root)
            try:
                stats = dict(store.stats())
                stats.update(pitr_window(store))
            finally:
                store.close()  # a reader per call must not leave connections (and stale snapshots) behind
        except sqlite3.DatabaseError as exc:  # a damaged index: say which mirror, not only SQLite's words
            raise sqlite3.DatabaseError(f"the mirror index in {root} cannot be read: {exc}") from exc
    lag = 0.0
    if broker is not None:

        for queue in inspect(broker.client, broker.namespace):
            if queue.queue == "mirror" and queue.oldest_age_seconds:
                lag = queue.oldest_age_seconds
    stats["lag_seconds"] = lag
    stats["last_reconcile"] = last_reconcile(settings)
    stats["pacing"] = mirror_mode(settings)
    return stats
