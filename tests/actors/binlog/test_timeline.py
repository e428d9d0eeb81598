"""`timeline` (and its lines in `status`): per component what can be restored to any second, the gaps, the points.
MySQL's stretch starts at the oldest point whose binlog coordinates the archive continues."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from actors.binlog.index import load_index
from core.config import load_settings
from core.points import Storage
from tests.actors.binlog.conftest import archiving, sql, wait_caught_up
from tests.faults.harness import cli, write_config


def config_for(server, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(root), "binlog": {"poll_seconds": 0.2},
        "mysql": {"host": "127.0.0.1", "port": server.port, "user": "root", "password": server.password,
                  "database": "shop"},
        "minio": {"enabled": False}, "search": {"enabled": False}, "redis": {"enabled": False}})
    return config, root


def settings_of(config):
    return load_settings(config)


def test_mysql_can_be_restored_to_any_second_from_its_point_to_the_newest_archived_event(binlog_mariadb, tmp_path):
    sql(binlog_mariadb, "CREATE DATABASE shop", "CREATE TABLE shop.t (id INT PRIMARY KEY)",
        "INSERT INTO shop.t VALUES (1)")
    config, root = config_for(binlog_mariadb, tmp_path)
    assert cli(config, "backup", "--local", "-C", "mysql").returncode == 0
    [point] = Storage(root).points("daily")
    settings = settings_of(config)
    with archiving(settings):
        sql(binlog_mariadb, "INSERT INTO shop.t VALUES (2)")
        wait_caught_up(settings, binlog_mariadb)
    shown = cli(config, "timeline", "--json")
    assert shown.returncode == 0, shown.stderr
    mysql = json.loads(shown.stdout)["components"]["mysql"]
    finished = point.manifest().components["mysql"].finished_at
    newest = load_index(settings.layout).spans()[-1].end
    assert mysql["spans"] == [{"start": finished.astimezone(timezone.utc).isoformat(timespec="seconds"),
                               "end": newest.astimezone(timezone.utc).isoformat(timespec="seconds")}]
    assert mysql["gaps"] == [] and [p["ref"] for p in mysql["points"]] == [point.ref]
    table = cli(config, "timeline")
    assert table.returncode == 0 and "mysql" in table.stdout


def test_a_gap_in_the_archive_is_shown_with_its_reason_and_what_to_do(binlog_mariadb, tmp_path):
    sql(binlog_mariadb, "CREATE DATABASE shop", "CREATE TABLE shop.t (id INT PRIMARY KEY)")
    config, root = config_for(binlog_mariadb, tmp_path)
    settings = settings_of(config)
    with archiving(settings):
        wait_caught_up(settings, binlog_mariadb)
    sql(binlog_mariadb, "FLUSH BINARY LOGS", "INSERT INTO shop.t VALUES (1)", "FLUSH BINARY LOGS")
    newest = sql(binlog_mariadb, "SHOW MASTER STATUS")[0][0]
    sql(binlog_mariadb, f"PURGE BINARY LOGS TO '{newest}'")
    newest = sql(binlog_mariadb, "SHOW BINARY LOGS")[0][0]  # a replica's lingering dump thread may keep one more
    with archiving(settings):
        wait_caught_up(settings, binlog_mariadb)
    shown = cli(config, "timeline")
    assert shown.returncode == 0, shown.stderr
    assert f"GAP before {newest}" in shown.stdout.replace("\n", " ")
    assert "a backup taken now starts a new restorable stretch" in shown.stdout.replace("\n", " ")
    gaps = json.loads(cli(config, "timeline", "--json").stdout)["components"]["mysql"]["gaps"]
    assert [gap["before"] for gap in gaps] == [newest]
    assert datetime.fromisoformat(gaps[0]["detected_at"]) <= datetime.now(timezone.utc)
