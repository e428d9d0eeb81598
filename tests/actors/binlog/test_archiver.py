"""The archive kept by the agent, against a private MariaDB with its binary log on: byte-exact copies that
follow rotations, a resume without a gap, and files purged before they were archived shown as a gap."""
from __future__ import annotations

import pytest

from actors.binlog.index import load_index
from actors.binlog.retention import prune_archive
from core.pitr import ArchiveGap, BinlogCoordinates
from testbed.private_servers import wait_until
from tests.actors.binlog.conftest import archive_settings, archiving, server_files, sql, wait_caught_up


def server_files_between(first: str, newest: str) -> str:
    """The one file between two (binlog.000001, binlog.000003 -> binlog.000002)."""
    base, number = first.rsplit(".", 1)
    assert int(newest.rsplit(".", 1)[1]) == int(number) + 2
    return f"{base}.{int(number) + 1:06d}"


FLAGS_BYTE = 4 + 17  # the format description event's flags: the server marks its open file "in use" there


def test_the_archive_holds_the_servers_files_byte_for_byte_and_follows_rotations(binlog_mariadb, tmp_path):
    settings = archive_settings(binlog_mariadb, tmp_path / "root")
    sql(binlog_mariadb, "CREATE DATABASE shop", "CREATE TABLE shop.t (id INT PRIMARY KEY, v TEXT)")
    with archiving(settings) as archiver:
        sql(binlog_mariadb, "INSERT INTO shop.t VALUES (1, 'one')", "FLUSH BINARY LOGS",
            "INSERT INTO shop.t VALUES (2, 'two')")
        wait_caught_up(settings, binlog_mariadb)
        assert archiver.state.connected and archiver.state.lag_seconds is not None
    index = load_index(settings.layout)
    names = [name for name, _ in server_files(binlog_mariadb)]
    assert [entry.name for entry in index.files] == names and len(names) == 2
    assert [entry.complete for entry in index.files] == [True, False]
    closed, live = (settings.layout.binlog_archive / name for name in names)
    assert closed.read_bytes() == (binlog_mariadb.folder / "binlog" / names[0]).read_bytes()
    server_live = bytearray((binlog_mariadb.folder / "binlog" / names[1]).read_bytes())
    server_live[FLAGS_BYTE] &= ~1
    assert live.read_bytes() == bytes(server_live)
    assert len(index.spans()) == 1 and index.gaps == []
    assert oct(live.stat().st_mode & 0o777) == "0o600"


def test_a_restarted_archive_continues_its_live_file_without_a_gap(binlog_mariadb, tmp_path):
    settings = archive_settings(binlog_mariadb, tmp_path / "root")
    sql(binlog_mariadb, "CREATE DATABASE shop", "CREATE TABLE shop.t (id INT PRIMARY KEY)")
    with archiving(settings):
        sql(binlog_mariadb, "INSERT INTO shop.t VALUES (1)")
        wait_caught_up(settings, binlog_mariadb)
    before = load_index(settings.layout).files[-1]
    sql(binlog_mariadb, "INSERT INTO shop.t VALUES (2)", "INSERT INTO shop.t VALUES (3)")
    with archiving(settings) as archiver:
        wait_caught_up(settings, binlog_mariadb)
        assert archiver.state.last_error == ""
    index = load_index(settings.layout)
    after = index.file(before.name)
    assert after.size > before.size and index.gaps == [] and len(index.spans()) == 1
    copy = (settings.layout.binlog_archive / before.name).read_bytes()
    assert len(copy) == after.size


def test_files_the_server_purged_before_they_were_archived_are_a_gap_notified_once(binlog_mariadb, tmp_path):
    settings = archive_settings(binlog_mariadb, tmp_path / "root")
    notes: list = []
    sql(binlog_mariadb, "CREATE DATABASE shop", "CREATE TABLE shop.t (id INT PRIMARY KEY)")
    with archiving(settings, notes):
        wait_caught_up(settings, binlog_mariadb)
    first = load_index(settings.layout).files[0]
    sql(binlog_mariadb, "FLUSH BINARY LOGS", "INSERT INTO shop.t VALUES (1)", "FLUSH BINARY LOGS",
        "INSERT INTO shop.t VALUES (2)")
    newest = server_files(binlog_mariadb)[-1][0]
    sql(binlog_mariadb, f"PURGE BINARY LOGS TO '{newest}'")
    kept = server_files(binlog_mariadb)[0][0]  # the archive's last dump thread, still closing, may keep one more
    for _ in range(2):
        with archiving(settings, notes):
            wait_caught_up(settings, binlog_mariadb)
    index = load_index(settings.layout)
    assert [gap.before for gap in index.gaps] == [kept]
    assert index.gaps[0].missing == ([server_files_between(first.name, newest)] if kept == newest else [])
    assert [key for key, *_ in notes] == [f"binlog-gap:{kept}"]
    older, newer = index.spans()
    with pytest.raises(ArchiveGap) as refused:
        index.replay_plan(BinlogCoordinates(first.name, 4), newer.end, "shop",
                          settings.layout.binlog_archive)
    assert refused.value.before == older.end and refused.value.after == newer.start


def test_a_retention_request_is_carried_out_by_the_running_archiver(binlog_mariadb, tmp_path):
    settings = archive_settings(binlog_mariadb, tmp_path / "root")
    with archiving(settings):
        sql(binlog_mariadb, "FLUSH BINARY LOGS", "FLUSH BINARY LOGS")
        wait_caught_up(settings, binlog_mariadb)
        first, second, third = (name for name, _ in server_files(binlog_mariadb))
        doomed = prune_archive(settings, third, "a test keeps from the third file", dry_run=False)
        assert [entry.name for entry in doomed] == [first, second]
        wait_until(lambda: load_index(settings.layout).file(first) is None, "the archiver to carry out the request", 60)
    assert [entry.name for entry in load_index(settings.layout).files] == [third]
    assert sorted(p.name for p in settings.layout.binlog_archive.glob("binlog.*")) == [third]
    assert "binlog-prune" in (settings.layout.logs / "audit.log").read_text()


def test_a_user_with_only_the_replication_grants_can_keep_the_archive(binlog_mariadb, tmp_path):
    sql(binlog_mariadb, "CREATE USER 'replica'@'127.0.0.1' IDENTIFIED BY 'replica-pw'",
        "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'replica'@'127.0.0.1'")
    settings = archive_settings(binlog_mariadb, tmp_path / "root")
    settings.mysql.user, settings.mysql.password = "replica", "replica-pw"
    with archiving(settings) as archiver:
        sql(binlog_mariadb, "CREATE DATABASE shop", "FLUSH BINARY LOGS")
        wait_caught_up(settings, binlog_mariadb)
        assert archiver.state.last_error == ""
    assert [entry.name for entry in load_index(settings.layout).files] == [n for n, _ in server_files(binlog_mariadb)]
