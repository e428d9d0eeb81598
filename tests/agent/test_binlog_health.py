"""The binlog archive in the agent's health: its lag and gaps as metrics, an alert when it lags or stops."""
from __future__ import annotations

from datetime import datetime, timezone

from actors.binlog.index import ArchiveIndex, RecordedGap, save_index
from agent.health import collect
from agent.metrics import report_metrics
from core.config import Settings
from core.points import Storage


def settings_at(tmp_path, **binlog) -> tuple[Settings, Storage]:
    storage = Storage(tmp_path / "root").prepare()
    return Settings(storage_root=storage.root, binlog=binlog, minio={"enabled": False}), storage


DETECTED = datetime(2026, 11, 30, tzinfo=timezone.utc)


def scrape(report) -> dict[str, float]:
    return {family.name: family.samples[0].value for family in report_metrics(report)
            if family.name.startswith("ragflow_backup_binlog")}


def test_the_archive_lag_bytes_and_gaps_are_metrics(tmp_path):
    settings, storage = settings_at(tmp_path)
    index = ArchiveIndex()
    index.record_gap(RecordedGap(before="binlog.000004", reason="purged", detected_at=DETECTED))
    save_index(settings.layout, index)
    report = collect(settings, storage, binlog_stats=lambda: {"bytes": 4096, "gaps": [{"before": "binlog.000004"}],
                                                             "lag_seconds": 1.5, "streaming": True})
    assert scrape(report) == {"ragflow_backup_binlog_lag_seconds": 1.5, "ragflow_backup_binlog_archived_bytes": 4096,
                              "ragflow_backup_binlog_gaps": 1, "ragflow_backup_binlog_streaming": 1}


def test_a_status_without_the_agent_reads_the_gaps_from_the_index(tmp_path):
    settings, storage = settings_at(tmp_path)
    index = ArchiveIndex()
    index.record_gap(RecordedGap(before="binlog.000004", reason="purged", detected_at=DETECTED))
    save_index(settings.layout, index)
    report = collect(settings, storage)
    assert [gap["before"] for gap in report.binlog["gaps"]] == ["binlog.000004"]


def test_an_archive_further_behind_than_the_limit_raises_an_alert(tmp_path):
    settings, storage = settings_at(tmp_path, lag_alert_seconds=30)
    report = collect(settings, storage, binlog_stats=lambda: {"lag_seconds": 45.0, "streaming": True})
    assert [alert.key for alert in report.alerts(settings) if "binlog" in alert.key] == ["health:binlog lag"]


def test_an_archive_that_is_not_streaming_raises_an_alert_unless_the_server_has_no_binary_log(tmp_path):
    settings, storage = settings_at(tmp_path)
    stopped = collect(settings, storage, binlog_stats=lambda: {"streaming": False, "last_error": "refused"})
    assert [alert.title for alert in stopped.alerts(settings) if "binlog" in alert.key] == [
        "ragflow-backup: the MySQL binary log is not being archived"]
    off = collect(settings, storage, binlog_stats=lambda: {"streaming": False, "log_bin_off": True})
    assert [alert for alert in off.alerts(settings) if "binlog" in alert.key] == []
