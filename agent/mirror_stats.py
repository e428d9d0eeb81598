"""Mirror figures for status and metrics: size from the index, lag from the mirror queue."""
from __future__ import annotations

from typing import Any

from core.config import Settings
from core.mirror_status import last_reconcile
from core.mirror_store import MirrorStore
from core.queues import inspect


def mirror_stats(settings: Settings, broker: Any | None = None) -> dict[str, Any]:
    """objects, bytes, versions, lag_seconds (age of the oldest queued mirror task; 0 when none), last_reconcile."""

    root = settings.layout.mirror
    stats: dict[str, Any] = {"objects": 0, "bytes": 0}
    if root.exists():
        store = MirrorStore(root)
        try:
            stats = dict(store.stats())
        finally:
            store.close()  # a reader per call must not leave connections (and stale snapshots) behind
    lag = 0.0
    if broker is not None:

        for queue in inspect(broker.client, broker.namespace):
            if queue.queue == "mirror" and queue.oldest_age_seconds:
                lag = queue.oldest_age_seconds
    stats["lag_seconds"] = lag
    stats["last_reconcile"] = last_reconcile(settings)
    return stats
