"""Restoring MySQL / MariaDB from a point's dump, against the real test bed: a tiny RAGFlow is seeded into a
database of the test's own, backed up with run_component, damaged, and restored. Every database a test makes
(the seeded one, drill targets, scratch and old ones) starts with the seeded name and is dropped afterwards."""
from __future__ import annotations

import contextlib
import gzip
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import actors.mysql.load as mysql_load
import actors.mysql.restore as mysql_restore
from actors.actions.runs import run_component
from actors.mysql.restore import restore, restore_kb
from core import clients
from core.atomic import sha256_of
from core.component import NothingChanged, PermanentError
from core.config import MySQLSettings, Settings
from core.manifest import ComponentRecord
from core.points import Point, Storage
from testbed import settings as testbed_settings
from testbed.seed import Dataset, seed
from tests.conftest import reach, unique

KB_TABLES = ("knowledgebase", "document", "file2document", "file", "task")


@dataclass
class Live:
    settings: Settings
    database: str
    dataset: Dataset

    @property
    def cfg(self) -> MySQLSettings:
        return self.settings.mysql


def make_live(testbed_env: dict[str, str], tmp_path: Path, docker: bool = False) -> Iterator[Live]:
    name = unique("t_rs_")
    cfg = testbed_settings.mysql(testbed_env, database=name, docker=docker)
    reach("MariaDB in Docker" if docker else "MariaDB", lambda: clients.mysql_connection(cfg, database="").close())
    dataset = seed(mysql=cfg, database=name, size="tiny")
    try:
        round_floats(cfg, name)
        yield Live(Settings(storage_root=tmp_path / "b", mysql=cfg, docker={"host": testbed_env["DOCKER_HOST"]}),
                   name, dataset)
    finally:
        with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
            for database in databases(cfg, name):
                cur.execute(f"DROP DATABASE IF EXISTS `{database}`")


def round_floats(cfg: MySQLSettings, database: str) -> None:
    """MariaDB's mysqldump writes FLOAT values with 6 significant digits, so a seeded duration like 23.456789
    comes back as 23.4568 (what every client reads, before and after). Rounded here so that CHECKSUM TABLE,
    which sees the stored bits, can compare a restore with the original."""
    with clients.mysql_connection(cfg, database=database) as conn, conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                    "AND DATA_TYPE = 'float'", (database,))
        for table, column in cur.fetchall():
            cur.execute(f"UPDATE `{table}` SET `{column}` = ROUND(`{column}`, 3)")


@pytest.fixture
def live(testbed_env, tmp_path) -> Iterator[Live]:
    """A tiny RAGFlow seeded into a database of this test's own on the host MariaDB."""
    yield from make_live(testbed_env, tmp_path)


@pytest.fixture
def docker_live(testbed_env, tmp_path) -> Iterator[Live]:
    """The same, on the MariaDB inside the compose-labelled container, reached in docker mode."""
    yield from make_live(testbed_env, tmp_path, docker=True)


def backup(live: Live) -> tuple[Point, ComponentRecord]:
    point = Storage(live.settings.storage_root).new_point(["mysql"])
    record = run_component(live.settings, point, "mysql")
    assert record is not None and record.status == "ok", record and record.error
    return point, record


# ---------------------------------------------------------------- looking at the server


def execute(cfg: MySQLSettings, database: str, *statements: str) -> None:
    with clients.mysql_connection(cfg, database=database) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def databases(cfg: MySQLSettings, prefix: str) -> set[str]:
    with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
                    (prefix.replace("_", "\\_") + "%",))
        return {row[0] for row in cur.fetchall()}


def scratch_left(live: Live) -> set[str]:
    return {name for name in databases(live.cfg, live.database) if "__restore_" in name or "__old_" in name}


def tables(cfg: MySQLSettings, database: str) -> list[str]:
    with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s ORDER BY 1", (database,))
        return [row[0] for row in cur.fetchall()]


def checksums(cfg: MySQLSettings, database: str) -> dict[str, int]:
    """CHECKSUM TABLE of every table: equal checksums, equal rows."""
    names = tables(cfg, database)
    if not names:
        return {}
    with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
        cur.execute("CHECKSUM TABLE " + ", ".join(f"`{database}`.`{t}`" for t in names))
        return {qualified.split(".", 1)[1]: value for qualified, value in cur.fetchall()}


def counts(cfg: MySQLSettings, database: str) -> dict[str, int]:
    with clients.mysql_connection(cfg, database=database) as conn, conn.cursor() as cur:
        found = {}
        for table in tables(cfg, database):
            cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            found[table] = cur.fetchone()[0]
        return found


def kb_rows(cfg: MySQLSettings, database: str, kb_id: str) -> dict[str, list[tuple]]:
    """One knowledge base's full rows per table, as RAGFlow links them (files through file2document, and
    the KB's folder, their parent)."""
    docs = "SELECT id FROM document WHERE kb_id = %s"
    linked = f"SELECT file_id FROM file2document WHERE document_id IN ({docs})"
    queries = {
        "knowledgebase": ("SELECT * FROM knowledgebase WHERE id = %s", (kb_id,)),
        "document": (f"SELECT * FROM document WHERE id IN ({docs})", (kb_id,)),
        "file2document": (f"SELECT * FROM file2document WHERE document_id IN ({docs})", (kb_id,)),
        "file": (f"SELECT * FROM file WHERE id IN ({linked}) OR (type = 'folder' AND id IN "
                 f"(SELECT parent_id FROM file WHERE id IN ({linked})))", (kb_id, kb_id)),
        "task": (f"SELECT * FROM task WHERE doc_id IN ({docs})", (kb_id,)),
    }
    with clients.mysql_connection(cfg, database=database) as conn, conn.cursor() as cur:
        result = {}
        for table, (sql, args) in queries.items():
            cur.execute(sql + " ORDER BY id", args)
            result[table] = list(cur.fetchall())
        return result


def delete_kb_like_ragflow(cfg: MySQLSettings, database: str, kb_id: str) -> None:
    """What RAGFlow's "delete knowledge base" does to MySQL: tasks, links, the KB's own files and folder (not
    file-manager files linked into it), documents, the KB."""
    rows = kb_rows(cfg, database, kb_id)
    file_ids = [row[0] for row in rows["file"]]
    marks = ", ".join(["%s"] * len(file_ids))
    with clients.mysql_connection(cfg, database=database) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM task WHERE doc_id IN (SELECT id FROM document WHERE kb_id = %s)", (kb_id,))
        cur.execute("DELETE FROM file2document WHERE document_id IN (SELECT id FROM document WHERE kb_id = %s)",
                    (kb_id,))
        cur.execute(f"DELETE FROM file WHERE id IN ({marks}) AND source_type = 'knowledgebase'", file_ids)
        cur.execute("DELETE FROM document WHERE kb_id = %s", (kb_id,))
        cur.execute("DELETE FROM knowledgebase WHERE id = %s", (kb_id,))


def other_rows(cfg: MySQLSettings, database: str, kb_id: str) -> dict[str, set[tuple]]:
    """Every row of the KB tables that is not the given KB's."""
    own = kb_rows(cfg, database, kb_id)
    with clients.mysql_connection(cfg, database=database) as conn, conn.cursor() as cur:
        result = {}
        for table in KB_TABLES:
            cur.execute(f"SELECT * FROM `{table}`")
            result[table] = set(cur.fetchall()) - set(own[table])
        return result


# ---------------------------------------------------------------- restore


def test_a_dropped_database_comes_back_with_every_row_and_the_same_data(live):
    point, record = backup(live)
    before = checksums(live.cfg, live.database)
    execute(live.cfg, "", f"DROP DATABASE `{live.database}`")

    result = restore(live.settings, point, record)

    assert result.ok and result.target == live.database and result.point == point.ref
    assert result.found == result.expected == record.counts == live.dataset.row_counts
    assert counts(live.cfg, live.database) == record.counts
    assert checksums(live.cfg, live.database) == before
    assert result.previous_database is None and result.seconds > 0
    assert scratch_left(live) == set()


def test_a_zstd_dump_comes_back_like_a_gzip_one(live):
    live.settings.mysql.compression = "zstd"
    point, record = backup(live)
    assert [(a.name, a.kind) for a in record.artifacts] == [("mysql_dump.sql.zst", "zst")]
    before = checksums(live.cfg, live.database)
    execute(live.cfg, "", f"DROP DATABASE `{live.database}`")

    result = restore(live.settings, point, record)

    assert result.ok and result.found == record.counts == live.dataset.row_counts
    assert checksums(live.cfg, live.database) == before
    assert scratch_left(live) == set()


def test_changed_rows_and_added_tables_are_undone_and_the_previous_state_can_be_kept(live):
    point, record = backup(live)
    at_backup = checksums(live.cfg, live.database)
    execute(live.cfg, live.database,
            "UPDATE document SET name = 'renamed after the backup', progress = 0.5",
            "DELETE FROM task LIMIT 2",
            "INSERT INTO user_tenant (id, user_id, tenant_id, role) VALUES ('added', 'u', 't', 'normal')",
            "CREATE TABLE added_later (id INT PRIMARY KEY, note TEXT)",
            "INSERT INTO added_later VALUES (1, 'made after the backup')")
    damaged = checksums(live.cfg, live.database)
    assert damaged != at_backup

    result = restore(live.settings, point, record, keep_previous=True)

    assert result.ok
    assert checksums(live.cfg, live.database) == at_backup  # no added_later either
    assert result.previous_database is not None and result.previous_database.startswith(f"{live.database}__old_")
    assert checksums(live.cfg, result.previous_database) == damaged
    assert scratch_left(live) == {result.previous_database}


def test_triggers_routines_and_events_come_back_with_the_tables(live):
    execute(live.cfg, live.database,
            "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, doc_id VARCHAR(32))",
            "CREATE TRIGGER document_audit AFTER DELETE ON document FOR EACH ROW "
            "INSERT INTO audit (doc_id) VALUES (OLD.id)",
            "CREATE FUNCTION doc_count(kb VARCHAR(32)) RETURNS INT READS SQL DATA "
            "RETURN (SELECT COUNT(*) FROM document WHERE kb_id = kb)",
            "CREATE PROCEDURE clear_audit() DELETE FROM audit",
            "CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit")
    point, record = backup(live)
    # After the backup: the stored code changes, and a trigger of the live tables is replaced.
    execute(live.cfg, live.database,
            "DROP TRIGGER document_audit", "DROP FUNCTION doc_count", "DROP EVENT purge_audit",
            "CREATE TRIGGER task_changed BEFORE UPDATE ON task FOR EACH ROW SET NEW.retry_count = 99",
            "CREATE PROCEDURE made_later() SELECT 1")

    result = restore(live.settings, point, record, keep_previous=True)

    assert result.ok
    assert sorted(result.stored_code) == ["EVENT purge_audit", "FUNCTION doc_count", "PROCEDURE clear_audit",
                                          "TRIGGER document_audit"]
    kb = live.dataset.kb_ids[0]
    with clients.mysql_connection(live.cfg, database=live.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT doc_count(%s)", (kb,))
        assert cur.fetchone()[0] == 3
        cur.execute("SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s ORDER BY 1",
                    (live.database,))
        assert cur.fetchall() == (("clear_audit",), ("doc_count",))
        cur.execute("SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
                    (live.database,))
        assert cur.fetchall() == (("purge_audit", "DISABLED"),)
        cur.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", (live.database,))
        assert cur.fetchall() == (("document_audit",),)
        cur.execute("DELETE FROM document WHERE kb_id = %s", (kb,))  # the restored trigger fires
        cur.execute("SELECT COUNT(*) FROM audit")
        assert cur.fetchone()[0] == 3
        # The pre-restore trigger and routine went with the previous tables.
        cur.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
                    (result.previous_database,))
        assert cur.fetchall() == (("task_changed",),)
        cur.execute("SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s ORDER BY 1",
                    (result.previous_database,))
        assert cur.fetchall() == (("clear_audit",), ("made_later",))


def test_a_drill_into_another_database_leaves_the_live_database_untouched(live):
    point, record = backup(live)
    execute(live.cfg, live.database, "UPDATE knowledgebase SET name = 'changed since the backup'")
    live_now = checksums(live.cfg, live.database)
    drill = f"{live.database}_drill"

    result = restore(live.settings, point, record, target_database=drill)

    assert result.ok and result.target == drill
    assert counts(live.cfg, drill) == record.counts
    assert checksums(live.cfg, live.database) == live_now
    assert scratch_left(live) == set()


def test_a_swap_blocked_by_an_open_transaction_gives_up_and_leaves_the_target_as_it_was(live, monkeypatch):
    execute(live.cfg, live.database, "CREATE TRIGGER task_retry BEFORE UPDATE ON task FOR EACH ROW "
                                     "SET NEW.retry_count = NEW.retry_count + 1")
    point, record = backup(live)
    execute(live.cfg, live.database, "UPDATE document SET run = '0'")
    live_now = checksums(live.cfg, live.database)
    monkeypatch.setattr(mysql_restore, "LOCK_WAIT_SECONDS", 1)
    # RAGFlow at work: a transaction that has read `document` holds its metadata lock until it ends.
    with clients.mysql_connection(live.cfg, database=live.database) as busy, busy.cursor() as cur:
        busy.begin()
        cur.execute("SELECT COUNT(*) FROM document")
        with pytest.raises(PermanentError, match="held open by another client"):
            restore(live.settings, point, record)
        busy.rollback()

    assert checksums(live.cfg, live.database) == live_now
    with clients.mysql_connection(live.cfg, database=live.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", (live.database,))
        assert cur.fetchall() == (("task_retry",),)  # taken off for the swap, put back when it gave up
    assert scratch_left(live) == set()


def test_a_dump_whose_rows_differ_from_the_manifest_is_refused_before_anything_changes(live):
    point, record = backup(live)
    execute(live.cfg, live.database, "DELETE FROM task LIMIT 1")
    live_now = checksums(live.cfg, live.database)
    lying = record.model_copy(update={"counts": {**record.counts, "document": record.counts["document"] + 1}})

    with pytest.raises(PermanentError) as caught:
        restore(live.settings, point, lying)

    assert "`document` has 6 rows, the manifest says 7 rows" in str(caught.value)
    assert checksums(live.cfg, live.database) == live_now
    assert scratch_left(live) == set()


@pytest.mark.fault('corrupt input: a dump edited after the backup',
                   'restore refuses it before loading (SHA-256 differs from the manifest)')
def test_an_artifact_that_changed_after_the_backup_is_refused_before_loading(live):
    point, record = backup(live)
    path = point.path("mysql_dump.sql.gz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(PermanentError, match="differs from the manifest"):
        restore(live.settings, point, record)
    assert scratch_left(live) == set()


def altered_copy(live: Live, point: Point, record: ComponentRecord,
                 change: Callable[[bytes], bytes]) -> tuple[Point, ComponentRecord]:
    """A point holding `change(the dump's gzip bytes)`, with a record that agrees with the new file (so only
    loading it shows the damage)."""
    copy = Storage(live.settings.storage_root.parent / "altered").new_point(["mysql"])
    target = copy.path("mysql_dump.sql.gz")
    target.write_bytes(change(point.path("mysql_dump.sql.gz").read_bytes()))
    artifact = record.artifacts[0].model_copy(update={"bytes": target.stat().st_size, "sha256": sha256_of(target)})
    return copy, record.model_copy(update={"artifacts": [artifact]})


@pytest.mark.parametrize("mode", ["tcp", "docker"])
@pytest.mark.fault('corrupt input: a truncated dump given to restore',
                   'the load into the scratch database fails; the live database is untouched')
def test_a_dump_corrupted_midway_fails_without_touching_the_live_database(request, mode):
    live = request.getfixturevalue("docker_live" if mode == "docker" else "live")
    point, record = backup(live)
    bad_point, bad_record = altered_copy(live, point, record, lambda data: data[: len(data) // 2])
    with gzip.open(bad_point.path("mysql_dump.sql.gz")) as stream, pytest.raises(EOFError):
        stream.read()  # really corrupt: some of it reads, the rest does not
    live_now = checksums(live.cfg, live.database)

    with pytest.raises(PermanentError, match="is corrupt after"):
        restore(live.settings, bad_point, bad_record)

    assert checksums(live.cfg, live.database) == live_now
    assert scratch_left(live) == set()
    assert running_loads(live) == []


def running_loads(live: Live) -> list[str]:
    """Restore loads still running in the test bed's MySQL container (docker mode), by exec id."""
    if live.cfg.mode != "docker":
        return []
    api = clients.docker_client(live.settings.docker.host).api
    found = []
    for exec_id in api.inspect_container(find_container(live))["ExecIDs"] or []:
        with contextlib.suppress(Exception):  # an exec may be gone by now
            state = api.exec_inspect(exec_id)
            if state["Running"] and "--binary-mode" in state["ProcessConfig"]["arguments"]:
                found.append(exec_id)
    return found


def find_container(live: Live) -> str:
    from core.clients import find_mysql_container

    return find_mysql_container(live.settings).id


@pytest.mark.parametrize("mode", ["tcp", "docker"])
def test_a_dump_the_server_refuses_midway_fails_naming_the_error_and_leaves_nothing(request, mode):
    live = request.getfixturevalue("docker_live" if mode == "docker" else "live")
    point, record = backup(live)

    def break_it(data: bytes) -> bytes:
        text = gzip.decompress(data)
        cut = text.index(b"CREATE TABLE `file`")
        return gzip.compress(text[:cut] + b"THIS IS NOT SQL;\n" + text[cut:])

    bad_point, bad_record = altered_copy(live, point, record, break_it)
    live_now = checksums(live.cfg, live.database)

    with pytest.raises(PermanentError, match="refused a statement of the dump.*ERROR 1064") as caught:
        restore(live.settings, bad_point, bad_record)

    assert live.cfg.password.get_secret_value() not in str(caught.value)
    assert checksums(live.cfg, live.database) == live_now
    assert scratch_left(live) == set()
    assert running_loads(live) == []


def loader_children() -> list[int]:
    """The mariadb/mysql clients this test process started (restore's loader)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                comm, fields = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
                if comm in ("mariadb", "mysql") and int(fields[1]) == os.getpid():
                    found.append(int(entry.name))
    return found


def test_a_load_whose_client_is_killed_midway_leaves_the_live_database_untouched(live, testbed_env):
    # Enough rows that the load takes a while to watch and cut short.
    execute(live.cfg, live.database,
            "CREATE TABLE bulk (id BIGINT AUTO_INCREMENT PRIMARY KEY, payload VARCHAR(255))",
            "INSERT INTO bulk (payload) VALUES (REPEAT(MD5(RAND()), 4))",
            *["INSERT INTO bulk (payload) SELECT REPEAT(MD5(RAND()), 4) FROM bulk"] * 17)
    point, record = backup(live)
    live_now = checksums(live.cfg, live.database)
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(restore(live.settings, point, record))
        except BaseException as exc:  # noqa: BLE001 - examined below
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    killed = []
    deadline = time.monotonic() + 60
    while not killed and worker.is_alive() and time.monotonic() < deadline:
        children = loader_children()
        scratch = [name for name in databases(live.cfg, live.database) if "__restore_" in name]
        if children and scratch and "bulk" in tables(live.cfg, scratch[0]):  # rows are going in
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # this one finished meanwhile; another may still be loading
                    continue
                killed.append(pid)
        time.sleep(0.01)
    worker.join(120)

    assert killed, "the load ended before it could be killed"
    [error] = outcome
    assert isinstance(error, RuntimeError) and "killed by signal 9" in str(error), error
    assert testbed_env["MYSQL_PASSWORD"] not in str(error)
    assert checksums(live.cfg, live.database) == live_now
    assert scratch_left(live) == set()


def test_a_docker_mode_restore_loads_the_dump_through_the_container(docker_live):
    live = docker_live
    execute(live.cfg, live.database,  # a few MB: the dump crosses the exec socket in many pieces
            "CREATE TABLE bulk (id BIGINT AUTO_INCREMENT PRIMARY KEY, payload VARCHAR(255))",
            "INSERT INTO bulk (payload) VALUES (REPEAT(MD5(RAND()), 4))",
            *["INSERT INTO bulk (payload) SELECT REPEAT(MD5(RAND()), 4) FROM bulk"] * 14)
    point, record = backup(live)
    assert record.details["mode"] == "docker"
    at_backup = checksums(live.cfg, live.database)
    execute(live.cfg, live.database, "DROP TABLE task", "UPDATE document SET run = '0'")

    result = restore(live.settings, point, record)

    assert result.ok
    assert checksums(live.cfg, live.database) == at_backup
    assert scratch_left(live) == set()


# ---------------------------------------------------------------- restore_kb


def test_restore_kb_brings_one_deleted_knowledge_base_back_and_leaves_the_others_as_they_are_now(live):
    lost, kept = live.dataset.kb_ids
    point, record = backup(live)
    lost_rows = kb_rows(live.cfg, live.database, lost)
    assert all(lost_rows[table] for table in KB_TABLES)
    delete_kb_like_ragflow(live.cfg, live.database, lost)
    execute(live.cfg, live.database,
            f"UPDATE document SET name = 'renamed after the backup' WHERE kb_id = '{kept}' ORDER BY id LIMIT 1",
            f"UPDATE knowledgebase SET description = 'edited after the backup' WHERE id = '{kept}'")
    others_now = other_rows(live.cfg, live.database, lost)
    rest = {t: v for t, v in checksums(live.cfg, live.database).items() if t not in KB_TABLES}

    result = restore_kb(live.settings, point, record, lost)

    assert result.ok and result.kb_id == lost and result.target == live.database
    assert result.expected == {table: len(rows) for table, rows in lost_rows.items()}
    assert result.removed == {table: 0 for table in KB_TABLES}  # nothing of it was left
    assert kb_rows(live.cfg, live.database, lost) == lost_rows
    assert other_rows(live.cfg, live.database, lost) == others_now  # the other KB's edits stay
    with clients.mysql_connection(live.cfg, database=live.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM document WHERE name = 'renamed after the backup'")
        assert cur.fetchone()[0] == 1
    assert {t: v for t, v in checksums(live.cfg, live.database).items() if t not in KB_TABLES} == rest
    assert scratch_left(live) == set()


def test_restore_kb_puts_back_a_knowledge_base_changed_after_the_backup(live):
    kb, other = live.dataset.kb_ids
    point, record = backup(live)
    at_backup = kb_rows(live.cfg, live.database, kb)
    other_at_backup = kb_rows(live.cfg, live.database, other)
    doc = at_backup["document"][0][0]
    folder = next(row[1] for row in at_backup["file"] if row[0] != row[1] and row[7] != "folder")  # parent_id
    execute(live.cfg, live.database,
            f"UPDATE document SET name = 'renamed', chunk_num = 0 WHERE id = '{doc}'",
            f"DELETE FROM task WHERE doc_id = '{doc}'",
            # A document uploaded after the backup, with its file, link and task.
            f"INSERT INTO document (id, kb_id, name) VALUES ('newdoc', '{kb}', 'new.pdf')",
            f"INSERT INTO file (id, parent_id, name, type, source_type) VALUES ('newfile', '{folder}', 'new.pdf', "
            f"'pdf', 'knowledgebase')",
            "INSERT INTO file2document (id, file_id, document_id) VALUES ('newlink', 'newfile', 'newdoc')",
            "INSERT INTO task (id, doc_id) VALUES ('newtask', 'newdoc')")

    result = restore_kb(live.settings, point, record, kb)

    assert result.ok
    assert kb_rows(live.cfg, live.database, kb) == at_backup
    assert result.removed["document"] == 4 and result.removed["task"] == 3  # 3 + the new one; 2 left + the new one
    assert kb_rows(live.cfg, live.database, other) == other_at_backup
    with clients.mysql_connection(live.cfg, database=live.database) as conn, conn.cursor() as cur:
        for table in ("document", "file", "file2document", "task"):
            cur.execute(f"SELECT COUNT(*) FROM `{table}` WHERE id LIKE 'new%%'")
            assert cur.fetchone()[0] == 0, table


def test_restore_kb_leaves_a_file_manager_file_linked_into_the_knowledge_base_as_it_is_now(live):
    kb = live.dataset.kb_ids[0]
    with clients.mysql_connection(live.cfg, database=live.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM file WHERE name = 'notes-é.txt'")
        [(notes,)] = cur.fetchall()
    # The user added a file of their file manager to the KB: a document linked to the same file row.
    execute(live.cfg, live.database,
            f"INSERT INTO document (id, kb_id, name) VALUES ('linkeddoc', '{kb}', 'notes-é.txt')",
            f"INSERT INTO file2document (id, file_id, document_id) VALUES ('linkedf2d', '{notes}', 'linkeddoc')")
    point, record = backup(live)
    at_backup = kb_rows(live.cfg, live.database, kb)
    execute(live.cfg, live.database, f"UPDATE file SET name = 'renamed by the user' WHERE id = '{notes}'")
    delete_kb_like_ragflow(live.cfg, live.database, kb)

    result = restore_kb(live.settings, point, record, kb)

    assert result.ok
    restored = kb_rows(live.cfg, live.database, kb)
    assert {t: rows for t, rows in restored.items() if t != "file"} == \
        {t: rows for t, rows in at_backup.items() if t != "file"}
    assert [row for row in restored["file"] if row[0] != notes] == [row for row in at_backup["file"] if row[0] != notes]
    with clients.mysql_connection(live.cfg, database=live.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM file WHERE id = %s", (notes,))
        assert cur.fetchall() == (("renamed by the user",),)


def test_restore_kb_of_a_knowledge_base_not_in_the_backup_is_refused_and_changes_nothing(live):
    point, record = backup(live)
    live_now = checksums(live.cfg, live.database)

    with pytest.raises(NothingChanged, match="is not in the backup"):
        restore_kb(live.settings, point, record, "0" * 32)

    assert checksums(live.cfg, live.database) == live_now
    assert scratch_left(live) == set()


# ---------------------------------------------------------------- names


def test_scratch_names_fit_mysqls_limit_and_the_live_database_cannot_be_dropped():
    assert mysql_load.scratch_name("rag_flow", token="abc123") == "rag_flow__restore_abc123"
    long = mysql_load.scratch_name("x" * 64, "old")
    assert len(long) == 64 and long.startswith("x" * 48) and long[-11:-6] == "_old_"
    settings = Settings(mysql=MySQLSettings(database="rag_flow"))
    with pytest.raises(PermanentError, match="live database"):
        mysql_load.drop_database(settings, "rag_flow")
    with pytest.raises(PermanentError, match="system schema"):
        mysql_load.drop_database(settings, "mysql")
    with pytest.raises(PermanentError, match="system schema"):
        restore(settings, None, None, target_database="information_schema")  # type: ignore[arg-type]
