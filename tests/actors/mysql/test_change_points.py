"""Change points of MySQL (actors/mysql/change_point.py, changes.py) against the real MariaDB test bed: a point
that holds only the rows changed since the newest full point, restorable by hand with `gunzip | mysql`."""
from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import actors.mysql.backup as mysql
from actors.actions.runs import run_component
from actors.mysql.restore import restore
from core import clients
from core.config import MySQLSettings, Settings
from core.manifest import ComponentRecord
from core.pitr import BinlogCoordinates, ReplayPlan
from core.points import Point, Storage
from testbed import settings as testbed_settings
from tests.actors.mysql.binlog_copy import copy_binlog, remove_binlog_copies
from tests.actors.mysql.test_backup import option_file, table_rows
from tests.actors.mysql.test_backup import seed as tricky_seed
from tests.conftest import unique

log = logging.getLogger("test_change_points")
TABLES = ("doc", "counter", "loose")


def settings_for(env: dict[str, str], tmp_path: Path, database: str, docker: bool = False, **mysql_changes) -> Settings:
    cfg = testbed_settings.mysql(env, database=database, docker=docker).model_copy(
        update={"full_every_days": 7, **mysql_changes})
    return Settings(storage_root=tmp_path / "backups", mysql=cfg, docker={"host": env["DOCKER_HOST"]})


def execute(cfg: MySQLSettings, *statements: str, args: list | None = None) -> None:
    with clients.mysql_connection(cfg) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
        if args:
            cur.executemany("INSERT INTO doc (id, title, body) VALUES (%s, %s, %s)", args)
        conn.commit()


def seed(cfg: MySQLSettings) -> None:
    """`doc` keyed by a string id (as RAGFlow's tables), `counter` by an integer, `loose` without a primary key."""
    execute(cfg,
            "CREATE TABLE doc (id VARCHAR(32) PRIMARY KEY, title VARCHAR(200) NOT NULL, body TEXT NULL) "
            "CHARACTER SET utf8mb4",
            "CREATE TABLE counter (id INT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL)",
            "CREATE TABLE loose (name VARCHAR(20), n INT)",
            "INSERT INTO counter (n) VALUES " + ", ".join(f"({i})" for i in range(120)),
            "INSERT INTO loose VALUES ('a', 1), ('b', 2)",
            args=[(f"{i:032x}", f"doc {i}'s title", None if i % 7 == 0 else f"line one\nline two {i}\\ ),(")
                  for i in range(300)])


def change(cfg: MySQLSettings) -> None:
    """Rows rewritten, deleted and added in every table."""
    execute(cfg,
            "UPDATE doc SET title = CONCAT(title, ' (edited)') WHERE CAST(CONV(id, 16, 10) AS UNSIGNED) % 10 = 3",
            "DELETE FROM doc WHERE CAST(CONV(id, 16, 10) AS UNSIGNED) % 25 = 4",
            "UPDATE counter SET n = n + 1000 WHERE id % 9 = 0",
            "DELETE FROM counter WHERE id > 110",
            "INSERT INTO counter (n) VALUES (7), (8)",
            "INSERT INTO loose VALUES ('c', 3)",
            args=[(f"f{i:031x}", f"new doc {i}", "😀 new") for i in range(12)])


def rows(cfg: MySQLSettings, database: str) -> dict[str, list[tuple]]:
    with clients.mysql_connection(cfg, database=database) as conn, conn.cursor() as cur:
        found = {}
        for table in TABLES:
            cur.execute(f"SELECT * FROM `{table}` ORDER BY 1, 2")
            found[table] = list(cur.fetchall())
        return found


def backed_up(settings: Settings) -> tuple[Point, ComponentRecord]:
    point = Storage(settings.storage_root).new_point([mysql.NAME])
    record = run_component(settings, point, mysql.NAME)
    assert record is not None and record.status == "ok", record and record.error
    point.log_history()
    return point, record


def full_then_change_point(settings: Settings) -> tuple[Point, Point, ComponentRecord]:
    """The database seeded and backed up (a full point), then changed and backed up again (a change point):
    the full point, the change point and its record."""
    seed(settings.mysql)
    full, _ = backed_up(settings)
    change(settings.mysql)
    point, record = backed_up(settings)
    return full, point, record

def artifact_names(record: ComponentRecord) -> list[str]:
    return [a.name for a in record.artifacts]


def loaded_by_hand(tmp_path: Path, settings: Settings, point: Point, copy: str) -> None:
    """`gunzip -c mysql_base.sql.gz mysql_changes.sql.gz | mysql`, into `copy` instead of the source's name."""
    text = subprocess.run(["gunzip", "-c", str(point.path("mysql_base.sql.gz")), str(point.path("mysql_changes.sql.gz"))],
                          check=True, capture_output=True).stdout
    text = text.replace(f"`{settings.mysql.database}`".encode(), f"`{copy}`".encode())
    subprocess.run(["mariadb", f"--defaults-extra-file={option_file(tmp_path, settings.mysql)}"], input=text,
                   check=True, capture_output=True, timeout=120)


def drop(cfg: MySQLSettings, name: str) -> None:
    with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


# ---------------------------------------------------------------- tests


def test_a_backup_after_changes_holds_the_base_linked_and_the_changes_and_gunzip_into_mysql_restores_it(
        tmp_path, testbed_env, mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    seed(settings.mysql)
    full, full_record = backed_up(settings)
    assert artifact_names(full_record) == ["mysql_dump.sql.gz"]
    change(settings.mysql)

    point, record = backed_up(settings)

    assert artifact_names(record) == ["mysql_base.sql.gz", "mysql_changes.sql.gz"]
    assert point.path("mysql_base.sql.gz").stat().st_ino == full.path("mysql_dump.sql.gz").stat().st_ino
    assert record.details["change_of"] == {"point": full.ref, "sha256": full_record.artifacts[0].sha256}
    assert record.counts == {t: len(r) for t, r in rows(settings.mysql, mysql_database).items()}
    assert record.artifacts[1].bytes < record.artifacts[0].bytes / 3
    changes = gzip.decompress(point.path("mysql_changes.sql.gz").read_bytes())
    assert changes.rstrip().rsplit(b"\n", 1)[-1].startswith(b"-- Changes completed")
    assert b"DELETE FROM `loose`;" in changes  # no primary key: the table whole
    assert mysql.verify(settings, point, record) == []
    copy, restored = unique("t_hand_"), unique("t_ours_")
    try:
        loaded_by_hand(tmp_path, settings, point, copy)
        assert rows(settings.mysql, copy) == rows(settings.mysql, mysql_database)
        result = restore(settings, point, record, target_database=restored, log=log)
        assert result.ok and rows(settings.mysql, restored) == rows(settings.mysql, mysql_database)
    finally:
        drop(settings.mysql, copy)
        drop(settings.mysql, restored)


def test_a_schema_change_a_zstd_setting_or_the_setting_off_make_a_full_point(tmp_path, testbed_env, mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    seed(settings.mysql)
    backed_up(settings)
    execute(settings.mysql, "ALTER TABLE doc ADD COLUMN extra INT NULL")
    assert artifact_names(backed_up(settings)[1]) == ["mysql_dump.sql.gz"]
    assert artifact_names(backed_up(settings)[1]) == ["mysql_base.sql.gz", "mysql_changes.sql.gz"]
    off = settings.model_copy(update={"mysql": settings.mysql.model_copy(update={"full_every_days": 0})})
    assert artifact_names(backed_up(off)[1]) == ["mysql_dump.sql.gz"]
    zstd = settings.model_copy(update={"mysql": settings.mysql.model_copy(update={"compression": "zstd"})})
    assert artifact_names(backed_up(zstd)[1]) == ["mysql_dump.sql.zst"]


def test_a_change_point_is_of_the_newest_full_point_never_of_another_change_point(tmp_path, testbed_env,
                                                                                    mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    seed(settings.mysql)
    full, _ = backed_up(settings)
    change(settings.mysql)
    backed_up(settings)
    execute(settings.mysql, "DELETE FROM doc WHERE id LIKE 'f%'")
    point, record = backed_up(settings)
    assert record.details["change_of"]["point"] == full.ref
    assert record.counts["doc"] == len(rows(settings.mysql, mysql_database)["doc"])
    assert mysql.verify(settings, point, record) == []


def test_verify_catches_changes_cut_short_or_altered_and_a_base_unlike_its_record(tmp_path, testbed_env,
                                                                                   mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    full, point, record = full_then_change_point(settings)
    changes_path = point.path("mysql_changes.sql.gz")
    good = changes_path.read_bytes()
    text = gzip.decompress(good)

    def forged(data: bytes) -> ComponentRecord:
        """The changes file replaced by `data`, and the record's checksum made to match it."""
        changes_path.write_bytes(data)
        artifacts = [record.artifacts[0], record.artifacts[1].model_copy(
            update={"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})]
        return record.model_copy(update={"artifacts": artifacts})

    cut = forged(gzip.compress(text[: text.rindex(b"-- Changes completed")]))
    assert any("cut short" in p for p in mysql.verify(settings, point, cut))
    one_less = forged(gzip.compress(text.replace(b"INSERT INTO `counter` VALUES\n(", b"INSERT INTO `counter` VALUES\n(0,0),\n(", 1)))
    assert any("`counter`" in p and "the manifest says" in p for p in mysql.verify(settings, point, one_less))
    changes_path.write_bytes(good)
    assert mysql.verify(settings, point, record) == []

    # The base (one file with the full point's dump) rewritten in place: both points see it.
    base_path = full.path("mysql_dump.sql.gz")
    base_path.write_bytes(gzip.compress(gzip.decompress(base_path.read_bytes()).replace(b"doc 1's", b"doc X's")))
    problems = mysql.verify(settings, point, record)
    assert problems and all(p.startswith("mysql_base.sql.gz") for p in problems), problems


def test_a_change_point_whose_base_point_was_pruned_still_restores(tmp_path, testbed_env, mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    full, point, record = full_then_change_point(settings)
    shutil.rmtree(full.folder)
    restored = unique("t_ours_")
    try:
        assert mysql.verify(settings, point, record) == []
        result = restore(settings, point, record, target_database=restored, log=log)
        assert result.ok and rows(settings.mysql, restored) == rows(settings.mysql, mysql_database)
    finally:
        drop(settings.mysql, restored)


def test_a_full_dump_replaced_by_a_symlink_is_never_a_base_and_the_next_point_is_full(tmp_path, testbed_env,
                                                                                      mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    seed(settings.mysql)
    full, _ = backed_up(settings)
    dump = full.path("mysql_dump.sql.gz")
    elsewhere = tmp_path / "elsewhere.sql.gz"
    dump.rename(elsewhere)
    dump.symlink_to(elsewhere)  # same bytes, so the record's SHA-256 would match if the link were followed
    change(settings.mysql)

    point, record = backed_up(settings)

    assert artifact_names(record) == ["mysql_dump.sql.gz"]
    assert not point.path("mysql_base.sql.gz").exists()
    assert mysql.verify(settings, point, record) == []


def test_a_restore_at_a_moment_after_a_change_point_loads_base_and_changes_then_replays_the_binlog(
        tmp_path, testbed_env, mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    _, point, record = full_then_change_point(settings)
    assert artifact_names(record) == ["mysql_base.sql.gz", "mysql_changes.sql.gz"]
    execute(settings.mysql, "UPDATE doc SET title = 'after the change point' WHERE id LIKE '0%'",
            "DELETE FROM counter WHERE id < 5", "INSERT INTO loose VALUES ('after', 9)")
    wanted = rows(settings.mysql, mysql_database)
    start = BinlogCoordinates(record.details["binlog"]["file"], record.details["binlog"]["position"])
    restored = unique("t_at_")
    try:
        files = copy_binlog(settings.mysql, start, tmp_path / "archive")
        plan = ReplayPlan(files, start, datetime.now(UTC) + timedelta(seconds=1), mysql_database)
        result = restore(settings, point, record, target_database=restored, log=log, replay_plan=plan)
        assert result.ok and result.replayed_to == plan.stop_at
        assert rows(settings.mysql, restored) == wanted
    finally:
        remove_binlog_copies(tmp_path)
        drop(settings.mysql, restored)


def test_a_table_whose_keys_sort_otherwise_than_byte_by_byte_makes_a_full_point(tmp_path, testbed_env,
                                                                                 mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    seed(settings.mysql)
    execute(settings.mysql, "INSERT INTO doc (id, title) VALUES ('B', 'upper'), ('a', 'lower')")  # _ci: a < B
    backed_up(settings)
    change(settings.mysql)
    point, record = backed_up(settings)
    assert artifact_names(record) == ["mysql_dump.sql.gz"]
    assert "do not rise strictly in byte order" in (point.folder / "backup.log").read_text()


def test_a_database_with_a_routine_and_an_event_gets_change_points_one_with_a_trigger_full_points(
        tmp_path, testbed_env, mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    tricky_seed(settings.mysql)
    backed_up(settings)
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO docs (id, title) VALUES (100, 'after the full point')")  # the trigger adds to audit
        conn.commit()
    point, record = backed_up(settings)
    assert artifact_names(record) == ["mysql_dump.sql.gz"]  # the trigger would fire again as the changes load
    assert "the database has triggers" in (point.folder / "backup.log").read_text()

    execute(settings.mysql, "DROP TRIGGER docs_audit")
    backed_up(settings)
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("CALL add_tag('later')")
        cur.execute("UPDATE docs SET title = 'edited' WHERE id = 1")
        conn.commit()
    point, record = backed_up(settings)
    assert artifact_names(record) == ["mysql_base.sql.gz", "mysql_changes.sql.gz"]
    restored = unique("t_ours_")
    try:
        result = restore(settings, point, record, target_database=restored, log=log)
        assert result.ok and table_rows(settings.mysql, restored) == table_rows(settings.mysql, mysql_database)
        assert sorted(result.stored_code) == ["EVENT purge_audit", "PROCEDURE add_tag"]
    finally:
        drop(settings.mysql, restored)


def test_a_docker_mode_change_point_is_made_and_restored_through_the_container(tmp_path, testbed_env,
                                                                                docker_mysql_database):
    settings = settings_for(testbed_env, tmp_path, docker_mysql_database, docker=True)
    _, point, record = full_then_change_point(settings)
    assert artifact_names(record) == ["mysql_base.sql.gz", "mysql_changes.sql.gz"]
    assert record.details["mode"] == "docker" and mysql.verify(settings, point, record) == []
    restored = unique("t_ours_")
    try:
        result = restore(settings, point, record, target_database=restored, log=log)
        assert result.ok and rows(settings.mysql, restored) == rows(settings.mysql, docker_mysql_database)
    finally:
        drop(settings.mysql, restored)


def test_a_dump_tool_recorded_writing_several_rows_on_a_line_is_asked_for_a_row_per_statement_and_change_points_go_on(
        tmp_path, testbed_env, mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    seed(settings.mysql)
    first, record = backed_up(settings)
    assert "--skip-extended-insert" not in record.details["options"] and record.details["rows_per_line"] is True
    record.details["rows_per_line"] = False  # what an older MariaDB tool's one-line extended INSERTs record
    first.save_record(record)
    change(settings.mysql)

    full, full_record = backed_up(settings)
    execute(settings.mysql, "UPDATE counter SET n = n + 1 WHERE id % 5 = 0", "DELETE FROM doc WHERE title LIKE '%7%'")
    point, changes = backed_up(settings)

    assert artifact_names(full_record) == ["mysql_dump.sql.gz"]  # the first point is no base
    assert "--skip-extended-insert" in full_record.details["options"] and full_record.details["rows_per_line"]
    assert artifact_names(changes) == ["mysql_base.sql.gz", "mysql_changes.sql.gz"]
    assert changes.details["change_of"]["point"] == full.ref and "--skip-extended-insert" in changes.details["options"]
    assert mysql.verify(settings, full, full_record) == [] and mysql.verify(settings, point, changes) == []
    assert changes.counts == {t: len(r) for t, r in rows(settings.mysql, mysql_database).items()}
