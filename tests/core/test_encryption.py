"""Encryption at rest: artifacts encrypted to age recipients verify without the identity (ciphertext),
verify and restore with it, and cannot be read without it."""
from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli import app
from core import clients
from core.config import load_settings
from core.points import Storage
from testbed import settings as tb


def cli(config: Path, *args: str):
    return CliRunner().invoke(app, ["--config", str(config), *args], terminal_width=200)


def identity(folder: Path, name: str) -> tuple[Path, str]:
    path = folder / f"{name}.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True).stdout.strip()
    return path, public


@pytest.fixture
def encrypted(tmp_path, testbed_env, mysql_database):
    """A database with rows, RAGFlow's docker/ folder, and an encrypted complete point of both."""
    key, public = identity(tmp_path, "identity")
    with clients.mysql_connection(tb.mysql(testbed_env, database=mysql_database)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE document (id INT PRIMARY KEY, name VARCHAR(64))")
        cur.executemany("INSERT INTO document VALUES (%s, %s)", [(n, f"doc {n}") for n in range(25)])
        conn.commit()
    docker = tmp_path / "ragflow" / "docker"
    docker.mkdir(parents=True)
    (docker / ".env").write_text("SECRET_SAUCE=tomato\n")
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(docker),
        "mysql": {"host": testbed_env["MYSQL_HOST"], "port": int(testbed_env["MYSQL_PORT"]),
                  "database": mysql_database, "password": testbed_env["MYSQL_PASSWORD"]},
        "minio": {"enabled": False}, "search": {"enabled": False},
        "encryption": {"enabled": True, "recipients": [public]},
    }))
    result = cli(config, "backup", "--local")
    assert result.exit_code == 0, result.output
    return config, key


def test_an_encrypted_point_holds_only_ciphertext_that_another_identity_cannot_open(encrypted, tmp_path):
    config, key = encrypted
    [point] = Storage(load_settings(config).storage_root).points("daily")
    names = sorted(p.name for p in point.folder.iterdir() if not p.name.startswith("."))

    assert "mysql_dump.sql.gz" not in names and "config_backup.tar.gz" not in names
    assert {"mysql_dump.sql.gz.age", "config_backup.tar.gz.age"} <= set(names)
    dump = point.folder / "mysql_dump.sql.gz.age"
    assert dump.read_bytes()[:2] != b"\x1f\x8b"  # not a gzip stream
    with pytest.raises(OSError):
        gzip.open(dump).read()
    assert b"tomato" not in (point.folder / "config_backup.tar.gz.age").read_bytes()
    other, _ = identity(tmp_path, "other")
    refused = subprocess.run(["age", "-d", "-i", str(other), str(dump)], capture_output=True)
    assert refused.returncode != 0 and b"no identity matched" in refused.stderr
    record = point.manifest().components["mysql"].artifacts[0]
    assert record.encrypted is not None and record.encrypted.name == "mysql_dump.sql.gz.age"


def test_an_encrypted_point_verifies_without_the_identity_and_with_it(encrypted):
    config, key = encrypted

    without = cli(config, "verify")
    with_key = cli(config, "verify", "--identity", str(key))

    assert without.exit_code == 0, without.output
    assert "ciphertexts checked" in without.output
    assert with_key.exit_code == 0, with_key.output
    assert "ciphertexts checked" not in with_key.output


def test_a_changed_ciphertext_fails_verify_without_the_identity(encrypted):
    config, key = encrypted
    [point] = Storage(load_settings(config).storage_root).points("daily")
    dump = point.folder / "mysql_dump.sql.gz.age"
    data = bytearray(dump.read_bytes())
    data[-5] ^= 0xFF
    dump.write_bytes(bytes(data))

    result = cli(config, "verify")

    assert result.exit_code == 1 and "SHA-256 differs" in result.output


def test_restore_asks_for_the_identity_and_brings_the_rows_back_with_it(encrypted, testbed_env):
    config, key = encrypted
    settings = load_settings(config)
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM document WHERE id >= 5")
        conn.commit()

    refused = cli(config, "restore", "-C", "mysql", "--yes")
    wrong = cli(config, "restore", "-C", "mysql", "--yes", "--identity", str(key.with_name("missing.txt")))
    restored = cli(config, "restore", "-C", "mysql", "--yes", "--identity", str(key))

    assert refused.exit_code == 1 and "--identity" in refused.output
    assert wrong.exit_code == 1 and "does not exist" in wrong.output
    assert restored.exit_code == 0, restored.output
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM document")
        assert cur.fetchone()[0] == 25
    assert not list((settings.storage_root / "decrypted").glob("*"))  # no plaintext left behind
    # The safety point taken before the restore is encrypted like the others.
    [safety] = [p for p in (settings.storage_root / "safety").iterdir() if p.is_dir()]
    assert not (safety / "mysql_dump.sql.gz").exists() and (safety / "mysql_dump.sql.gz.age").is_file()


def test_an_encrypted_point_comes_back_from_offsite_with_the_identity_and_the_local_root_gone(encrypted, tmp_path):
    import shutil

    config, key = encrypted
    password = tmp_path / "offsite.pass"
    password.write_text("a long offsite password\n")
    raw = yaml.safe_load(config.read_text())
    raw["offsite"] = {"enabled": True, "repository": str(tmp_path / "usb"), "password_file": str(password)}
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config)
    assert cli(config, "offsite", "copy", "--no-mirror").exit_code == 0
    shutil.rmtree(settings.storage_root)
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM document")
        conn.commit()

    refused = cli(config, "restore", "--from", "offsite", "-C", "mysql", "--yes")
    restored = cli(config, "restore", "--from", "offsite", "-C", "mysql", "--yes", "--identity", str(key))

    assert refused.exit_code == 1 and "--identity" in refused.output
    assert restored.exit_code == 0, restored.output
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM document")
        assert cur.fetchone()[0] == 25


def test_with_encryption_every_mysql_point_is_a_full_one(encrypted, testbed_env):
    config, key = encrypted
    settings = load_settings(config)
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("UPDATE document SET name = 'changed' WHERE id < 5")
        conn.commit()
    assert cli(config, "backup", "--local").exit_code == 0
    newest = Storage(settings.storage_root).points("daily")[-1]
    record = newest.manifest().components["mysql"]
    # The newest full point's dump is ciphertext: there is no base to compare the rows with.
    assert [a.name for a in record.artifacts] == ["mysql_dump.sql.gz"] and record.artifacts[0].encrypted is not None
    assert "its dump is encrypted" in (newest.folder / "backup.log").read_text()
