"""The binlog archive under faults: the agent SIGKILLed and MariaDB restarted while rows are written (no gap,
every file byte for byte), a file purged before it was archived (a gap: shown, notified, refused), and the
docker-mode streamer reading the test bed's MariaDB container. A private MariaDB with its binary log on serves
the first three, so the shared server's binary log is never purged."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from actors.binlog.index import load_index
from core import clients
from core.config import Settings, load_settings
from core.pitr import ArchiveGap, BinlogCoordinates
from testbed import settings as testbed_settings
from testbed.polling import wait_for
from testbed.private_servers import PrivateMariadb
from tests.actors.binlog.conftest import archive_settings, archiving
from tests.conftest import reach
from tests.faults.harness import cli, kill, start_cli, text_of, write_config

FLAGS_BYTE = 4 + 17  # the format description event's "in use" flag, set by the server in its open file


@pytest.fixture
def binlog_server(tmp_path) -> Iterator[PrivateMariadb]:
    server = PrivateMariadb(tmp_path / "binlog-mariadb", log_bin=True)
    reach("MariaDB (private mariadbd with log-bin)", server.start)
    yield server
    server.kill()


def agent_config(tmp_path, server: PrivateMariadb, redis_url: str, inbox) -> object:
    (tmp_path / "backups").mkdir(exist_ok=True)
    return write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"),
        "broker": {"url": redis_url, "namespace": f"fault-{tmp_path.name[-12:]}"},
        "mysql": {"host": "127.0.0.1", "port": server.port, "user": "root", "password": server.password,
                  "database": "shop"},
        "binlog": {"poll_seconds": 0.2}, "search": {"enabled": False}, "minio": {"enabled": False},
        "redis": {"enabled": False}, "config_files": {"enabled": False}, "metrics": {"enabled": False},
        "notify": {"urls": [inbox.url], "min_interval_seconds": 0},
        "schedule": {"backup": "", "verify": "", "reconcile": "", "versions_prune": "", "drill": ""}})


def rows(server: PrivateMariadb, first: int, count: int) -> None:
    with server.connection() as conn, conn.cursor() as cursor:
        for n in range(first, first + count):
            cursor.execute("INSERT INTO shop.t VALUES (%s, REPEAT('x', 200))", (n,))


def server_files(server: PrivateMariadb) -> list[tuple[str, int]]:
    with server.connection() as conn, conn.cursor() as cursor:
        cursor.execute("SHOW BINARY LOGS")
        return [(row[0], int(row[1])) for row in cursor.fetchall()]


def caught_up(settings, server: PrivateMariadb) -> bool:
    index = load_index(settings.layout)
    return all((entry := index.file(name)) is not None and entry.size == size for name, size in server_files(server))


def same_bytes_as_the_server(settings, server: PrivateMariadb) -> list[str]:
    """The archived files that differ from the server's own (its open file's "in use" flag aside)."""
    index = load_index(settings.layout)
    differ = []
    for entry in index.files:
        ours = (settings.layout.binlog_archive / entry.name).read_bytes()[:entry.size]
        theirs = bytearray((server.folder / "binlog" / entry.name).read_bytes())
        theirs[FLAGS_BYTE] &= ~1
        if ours != bytes(theirs):
            differ.append(entry.name)
    return differ


def prepare(server: PrivateMariadb) -> None:
    with server.connection() as conn, conn.cursor() as cursor:
        cursor.execute("CREATE DATABASE shop")
        cursor.execute("CREATE TABLE shop.t (id INT PRIMARY KEY, v TEXT)")


@pytest.mark.fault("agent SIGKILLed while MySQL rows are written",
                   "the restarted agent fetches its live binlog file again from the start, compares the overlap "
                   "byte for byte and goes on: one span, no gap, every file as the server wrote it")
def test_an_agent_killed_mid_writes_archives_every_binlog_byte_after_it_restarts(tmp_path, binlog_server,
                                                                                  redis_url, inbox):
    prepare(binlog_server)
    config = agent_config(tmp_path, binlog_server, redis_url, inbox)
    settings = load_settings(config)
    log = tmp_path / "agent.log"
    agent = start_cli(config, log, "agent")
    try:
        wait_for(lambda: "binlog archive: streaming" in text_of(log), f"the archive to stream (log {log})")
        writer = threading.Thread(target=rows, args=(binlog_server, 0, 400))
        writer.start()
        wait_for(lambda: load_index(settings.layout).files and load_index(settings.layout).files[-1].size > 20_000,
                 "the archive to take in rows", interval=0.1)
        kill(agent)
        writer.join(120)
        with binlog_server.connection() as conn, conn.cursor() as cursor:
            cursor.execute("FLUSH BINARY LOGS")  # a rotation while no agent runs
        rows(binlog_server, 400, 50)
    finally:
        kill(agent)
    agent = start_cli(config, log, "agent")
    try:
        wait_for(lambda: caught_up(settings, binlog_server), f"the archive to catch up (log {log})", timeout=120)
    finally:
        kill(agent, signal.SIGTERM)
    index = load_index(settings.layout)
    assert index.gaps == [] and len(index.spans()) == 1
    assert same_bytes_as_the_server(settings, binlog_server) == []


@pytest.mark.fault("MariaDB restarted while the binlog is archived",
                   "the streamer loses its server, the archive restarts it with backoff from its newest file: the "
                   "file closed by the shutdown and the one begun at start-up both arrive whole, no gap")
def test_a_mariadb_restart_leaves_no_gap_in_the_archive(tmp_path, binlog_server):
    prepare(binlog_server)
    settings = archive_settings(binlog_server, tmp_path / "root")
    with archiving(settings) as archiver:
        rows(binlog_server, 0, 50)
        binlog_server.restart()
        rows(binlog_server, 50, 50)
        wait_for(lambda: caught_up(settings, binlog_server), "the archive to catch up after the restart", timeout=120)
        assert archiver.state.restarts >= 1  # it did lose the server, and came back by itself
    index = load_index(settings.layout)
    assert len(index.files) >= 2 and all(entry.complete for entry in index.files[:-1])
    assert index.gaps == [] and len(index.spans()) == 1
    assert same_bytes_as_the_server(settings, binlog_server) == []


@pytest.mark.fault("a binlog file purged before it was archived",
                   "a gap is recorded in the archive's index, notified once, shown by `timeline` and `status`; a "
                   "replay across it is refused, naming the nearest restorable moments on each side")
def test_a_file_purged_before_it_was_archived_is_a_gap_that_replay_refuses_to_cross(tmp_path, binlog_server,
                                                                                     redis_url, inbox):
    prepare(binlog_server)
    config = agent_config(tmp_path, binlog_server, redis_url, inbox)
    settings = load_settings(config)
    log = tmp_path / "agent.log"
    agent = start_cli(config, log, "agent")
    try:
        wait_for(lambda: "binlog archive: streaming" in text_of(log), f"the archive to stream (log {log})")
        wait_for(lambda: caught_up(settings, binlog_server), "the archive to catch up")
    finally:
        kill(agent, signal.SIGTERM)
    first = load_index(settings.layout).files[0].name
    with binlog_server.connection() as conn, conn.cursor() as cursor:
        for statement in ("FLUSH BINARY LOGS", "INSERT INTO shop.t VALUES (1, 'gone')", "FLUSH BINARY LOGS"):
            cursor.execute(statement)
        newest = server_files(binlog_server)[-1][0]
        cursor.execute(f"PURGE BINARY LOGS TO '{newest}'")
    agent = start_cli(config, log, "agent")
    try:
        wait_for(lambda: load_index(settings.layout).gaps, f"the gap to be recorded (log {log})")
        wait_for(lambda: caught_up(settings, binlog_server), "the archive to catch up after the gap")
        wait_for(lambda: any("gap in the MySQL binary log" in title for title in inbox.titles()), "the notification")
    finally:
        kill(agent, signal.SIGTERM)
    index = load_index(settings.layout)
    assert len(index.gaps) == 1 and [t for t in inbox.titles() if "gap" in t] == [
        "ragflow-backup: a gap in the MySQL binary log archive"]
    shown = cli(config, "timeline")
    assert "GAP before" in shown.stdout and "purged" in shown.stdout
    status = cli(config, "status")
    assert "GAP(S) in the binlog archive" in status.stdout.replace("\n", " ")
    older, newer = index.spans()
    with pytest.raises(ArchiveGap) as refused:
        index.replay_plan(BinlogCoordinates(first, 4), newer.end, "shop", settings.layout.binlog_archive)
    assert (refused.value.before, refused.value.after) == (older.end, newer.start)


@pytest.mark.fault("the binlog archive in mysql.mode: docker",
                   "the container's own mariadb-binlog streams into a staging folder inside the container, read "
                   "back through the Docker API; the archive holds the server's file byte for byte")
def test_the_docker_mode_streamer_archives_the_containers_binlog(tmp_path, testbed_env, docker_mysql_database):
    mysql = testbed_settings.mysql(testbed_env, database=docker_mysql_database, docker=True)
    (tmp_path / "root").mkdir()
    settings = archive_settings_docker(tmp_path / "root", mysql, testbed_env)
    tcp = clients.mysql_connection(mysql, database=docker_mysql_database)
    with archiving(settings), tcp.cursor() as cursor:
        cursor.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        cursor.execute("INSERT INTO t VALUES (1), (2), (3)")
        cursor.execute("SHOW MASTER STATUS")
        name, position = cursor.fetchone()[:2]
        wait_for(lambda: (entry := load_index(settings.layout).file(name)) is not None and entry.size >= position,
                 "the archive to hold the rows just written", timeout=120, interval=0.5)
    tcp.close()
    entry = load_index(settings.layout).file(name)
    container = clients.find_mysql_container(settings)
    try:
        theirs = bytearray(container.exec_run(["head", "-c", str(entry.size), f"/var/lib/mysql/{name}"]).output)
    finally:
        container.client.close()
    theirs[FLAGS_BYTE] &= ~1
    assert (settings.layout.binlog_archive / name).read_bytes()[:entry.size] == bytes(theirs)


def archive_settings_docker(root, mysql, testbed_env):
    return Settings(storage_root=root, mysql=mysql, docker={"host": testbed_env["DOCKER_HOST"]},
                    binlog={"poll_seconds": 0.5}, minio={"enabled": False}, search={"enabled": False},
                    redis={"enabled": False})
