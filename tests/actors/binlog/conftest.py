"""A private MariaDB with its binary log on (ROW), so a test may rotate, purge or reset it freely, and an
archiver of it run in a thread the test starts and stops."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from actors.binlog.archiver import Archiver
from actors.binlog.index import load_index
from core.config import Settings
from testbed.private_servers import PrivateMariadb, wait_until
from tests.conftest import reach


@pytest.fixture
def binlog_mariadb(tmp_path) -> Iterator[PrivateMariadb]:
    server = PrivateMariadb(tmp_path / "binlog-mariadb", log_bin=True)
    reach("MariaDB (private mariadbd with log-bin)", server.start)
    yield server
    server.kill()


@pytest.fixture
def plain_mariadb(tmp_path) -> Iterator[PrivateMariadb]:
    """A private MariaDB without a binary log."""
    server = PrivateMariadb(tmp_path / "plain-mariadb")
    reach("MariaDB (private mariadbd)", server.start)
    yield server
    server.kill()


def archive_settings(server: PrivateMariadb, root: Path) -> Settings:
    root.mkdir(exist_ok=True)
    return Settings(storage_root=root, mysql={"host": "127.0.0.1", "port": server.port, "user": "root",
                                              "password": server.password},
                    binlog={"poll_seconds": 0.2}, minio={"enabled": False}, search={"enabled": False},
                    redis={"enabled": False})


def sql(server: PrivateMariadb, *statements: str) -> list[tuple]:
    with server.connection() as conn, conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
        return list(cursor.fetchall())


def server_files(server: PrivateMariadb) -> list[tuple[str, int]]:
    return [(name, int(size)) for name, size, *_ in sql(server, "SHOW BINARY LOGS")]


def caught_up(settings: Settings, server: PrivateMariadb) -> bool:
    """Every byte of every file the server lists is in the archive's index."""
    index = load_index(settings.layout)
    return all(index.file(name) is not None and index.file(name).size == size for name, size in server_files(server))


@contextmanager
def archiving(settings: Settings, notes: list | None = None) -> Iterator[Archiver]:
    archiver = Archiver(settings, notify=(lambda *note: notes.append(note)) if notes is not None else None)
    stop = threading.Event()
    thread = threading.Thread(target=archiver.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: archiver.state.connected, "the binlog archive to start streaming", 60)
        yield archiver
    finally:
        stop.set()
        thread.join(60)


def wait_caught_up(settings: Settings, server: PrivateMariadb) -> None:
    wait_until(lambda: caught_up(settings, server), "the binlog archive to catch up with the server", 60)
