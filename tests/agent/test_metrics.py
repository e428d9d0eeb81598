"""Metrics and health endpoint: a real HTTP server on a free port, scraped with urllib and parsed."""
from __future__ import annotations

import json
import math
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.actions.retention import storage_bytes
from agent.health import HealthReport, collect
from agent.metrics import MetricsServer
from core.atomic import atomic_file
from core.config import Settings
from core.manifest import Artifact, ComponentRecord
from core.points import Point, Storage

UTC = timezone.utc


def make_point(storage: Storage, at: datetime, **outcomes: str) -> Point:
    point = storage.new_point(list(outcomes), at=at)
    for component, outcome in outcomes.items():
        artifacts = []
        if outcome == "ok":
            with atomic_file(point.path(f"{component}.bin")) as out:
                out.write(os.urandom(2048))
            artifacts.append(Artifact(name=f"{component}.bin", bytes=out.result.bytes, sha256=out.result.sha256))
        point.save_record(ComponentRecord(component=component, status=outcome, started_at=at, finished_at=at,
                                          error=None if outcome == "ok" else "RuntimeError: boom", artifacts=artifacts))
    return point


def fetch(server: MetricsServer, path: str) -> tuple[int, str, str]:
    """(status, content type, body); error statuses are answers too."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def serve() -> Iterator[Callable[..., MetricsServer]]:
    started: list[MetricsServer] = []

    def start(collect_fn: Callable[[], HealthReport], extra_health=None) -> MetricsServer:
        server = MetricsServer("127.0.0.1", 0, collect_fn, extra_health=extra_health)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def storage(tmp_path) -> Storage:
    storage = Storage(tmp_path / "backups")
    now = datetime.now(UTC)
    make_point(storage, now - timedelta(days=1), mysql="ok", search="ok")
    make_point(storage, now - timedelta(hours=1), mysql="ok", search="failed")
    return storage


def test_metrics_expose_the_health_report_at_scrape_time(storage, serve):
    settings = Settings(storage_root=storage.root)
    mirror = {"objects": 42, "bytes": 123456, "lag_seconds": 7.5, "last_reconcile": {"time": "2026-06-10T11:45:00+00:00"},
              "pitr_seconds": 172800.0, "pacing": {"mode": "catch-up", "since": None, "cpu_percent": 50}}
    server = serve(lambda: collect(settings, storage, queue_depth=lambda: {"backup": 3, "mirror": 0},
                                   mirror_stats=lambda: mirror))
    assert server.port != 0

    status, content_type, text = fetch(server, "/metrics")

    assert status == 200 and content_type.startswith("text/plain")
    values = samples(text)
    good = storage.points()[0].manifest().components["mysql"].finished_at.timestamp()
    for component in ("mysql", "search"):
        assert values[("ragflow_backup_last_success_timestamp_seconds", (("component", component),))] == good
        age = values[("ragflow_backup_last_success_age_seconds", (("component", component),))]
        assert 86400 - 60 < age < 86400 + 60
    newest = storage.points()[-1]
    assert values[("ragflow_backup_point_status", (("status", "partial"), ("tier", "daily")))] == 1
    assert values[("ragflow_backup_point_status", (("status", "complete"), ("tier", "daily")))] == 0
    assert values[("ragflow_backup_newest_point_timestamp_seconds", (("tier", "daily"),))] == \
        newest.manifest().created_at.timestamp()
    assert not any(newest.name in value for _, labels in values for _, value in labels), "no dates in label values"
    assert values[("ragflow_backup_mirror_lag_seconds", ())] == 7.5
    assert values[("ragflow_backup_mirror_objects", ())] == 42
    assert values[("ragflow_backup_mirror_bytes", ())] == 123456
    assert values[("ragflow_backup_mirror_pitr_window_seconds", ())] == 172800  # two days of any-moment history
    assert values[("ragflow_backup_mirror_mode", (("mode", "catch-up"),))] == 1
    assert values[("ragflow_backup_mirror_mode", (("mode", "steady"),))] == 0
    assert values[("ragflow_backup_mirror_last_reconcile_timestamp_seconds", ())] == datetime(2026, 6, 10, 11, 45, tzinfo=UTC).timestamp()
    assert values[("ragflow_backup_queue_depth", (("queue", "backup"),))] == 3
    assert values[("ragflow_backup_queue_depth", (("queue", "mirror"),))] == 0
    assert values[("ragflow_backup_storage_used_bytes", ())] == storage_bytes(storage)
    assert 0 < values[("ragflow_backup_storage_used_ratio", ())] <= 1
    assert values[("ragflow_backup_up", ())] == 1


def test_each_scrape_sees_the_current_state(tmp_path, serve):
    storage = Storage(tmp_path / "backups")
    settings = Settings(storage_root=storage.root)
    server = serve(lambda: collect(settings, storage))

    before = samples(fetch(server, "/metrics")[2])
    assert before[("ragflow_backup_last_success_timestamp_seconds", (("component", "mysql"),))] == 0
    assert math.isinf(before[("ragflow_backup_last_success_age_seconds", (("component", "mysql"),))])

    make_point(storage, datetime.now(UTC), mysql="ok", search="ok")
    after = samples(fetch(server, "/metrics")[2])
    assert after[("ragflow_backup_last_success_age_seconds", (("component", "mysql"),))] < 60
    assert after[("ragflow_backup_storage_used_bytes", ())] > before[("ragflow_backup_storage_used_bytes", ())]


def test_two_servers_do_not_share_metrics(tmp_path, serve):
    first, second = Storage(tmp_path / "one"), Storage(tmp_path / "two")
    make_point(first, datetime.now(UTC), mysql="ok")
    one = serve(lambda: collect(Settings(storage_root=first.root), first, queue_depth=lambda: {"one": 1}))
    two = serve(lambda: collect(Settings(storage_root=second.root), second, queue_depth=lambda: {"two": 2}))

    assert one.port != two.port
    one_values, two_values = samples(fetch(one, "/metrics")[2]), samples(fetch(two, "/metrics")[2])
    assert ("ragflow_backup_queue_depth", (("queue", "one"),)) in one_values
    assert ("ragflow_backup_queue_depth", (("queue", "one"),)) not in two_values
    assert two_values[("ragflow_backup_last_success_timestamp_seconds", (("component", "mysql"),))] == 0


def test_healthz_is_ok_when_the_report_and_every_part_are_fine(storage, serve):
    settings = Settings(storage_root=storage.root)
    server = serve(lambda: collect(settings, storage), extra_health=lambda: {"minio_events": {"ok": True, "reconnects": 0}})

    status, content_type, text = fetch(server, "/healthz")

    assert status == 200 and content_type == "application/json"
    body = json.loads(text)
    assert body["status"] == "ok"
    assert body["newest_point"]["status"] == "partial"  # backups failing is an alert, not an agent outage
    assert body["components"]["mysql"]["point"] == storage.points()[0].ref
    assert body["parts"]["minio_events"]["ok"] is True


def test_a_failing_part_makes_healthz_503_with_its_reason(storage, serve):
    settings = Settings(storage_root=storage.root)
    parts = {"minio_events": {"ok": False, "last_error": "connection refused"}, "watcher": True}
    server = serve(lambda: collect(settings, storage), extra_health=lambda: parts)

    status, _, text = fetch(server, "/healthz")

    assert status == 503
    body = json.loads(text)
    assert body["status"] == "unhealthy"
    assert body["reasons"] == ["minio_events: connection refused"]


def test_an_unreachable_broker_makes_healthz_503(storage, serve):
    settings = Settings(storage_root=storage.root)

    def queue_depth() -> dict[str, int]:
        raise ConnectionError("Connection refused")

    server = serve(lambda: collect(settings, storage, queue_depth=queue_depth))

    status, _, text = fetch(server, "/healthz")
    assert status == 503
    assert json.loads(text)["reasons"] == ["queue depth: ConnectionError: Connection refused"]
    assert samples(fetch(server, "/metrics")[2])[("ragflow_backup_up", ())] == 1


def test_a_collect_that_raises_gives_healthz_503_and_metrics_with_up_0(serve):
    def broken() -> HealthReport:
        raise PermissionError("[Errno 13] Permission denied: '/share/backups/ragflow/daily'")

    server = serve(broken, extra_health=lambda: (_ for _ in ()).throw(RuntimeError("watcher died")))

    status, _, text = fetch(server, "/healthz")
    assert status == 503
    assert json.loads(text)["reasons"] == [
        "health report: PermissionError: [Errno 13] Permission denied: '/share/backups/ragflow/daily'",
        "extra health: RuntimeError: watcher died",
    ]
    status, _, text = fetch(server, "/metrics")
    assert status == 200
    assert {name: value for name, value in samples(text).items() if name[0] != "ragflow_backup_build_info"} == \
        {("ragflow_backup_up", ()): 0}


def test_other_paths_are_404(serve, tmp_path):
    storage = Storage(tmp_path / "backups")
    server = serve(lambda: collect(Settings(storage_root=storage.root), storage))

    assert fetch(server, "/")[0] == 404
    assert fetch(server, "/metrics/extra")[0] == 404
    assert fetch(server, "/healthz?verbose=1")[0] == 200


def test_stop_releases_the_port(tmp_path):
    storage = Storage(tmp_path / "backups")
    server = MetricsServer("127.0.0.1", 0, lambda: collect(Settings(storage_root=storage.root), storage))
    server.start()
    port = server.port
    assert fetch(server, "/metrics")[0] == 200
    server.stop()

    again = MetricsServer("127.0.0.1", port, lambda: collect(Settings(storage_root=storage.root), storage))
    again.start()
    try:
        assert again.port == port and fetch(again, "/healthz")[0] == 200
    finally:
        again.stop()


def test_scrapes_and_probes_within_cache_seconds_share_one_collection(tmp_path):
    storage = Storage(tmp_path / "backups")
    collections = []

    def counted() -> HealthReport:
        collections.append(1)
        return collect(Settings(storage_root=storage.root), storage)

    server = MetricsServer("127.0.0.1", 0, counted, cache_seconds=3600)
    server.start()
    try:
        for _ in range(3):
            assert fetch(server, "/metrics")[0] == 200
            assert fetch(server, "/healthz")[0] == 200
    finally:
        server.stop()
    assert len(collections) == 1


def test_a_request_head_over_the_size_cap_gets_no_answer_and_the_server_keeps_serving(tmp_path):
    storage = Storage(tmp_path / "backups")
    server = MetricsServer("127.0.0.1", 0, lambda: collect(Settings(storage_root=storage.root), storage))
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
            try:
                client.sendall(b"GET /metrics HTTP/1.1\r\nX-Padding: " + b"a" * 65536 + b"\r\n\r\n")
                answer = client.recv(100)
            except (BrokenPipeError, ConnectionResetError):  # closed while we were still sending
                answer = b""
        assert answer == b""
        assert fetch(server, "/metrics")[0] == 200
    finally:
        server.stop()


def test_beyond_max_connections_the_oldest_silent_one_is_closed_and_a_scrape_is_answered(tmp_path):
    storage = Storage(tmp_path / "backups")
    server = MetricsServer("127.0.0.1", 0, lambda: collect(Settings(storage_root=storage.root), storage),
                           max_connections=4)
    server.start()
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(4)]
    try:
        assert fetch(server, "/healthz")[0] == 200
        try:
            closed = silent[0].recv(1) == b""
        except ConnectionResetError:
            closed = True
        assert closed, "the oldest connection that never sent its request made room"
    finally:
        for connection in silent:
            connection.close()
        server.stop()


def test_metrics_count_runs_per_component_and_result_and_time_the_newest_of_each(tmp_path, serve):
    from core import audit

    storage = Storage(tmp_path / "backups")
    now = datetime.now(UTC)
    for hours, outcome in ((3, "ok"), (2, "failed"), (1, "ok")):
        point = make_point(storage, now - timedelta(hours=hours), mysql=outcome, search="ok")
        point.log_history()
    audit.record(storage.root, "drill", "daily/x", "ok", seconds=42.5)
    server = serve(lambda: collect(Settings(storage_root=storage.root), storage))

    values = samples(fetch(server, "/metrics")[2])

    assert values[("ragflow_backup_component_runs_total", (("component", "mysql"), ("result", "ok")))] == 2
    assert values[("ragflow_backup_component_runs_total", (("component", "mysql"), ("result", "failed")))] == 1
    assert values[("ragflow_backup_component_runs_total", (("component", "search"), ("result", "ok")))] == 3
    assert values[("ragflow_backup_component_runs_total", (("component", "search"), ("result", "failed")))] == 0
    assert ("ragflow_backup_component_last_run_duration_seconds", (("component", "mysql"), ("result", "failed"))) in values
    assert values[("ragflow_backup_last_point_bytes", ())] == storage.points()[-1].manifest().total_bytes
    assert values[("ragflow_backup_drill_last_success", ())] == 1
    assert values[("ragflow_backup_drill_last_duration_seconds", ())] == 42.5
    [version] = [dict(labels)["version"] for name, labels in values if name == "ragflow_backup_build_info"]
    assert version and values[("ragflow_backup_build_info", (("version", version),))] == 1
