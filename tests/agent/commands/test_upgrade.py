"""`upgrade prepare` and `upgrade rollback`: a simulated RAGFlow upgrade (the schema changed the way RAGFlow's
migrate_db() changes it, data written, .env's image tag moved on, objects and chunks added) rolled back exactly."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import yaml

from actors.search.backup import RepositoryMissing, SnapshotRepo
from core import clients, queues
from core.config import load_settings
from core.points import SAFETY, Storage
from testbed import settings as tb
from testbed.leases import leased_redis_db
from testbed.leases import redis_url as leased_url
from testbed.ragflow_indices import create_chunk_index
from testbed.seed import Dataset, remove, seed
from tests.actors.actions.test_drill_staging import values
from tests.actors.actions.test_restore import bucket_digest, chunk_ids, run_on_a_terminal, table_checksums
from tests.conftest import reach
from tests.faults.harness import CLI, cli, kill, start_cli, write_config

NEW_IMAGE = "infiniflow/ragflow:v0.28.0"


@dataclass
class Installation:
    dataset: Dataset
    services: dict
    config: Path
    new_tenant: str  # a tenant the upgraded RAGFlow makes: its index is RAGFlow's (in search.indices), not yet there


def wait_for_a_worker(settings, worker, log: Path) -> None:
    """Until the worker heart-beats (it starts in a few seconds); its log is shown if it died instead."""
    client = redis.Redis.from_url(settings.broker.url.get_secret_value())
    while not queues.live_workers(client, settings.broker.namespace, settings.broker.heartbeat_timeout_ms):
        assert worker.poll() is None, f"the worker died: {log.read_text(errors='replace')[-2000:]}"
        time.sleep(0.5)


@pytest.fixture
def installation(tmp_path, testbed_env, private_minio, redis_db) -> Iterator[Installation]:
    """A seeded RAGFlow of this test's own (MySQL, search, Redis, its objects in a private MinIO, docker/ with
    .env), a config for it with a broker namespace of its own, and a worker answering."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    services = {"mysql": tb.mysql(testbed_env, database=database), "minio": private_minio.settings(),
                "search": tb.search("elasticsearch", testbed_env), "redis": tb.redis(testbed_env, db=redis_db)}
    dataset = seed(database=database, ragflow_dir=tmp_path / "ragflow" / "docker", env=testbed_env, size="tiny",
                   **services)
    repository = f"repo_{uuid.uuid4().hex[:10]}"
    new_tenant = uuid.uuid4().hex
    broker_lease = leased_redis_db(testbed_env)
    broker_db = reach("Redis", broker_lease.__enter__)
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(dataset.ragflow_dir),
        "broker": {"url": leased_url(testbed_env, broker_db), "namespace": f"upgrade-{uuid.uuid4().hex[:8]}"},
        "mysql": {"host": testbed_env["MYSQL_HOST"], "port": int(testbed_env["MYSQL_PORT"]), "database": database,
                  "password": testbed_env["MYSQL_PASSWORD"]},
        "minio": {"endpoint": private_minio.endpoint, "access_key": private_minio.access_key,
                  "secret_key": private_minio.secret_key},
        "search": {"url": testbed_env["ES_URL"], "password": testbed_env["ES_PASSWORD"], "repository": repository,
                   "repository_path": f"{testbed_env['SNAPSHOT_ROOT']}/{repository}",
                   "indices": [*dataset.indices, f"ragflow_{new_tenant}"]},
        "redis": {"enabled": True, "host": testbed_env["REDIS_HOST"], "port": int(testbed_env["REDIS_PORT"]),
                  "password": testbed_env["REDIS_PASSWORD"], "db": redis_db},
    })
    log = tmp_path / "worker.log"
    worker = start_cli(config, log, "worker")
    try:
        wait_for_a_worker(load_settings(config), worker, log)
        yield Installation(dataset, services, config, new_tenant)
    finally:
        kill(worker)
        es = clients.search_client(services["search"])
        es.indices.delete(index=f"ragflow_{new_tenant}", ignore_unavailable=True)
        repo = SnapshotRepo(es, "elasticsearch", repository)
        try:
            for snap in repo.snapshots():
                repo.delete(snap["snapshot"])
            repo.unregister()
        except RepositoryMissing:  # no point was taken: the repository was never registered
            pass
        remove(dataset, **services)
        broker_lease.__exit__(None, None, None)


def redis_values(settings) -> dict[bytes, object]:
    return values(clients.redis_client(settings.redis))


def state_of(settings, installation: Installation, minio) -> dict:
    """Everything the rollback must put back exactly."""
    es = clients.search_client(installation.services["search"])
    return {
        "rows": table_checksums(settings),
        "objects": {bucket: bucket_digest(minio, bucket) for bucket in installation.dataset.buckets},
        "chunks": {index: chunk_ids(es, index) for index in installation.dataset.indices},
        "chunk_counts": {index: es.count(index=index)["count"] for index in installation.dataset.indices},
        "env": hashlib.sha256((settings.ragflow_dir / ".env").read_bytes()).hexdigest(),
        "redis": redis_values(settings),
    }


def upgrade_the_way_ragflow_does(settings, installation: Installation, minio) -> None:
    """What a new RAGFlow version's first start and first use do: migrate_db()'s ADD COLUMN and column type
    changes, a new table, rows written, a new image in .env, new objects and chunks, Redis keys rewritten."""
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE `file` ADD COLUMN `source_kind` VARCHAR(128) NOT NULL DEFAULT ''")
        cur.execute("ALTER TABLE `tenant` MODIFY COLUMN `credit` BIGINT")
        cur.execute("CREATE TABLE `memory` (`id` VARCHAR(32) PRIMARY KEY, `name` VARCHAR(128)) ENGINE=InnoDB")
        cur.execute("INSERT INTO `memory` VALUES ('m1', 'written by the new version')")
        cur.execute("UPDATE `knowledgebase` SET `description` = 'rewritten by the new version'")
        conn.commit()
    env = settings.ragflow_dir / ".env"
    lines = [f"RAGFLOW_IMAGE={NEW_IMAGE}" if line.startswith("RAGFLOW_IMAGE=") else line
             for line in env.read_text().splitlines()]
    env.write_text("\n".join(lines) + "\n")
    bucket = installation.dataset.buckets[0]
    minio.put_object(bucket, "uploaded-after-the-upgrade.txt", io.BytesIO(b"new"), 3)
    es = clients.search_client(installation.services["search"])
    index = installation.dataset.indices[0]
    es.index(index=index, id=f"new-{uuid.uuid4().hex}", document={"kb_id": "new", "content_with_weight": "new"},
             refresh=True)
    client = clients.redis_client(settings.redis)
    for key in list(client.scan_iter())[:3]:
        if client.type(key) == b"string":
            client.set(key, b"changed by the new version", keepttl=True)


def what_the_new_version_adds(settings, installation: Installation, minio) -> None:
    """What the upgraded RAGFlow creates that the point does not have: Redis keys, a new tenant's chunk index,
    a new knowledge base's bucket with a file in it."""
    client = clients.redis_client(settings.redis)
    client.set(b"ragflow:new-version:cache", b"made after the upgrade")
    client.hset(b"ragflow:new-version:session", mapping={"user": "someone"})
    es = clients.search_client(installation.services["search"])
    index = f"ragflow_{installation.new_tenant}"
    create_chunk_index(es, index)
    es.index(index=index, id="chunk-1", document={"kb_id": "new", "content_with_weight": "new"}, refresh=True)
    minio.make_bucket(installation.new_tenant)
    minio.put_object(installation.new_tenant, "first-upload.txt", io.BytesIO(b"new kb"), 6)


def wide_cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI with a wide terminal, so a table's cells are one line each."""
    return subprocess.run([CLI, "--config", str(config), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "400"})


def test_a_simulated_upgrade_is_rolled_back_exactly(installation, private_minio):
    settings = load_settings(installation.config)
    minio = private_minio.client()
    prepared = cli(installation.config, "upgrade", "prepare")
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    assert "upgrade rollback --point daily/" in prepared.stdout
    point = Storage(settings.storage_root).points()[0]
    assert point.pinned().name.startswith("pre-upgrade-") and point.manifest().ragflow.schema_shape is not None
    before = state_of(settings, installation, minio)

    upgrade_the_way_ragflow_does(settings, installation, minio)
    what_the_new_version_adds(settings, installation, minio)
    assert state_of(settings, installation, minio) != before
    upgraded = state_of(settings, installation, minio)

    rolled = wide_cli(installation.config, "upgrade", "rollback", "--yes")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    after = state_of(settings, installation, minio)
    assert after["rows"] == before["rows"]  # the new table is gone, the altered columns and rows are back
    assert "memory" not in after["rows"]
    assert after["objects"] == before["objects"]
    assert (after["chunks"], after["chunk_counts"]) == (before["chunks"], before["chunk_counts"])
    assert after["env"] == before["env"]
    assert after["redis"] == before["redis"]
    assert "docker compose -f docker-compose.yml up -d" in rolled.stdout and "ragflow-cpu" in rolled.stdout
    # What the new version created is gone too, and the table says so.
    es = clients.search_client(installation.services["search"])
    new_index = f"ragflow_{installation.new_tenant}"
    assert not es.indices.exists(index=new_index) and not minio.bucket_exists(installation.new_tenant)
    for said in ("removed 2 keys created after the point", "removed 1 index created after the point",
                 "removed 1 bucket created after the point"):
        assert said in rolled.stdout, rolled.stdout

    forward = cli(installation.config, "restore", "--rollback", "--yes")
    assert forward.returncode == 0, forward.stdout + forward.stderr
    assert redis_values(settings) == upgraded["redis"]
    assert es.count(index=new_index)["count"] == 1
    assert bucket_digest(minio, installation.new_tenant) == {
        "first-upload.txt": hashlib.sha256(b"new kb").hexdigest()}
    assert table_checksums(settings) == upgraded["rows"]


@pytest.mark.fault("`upgrade prepare` while no worker answers in the broker namespace (the agent is down)",
                   "refused, exit 1, naming the namespace and how to start the agent (or --ignore-health); no point "
                   "is taken")
def test_without_a_worker_prepare_takes_nothing_and_says_how_to_start_one(installation, tmp_path):
    settings = load_settings(installation.config)
    lonely = write_config(tmp_path / "lonely.yml", {
        **yaml.safe_load(installation.config.read_text()),
        "broker": {"url": settings.broker.url.get_secret_value(), "namespace": f"nobody-{uuid.uuid4().hex[:8]}"}})
    refused = cli(lonely, "upgrade", "prepare")
    assert refused.returncode == 1
    assert "no worker answers" in refused.stdout and "nothing was taken" in refused.stderr + refused.stdout
    assert Storage(settings.storage_root).points() == []


@pytest.fixture
def docker_folder_only(tmp_path, redis_url) -> Iterator[Path]:
    """Only RAGFlow's docker/ folder backed up (no service), a broker of the test's own and a worker answering."""
    folder = tmp_path / "ragflow" / "docker"
    folder.mkdir(parents=True)
    (folder / ".env").write_text("RAGFLOW_IMAGE=infiniflow/ragflow:v0.27.0\nDEVICE=cpu\n")
    (folder / "docker-compose.yml").write_text("services: {}\n")
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(folder),
        "broker": {"url": redis_url, "namespace": f"upgrade-{uuid.uuid4().hex[:8]}"},
        "mysql": {"enabled": False}, "minio": {"enabled": False}, "search": {"enabled": False},
        "redis": {"enabled": False}})
    log = tmp_path / "worker.log"
    worker = start_cli(config, log, "worker")
    try:
        wait_for_a_worker(load_settings(config), worker, log)
        yield config
    finally:
        kill(worker)


def test_on_a_terminal_rollback_asks_first_and_a_no_changes_nothing(docker_folder_only):
    config = docker_folder_only
    env = load_settings(config).ragflow_dir / ".env"
    assert cli(config, "upgrade", "prepare").returncode == 0
    shown = cli(config, "upgrade", "status")
    assert "pre-upgrade-v0.27.0-" in shown.stdout and "upgrade rollback --point daily/" in shown.stdout
    in_status = cli(config, "status").stdout
    assert "upgrade prepared " in in_status and "way back = ragflow-backup upgrade rollback --point daily/" in in_status
    prepared = env.read_bytes()
    env.write_text(f"RAGFLOW_IMAGE={NEW_IMAGE}\nDEVICE=cpu\n")
    upgraded = env.read_bytes()

    without_terminal = cli(config, "upgrade", "rollback")
    assert without_terminal.returncode == 2 and "pass --yes" in without_terminal.stderr + without_terminal.stdout
    code, said = run_on_a_terminal(config, "n\n", "upgrade", "rollback")
    assert code == 1 and "Roll back now?" in said and env.read_bytes() == upgraded

    code, said = run_on_a_terminal(config, "y\n", "upgrade", "rollback")
    assert code == 0, said
    assert env.read_bytes() == prepared
    assert "settings changed for: ragflow-cpu" in said and "up -d" in said


@pytest.mark.fault("`upgrade rollback` while MinIO cannot be listed (the mirror cannot be brought up to date first)",
                   "refused before anything is changed, exit 1, saying the objects written since the point would be "
                   "lost; MySQL, search, Redis and .env stay as they are")
def test_a_rollback_whose_mirror_cannot_be_brought_up_to_date_changes_nothing(installation, private_minio):
    settings = load_settings(installation.config)
    minio = private_minio.client()
    assert cli(installation.config, "upgrade", "prepare").returncode == 0
    upgrade_the_way_ragflow_does(settings, installation, minio)
    upgraded = state_of(settings, installation, minio)

    private_minio.kill()
    try:
        refused = cli(installation.config, "upgrade", "rollback", "--yes")
    finally:
        private_minio.start()

    assert refused.returncode == 1, refused.stdout + refused.stderr
    said = refused.stdout + refused.stderr
    assert "could not be brought up to date" in said and "nothing was changed" in said and "Traceback" not in said
    assert state_of(settings, installation, minio) == upgraded
    safety = settings.layout.folder(SAFETY)
    assert not safety.exists() or not any(safety.iterdir())  # not even the safety point was taken


def test_restore_exact_removes_the_keys_the_point_lacks_and_its_rollback_brings_them_back(tmp_path, testbed_env,
                                                                                         redis_db):
    folder = tmp_path / "ragflow" / "docker"
    folder.mkdir(parents=True)
    (folder / ".env").write_text("RAGFLOW_IMAGE=infiniflow/ragflow:v0.27.0\n")
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(folder),
        "mysql": {"enabled": False}, "minio": {"enabled": False}, "search": {"enabled": False},
        "redis": {"enabled": True, "host": testbed_env["REDIS_HOST"], "port": int(testbed_env["REDIS_PORT"]),
                  "password": testbed_env["REDIS_PASSWORD"], "db": redis_db}})
    client = clients.redis_client(load_settings(config).redis)
    client.set("ragflow:system:secret_key", "kept")
    assert cli(config, "backup", "--local").returncode == 0
    client.set("ragflow:made-after-the-point", "goes")

    plain = wide_cli(config, "restore", "-C", "redis", "--yes")
    assert plain.returncode == 0 and client.get("ragflow:made-after-the-point") == b"goes"
    exact = wide_cli(config, "restore", "-C", "redis", "--exact", "--yes")

    assert exact.returncode == 0, exact.stdout + exact.stderr
    assert "removed 1 key created after the point" in exact.stdout
    assert sorted(client.scan_iter()) == [b"ragflow:system:secret_key"]
    back = cli(config, "restore", "--rollback", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert client.get("ragflow:made-after-the-point") == b"goes"
