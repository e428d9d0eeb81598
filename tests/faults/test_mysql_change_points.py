"""Change points of MySQL under faults, through the CLI: the full point they are the changes of pruned away, and
their changes file cut short."""
from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import clients
from core.config import MySQLSettings
from core.points import Point, Storage
from testbed import settings as testbed_settings
from tests.conftest import reach, unique
from tests.faults.harness import cli, write_config


def password_file(folder: Path) -> Path:
    path = folder / "offsite.pass"
    path.write_text(unique("pass-"))
    path.chmod(0o600)
    return path


@dataclass
class Bed:
    cfg: MySQLSettings
    config: Path
    full: Point
    point: Point  # the change point
    at_point: list[tuple]  # the rows when it was made

    def sql(self, *statements: str) -> list[tuple]:
        with clients.mysql_connection(self.cfg) as conn, conn.cursor() as cur:
            found: list[tuple] = []
            for statement in statements:
                cur.execute(statement)
                found = list(cur.fetchall())
            conn.commit()
            return found

    def rows(self) -> list[tuple]:
        return self.sql("SELECT * FROM t ORDER BY id")


@pytest.fixture
def bed(testbed_env, tmp_path) -> Iterator[Bed]:
    """A full point, rows changed, then a change point of it; a folder offsite repository configured."""
    name = unique("t_changes_")
    cfg = testbed_settings.mysql(testbed_env, database=name)
    reach("MariaDB", lambda: clients.mysql_connection(cfg, database="").close())
    mysql = {"host": cfg.host, "port": cfg.port, "user": cfg.user, "password": cfg.password.get_secret_value(),
             "database": name, "full_every_days": 7}
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "mysql": mysql, "minio": {"enabled": False},
        "search": {"enabled": False}, "config_files": {"enabled": False}, "retention": {"weekly": 0, "monthly": 0},
        "offsite": {"enabled": True, "repository": str(tmp_path / "usb" / "ragflow"),
                    "password_file": str(password_file(tmp_path))}})
    with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    try:
        bed = Bed(cfg, config, None, None, [])  # type: ignore[arg-type]
        bed.sql("CREATE TABLE t (id VARCHAR(32) PRIMARY KEY, note VARCHAR(64))",
                "INSERT INTO t VALUES " + ", ".join(f"('{i:032x}', 'note {i}')" for i in range(200)))
        for step in range(2):
            if step:
                bed.sql("UPDATE t SET note = 'changed' WHERE id LIKE '%3'", "DELETE FROM t WHERE id LIKE '%5'",
                        f"INSERT INTO t VALUES ('{unique('new')}', 'added')")
            done = cli(config, "backup", "--local", "-C", "mysql")
            assert done.returncode == 0, done.stdout + done.stderr
        bed.full, bed.point = Storage(tmp_path / "backups").points("daily")
        assert (bed.point.folder / "mysql_changes.sql.gz").is_file()
        bed.at_point = bed.rows()
        bed.sql("UPDATE t SET note = 'after both points'")
        yield bed
    finally:
        with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.mark.fault("change point with its base point pruned (the full point it is the changes of deleted)",
                   "verify passes and restore -C mysql brings back its rows: the base is a hard link inside the "
                   "change point's own folder")
def test_a_change_point_whose_full_point_was_deleted_verifies_and_restores(bed):
    shutil.rmtree(bed.full.folder)
    verified = cli(bed.config, "verify", bed.point.ref)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    done = cli(bed.config, "restore", "--point", bed.point.ref, "-C", "mysql", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert bed.rows() == bed.at_point


@pytest.mark.fault("changes file cut short (mysql_changes.sql.gz truncated in a change point)",
                   "verify fails naming the file; restore -C mysql refuses before any change: the live rows stay")
def test_a_change_point_whose_changes_are_cut_short_fails_verify_and_restores_nothing(bed):
    path = bed.point.folder / "mysql_changes.sql.gz"
    text = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(text[: len(text) // 2]))
    live = bed.rows()
    verified = cli(bed.config, "verify", bed.point.ref)
    assert verified.returncode != 0 and "mysql_changes.sql.gz" in verified.stdout + verified.stderr
    done = cli(bed.config, "restore", "--point", bed.point.ref, "-C", "mysql", "--yes")
    assert done.returncode != 0 and "mysql_changes.sql.gz" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert bed.rows() == live


@pytest.mark.fault("change point restored from offsite with the storage root gone",
                   "restore --from offsite brings back its rows: both files travel in the point's folder")
def test_a_change_point_comes_back_from_offsite_with_the_storage_root_gone(bed):
    copied = cli(bed.config, "offsite", "copy")
    assert copied.returncode == 0, copied.stdout + copied.stderr
    shutil.rmtree(bed.point.storage.root)
    bed.sql("DELETE FROM t")
    done = cli(bed.config, "restore", "--from", "offsite", "--point", "latest", "-C", "mysql", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert bed.rows() == bed.at_point
