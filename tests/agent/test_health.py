"""Health report and alerts over real backup points in a tmp_path storage root."""
from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from actors.actions.retention import promote, storage_bytes
from agent.health import collect, used_ratio
from agent.mirror_stats import mirror_stats
from core.atomic import atomic_file
from core.config import NotifySettings, RedisSettings, Settings
from core.manifest import Artifact, ComponentRecord
from core.mirror_store import Entry, MirrorStore
from core.points import Point, Storage

UTC = timezone.utc
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def make_point(storage: Storage, at: datetime, **outcomes: str) -> Point:
    """A daily point with one record per component (outcome 'ok' or 'failed'), finished 10 min after `at`."""
    point = storage.new_point(list(outcomes), at=at)
    for component, outcome in outcomes.items():
        artifacts = []
        if outcome == "ok":
            with atomic_file(point.path(f"{component}.bin")) as out:
                out.write(os.urandom(4096))
            artifacts.append(Artifact(name=f"{component}.bin", bytes=out.result.bytes, sha256=out.result.sha256))
        point.save_record(ComponentRecord(component=component, status=outcome, started_at=at,
                                          finished_at=at + timedelta(minutes=10),
                                          error=None if outcome == "ok" else f"RuntimeError: {component} broke",
                                          artifacts=artifacts))
    return point


def settings_for(root: Path, **notify) -> Settings:
    return Settings(storage_root=root, notify=NotifySettings(**notify))


def keys(alerts) -> list[str]:
    return sorted(alert.key for alert in alerts)


def test_the_last_success_of_a_component_comes_from_the_newest_complete_point(tmp_path):
    storage = Storage(tmp_path / "backups")
    make_point(storage, datetime(2026, 6, 8, 2, 0, tzinfo=UTC), mysql="ok", search="ok")
    make_point(storage, datetime(2026, 6, 9, 2, 0, tzinfo=UTC), mysql="ok", search="failed")  # partial

    report = collect(settings_for(storage.root), storage, now=NOW)

    mysql = report.component("mysql")
    # The partial point of the 9th holds a good mysql dump, but a partial point is never "last good".
    assert mysql.point == "daily/2026-06-08"
    assert mysql.last_success_at == datetime(2026, 6, 8, 2, 10, tzinfo=UTC)
    assert mysql.age_seconds == (NOW - mysql.last_success_at).total_seconds()
    assert mysql.last_failure is None
    search = report.component("search")
    assert search.point == "daily/2026-06-08"
    assert search.last_failure_point == "daily/2026-06-09"
    assert search.last_failure_error == "RuntimeError: search broke"
    assert "daily/2026-06-09" in search.last_failure
    assert report.newest_point.ref == "daily/2026-06-09" and report.newest_point.status == "partial"


def test_promoted_copies_do_not_hide_the_daily_point_they_come_from(tmp_path):
    storage = Storage(tmp_path / "backups")
    promote(storage, make_point(storage, datetime(2026, 6, 9, 2, 0, tzinfo=UTC), mysql="ok", search="ok"))

    report = collect(settings_for(storage.root), storage, now=NOW)

    assert report.component("mysql").point == "daily/2026-06-09"
    assert report.newest_point.ref == "daily/2026-06-09"
    assert report.storage_used_bytes == storage_bytes(storage)


def test_storage_figures_come_from_the_points_and_the_file_system(tmp_path):
    storage = Storage(tmp_path / "backups")
    make_point(storage, datetime(2026, 6, 9, 2, 0, tzinfo=UTC), mysql="ok", search="ok")

    report = collect(settings_for(storage.root), storage, now=NOW)

    assert report.storage_used_bytes == storage_bytes(storage) >= 2 * 4096
    fs = os.statvfs(tmp_path)
    used = fs.f_blocks - fs.f_bfree
    expected = used / (used + fs.f_bavail)  # df's Use%: blocks reserved for root do not count
    assert 0 < report.storage_used_ratio <= 1
    assert abs(report.storage_used_ratio - expected) < 0.01


def test_an_empty_or_missing_storage_root_gives_a_report_that_says_never(tmp_path):
    storage = Storage(tmp_path / "not-yet" / "backups")

    report = collect(settings_for(storage.root), storage, now=NOW)

    assert report.newest_point is None
    assert report.storage_used_bytes == 0
    # The file system is shared with the rest of the machine: its usage moves between two readings.
    assert abs(report.storage_used_ratio - used_ratio(tmp_path)) < 0.01
    assert {item.component for item in report.components} == {"mysql", "search"}  # the enabled ones
    assert all(item.last_success_at is None and item.age_seconds is None for item in report.components)


def test_a_component_past_its_recovery_point_objective_raises_an_alert(tmp_path):
    storage = Storage(tmp_path / "backups")
    make_point(storage, datetime(2026, 6, 10, 2, 0, tzinfo=UTC), mysql="ok", search="ok")
    settings = settings_for(storage.root, rpo_hours={"mysql": 26, "search": 6}, storage_threshold=1.0)

    alerts = collect(settings, storage, now=NOW).alerts(settings)

    assert keys(alerts) == ["health:search backups"]
    assert alerts[0].level == "failure"
    assert "daily/2026-06-10" in alerts[0].body and "6 h" in alerts[0].body
    # Within the objective nothing is raised.
    assert collect(settings, storage, now=datetime(2026, 6, 10, 8, 0, tzinfo=UTC)).alerts(settings) == []


def test_a_component_never_backed_up_raises_an_alert_only_when_enabled(tmp_path):
    storage = Storage(tmp_path / "backups")
    make_point(storage, datetime(2026, 6, 10, 2, 0, tzinfo=UTC), mysql="ok", search="ok")

    quiet = settings_for(storage.root, storage_threshold=1.0)  # redis is off by default
    assert collect(quiet, storage, now=NOW).alerts(quiet) == []

    with_redis = settings_for(storage.root, storage_threshold=1.0).model_copy(update={"redis": RedisSettings(enabled=True)})
    alerts = collect(with_redis, storage, now=NOW).alerts(with_redis)
    assert keys(alerts) == ["health:redis backups"]
    assert "no good redis backup yet" in alerts[0].title


def test_a_partial_or_failed_newest_point_raises_an_alert_naming_the_errors(tmp_path):
    storage = Storage(tmp_path / "backups")
    make_point(storage, datetime(2026, 6, 10, 1, 0, tzinfo=UTC), mysql="ok", search="ok")
    make_point(storage, datetime(2026, 6, 10, 2, 0, tzinfo=UTC), mysql="failed", search="failed")
    settings = settings_for(storage.root, storage_threshold=1.0)

    alerts = collect(settings, storage, now=NOW).alerts(settings)

    assert keys(alerts) == ["health:newest point"]
    assert "daily/2026-06-10_020000 is failed" in alerts[0].title
    assert "mysql: RuntimeError: mysql broke" in alerts[0].body

    make_point(storage, datetime(2026, 6, 10, 11, 0, tzinfo=UTC), mysql="ok", search="ok")
    assert collect(settings, storage, now=NOW).alerts(settings) == []


def test_a_running_newest_point_is_not_an_alert(tmp_path):
    storage = Storage(tmp_path / "backups")
    make_point(storage, datetime(2026, 6, 10, 1, 0, tzinfo=UTC), mysql="ok", search="ok")
    running = storage.new_point(["mysql", "search"], at=datetime(2026, 6, 10, 2, 0, tzinfo=UTC))
    settings = settings_for(storage.root, storage_threshold=1.0)

    with running.working():
        report = collect(settings, storage, now=NOW)
    assert report.newest_point.status == "running"
    assert report.alerts(settings) == []


def test_storage_above_the_threshold_raises_a_warning(tmp_path):
    storage = Storage(tmp_path / "backups")
    ratio = used_ratio(tmp_path)
    settings = settings_for(storage.root, storage_threshold=ratio / 2)

    alerts = collect(settings, storage, now=NOW).alerts(settings)

    storage_alerts = [alert for alert in alerts if alert.key == "health:storage space"]
    assert len(storage_alerts) == 1 and storage_alerts[0].level == "warning"
    assert f"{ratio:.0%}" in storage_alerts[0].title


def test_mirror_lag_above_the_threshold_raises_a_warning(tmp_path):
    storage = Storage(tmp_path / "backups")
    make_point(storage, datetime(2026, 6, 10, 2, 0, tzinfo=UTC), mysql="ok", search="ok")
    settings = settings_for(storage.root, storage_threshold=1.0, mirror_lag_seconds=600)
    stats = {"objects": 12, "bytes": 3400, "lag_seconds": 601.0,
             "last_reconcile": {"time": "2026-06-10T11:45:00+00:00", "complete": True}}

    report = collect(settings, storage, mirror_stats=lambda: stats, now=NOW)

    assert report.mirror == stats
    assert report.mirror_lag_seconds == 601.0
    assert report.last_reconcile_at == datetime(2026, 6, 10, 11, 45, tzinfo=UTC)
    assert keys(report.alerts(settings)) == ["health:mirror lag"]
    stats["lag_seconds"] = 12.0
    assert collect(settings, storage, mirror_stats=lambda: stats, now=NOW).alerts(settings) == []


def test_queue_depths_are_reported_and_a_failing_probe_becomes_a_problem(tmp_path):
    storage = Storage(tmp_path / "backups")
    make_point(storage, datetime(2026, 6, 10, 2, 0, tzinfo=UTC), mysql="ok", search="ok")
    settings = settings_for(storage.root)

    report = collect(settings, storage, queue_depth=lambda: {"backup": 2, "mirror": 0}, now=NOW)
    assert report.queues == {"backup": 2, "mirror": 0}
    assert report.problems == []

    def broker_down() -> dict[str, int]:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    report = collect(settings, storage, queue_depth=broker_down, now=NOW)
    assert report.queues is None
    assert report.problems == ["queue depth: ConnectionError: Error 111 connecting to 127.0.0.1:6379. Connection refused."]
    assert report.component("mysql").point == "daily/2026-06-10"  # the rest of the report stands


@pytest.mark.fault('corrupt input: an unreadable manifest',
                   'health reports a problem, the agent does not crash')
def test_an_unreadable_manifest_is_a_problem_not_a_crash(tmp_path):
    storage = Storage(tmp_path / "backups")
    make_point(storage, datetime(2026, 6, 9, 2, 0, tzinfo=UTC), mysql="ok", search="ok")
    broken = make_point(storage, datetime(2026, 6, 10, 2, 0, tzinfo=UTC), mysql="ok", search="ok")
    (broken.folder / "manifest.json").write_text("{")

    report = collect(settings_for(storage.root), storage, now=NOW)

    assert report.problems and "daily/2026-06-10" in report.problems[0]
    assert report.component("mysql").point == "daily/2026-06-09"


@pytest.mark.fault("the version budget cuts the mirror's point-in-time window below minio.min_pitr_hours",
                   "a warning names the window left and the knob; a young mirror's short history is no alert")
def test_a_point_in_time_window_cut_below_the_floor_by_the_version_budget_raises_a_warning(tmp_path):
    storage = Storage(tmp_path / "backups")
    settings = settings_for(storage.root, storage_threshold=1.0)
    store = MirrorStore(storage.root / settings.minio.mirror_dir)
    now = datetime.now(UTC)
    for hours, data in ((5, b"old"), (2, b"newer"), (0, b"current")):
        temp = store.temp_file("bkt")
        temp.write_bytes(data)
        store.commit("bkt", "k", temp, Entry(size=len(data), etag=hashlib.md5(data).hexdigest()),
                     now - timedelta(hours=hours))
    stats = lambda: mirror_stats(settings)  # noqa: E731

    def history_alerts(report):  # no backup point exists here: those alerts are beside the point
        return [alert for alert in report.alerts(settings) if alert.key == "health:mirror history"]

    young = collect(settings, storage, mirror_stats=stats, now=NOW)
    assert young.mirror["pitr_pruned"] is False and history_alerts(young) == []  # a young mirror is no alert

    store.prune_versions(now - timedelta(days=30), budget_bytes=len(b"newer"))
    report = collect(settings, storage, mirror_stats=stats, now=NOW)
    # "old" was superseded 2 h ago and dropped: any moment since can be restored, none before.
    assert report.mirror["pitr_since"] == (now - timedelta(hours=2)).isoformat()
    assert 2 * 3600 <= report.mirror["pitr_seconds"] < 3 * 3600
    alerts = history_alerts(report)
    assert len(alerts) == 1 and alerts[0].level == "warning"
    assert "minio.min_pitr_hours: 24" in alerts[0].body and "version_budget_percent" in alerts[0].body
    settings.minio.min_pitr_hours = 1
    assert history_alerts(collect(settings, storage, mirror_stats=stats, now=NOW)) == []
