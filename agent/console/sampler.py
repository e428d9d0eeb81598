"""The agent's history sampling: a row of figures every SAMPLE_SECONDS, and the runs of new points."""
from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable

from actors.actions.runs import describe
from agent.console.history import HistoryStore, Sample
from agent.health import HealthReport
from core.points import Storage

log = logging.getLogger("ragflow_backup.console")

SAMPLE_SECONDS = 60


def sample_of(report: HealthReport) -> Sample:
    try:
        free = shutil.disk_usage(report.storage_root).free
    except OSError:
        free = None
    return Sample(at=report.generated_at.timestamp(), mirror_lag=report.mirror_lag_seconds,
                  queue_depth=sum(report.queues.values()) if report.queues is not None else None,
                  storage_bytes=report.storage_used_bytes, fs_used_ratio=report.storage_used_ratio, fs_free_bytes=free)


def record(store: HistoryStore, storage: Storage, report: HealthReport) -> None:
    store.add_sample(sample_of(report))
    store.add_runs(storage)


def history_loop(stop: threading.Event, store: HistoryStore, storage: Storage, collect: Callable[[], HealthReport],
                 interval: float = SAMPLE_SECONDS) -> None:
    """Until `stop` is set; a failing round (storage root gone) is logged once per kind and retried."""
    last_problem = None
    while True:
        try:
            record(store, storage, collect())
            last_problem = None
        except Exception as exc:  # noqa: BLE001 - the loop must survive any one bad round
            problem = describe(exc)
            if problem != last_problem:
                log.warning("console history: could not record a sample: %s", problem)
            last_problem = problem
        if stop.wait(interval):
            return
