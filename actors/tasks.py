"""The Dramatiq actors: thin wrappers that load settings and call plain functions.

Queues: "backup" (one message per component of a point), "maintenance" (verify, prune).
"""
from __future__ import annotations

from actors.broker import broker  # noqa: F401 - sets the broker before any actor is declared

import dramatiq
from dramatiq.middleware import CurrentMessage

from agent import runtime
from agent.points import Storage
from agent.runs import run_component

BACKUP_RETRIES = 5
SIX_HOURS_MS = 6 * 3600 * 1000


def _attempt() -> int:
    message = CurrentMessage.get_current_message()
    return message.options.get("retries", 0) if message else 0


@dramatiq.actor(queue_name="backup", max_retries=BACKUP_RETRIES, min_backoff=5_000, max_backoff=300_000,
                time_limit=SIX_HOURS_MS)
def backup_component(point_ref: str, component: str) -> None:
    """Back up one component into an existing point; transient failures are retried with backoff."""
    settings = runtime.settings()
    point = Storage(settings.storage_root).point(point_ref)
    run_component(settings, point, component, final_attempt=_attempt() >= BACKUP_RETRIES)


@dramatiq.actor(queue_name="maintenance", max_retries=3, time_limit=SIX_HOURS_MS)
def verify_point(point_ref: str) -> None:
    from agent.verify import verify_point as verify

    settings = runtime.settings()
    report = verify(settings, Storage(settings.storage_root).point(point_ref))
    if not report.ok:
        raise RuntimeError(f"verify of {point_ref} found problems: {'; '.join(report.problems())}")


@dramatiq.actor(queue_name="maintenance", max_retries=3, time_limit=SIX_HOURS_MS)
def prune() -> None:
    from agent.retention import prune as apply_retention

    settings = runtime.settings()
    apply_retention(Storage(settings.storage_root), settings, dry_run=False)
