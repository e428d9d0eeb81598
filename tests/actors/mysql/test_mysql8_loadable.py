"""Dumps load with MySQL 8's client as well as MariaDB's. Oracle's `mysql` treats a backslash outside a quoted
string as a client command and stops on the ones it does not know, like the `\\-` of MariaDB's sandbox line
that mariadb-dump writes first. MySQL 8's client is not installable here (Debian ships MariaDB only), so the
stored dump itself is checked: nothing a MySQL 8 client would reject, its checksum and counts still right,
and restore (MariaDB's client, tcp and docker mode) still brings it back."""
from __future__ import annotations

import gzip
import re

import pytest

import actors.mysql.backup as mysql
from actors.actions.runs import run_component
from actors.mysql.backup import without_sandbox_line
from actors.mysql.restore import restore
from core import clients
from core.points import Storage
from tests.actors.mysql.test_backup import seed, settings_for, table_rows

# What the client sees as quoted: '...' and "..." strings (backslash escapes, doubled quotes) and `names`.
QUOTED = re.compile(rb"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"|`(?:[^`]|``)*`")


def client_commands(dump: bytes) -> list[str]:
    """The lines holding a backslash outside any quoted string: what MySQL 8's client would take for a command."""
    return [line.decode("utf-8", "replace") for line in dump.splitlines() if b"\\" in QUOTED.sub(b"", line)]


@pytest.mark.parametrize("mode", ["tcp", "docker"])
def test_a_stored_dump_carries_nothing_mysql8s_client_rejects_and_still_restores(tmp_path, testbed_env, mode,
                                                                                 request):
    database = request.getfixturevalue("docker_mysql_database" if mode == "docker" else "mysql_database")
    settings = settings_for(testbed_env, tmp_path, database, docker=mode == "docker")
    counts = seed(settings.mysql)
    before = table_rows(settings.mysql, database)
    point = Storage(settings.storage_root).new_point([mysql.NAME])
    record = run_component(settings, point, mysql.NAME)
    assert record is not None and record.status == "ok", record and record.error

    dump = gzip.decompress(point.path(mysql.ARTIFACT).read_bytes())

    assert not dump.startswith(b"/*M!999999"), dump[:80]
    assert b"\\'" in dump or b"\\\\" in dump  # the seeded backslashes and quotes are in there, escaped
    assert client_commands(dump) == []
    assert record.counts == counts and mysql.verify(settings, point, record) == []
    with clients.mysql_connection(settings.mysql, database="") as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE `{database}`")
    assert restore(settings, point, record).ok
    assert table_rows(settings.mysql, database) == before


@pytest.mark.parametrize("pieces", [
    [b"/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump\n", b"rest"],
    [b"/*M!99", b"9999\\- enable the sandbox mode */\n", b"-- MariaDB dump\n", b"rest"],
])
def test_the_sandbox_line_is_dropped_however_the_stream_is_cut(pieces):
    assert b"".join(without_sandbox_line(iter(pieces))) == b"-- MariaDB dump\nrest"


def test_a_dump_without_a_sandbox_line_streams_unchanged():
    pieces = [b"-- MySQL dump 10.13\n", b"/*!40101 SET NAMES utf8mb4 */;\n"]
    assert b"".join(without_sandbox_line(iter(pieces))) == b"".join(pieces)
