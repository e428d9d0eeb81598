"""The MySQL component against the real MariaDB test bed: over TCP with the local client and through
`docker exec` in the compose-labelled container."""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import secrets
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

import actors.mysql.backup as mysql
from actors.actions.runs import record_final_failure, run_component, run_component_attempt
from core import clients
from core.component import PermanentError
from core.config import MySQLSettings, Settings
from core.points import Point, Storage
from testbed import settings as testbed_settings
from tests.conftest import reach, unique

log = logging.getLogger("test_mysql")


def settings_for(env: dict[str, str], tmp_path: Path, database: str, docker: bool = False, **mysql_changes) -> Settings:
    cfg = testbed_settings.mysql(env, database=database, docker=docker).model_copy(update=mysql_changes)
    return Settings(storage_root=tmp_path / "backups", mysql=cfg, docker={"host": env["DOCKER_HOST"]})


def new_point(settings: Settings) -> Point:
    return Storage(settings.storage_root).new_point([mysql.NAME])


def leftovers(point: Point) -> list[str]:
    """Anything of the dump in the point folder, final or temporary."""
    return [path.name for path in point.folder.iterdir() if "mysql_dump" in path.name]


# ---------------------------------------------------------------- seeding

TRICKY_TEXT = [
    "O'Brien said \"hi\"",
    "a),(b and 1),(2 and '),('",
    "ends with a backslash \\",
    "line one\nline two\r\n\ttab; then );",
    "Grüße, 日本語, emoji 😀🚀",
    "",
]


def seed(cfg: MySQLSettings) -> dict[str, int]:
    """Tables with awkward values, a routine, a trigger and an event; returns COUNT(*) per table."""
    with clients.mysql_connection(cfg) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE docs (id INT PRIMARY KEY, title VARCHAR(200) NOT NULL, body TEXT NULL, "
                    "data BLOB NULL, meta JSON NULL) CHARACTER SET utf8mb4")
        cur.execute("CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, doc_id INT NOT NULL)")
        cur.execute("CREATE TABLE tags (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50) NOT NULL)")
        cur.execute("CREATE TABLE `empty one` (id INT PRIMARY KEY)")
        cur.execute("CREATE TRIGGER docs_audit AFTER INSERT ON docs FOR EACH ROW "
                    "INSERT INTO audit (doc_id) VALUES (NEW.id)")
        # A body whose lines look like data to a naive counter.
        cur.execute("CREATE PROCEDURE add_tag(IN n VARCHAR(50))\nBEGIN\n"
                    "INSERT INTO `tags` VALUES (NULL, n),(NULL, CONCAT(n, '),(2'));\nEND")
        cur.execute("CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit WHERE id < 0")
        rows = [(i, text, None if i % 2 else text, bytes(range(256)) if i == 0 else (None if i % 3 else b"\x00'),(\\"),
                 None if i == 1 else '{"k": "v),(w", "n": %d}' % i) for i, text in enumerate(TRICKY_TEXT)]
        cur.executemany("INSERT INTO docs VALUES (%s, %s, %s, %s, %s)", rows)
        for n in range(20):
            cur.execute("CALL add_tag(%s)", (f"tag-{n}'s",))
        counts = {}
        for table in ("docs", "audit", "tags", "empty one"):
            cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            counts[table] = cur.fetchone()[0]
    assert counts == {"docs": len(TRICKY_TEXT), "audit": len(TRICKY_TEXT), "tags": 40, "empty one": 0}
    return counts


def table_rows(cfg: MySQLSettings, database: str) -> dict[str, list[tuple]]:
    with clients.mysql_connection(cfg, database=database) as conn, conn.cursor() as cur:
        result = {}
        for table in ("docs", "audit", "tags", "empty one"):
            cur.execute(f"SELECT * FROM `{table}` ORDER BY id")
            result[table] = list(cur.fetchall())
        return result


def option_file(tmp_path: Path, cfg: MySQLSettings) -> Path:
    path = tmp_path / "client.cnf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f'[client]\nuser={cfg.user}\npassword="{clients.secret(cfg.password)}"\n'
                     f"host={cfg.host}\nport={cfg.port}\nprotocol=TCP\n")
    return path


@pytest.fixture(scope="module")
def big_database(testbed_env) -> Iterator[str]:
    """262,144 rows (~37 MB of dump): long enough a dump to watch it, or cut it short, while it runs."""
    name = unique("t_big_")
    cfg = testbed_settings.mysql(testbed_env, database=name)
    conn = reach("MariaDB", lambda: clients.mysql_connection(cfg, database=""))
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
        cur.execute(f"CREATE TABLE `{name}`.big (id BIGINT AUTO_INCREMENT PRIMARY KEY, payload VARCHAR(255))")
        cur.execute(f"INSERT INTO `{name}`.big (payload) VALUES (REPEAT(MD5(RAND()), 4))")
        for _ in range(18):
            cur.execute(f"INSERT INTO `{name}`.big (payload) SELECT REPEAT(MD5(RAND()), 4) FROM `{name}`.big")
    yield name
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def dump_processes(database: str) -> list[int]:
    """Pids of the mysqldump processes dumping `database` (on this host, in or out of a container)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith((b"mysqldump", b"mariadb-dump")) and database.encode() in args:
                found.append(int(entry.name))
    return found


# ---------------------------------------------------------------- tests


def test_a_tcp_backup_writes_a_private_gzip_dump_with_exact_row_counts_and_the_binlog_position(
        tmp_path, testbed_env, mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    expected = seed(settings.mysql)
    point = new_point(settings)

    record = run_component(settings, point, mysql.NAME)

    assert record is not None and record.status == "ok", record and record.error
    assert record.counts == expected
    details = record.details
    assert details["mode"] == "tcp" and details["database"] == mysql_database
    assert "MariaDB" in details["client_version"] and details["server_version"].startswith("10.11")
    assert details["binlog"]["file"].startswith("binlog.") and details["binlog"]["position"] > 0
    [artifact] = record.artifacts
    path = point.path("mysql_dump.sql.gz")
    assert (artifact.name, artifact.kind, artifact.bytes) == ("mysql_dump.sql.gz", "gzip", path.stat().st_size)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((point.folder / "manifest.json").stat().st_mode) == 0o600
    text = gzip.decompress(path.read_bytes())
    assert len(text) == details["uncompressed_bytes"]
    for needle in (b"CREATE DATABASE", f"USE `{mysql_database}`".encode(), b"PROCEDURE `add_tag`",
                   b"TRIGGER docs_audit", b"EVENT `purge_audit`", b"-- CHANGE MASTER TO"):
        assert needle in text, needle
    assert text.rstrip().rsplit(b"\n", 1)[-1].startswith(b"-- Dump completed")
    assert point.manifest().status == "complete"
    assert mysql.verify(settings, point, record) == []

    # Loaded into a fresh database, the dump gives back the same rows, and the stored code.
    copy = unique("t_copy_")
    loadable = text.replace(f"`{mysql_database}`".encode(), f"`{copy}`".encode())
    try:
        subprocess.run(["mariadb", f"--defaults-extra-file={option_file(tmp_path, settings.mysql)}"],
                       input=loadable, check=True, capture_output=True, timeout=120)
        assert table_rows(settings.mysql, copy) == table_rows(settings.mysql, mysql_database)
        with clients.mysql_connection(settings.mysql, database=copy) as conn, conn.cursor() as cur:
            cur.execute("SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s", (copy,))
            assert cur.fetchall() == (("add_tag",),)
            cur.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", (copy,))
            assert cur.fetchall() == (("docs_audit",),)
            cur.execute("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (copy,))
            assert cur.fetchall() == (("purge_audit",),)
    finally:
        with clients.mysql_connection(settings.mysql, database="") as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{copy}`")


def test_a_docker_backup_dumps_the_containers_database_through_the_docker_api(
        tmp_path, testbed_env, docker_mysql_database):
    settings = settings_for(testbed_env, tmp_path, docker_mysql_database, docker=True)
    expected = seed(settings.mysql)
    point = new_point(settings)

    record = run_component(settings, point, mysql.NAME)

    assert record is not None and record.status == "ok", record and record.error
    assert record.counts == expected
    assert record.details["mode"] == "docker"
    assert record.details["binlog"] is not None
    assert "10.11" in record.details["client_version"]
    assert mysql.verify(settings, point, record) == []
    assert testbed_env["MYSQL_PASSWORD"] not in (point.folder / "backup.log").read_text()


def test_a_wrong_password_in_docker_mode_is_a_permanent_error_naming_the_container(
        tmp_path, testbed_env, docker_mysql_database):
    wrong = f"not-the-password-{secrets.token_hex(4)}"
    settings = settings_for(testbed_env, tmp_path, docker_mysql_database, docker=True, password=wrong)
    point = new_point(settings)
    with pytest.raises(PermanentError) as caught:
        mysql.backup(settings, point, log)
    assert "Access denied" in str(caught.value) and testbed_env["DOCKER_MYSQL_CONTAINER"] in str(caught.value)
    assert wrong not in str(caught.value)
    assert leftovers(point) == []


def test_a_missing_container_is_a_permanent_error_naming_the_labels_and_the_setting(tmp_path, testbed_env):
    settings = settings_for(testbed_env, tmp_path, "rag_flow", docker=True, compose_project="no-such-project")
    point = new_point(settings)
    with pytest.raises(PermanentError) as caught:
        mysql.backup(settings, point, log)
    message = str(caught.value)
    assert "com.docker.compose.project=no-such-project" in message and "mysql.compose_project" in message
    assert leftovers(point) == []


def test_the_password_never_shows_in_a_command_line_the_log_or_the_manifest(tmp_path, testbed_env, big_database):
    # A user of our own with a password found nowhere else on this host, and awkward for option files.
    user = unique("rbt_")[:16]
    password = f'p#w\\{secrets.token_hex(8)} "x'
    root = testbed_settings.mysql(testbed_env, database=big_database)
    with clients.mysql_connection(root, database="") as conn, conn.cursor() as cur:
        cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (user, password))
        cur.execute(f"GRANT SELECT, LOCK TABLES, SHOW VIEW, TRIGGER, EVENT ON `{big_database}`.* TO %s@'127.0.0.1'",
                    (user,))
        cur.execute("GRANT RELOAD, BINLOG MONITOR ON *.* TO %s@'127.0.0.1'", (user,))
    try:
        settings = settings_for(testbed_env, tmp_path, big_database, user=user, password=password)
        point = new_point(settings)
        outcome = {}
        worker = threading.Thread(target=lambda: outcome.update(record=run_component(settings, point, mysql.NAME)))
        worker.start()
        secret, seen, leaks = password.encode(), 0, []
        option_files: set[Path] = set()
        option_modes: set[int] = set()
        while worker.is_alive():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if secret in cmdline:
                    leaks.append(cmdline)
            for pid in dump_processes(big_database):
                seen += 1
                try:
                    if secret in Path(f"/proc/{pid}/environ").read_bytes():
                        leaks.append(b"environ of mysqldump")
                    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    option_files.add(Path(args[1].decode().partition("--defaults-extra-file=")[2]))
                    option_modes.add(stat.S_IMODE(next(iter(option_files)).stat().st_mode))
                except OSError:
                    pass
        worker.join()
    finally:
        with clients.mysql_connection(root, database="") as conn, conn.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'127.0.0.1'", (user,))

    record = outcome["record"]
    assert record.status == "ok", record.error
    assert record.counts == {"big": 2 ** 18}
    assert seen > 0, "the mysqldump process was never observed while the dump ran"
    assert leaks == []
    # The connection settings went through a private option file, named first, and gone afterwards.
    [options] = option_files
    assert options.name == "client.cnf" and option_modes == {0o600}
    assert not options.parent.exists()
    for path in point.folder.rglob("*"):
        if path.is_file() and path.name != "mysql_dump.sql.gz":
            assert password not in path.read_text(errors="replace"), path
    assert password not in point.manifest().model_dump_json()


@pytest.mark.fault('corrupt input: a truncated or edited dump',
                   'verify names the artifact and the mismatch (SHA-256, gzip end, row counts) and exits 1')
def test_verify_passes_on_a_good_point_and_catches_flipped_bytes_truncation_and_a_consistent_rewrite(
        tmp_path, testbed_env, mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database)
    seed(settings.mysql)
    point = new_point(settings)
    record = run_component(settings, point, mysql.NAME)
    assert record is not None and record.status == "ok", record and record.error
    assert mysql.verify(settings, point, record) == []
    path = point.path("mysql_dump.sql.gz")
    good = path.read_bytes()

    flipped = bytearray(good)
    middle = len(flipped) // 2
    flipped[middle:middle + 4] = bytes(b ^ 0xFF for b in flipped[middle:middle + 4])
    path.write_bytes(bytes(flipped))
    problems = mysql.verify(settings, point, record)
    assert problems and any("SHA-256" in p for p in problems)

    path.write_bytes(good[: len(good) * 2 // 3])
    problems = mysql.verify(settings, point, record)
    assert problems and any("bytes" in p for p in problems)

    # A row dropped and the checksums recomputed to match: the recount still tells.
    text = gzip.decompress(good)
    tampered = re.sub(rb"(INSERT INTO `tags` VALUES\s*)\(1,'tag-0\\'s'\),\s*", rb"\1", text, count=1)
    assert tampered != text
    repacked = gzip.compress(tampered)
    path.write_bytes(repacked)
    forged = record.model_copy(update={"artifacts": [record.artifacts[0].model_copy(
        update={"bytes": len(repacked), "sha256": hashlib.sha256(repacked).hexdigest()})]})
    problems = mysql.verify(settings, point, forged)
    assert problems == ["mysql_dump.sql.gz: table `tags` has 39 rows in the dump, the manifest says 40"]


def test_a_zstd_backup_holds_the_same_dump_and_verify_catches_it_cut_short(tmp_path, testbed_env, mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database, compression="zstd")
    expected = seed(settings.mysql)
    point = new_point(settings)

    record = run_component(settings, point, mysql.NAME)

    assert record is not None and record.status == "ok", record and record.error
    [artifact] = record.artifacts
    path = point.path("mysql_dump.sql.zst")
    assert (artifact.name, artifact.kind, artifact.bytes) == ("mysql_dump.sql.zst", "zst", path.stat().st_size)
    assert record.counts == expected == mysql.count_dump_rows(path)
    assert len(zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read()) == \
        record.details["uncompressed_bytes"]
    assert mysql.verify(settings, point, record) == []

    good = path.read_bytes()
    path.write_bytes(good[: len(good) * 2 // 3])
    cut = record.model_copy(update={"artifacts": [artifact.model_copy(
        update={"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})]})
    problems = mysql.verify(settings, point, cut)
    assert problems and all("mysql_dump.sql.zst" in p for p in problems)
    assert any("cut short" in p for p in problems)


@pytest.mark.fault('wrong MySQL password',
                   "a permanent error 'MySQL at host:port denied access to user ...' (never retried, password never shown); the point is failed")
def test_a_wrong_password_fails_the_point_saying_access_was_denied(tmp_path, testbed_env, mysql_database):
    wrong = f"not-the-password-{secrets.token_hex(4)}"
    settings = settings_for(testbed_env, tmp_path, mysql_database, password=wrong)
    point = new_point(settings)

    record = run_component(settings, point, mysql.NAME)

    assert record is not None and record.status == "failed"
    assert "access" in record.error.lower() and "denied" in record.error.lower()
    assert "mysql.password" in record.error and "127.0.0.1" in record.error
    assert wrong not in record.error and wrong not in (point.folder / "backup.log").read_text()
    assert leftovers(point) == []
    assert point.manifest().status == "failed"


@pytest.mark.fault('MySQL server down at the start of a run',
                   'a transient error naming host:port, retried by the worker with backoff; once the retries are '
                   'spent it is recorded as failed, started when the first attempt began')
def test_a_server_that_is_down_is_a_transient_error(tmp_path, testbed_env, mysql_database):
    settings = settings_for(testbed_env, tmp_path, mysql_database, port=1)
    point = new_point(settings)

    with pytest.raises(Exception) as caught:
        run_component_attempt(settings, point, mysql.NAME)
    assert not isinstance(caught.value, PermanentError)
    assert "127.0.0.1:1" in str(caught.value)
    assert point.manifest().status == "running"  # nothing recorded: the worker retries
    first_began = point.first_attempt(mysql.NAME)
    with pytest.raises(Exception, match="127.0.0.1:1"):
        run_component_attempt(settings, point, mysql.NAME)  # the retry fails the same way

    record = record_final_failure(settings, point, mysql.NAME, caught.value)  # the retries are spent
    assert record.status == "failed" and "127.0.0.1:1" in record.error
    assert record.started_at == first_began  # when the work began, not when it was given up
    assert leftovers(point) == []


def test_a_missing_database_is_permanent_and_leaves_no_file(tmp_path, testbed_env):
    missing = unique("t_missing_")
    settings = settings_for(testbed_env, tmp_path, missing)
    point = new_point(settings)
    with pytest.raises(PermanentError) as caught:
        mysql.backup(settings, point, log)
    assert missing in str(caught.value) and "mysql.database" in str(caught.value)
    assert leftovers(point) == []


@pytest.mark.fault('mysqldump killed midway',
                   'nothing under the final name; the record is failed with the signal')
def test_a_dump_killed_midway_leaves_nothing_under_the_final_name(tmp_path, testbed_env, big_database):
    settings = settings_for(testbed_env, tmp_path, big_database)
    point = new_point(settings)
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(record=run_component(settings, point, mysql.NAME)))
    worker.start()
    killed = False
    while worker.is_alive() and not killed:
        for pid in dump_processes(big_database):
            time.sleep(0.2)  # let some of the dump through first
            os.kill(pid, signal.SIGKILL)  # our own child: the backup just started it
            killed = True
    worker.join()
    assert killed, "the dump finished before it could be killed"
    record = outcome["record"]
    assert record.status == "failed" and "killed by signal 9" in record.error
    assert leftovers(point) == []
    assert point.manifest().status == "failed"


DUMP = r"""/*M!999999\- enable the sandbox mode */
-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB
-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000042', MASTER_LOG_POS=4711;
CREATE TABLE `one line` (
  `id` int NOT NULL,
  `s` text
);
LOCK TABLES `one line` WRITE;
INSERT INTO `one line` VALUES (1,'a),(b'),(2,'it\'s'),(3,'back\\'),(4,'semi);\nnext'),(5,NULL),(6,'((('),(7,0x28292C28);
INSERT INTO `one line` VALUES (8,'x);');
UNLOCK TABLES;
CREATE TABLE `row per line` (`id` int, `s` text, `b` blob);
INSERT INTO `row per line` VALUES
(1,'),(\n(',0x28),
(2,'\');',NULL),
(3,'😀 ),( ''',NULL);
CREATE TABLE `we``ird ✓` (`id` int);
INSERT INTO `we``ird ✓` (`id`, `s`) VALUES (1,'q'),(2,'r');
CREATE TABLE `empty` (`id` int);
DELIMITER ;;
CREATE PROCEDURE `p`()
BEGIN
INSERT INTO `one line` VALUES (100,'no'),(101,'no');
CREATE TABLE `not a table` (id int);
END ;;
DELIMITER ;
INSERT IGNORE INTO `empty` VALUES
(1);

-- Dump completed on 2026-11-24  2:38:28
""".encode()


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("gzipped", [False, True])
def test_count_dump_rows_is_exact_on_tricky_content_in_any_chunking(tmp_path, chunk, gzipped):
    path = tmp_path / ("dump.sql.gz" if gzipped else "dump.sql")
    path.write_bytes(gzip.compress(DUMP) if gzipped else DUMP)
    assert mysql.count_dump_rows(path, chunk=chunk) == {"one line": 8, "row per line": 3, "we`ird ✓": 2, "empty": 1}
    scanned = mysql.scan_dump(path, chunk=chunk)
    assert scanned.completed and scanned.binlog == {"file": "binlog.000042", "position": 4711}
    assert scanned.plain_bytes == len(DUMP)


def test_a_dump_without_its_last_line_is_not_complete_and_mysql8_coordinates_are_read(tmp_path):
    cut = DUMP[: DUMP.index(b"-- Dump completed")].replace(
        b"-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000042', MASTER_LOG_POS=4711;",
        b"-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000002', SOURCE_LOG_POS=157;")
    path = tmp_path / "cut.sql"
    path.write_bytes(cut)
    scanned = mysql.scan_dump(path)
    assert not scanned.completed
    assert scanned.binlog == {"file": "binlog.000002", "position": 157}
    mid_statement = tmp_path / "mid.sql"
    mid_statement.write_bytes(DUMP[: DUMP.index(b"(2,'\\');',NULL)")] + b"-- Dump completed\n")
    assert not mysql.scan_dump(mid_statement).completed  # still inside an INSERT
