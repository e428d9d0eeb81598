"""Interval search snapshots (actors/search/interval.py) against the test bed's Elasticsearch and OpenSearch."""
from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from actors import tasks
from actors.actions.runs import run_component
from actors.search import backup as search
from actors.search import interval
from agent.agent import Agent, scheduled_jobs
from core import clients, locks
from core.config import Settings
from core.points import Storage
from tests.actors.search.test_backup import (  # noqa: F401 - fixtures used by name
    search_cfg,
    seeded,
    settings_for,
    snapshot_names,
)

log = logging.getLogger("test.search.interval")


def test_an_interval_snapshot_records_the_documents_each_index_held_under_the_storage_root(search_cfg, seeded, tmp_path):
    settings = settings_for(search_cfg, tmp_path)

    taken = interval.take(settings, log)

    assert taken is not None and taken.name.startswith(f"{search_cfg.snapshot_prefix}interval-")
    assert search.snapshot_exists(search_cfg, taken.name) == "SUCCESS"
    saved = json.loads((settings.layout.search_intervals / taken.name / search.ARTIFACT).read_text())
    assert saved["snapshot"] == taken.name and saved["doc_counts"] == seeded and saved["kind"] == "interval"
    assert [item.name for item in interval.interval_snapshots(settings)] == [taken.name]
    assert taken.record().counts == seeded and taken.record().details["uuid"] == saved["uuid"]


def test_an_interval_snapshot_is_skipped_not_queued_while_a_search_backup_holds_the_lock(search_cfg, seeded, tmp_path):
    settings = settings_for(search_cfg, tmp_path)
    storage = Storage(settings.storage_root).prepare()

    with locks.exclusive(storage.component_lock(search.NAME), "a search backup"):
        skipped = interval.take(settings, log)

    assert skipped is None
    assert interval.interval_snapshots(settings) == []
    repo = search.SnapshotRepo(clients.search_client(search_cfg), search_cfg.engine, search_cfg.repository)
    assert repo.location() is None  # nothing was asked of the server: not even the repository registered


def test_interval_retention_deletes_snapshots_older_than_the_window_with_their_records(search_cfg, seeded, tmp_path):
    settings = settings_for(search_cfg.model_copy(update={"interval_keep_hours": 48}), tmp_path)
    now = datetime.now(timezone.utc)
    old = interval.take(settings, log, now=now - timedelta(hours=50))
    recent = interval.take(settings, log, now=now - timedelta(hours=1))  # its retention removed `old`

    assert old is not None and recent is not None
    assert [item.name for item in interval.interval_snapshots(settings)] == [recent.name]
    assert not (settings.layout.search_intervals / old.name).exists()
    assert old.name not in snapshot_names(search_cfg) and recent.name in snapshot_names(search_cfg)


def test_interval_retention_also_drops_snapshots_older_than_the_oldest_point(search_cfg, seeded, tmp_path):
    settings = settings_for(search_cfg, tmp_path)
    before = interval.take(settings, log, now=datetime.now(timezone.utc) - timedelta(hours=2))
    run_component(settings, Storage(settings.storage_root).new_point([search.NAME]), search.NAME)

    assert interval.prune(settings, log) == [before.name]
    assert interval.interval_snapshots(settings) == []


def test_point_retention_keeps_recorded_interval_snapshots_and_deletes_unrecorded_old_ones(search_cfg, seeded, tmp_path):
    settings = settings_for(search_cfg.model_copy(update={"keep_snapshots": 1}), tmp_path)
    now = datetime.now(timezone.utc)
    recorded = interval.take(settings, log, now=now - timedelta(minutes=2))
    unrecorded = interval.take(settings, log, now=now - timedelta(minutes=1))
    shutil.rmtree(settings.layout.search_intervals / unrecorded.name)  # e.g. its record was lost

    point = run_component(settings, Storage(settings.storage_root).new_point([search.NAME]), search.NAME)

    assert point.status == "ok", point.error
    names = snapshot_names(search_cfg)
    assert recorded.name in names and point.details["snapshot"] in names
    assert unrecorded.name not in names and unrecorded.name in point.details["deleted_snapshots"]


def test_the_agent_ticks_interval_snapshots_every_configured_minutes_and_not_at_all_with_zero(tmp_path):
    def jobs(minutes: int) -> dict[str, str]:
        return scheduled_jobs(Settings(storage_root=tmp_path, search={"snapshot_interval_minutes": minutes}))

    assert jobs(60)["search_interval"] == "0 */1 * * *"
    assert jobs(15)["search_interval"] == "*/15 * * * *"
    assert jobs(360)["search_interval"] == "0 */6 * * *"
    assert jobs(0)["search_interval"] == ""
    with pytest.raises(ValidationError, match="cannot be a cron tick"):
        Settings(storage_root=tmp_path, search={"snapshot_interval_minutes": 45})


def test_a_points_backup_deletes_expired_interval_snapshots_even_with_interval_snapshots_off(search_cfg, seeded,
                                                                                              tmp_path):
    expired = interval.take(settings_for(search_cfg, tmp_path), log, now=datetime.now(timezone.utc) - timedelta(hours=2))
    # Then the operator turned interval snapshots off and shortened their window to an hour.
    settings = settings_for(search_cfg.model_copy(update={"snapshot_interval_minutes": 0, "interval_keep_hours": 1}),
                            tmp_path)

    point = run_component(settings, Storage(settings.storage_root).new_point([search.NAME]), search.NAME)

    assert point.status == "ok", point.error
    assert point.details["deleted_interval_snapshots"] == [expired.name]
    assert interval.interval_snapshots(settings) == [] and expired.name not in snapshot_names(search_cfg)


def test_a_planted_or_edited_interval_record_is_left_out_and_never_restored_from(tmp_path, caplog):
    settings = Settings(storage_root=tmp_path / "backups")
    folder = settings.layout.search_intervals
    (folder / "ragflow-backup-interval-20261130t010000z").mkdir(parents=True)
    (tmp_path / "elsewhere.json").write_text(json.dumps({"snapshot": "ragflow-backup-interval-20261130t010000z"}))
    (folder / "ragflow-backup-interval-20261130t010000z" / search.ARTIFACT).symlink_to(tmp_path / "elsewhere.json")
    (folder / "ragflow-backup-interval-20261130t020000z").mkdir()
    (folder / "ragflow-backup-interval-20261130t020000z" / search.ARTIFACT).write_text(json.dumps(
        {"snapshot": "another-name", "doc_counts": {}, "repository": {"name": "r"}, "taken_at": "2026-11-30T02:00:00+00:00"}))

    assert interval.interval_snapshots(settings) == []
    assert interval.newest_at_or_before(settings, datetime.now(timezone.utc)) is None
    assert "unreadable" in caplog.text and "it is not used" in caplog.text


def test_the_agents_interval_tick_sends_the_interval_snapshot_actor(tmp_path):
    sent = []
    agent = Agent(Settings(storage_root=tmp_path / "backups"), send=lambda actor, args: sent.append((actor, args)))

    agent._on_tick("search_interval", datetime.now(timezone.utc))

    assert sent == [(tasks.search_interval_snapshot, ())]
