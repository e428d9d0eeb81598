"""`backup --local`, `list`, `verify` and `prune` end to end on a seeded RAGFlow in the real test bed."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli import app
from core.points import Storage
from testbed import settings as tb
from testbed.seed import Dataset, remove, seed


@pytest.fixture
def ragflow(tmp_path, testbed_env, redis_db) -> Iterator[tuple[Dataset, dict]]:
    """A tiny seeded RAGFlow of this test's own: database, buckets, indices, Redis DB and docker/ folder."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    services = {"mysql": tb.mysql(testbed_env, database=database), "minio": tb.minio(testbed_env),
                "search": tb.search("elasticsearch", testbed_env), "redis": tb.redis(testbed_env, db=redis_db)}
    dataset = seed(database=database, ragflow_dir=tmp_path / "ragflow" / "docker", env=testbed_env, size="tiny", **services)
    yield dataset, services
    remove(dataset, **services)


def write_config(tmp_path: Path, env: dict[str, str], dataset: Dataset, redis_url: str, **overrides) -> Path:
    config = {
        "storage_root": str(tmp_path / "backups"),
        "ragflow_dir": str(dataset.ragflow_dir),
        "broker": {"url": redis_url},
        "mysql": {"host": env["MYSQL_HOST"], "port": int(env["MYSQL_PORT"]), "database": dataset.database},
        "minio": {"endpoint": env["MINIO_ENDPOINT"]},
        "search": {"url": env["ES_URL"], "repository": f"repo_{tmp_path.name[-20:].lower()}",
                   "repository_path": f"{env['SNAPSHOT_ROOT']}/{uuid.uuid4().hex}", "indices": dataset.indices},
        "redis": {"enabled": True, "host": env["REDIS_HOST"], "port": int(env["REDIS_PORT"]), "db": dataset.redis_db},
    }
    for section, values in overrides.items():
        config[section].update(values)
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(config: Path, *args: str):
    return CliRunner().invoke(app, ["--config", str(config), *args], terminal_width=200)


@pytest.fixture
def snapshots_cleanup(testbed_env):
    """Delete the snapshots and repository a test's config made."""
    configs: list[Path] = []
    yield configs.append
    for config in configs:
        search = yaml.safe_load(config.read_text())["search"]
        client = tb.search("elasticsearch", testbed_env, repository=search["repository"])
        from core.clients import search_client

        es = search_client(client)
        try:
            for snap in es.snapshot.get(repository=search["repository"], snapshot="_all")["snapshots"]:
                es.snapshot.delete(repository=search["repository"], snapshot=snap["snapshot"])
            es.snapshot.delete_repository(name=search["repository"])
        except Exception:  # noqa: BLE001 - nothing registered
            pass


def test_a_local_backup_of_every_component_is_complete_verified_promoted_and_listed(
    tmp_path, testbed_env, ragflow, redis_url, snapshots_cleanup
):
    dataset, _ = ragflow
    config = write_config(tmp_path, testbed_env, dataset, redis_url)
    snapshots_cleanup(config)

    result = cli(config, "backup", "--local")
    assert result.exit_code == 0, result.output
    storage = Storage(tmp_path / "backups")
    [point] = storage.points("daily")
    manifest = point.manifest()
    assert manifest.status == "complete"
    assert set(manifest.components) == {"mysql", "search", "redis", "config"}
    assert manifest.components["mysql"].counts == {table: rows for table, rows in dataset.row_counts.items()}
    assert manifest.components["search"].counts == dataset.doc_counts
    for name in ("mysql_dump.sql.gz", "config_backup.tar.gz", "redis_dump.rdb.gz", "manifest.json"):
        assert (point.folder / name).stat().st_mode & 0o777 == 0o600, name
    assert point.folder.stat().st_mode & 0o777 == 0o700

    # This week's and this month's points are hard links of it: the same inodes, no extra bytes.
    [weekly] = storage.points("weekly")
    [monthly] = storage.points("monthly")
    dump_inode = (point.folder / "mysql_dump.sql.gz").stat().st_ino
    assert (weekly.folder / "mysql_dump.sql.gz").stat().st_ino == dump_inode
    assert (monthly.folder / "mysql_dump.sql.gz").stat().st_ino == dump_inode

    history = [json.loads(line) for line in storage.history_log.read_text().splitlines()]
    assert history[-1]["point"] == point.ref and history[-1]["status"] == "complete"

    listed = cli(config, "list")
    assert listed.exit_code == 0 and point.name in listed.output and "complete" in listed.output

    verified = cli(config, "verify")
    assert verified.exit_code == 0, verified.output
    assert "all sound" in verified.output and "verified in" in verified.output

    dump = point.folder / "mysql_dump.sql.gz"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    corrupted = cli(config, "verify", point.ref)
    assert corrupted.exit_code == 1
    assert "SHA-256" in corrupted.output and "mysql" in corrupted.output


def test_a_failing_component_makes_a_partial_point_that_is_not_promoted_and_exits_non_zero(
    tmp_path, testbed_env, ragflow, redis_url, snapshots_cleanup
):
    dataset, _ = ragflow
    config = write_config(tmp_path, testbed_env, dataset, redis_url, mysql={"password": "wrong-password-7"})
    snapshots_cleanup(config)
    result = cli(config, "backup", "--local")
    assert result.exit_code == 1
    assert "partial" in result.output and "Access denied" in result.output
    assert "wrong-password-7" not in result.output
    storage = Storage(tmp_path / "backups")
    [point] = storage.points("daily")
    assert point.manifest().status == "partial"
    assert point.manifest().components["search"].status == "ok"
    assert storage.points("weekly") == [] and storage.points("monthly") == []
    assert "wrong-password-7" not in (point.folder / "backup.log").read_text()
    assert cli(config, "verify", point.ref).exit_code == 1


@pytest.mark.fault('storage root not writable (permissions)',
                   'the CLI says so, exits non-zero and leaves nothing')
def test_a_backup_into_an_unwritable_storage_root_says_so_and_leaves_nothing(tmp_path, testbed_env, ragflow, redis_url):
    dataset, _ = ragflow
    root = tmp_path / "backups"
    root.mkdir()
    root.chmod(0o500)
    import os
    import subprocess

    # Root ignores file modes, so make the folder immutable instead.
    subprocess.run(["chattr", "+i", str(root)], check=True)
    try:
        config = write_config(tmp_path, testbed_env, dataset, redis_url)
        result = cli(config, "backup", "--local", "--component", "mysql")
        assert result.exit_code != 0
        assert "cannot create a point under" in result.output and str(root) in result.output
        assert os.listdir(root) == []
    finally:
        subprocess.run(["chattr", "-i", str(root)], check=True)


def test_prune_dry_run_lists_decisions_without_deleting(tmp_path, testbed_env, ragflow, redis_url, snapshots_cleanup):
    dataset, _ = ragflow
    config = write_config(tmp_path, testbed_env, dataset, redis_url)
    snapshots_cleanup(config)
    assert cli(config, "backup", "--local", "--component", "config").exit_code == 0
    result = cli(config, "prune", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "keep" in result.output
    assert len(Storage(tmp_path / "backups").points("daily")) == 1


def test_unknown_component_names_the_choices(tmp_path, testbed_env, ragflow, redis_url):
    dataset, _ = ragflow
    config = write_config(tmp_path, testbed_env, dataset, redis_url)
    result = cli(config, "backup", "--local", "--component", "mongo")
    assert result.exit_code == 2
    assert "mysql" in result.output and "search" in result.output
