"""Hostile dumps: a point whose dump was rewritten together with its manifest (SHA-256, size, row counts all
agree) to reach beyond the scratch database it is loaded into. `restore -C mysql` and the drill refuse each
one naming the statement or database; the live database keeps its rows, no other database appears, the
temporary loading account is gone, the client ran no shell command and read no file."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from actors.mysql.restore import restore_kb
from actors.mysql.sandbox import accounts
from core import clients
from core.atomic import sha256_of
from core.component import NothingChanged
from core.config import MySQLSettings
from core.points import Point, Storage
from testbed import settings as testbed_settings
from tests.actors.mysql.test_restore import altered_copy, backup, checksums, databases, live, scratch_left  # noqa: F401
from tests.conftest import reach, unique
from tests.faults.harness import CLI, cli, write_config


@dataclass
class Bed:
    cfg: MySQLSettings
    config: Path
    point: Point
    other: str  # a database name the hostile statements aim at
    marker: Path  # a file a shell command would create

    def sql(self, database: str, *statements: str) -> list[tuple]:
        with clients.mysql_connection(self.cfg, database=database) as conn, conn.cursor() as cur:
            rows: list[tuple] = []
            for statement in statements:
                cur.execute(statement)
                rows = list(cur.fetchall())
            return rows

    def checksum(self) -> list[tuple]:
        return self.sql(self.cfg.database, "CHECKSUM TABLE t, notes")

    def databases(self) -> set[str]:
        return {row[0] for row in self.sql("", "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE "
                                               "SCHEMA_NAME LIKE '" + self.cfg.database.replace("_", "\\_") + "%'")}

    def temporary_accounts(self) -> set[str]:
        with clients.mysql_connection(self.cfg, database="") as conn:
            return accounts(conn)


def make_bed(testbed_env: dict[str, str], tmp_path: Path, docker: bool) -> Iterator[Bed]:
    name = unique("t_hostile_")
    cfg = testbed_settings.mysql(testbed_env, database=name, docker=docker)
    reach("MariaDB in Docker" if docker else "MariaDB", lambda: clients.mysql_connection(cfg, database="").close())
    mysql = {"host": cfg.host, "port": cfg.port, "user": cfg.user, "password": cfg.password.get_secret_value(),
             "database": name, "mode": cfg.mode, "compose_project": cfg.compose_project}
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "mysql": mysql, "docker": {"host": testbed_env["DOCKER_HOST"]},
        "minio": {"enabled": False}, "search": {"enabled": False}, "config_files": {"enabled": False},
        "retention": {"weekly": 0, "monthly": 0}})
    bed = Bed(cfg, config, None, f"{name}_other", tmp_path / "shell-ran")  # type: ignore[arg-type]
    bed.sql("", f"CREATE DATABASE `{name}`")
    try:
        bed.sql(name, "CREATE TABLE t (id INT PRIMARY KEY, note VARCHAR(64))",
                "INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three')",
                "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT)", "INSERT INTO notes VALUES (1, 'kept')")
        backed_up = cli(config, "backup", "--local", "-C", "mysql")
        assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr
        [bed.point] = Storage(tmp_path / "backups").points("daily")
        yield bed
    finally:
        for database in bed.databases() | {bed.other}:
            bed.sql("", f"DROP DATABASE IF EXISTS `{database}`")


@pytest.fixture
def bed(testbed_env, tmp_path) -> Iterator[Bed]:
    yield from make_bed(testbed_env, tmp_path, docker=False)


@pytest.fixture
def docker_bed(testbed_env, tmp_path) -> Iterator[Bed]:
    yield from make_bed(testbed_env, tmp_path, docker=True)


def rewrite_dump(bed: Bed, hostile: str, added_rows: dict[str, int]) -> None:
    """Put `hostile` into the point's dump right after its USE line, and make the manifest agree with the new
    file (SHA-256, size, and the rows it adds)."""
    path = bed.point.path("mysql_dump.sql.gz")
    text = gzip.decompress(path.read_bytes())
    use = text.index(b"\nUSE `")
    after = text.index(b"\n", use + 1) + 1
    path.write_bytes(gzip.compress(text[:after] + hostile.encode() + b"\n" + text[after:]))
    manifest_path = bed.point.folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    [artifact] = manifest["components"]["mysql"]["artifacts"]
    artifact.update(sha256=sha256_of(path), bytes=path.stat().st_size)
    for table, rows in added_rows.items():
        manifest["components"]["mysql"]["counts"][table] += rows
    manifest_path.write_text(json.dumps(manifest))


def drill(bed: Bed) -> subprocess.CompletedProcess:
    # A wide terminal: the report's table would fold the detail column's words.
    return subprocess.run([CLI, "--config", str(bed.config), "drill"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "4000"})


def one_line(done: subprocess.CompletedProcess) -> str:
    return " ".join((done.stdout + done.stderr).split())


HOSTILE = {
    "CREATE DATABASE": ("CREATE DATABASE {other};", "to database '{other}'"),
    "CREATE DATABASE (quoted)": ("CREATE DATABASE `{other}`;", "names database '{other}'"),
    "USE another database": ("USE {other};", "to database '{other}'"),
    "a table of another database": ("CREATE TABLE {other}.t (id INT);", "`{other}`.`t`"),
    "GRANT": ("GRANT ALL PRIVILEGES ON *.* TO 'intruder'@'%' IDENTIFIED BY 'x';", "GRANT ALL PRIVILEGES"),
    "CREATE USER": ("CREATE USER 'intruder'@'%';", "CREATE USER"),
    "SET GLOBAL": ("SET GLOBAL max_connections = 1;", "SET GLOBAL max_connections"),
    "a DEFINER of another account (mysqldump's layout)": (
        "/*!50001 CREATE ALGORITHM=UNDEFINED */\n/*!50013 DEFINER=`mariadb.sys`@`localhost` SQL SECURITY DEFINER */"
        "\n/*!50001 VIEW `peek` AS select 1 AS `one` */;", "names DEFINER 'mariadb.sys'@'localhost'"),
    "a DEFINER of another account (written by hand)": (
        "CREATE DEFINER='mariadb.sys'@'localhost' VIEW peek AS SELECT 1;", "SET USER"),
    "a \\! shell command": ("\\! touch {marker}", "Unknown command '\\!'"),
    "a system shell command": ("system touch {marker}", "system touch"),
    "source": ("source /etc/hostname", "source /etc/hostname"),
    "LOAD DATA LOCAL INFILE": ("LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE notes;", "LOAD DATA LOCAL INFILE"),
    "LOAD DATA INFILE": ("LOAD DATA INFILE '/etc/hostname' INTO TABLE notes;", "LOAD DATA INFILE"),
    "LOAD_FILE in a row": ("INSERT INTO `notes` VALUES\n(9,LOAD_FILE('/etc/hostname'));", "calls LOAD_FILE"),
    "LOAD_FILE in a view": ("CREATE VIEW peek AS SELECT LOAD_FILE('/etc/hostname') AS secret;", "calls LOAD_FILE"),
    "SELECT ... INTO OUTFILE": ("SELECT * FROM notes INTO OUTFILE '/tmp/{other}.txt';", "INTO OUTFILE"),
}
IN_DOCKER = ("a table of another database", "SET GLOBAL", "a DEFINER of another account (mysqldump's layout)",
             "a \\! shell command", "LOAD DATA LOCAL INFILE")


def refused_everywhere(bed: Bed, kind: str) -> None:
    statement, named = HOSTILE[kind]
    hostile, named = statement.format(other=bed.other, marker=bed.marker), named.format(other=bed.other)
    before, others, temporary = bed.checksum(), bed.databases(), bed.temporary_accounts()
    rewrite_dump(bed, hostile, added_rows={"notes": 1} if kind == "LOAD_FILE in a row" else {})

    drilled = drill(bed)
    restored = cli(bed.config, "restore", "--point", bed.point.ref, "-C", "mysql", "--yes")

    for done in (drilled, restored):
        said = one_line(done)
        assert done.returncode == 1, said
        assert named in said and "nothing was restored" in said, said
        assert "Traceback" not in said and bed.cfg.password.get_secret_value() not in said
    assert "nothing was changed" in one_line(restored) and "rolled back" not in one_line(restored)  # no rollback needed
    assert bed.checksum() == before
    assert bed.databases() == others and bed.other not in bed.sql("", "SHOW DATABASES")
    # None of ours is left behind (another process's restore may have come and gone meanwhile).
    assert bed.temporary_accounts() <= temporary
    assert not bed.marker.exists()


@pytest.mark.parametrize("kind", list(HOSTILE))
@pytest.mark.fault("corrupt input: a dump rewritten with its manifest to reach beyond its scratch database "
                   "(CREATE DATABASE, USE, other.t, GRANT, CREATE USER, SET GLOBAL, another DEFINER, \\! / system, "
                   "source, LOAD DATA [LOCAL], LOAD_FILE, INTO OUTFILE)",
                   "restore -C mysql and the drill load it as a temporary account granted only the scratch database, "
                   "with the client's local-infile and shell commands off: the statement is refused, named in the "
                   "error; the live database is unchanged, no other database made, the account dropped")
def test_a_hostile_dump_is_refused_by_restore_and_the_drill_and_changes_nothing(bed, kind):
    refused_everywhere(bed, kind)


@pytest.mark.parametrize("kind", IN_DOCKER)
@pytest.mark.fault("corrupt input: a hostile dump restored in docker mode (the client inside the MySQL container)",
                   "refused the same way: the container's client loads it as the temporary account")
def test_a_hostile_dump_is_refused_in_docker_mode_too(docker_bed, kind):
    refused_everywhere(docker_bed, kind)


@pytest.mark.fault("corrupt input: a hostile dump given to a per-knowledge-base restore",
                   "restore_kb loads it the same way and refuses it before any row changes; no other database made, "
                   "the account dropped")
def test_a_hostile_dump_is_refused_by_a_knowledge_base_restore(live):
    point, record = backup(live)
    other = f"{live.database}_other"

    def hostile(data: bytes) -> bytes:
        text = gzip.decompress(data)
        after = text.index(b"\n", text.index(b"\nUSE `") + 1) + 1
        return gzip.compress(text[:after] + f"CREATE TABLE {other}.t (id INT);\n".encode() + text[after:])

    bad_point, bad_record = altered_copy(live, point, record, hostile)
    before = checksums(live.cfg, live.database)
    with clients.mysql_connection(live.cfg, database="") as conn:
        temporary = accounts(conn)

    with pytest.raises(NothingChanged, match=f"reaches beyond its scratch database.*`{other}`.`t`"):
        restore_kb(live.settings, bad_point, bad_record, live.dataset.kb_ids[0])

    assert checksums(live.cfg, live.database) == before
    assert other not in databases(live.cfg, live.database) and scratch_left(live) == set()
    with clients.mysql_connection(live.cfg, database="") as conn:
        assert accounts(conn) == temporary
