"""Pinned points: kept by retention whatever its policy says, shown in `list`, reported when old."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from typer.testing import CliRunner

from actors.actions.retention import old_pins, promote, prune
from agent.cli import app
from core.points import PIN, Storage
from tests.actors.actions.test_retention import make_point, refs, settings_for

UTC = timezone.utc
START = datetime(2026, 10, 1, 3, 0, tzinfo=UTC)


def thirty_days(storage: Storage):
    return [make_point(storage, START + timedelta(days=day)) for day in range(30)]


def test_a_pinned_point_survives_retention_and_says_why(tmp_path):
    storage = Storage(tmp_path / "backups")
    points = thirty_days(storage)
    points[0].pin("before-migration")
    decisions = prune(storage, settings_for(storage.root, daily=3, weekly=0, monthly=0), dry_run=False,
                      now=START + timedelta(days=30))
    assert "daily/2026-10-01" in refs(storage)
    reason = next(d.reason for d in decisions if d.ref == "daily/2026-10-01")
    assert reason.startswith("keep: pinned as before-migration")
    assert [p.ref for p in storage.points()] == ["daily/2026-10-01", "daily/2026-10-28", "daily/2026-10-29",
                                                 "daily/2026-10-30"]


def test_an_unpinned_point_is_taken_by_the_next_prune(tmp_path):
    storage = Storage(tmp_path / "backups")
    points = thirty_days(storage)
    points[0].pin("before-migration")
    settings = settings_for(storage.root, daily=3, weekly=0, monthly=0)
    prune(storage, settings, dry_run=False, now=START + timedelta(days=30))
    assert points[0].unpin() is True
    prune(storage, settings, dry_run=False, now=START + timedelta(days=30))
    assert "daily/2026-10-01" not in refs(storage)


@pytest.mark.fault("hostile storage: a point's .pin.json that is not JSON, or a symlink to a file elsewhere",
                   "prune keeps the point ('unreadable pin file', never followed), list shows the pin as unreadable; "
                   "no traceback, the link's target unchanged")
def test_a_damaged_or_planted_pin_file_still_keeps_its_point(tmp_path):
    storage = Storage(tmp_path / "backups")
    points = thirty_days(storage)
    (points[0].folder / PIN).write_text("{not json")
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text('{"name": "planted", "pinned_at": "2026-10-01T00:00:00+00:00"}')
    (points[1].folder / PIN).symlink_to(elsewhere)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"storage_root": str(storage.root),
                                      "retention": {"daily": 3, "weekly": 0, "monthly": 0}}))
    pruned = cli(config, "prune")
    assert pruned.exit_code == 0, pruned.output
    assert {"daily/2026-10-01", "daily/2026-10-02"} <= set(refs(storage))
    assert pruned.output.count("unreadable pin file") == 2
    listed = cli(config, "list", "--json")
    assert listed.exit_code == 0, listed.output
    pins = {row["ref"]: row["pin"] for row in json.loads(listed.stdout)["points"]}
    assert pins["daily/2026-10-01"].startswith("(unreadable pin file): ")
    assert "symbolic link" in pins["daily/2026-10-02"]
    assert elsewhere.read_text().startswith('{"name": "planted"')


def test_a_pin_is_not_copied_into_the_weekly_and_monthly_promotions(tmp_path):
    storage = Storage(tmp_path / "backups")
    point = make_point(storage, START)
    point.pin("kept")
    promoted = promote(storage, point)
    assert promoted and all(copy.pinned() is None for copy in promoted)


def test_a_pinned_point_older_than_the_warning_age_is_reported_not_deleted(tmp_path):
    storage = Storage(tmp_path / "backups")
    old, young = make_point(storage, START), make_point(storage, START + timedelta(days=200))
    old.pin("old-one")
    young.pin("young-one")
    found = old_pins(storage, 180, now=START + timedelta(days=201))
    assert [(item.ref, item.pin, round(item.days)) for item in found] == [("daily/2026-10-01", "old-one", 201)]


def cli(config, *args):
    return CliRunner().invoke(app, ["--config", str(config), *args], terminal_width=200)


def test_pin_and_unpin_commands_show_in_list_and_its_json(tmp_path):
    storage = Storage(tmp_path / "backups")
    make_point(storage, START)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"storage_root": str(storage.root)}))
    pinned = cli(config, "pin", "daily/2026-10-01", "before-upgrade")
    assert pinned.exit_code == 0, pinned.output
    listed = cli(config, "list", "--json")
    assert listed.exit_code == 0, listed.output
    document = json.loads(listed.stdout)
    assert [(row["ref"], row["pin"]) for row in document["points"]] == [("daily/2026-10-01", "before-upgrade")]
    assert cli(config, "unpin", "daily/2026-10-01").exit_code == 0
    document = json.loads(cli(config, "list", "--json").stdout)
    assert document["points"][0]["pin"] is None


def test_a_bad_pin_name_or_an_incomplete_point_is_refused_with_a_reason(tmp_path):
    storage = Storage(tmp_path / "backups")
    make_point(storage, START)
    make_point(storage, START + timedelta(days=1), status="partial")
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"storage_root": str(storage.root)}))
    bad_name = cli(config, "pin", "daily/2026-10-01", "../escape")
    assert bad_name.exit_code == 2 and "pin name" in bad_name.output
    partial = cli(config, "pin", "daily/2026-10-02", "kept")
    assert partial.exit_code == 2 and "not complete" in partial.output
    assert all(point.pinned() is None for point in storage.points())


def config_only(tmp_path):
    """Only RAGFlow's docker/ files enabled: a backup needs no service."""
    folder = tmp_path / "ragflow" / "docker"
    folder.mkdir(parents=True)
    (folder / ".env").write_text("RAGFLOW_IMAGE=infiniflow/ragflow:v0.27.0\n")
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"storage_root": str(tmp_path / "backups"), "ragflow_dir": str(folder),
                                      "mysql": {"enabled": False}, "minio": {"enabled": False},
                                      "search": {"enabled": False}, "redis": {"enabled": False}}))
    return config


def test_backup_pin_pins_the_point_once_it_is_complete(tmp_path):
    config = config_only(tmp_path)
    taken = cli(config, "backup", "--local", "--pin", "before-migration")
    assert taken.exit_code == 0, taken.output
    (point,) = Storage(tmp_path / "backups").points("daily")
    assert point.pinned().name == "before-migration"  # its weekly and monthly promotions are copies, not pinned


def test_backup_pin_without_local_or_wait_is_refused_and_takes_nothing(tmp_path):
    config = config_only(tmp_path)
    refused = cli(config, "backup", "--pin", "before-migration")
    assert refused.exit_code == 2 and "--local or --wait" in refused.output
    assert Storage(tmp_path / "backups").points() == []


def test_status_and_its_json_report_a_pin_older_than_the_warning_age(tmp_path, redis_url):
    storage = Storage(tmp_path / "backups")
    make_point(storage, datetime.now(UTC) - timedelta(days=200)).pin("kept-for-audit")
    make_point(storage, datetime.now(UTC) - timedelta(days=1)).pin("recent")
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "storage_root": str(storage.root), "broker": {"url": redis_url, "namespace": "pins-status"},
        "mysql": {"enabled": False}, "minio": {"enabled": False}, "search": {"enabled": False},
        "config_files": {"enabled": False}, "retention": {"pinned_warn_days": 180}}))
    shown = cli(config, "status", "--json")
    assert shown.exit_code == 0, shown.output
    (line,) = json.loads(shown.stdout)["old_pins"]
    assert "(kept-for-audit) is 200 days old" in line and "ragflow-backup unpin daily/" in line
