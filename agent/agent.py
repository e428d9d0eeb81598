"""The always-on agent: event sources and timers turned into Dramatiq messages.

    MinIO bucket notifications -> mirror_objects(bucket, keys)  (seconds of lag; a burst in batches)
    a new bucket, a reconnect  -> reconcile([bucket])          (heals what events missed)
    config edits (debounced)   -> commit_config(paths)         (one Git commit per burst)
    cron ticks                 -> backup, verify, reconcile, versions prune, search interval snapshots

It does no heavy work itself: workers (`ragflow-backup worker`, or `run` for both in one process) do.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Callable

from dramatiq import Actor

from actors import tasks
from actors.binlog.archiver import Archiver
from actors.binlog.summary import archive_summary
from actors.broker import configure
from actors.minio.mirror import cpu_budget
from actors.minio.mirror import mirror_objects as mirror_many
from agent.console.auth import metrics_auth
from agent.console.history import HistoryStore
from agent.console.page import StatusPage
from agent.console.sampler import history_loop
from agent.doctor import check_broker
from agent.health import ALERT_PREFIX, Alert, collect
from agent.local_mirror import LocalMirror
from agent.metrics import MetricsServer
from agent.mirror_stats import mirror_stats
from agent.scheduler import Scheduler
from agent.sources.config_watch import ConfigWatcher
from agent.sources.minio_events import MinioEventSource
from core import locks
from core.config import Settings
from core.notify import Notifier
from core.points import Storage
from core.queues import inspect

log = logging.getLogger("ragflow_backup.agent")


def scheduled_jobs(settings: Settings) -> dict[str, str]:
    """The schedule section, with the jobs of disabled parts turned off."""
    jobs = settings.schedule.model_dump()
    if not settings.minio.enabled:
        jobs.update(reconcile="", versions_prune="")
    if not settings.offsite.enabled:
        jobs.update(offsite_mirror="", offsite_check="", offsite_check_data="")
    minutes = settings.search.snapshot_interval_minutes if settings.search.enabled else 0
    # Between points (actors/search/interval.py); the config's validator allows only minutes cron can tick.
    jobs["search_interval"] = ("" if not minutes else f"*/{minutes} * * * *" if minutes < 60
                               else f"0 */{minutes // 60} * * *")
    return jobs


class Agent:
    def __init__(self, settings: Settings, send: Callable[[Actor, tuple], Any] | None = None):
        self.settings = settings
        self.broker = configure(settings)  # at start-up: the actors move to the broker of this config
        self.storage = Storage(settings.storage_root).prepare()
        self.tasks = tasks
        self._send = send or self._send_message
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.minio_source = None
        self.watcher = None
        self.scheduler = None
        self.metrics = None
        self.binlog: Archiver | None = None
        self.local_mirror: LocalMirror | None = None

    # ------------------------------------------------------------ wiring

    def _send_message(self, actor: Actor, args: tuple) -> Any:
        return actor.send(*args)

    def _on_object(self, bucket: str, key: str, event: str) -> None:
        self._send(self.tasks.mirror_object, (bucket, key))

    def _on_objects(self, bucket: str, keys: list[str]) -> None:
        if self.local_mirror is not None:
            self.local_mirror.submit(bucket, keys)
        else:
            self._send_objects(bucket, keys)

    def _send_objects(self, bucket: str, keys: list[str]) -> None:
        self._send(self.tasks.mirror_objects, (bucket, keys))

    def mirror_events_here(self, threads: int) -> None:
        """Before start(), when this process runs the workers too (`run`): event batches are mirrored on
        `threads` threads of its own instead of going through Redis (agent/local_mirror.py)."""
        budget = cpu_budget(self.settings)
        self.local_mirror = LocalMirror(lambda bucket, keys: mirror_many(self.settings, bucket, keys),
                                        self._send_objects, threads, settle=budget.settle, forget=budget.forget)

    def _on_bucket(self, bucket: str) -> None:
        self._send(self.tasks.reconcile, ([bucket],))

    def _on_config_change(self, paths: list[str]) -> None:
        self._send(self.tasks.commit_config, (paths,))

    def _on_tick(self, job: str, when: datetime) -> None:
        tasks = self.tasks
        actor, args = {"backup": (tasks.scheduled_backup, ()), "verify": (tasks.verify_point, ()),
                       "reconcile": (tasks.reconcile, ()), "versions_prune": (tasks.prune_mirror_versions, ()),
                       "drill": (tasks.drill, ()), "offsite_mirror": (tasks.offsite_mirror, ()),
                       "offsite_check": (tasks.offsite_check, (False,)),
                       "offsite_check_data": (tasks.offsite_check, (True,)),
                       "search_interval": (tasks.search_interval_snapshot, ())}[job]
        log.info("tick %s at %s -> %s", job, when.isoformat(timespec="minutes"), actor.actor_name)
        self._send(actor, args)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:

        settings = self.settings
        # First: serving the port beyond loopback without a token is refused before anything starts.
        auth = metrics_auth(settings.metrics) if settings.metrics.enabled else None
        self._hold_storage_root()
        self._warn_about_eviction()
        if settings.minio.enabled:
            # Whatever happened while we were away is found by a full reconcile first.
            self._send(self.tasks.reconcile, ())
        if settings.minio.enabled and settings.minio.events:  # else the scheduled reconcile alone mirrors
            if self.local_mirror is not None:
                self.local_mirror.start()
            # Taking events in is charged to the mirror's CPU budget, without ever waiting (core/cpu_budget.py).
            budget = cpu_budget(settings)
            self.minio_source = MinioEventSource(settings.minio, self._on_object, self._on_bucket,
                                                 discovery_seconds=settings.minio.bucket_discovery_seconds,
                                                 charge=lambda: budget.settle(wait=False), on_objects=self._on_objects)
            self.minio_source.start()
        if settings.watch.enabled and settings.config_files.enabled and settings.ragflow_dir:
            self.watcher = ConfigWatcher(settings.ragflow_dir, settings.config_files.patterns, settings.watch.ignore,
                                         settings.watch.debounce_seconds, self._on_config_change)
            self.watcher.start()
        if settings.mysql.enabled and settings.binlog.enabled:  # MySQL's binary log, streamed as a replica would
            notifier = Notifier(settings.notify, settings.layout.notify_state)
            self.binlog = Archiver(settings, notify=lambda key, title, body: notifier.failure(key, title, body))
            self._spawn(lambda: self.binlog.run(self._stop), "binlog")  # restarts its streamer with backoff
        self.scheduler = Scheduler(scheduled_jobs(settings), self.settings.layout.scheduler_state, self._on_tick)
        self.scheduler.start()
        if settings.metrics.enabled:
            self.metrics = MetricsServer(settings.metrics.host, settings.metrics.port, self.health,
                                         extra_health=self.source_health, cache_seconds=settings.metrics.cache_seconds,
                                         max_connections=settings.metrics.max_connections,
                                         read_timeout=settings.metrics.read_timeout_seconds,
                                         page=StatusPage(settings, self.storage, cache_seconds=settings.metrics.cache_seconds),
                                         auth=auth)
            self.metrics.start()
        collect = self.metrics.report if self.metrics is not None else self.health  # one report for both
        self._spawn(lambda: history_loop(self._stop, HistoryStore(self.storage.root), self.storage, collect), "history")
        self._spawn(self._alert_loop, "alerts")
        log.info("agent started")

    def _hold_storage_root(self) -> None:
        """One agent per storage root: two would fire every scheduled job twice (the second backup of a
        component then fails on its lock) and share one scheduler state. The second one refuses to start."""

        held = locks.exclusive(self.settings.layout.lock("agent.lock"), f"an agent on {self.storage.root}")
        held.__enter__()  # raises locks.Busy naming the other agent's pid
        self._held = held

    def _warn_about_eviction(self) -> None:

        check = check_broker(self.settings)
        if check.status != "ok":
            log.warning("broker: %s; %s", check.detail, check.fix)

    def stop(self) -> None:
        self._stop.set()
        for part in (self.minio_source, self.watcher, self.scheduler, self.metrics):
            if part is not None:
                part.stop()
        if self.local_mirror is not None:  # after the events' source: what it handed over is finished or queued
            self.local_mirror.stop(timeout=60)
        for thread in self._threads:
            thread.join(10)
        if getattr(self, "_held", None) is not None:
            self._held.__exit__(None, None, None)
            self._held = None
        log.info("agent stopped")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=f"agent-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------ health and alerts

    def health(self):

        return collect(self.settings, self.storage, queue_depth=self.queue_depth, mirror_stats=self.mirror_stats,
                       binlog_stats=self.binlog_stats)

    def binlog_stats(self) -> dict[str, Any]:
        """The archive's summary, and the running archive's lag and state."""
        return {**archive_summary(self.settings), **(self.binlog.state.live() if self.binlog else {})}

    def queue_depth(self) -> dict[str, int]:

        broker = self.broker
        return {q.queue: q.ready + q.delayed for q in inspect(broker.client, broker.namespace)}

    def mirror_stats(self) -> dict[str, Any]:

        return mirror_stats(self.settings, self.broker)

    def source_health(self) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        if self.minio_source is not None:
            parts["minio_events"] = {"ok": bool(self.minio_source.connected), "reconnects": self.minio_source.reconnects,
                                     "last_error": str(self.minio_source.last_error or "")}
        return parts

    def source_alerts(self) -> list:
        """An event source that has lost its server (MinIO down or hung) is an alert until it is back."""

        alerts = []
        for name, part in self.source_health().items():
            if not part["ok"]:
                alerts.append(Alert(f"{ALERT_PREFIX}{name}", "failure", f"ragflow-backup: {name} is not listening",
                                    f"{part['last_error'] or 'not connected yet'}; objects changed meanwhile are "
                                    "mirrored by the reconcile that follows the reconnection. A store without bucket "
                                    "notifications (S3, some MinIO forks) never connects: set minio.events: false "
                                    "there, and the scheduled reconcile alone mirrors it."))
        return alerts

    def _alert_loop(self) -> None:

        notifier = Notifier(self.settings.notify, self.settings.layout.notify_state)
        while not self._stop.wait(self.settings.notify.check_interval_seconds):
            try:
                report = self.health()
                alerts = report.alerts(self.settings) + self.source_alerts()
                raised = {alert.key for alert in alerts}
                for alert in alerts:
                    notifier.notify(alert.key, alert.level, alert.title, alert.body)
                for key in notifier.open_failures():
                    if key.startswith("health:") and key not in raised:
                        notifier.recovered(key, "ragflow-backup: back to normal", f"{key[7:]} is fine again.")
            except Exception:  # noqa: BLE001 - the loop must survive any one bad round
                log.exception("health check failed")
