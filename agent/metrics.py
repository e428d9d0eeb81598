"""Prometheus metrics and a health endpoint, served from a background thread.

    GET /metrics   text exposition, from a health report at most metrics.cache_seconds old
    GET /healthz   200 {"status": "ok", ...} or 503 {"status": "unhealthy", "reasons": [...]}
    GET /          the status page (agent/console/), when one is given

With an authenticator (agent/console/auth.py) every path needs the token, except /healthz which answers
an unauthenticated client with its status alone (a container's health check).

Every server has its own CollectorRegistry (no process-wide state: tests and restarts stay clean). A
failing collect() still yields a scrape, with ragflow_backup_up 0, so a dashboard shows the outage.
A component never backed up has timestamp 0 and age +Inf, so `age > objective` alerts fire for it.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from actors.actions.runs import describe
from agent.console.auth import REALM, TokenAuth
from agent.console.page import SECURITY_HEADERS, StatusPage
from agent.health import HealthReport
from agent.run_metrics import build_info, run_metrics
from core.bounded_http import BoundedHttpServer
from core.points import Storage
from core.queues import KNOWN_QUEUES

log = logging.getLogger("ragflow_backup.metrics")

PREFIX = "ragflow_backup_"
POINT_STATUSES = ("running", "complete", "partial", "failed", "interrupted")


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=labels)


def report_metrics(report: HealthReport) -> Iterator[Metric]:
    """The metric families of one health report."""
    stamp = _gauge("last_success_timestamp_seconds", "End of the last good backup per component (0: never).", ["component"])
    age = _gauge("last_success_age_seconds", "Age of the last good backup per component (+Inf: never).", ["component"])
    for item in report.components:
        stamp.add_metric([item.component], item.last_success_at.timestamp() if item.last_success_at else 0.0)
        age.add_metric([item.component], item.age_seconds if item.age_seconds is not None else math.inf)
    yield stamp
    yield age
    # The tier, never the point's name, as a label: a name is a date, and a series per day never ends.
    status = _gauge("point_status", "Status of the newest backup point (1 for its status).", ["tier", "status"])
    created = _gauge("newest_point_timestamp_seconds", "When the newest backup point was started.", ["tier"])
    if report.newest_point is not None:
        tier = report.newest_point.ref.partition("/")[0]
        for name in sorted({*POINT_STATUSES, report.newest_point.status}):
            status.add_metric([tier, name], 1.0 if name == report.newest_point.status else 0.0)
        created.add_metric([tier], report.newest_point.created_at.timestamp())
    yield status
    yield created
    if report.mirror is not None:
        lag = report.mirror_lag_seconds
        if lag is not None:
            yield GaugeMetricFamily(PREFIX + "mirror_lag_seconds", "Age of the oldest waiting mirror task.", value=lag)
        for key, doc in (("objects", "Objects in the MinIO mirror."), ("bytes", "Bytes in the MinIO mirror.")):
            if report.mirror.get(key) is not None:
                yield GaugeMetricFamily(PREFIX + f"mirror_{key}", doc, value=float(report.mirror[key]))
        if isinstance(report.mirror.get("pitr_seconds"), float):
            yield GaugeMetricFamily(PREFIX + "mirror_pitr_window_seconds", "How far back the MinIO mirror can be "
                                    "restored as of any moment.", value=report.mirror["pitr_seconds"])
        pacing = report.mirror.get("pacing")
        if isinstance(pacing, dict):
            mode = _gauge("mirror_mode", "The mirror's pacing mode (1 for the current one): steady within "
                          "minio.cpu_budget_percent, catch-up within minio.catch_up_cpu_percent.", ["mode"])
            for name in ("steady", "catch-up"):
                mode.add_metric([name], 1.0 if pacing.get("mode") == name else 0.0)
            yield mode
        reconciled = report.last_reconcile_at
        if reconciled is not None:
            yield GaugeMetricFamily(PREFIX + "mirror_last_reconcile_timestamp_seconds",
                                    "When the last full reconcile ran.", value=reconciled.timestamp())
    if report.binlog is not None:
        yield from binlog_metrics(report.binlog)
    if report.search_intervals is not None:
        yield from search_interval_metrics(report.search_intervals)
    if report.queues is not None:
        depth = _gauge("queue_depth", "Messages waiting per queue (ready and delayed).", ["queue"])
        for queue in sorted({*KNOWN_QUEUES, *report.queues}):  # an empty queue is 0, not a missing series
            depth.add_metric([queue], float(report.queues.get(queue, 0)))
        yield depth
    if report.offsite is not None:
        last = _gauge("offsite_last_run_timestamp_seconds",
                      "Last offsite copy and check per result (0: never).", ["action", "result"])
        for action in ("offsite-copy", "offsite-check"):
            for result in ("ok", "failed"):
                run = report.offsite.get(f"{action}:{result}")
                last.add_metric([action, result], datetime.fromisoformat(run["time"]).timestamp() if run else 0.0)
        yield last
    yield GaugeMetricFamily(PREFIX + "report_timestamp_seconds", "When this health report was collected.",
                            value=report.generated_at.timestamp())
    yield GaugeMetricFamily(PREFIX + "storage_used_bytes", "Bytes of backup points (hard links once).",
                            value=float(report.storage_used_bytes))
    yield GaugeMetricFamily(PREFIX + "storage_used_ratio", "Used share of the storage file system.",
                            value=report.storage_used_ratio)
    yield from run_metrics(Storage(report.storage_root))


def binlog_metrics(binlog: dict[str, Any]) -> Iterator[Metric]:
    """The binlog archive: its lag behind the server (the agent's), bytes, gaps, whether it streams."""
    if isinstance(binlog.get("lag_seconds"), (int, float)):
        yield GaugeMetricFamily(PREFIX + "binlog_lag_seconds", "How far the binlog archive's newest event is behind "
                                "the server's (0: every byte archived).", value=float(binlog["lag_seconds"]))
    yield GaugeMetricFamily(PREFIX + "binlog_archived_bytes", "Bytes of MySQL binary log in the archive.",
                            value=float(binlog.get("bytes") or 0))
    yield GaugeMetricFamily(PREFIX + "binlog_gaps", "Gaps in the binlog archive (restores cannot cross them).",
                            value=float(len(binlog.get("gaps") or [])))
    if "streaming" in binlog:
        yield GaugeMetricFamily(PREFIX + "binlog_streaming", "1 while the agent streams the binary log.",
                                value=1.0 if binlog["streaming"] else 0.0)


def search_interval_metrics(state: dict[str, Any]) -> Iterator[Metric]:
    """Interval search snapshots (actors/search/interval_state.py): the newest one's age, the failures."""
    age = state.get("age_seconds")
    yield GaugeMetricFamily(PREFIX + "search_interval_age_seconds", "Age of the newest interval search snapshot "
                            "(+Inf: none yet).", value=float(age) if age is not None else math.inf)
    yield GaugeMetricFamily(PREFIX + "search_interval_failures_in_a_row", "Interval search snapshots failed since "
                            "the last good one.", value=float(state.get("failures_in_a_row") or 0))
    yield CounterMetricFamily(PREFIX + "search_interval_failures", "Interval search snapshots that failed.",
                              value=float(state.get("failures_total") or 0))


class _Collector:
    """A custom collector: each scrape asks for a new report."""

    def __init__(self, collect: Callable[[], HealthReport]):
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(report_metrics(self._collect()))
        except Exception as exc:  # noqa: BLE001 - the scrape must still answer, with up 0
            log.warning("metrics: collecting the health report failed: %s", describe(exc))
            families = []
        yield from families
        yield GaugeMetricFamily(PREFIX + "up", "1 when the health report could be collected.", value=1.0 if families else 0.0)
        yield build_info()


def _part_failure(name: str, value: Any) -> str | None:
    """A reason when an extra_health part is failing: False, 'not ok' text, or a dict with ok/healthy false."""
    if value is True or value is None or (isinstance(value, str) and value.lower() == "ok"):
        return None
    if isinstance(value, dict):
        flags = [value[key] for key in ("ok", "healthy") if key in value]
        status = value.get("status")
        if all(bool(flag) for flag in flags) and (status is None or str(status).lower() in ("ok", "healthy")):
            return None
        detail = value.get("error") or value.get("last_error") or value.get("reason") or status or "not ok"
        return f"{name}: {detail}"
    if value is False:
        return f"{name}: not ok"
    return f"{name}: {value}" if isinstance(value, str) else None


def health_status(collect: Callable[[], HealthReport], extra_health: Callable[[], dict] | None) -> tuple[int, dict[str, Any]]:
    """The /healthz answer: (HTTP status, JSON body)."""
    reasons: list[str] = []
    body: dict[str, Any] = {}
    try:
        report = collect()
        reasons += report.problems
        body["generated_at"] = report.generated_at.isoformat()
        body["newest_point"] = ({"ref": report.newest_point.ref, "status": report.newest_point.status}
                                if report.newest_point else None)
        body["components"] = {item.component: {
            "last_success": item.last_success_at.isoformat() if item.last_success_at else None,
            "age_seconds": item.age_seconds, "point": item.point} for item in report.components}
    except Exception as exc:  # noqa: BLE001
        reasons.append(f"health report: {describe(exc)}")
    if extra_health is not None:
        try:
            parts = extra_health() or {}
            body["parts"] = parts
            reasons += [reason for name, value in parts.items() if (reason := _part_failure(name, value))]
        except Exception as exc:  # noqa: BLE001
            reasons.append(f"extra health: {describe(exc)}")
    if reasons:
        return 503, {"status": "unhealthy", "reasons": reasons, **body}
    return 200, {"status": "ok", **body}


class MetricsServer:
    """/metrics and /healthz on a BoundedHttpServer. The health report is collected at most once per
    `cache_seconds` (0: on every request), however many scrapes and probes arrive meanwhile."""

    def __init__(self, host: str, port: int, collect: Callable[[], HealthReport],
                 extra_health: Callable[[], dict] | None = None, cache_seconds: float = 0.0,
                 max_connections: int = 64, read_timeout: float = 10.0, page: StatusPage | None = None,
                 auth: TokenAuth | None = None):
        self.collect = collect
        self.extra_health = extra_health
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, HealthReport | None, Exception | None] | None = None
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self.report))  # type: ignore[arg-type]
        routes = {"/metrics": self._metrics, "/healthz": self._healthz}
        if page is not None:
            routes["/"] = page.route(self.report)
        self._http = BoundedHttpServer(host, port, routes, name="ragflow-backup-metrics", max_connections=max_connections,
                                       read_timeout=read_timeout, not_found=b"not found: try /, /metrics or /healthz\n",
                                       authorize=auth.allows if auth else None, open_routes={"/healthz": self._bare_health},
                                       headers=SECURITY_HEADERS, challenge=REALM)

    @property
    def host(self) -> str:
        return self._http.host

    @property
    def port(self) -> int:
        return self._http.port  # 0 until start() when a free port was asked for

    def report(self) -> HealthReport:
        """The health report, collected anew only when the cached one is older than cache_seconds."""
        with self._lock:  # concurrent requests wait for one collection instead of starting their own
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.cache_seconds or self.cache_seconds <= 0:
                try:
                    self._cached = (now, self.collect(), None)
                except Exception as exc:  # noqa: BLE001 - kept too: a failing collect is not retried per request
                    self._cached = (now, None, exc)
            _, report, error = self._cached
        if error is not None:
            raise error
        assert report is not None
        return report

    def _metrics(self) -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)

    def _healthz(self) -> tuple[int, str, bytes]:
        code, body = health_status(self.report, self.extra_health)
        return code, "application/json", json.dumps(body, default=str).encode()

    def _bare_health(self) -> tuple[int, str, bytes]:
        code, body = health_status(self.report, self.extra_health)
        return code, "application/json", json.dumps({"status": body["status"]}).encode()

    def start(self) -> None:
        self._http.start()
        log.info("metrics and health on http://%s:%d/metrics and /healthz", self.host, self.port)

    def stop(self) -> None:
        self._http.stop()
