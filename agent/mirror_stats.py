"""Mirror figures for status and metrics: size from the index, lag from the mirror queue."""
from __future__ import annotations

import sqlite3
from typing import Any

from agent.config import Settings
from agent.mirror_status import last_reconcile


def mirror_stats(settings: Settings, broker: Any | None = None) -> dict[str, Any]:
    """objects, bytes, versions, lag_seconds (age of the oldest queued mirror task; 0 when none), last_reconcile."""
    from agent.mirror_store import MirrorStore

    root = settings.storage_root / settings.minio.mirror_dir
    stats: dict[str, Any] = {"objects": 0, "bytes": 0}
    if root.exists():
        try:
            store = MirrorStore(root)
            try:
                stats = dict(store.stats())
            finally:
                store.close()  # a reader per call must not leave connections (and stale snapshots) behind
        except sqlite3.DatabaseError as exc:  # a damaged index: say which mirror, not only SQLite's words
            raise sqlite3.DatabaseError(f"the mirror index in {root} cannot be read: {exc}") from exc
    lag = 0.0
    if broker is not None:
        from agent.queues import inspect

        for queue in inspect(broker.client, broker.namespace):
            if queue.queue == "mirror" and queue.oldest_age_seconds:
                lag = queue.oldest_age_seconds
    stats["lag_seconds"] = lag
    stats["last_reconcile"] = last_reconcile(settings)
    return stats
