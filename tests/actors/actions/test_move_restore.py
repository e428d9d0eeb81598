"""A second RAGFlow (its own MariaDB, MinIO, Elasticsearch and Redis) restored from the storage root of a
first one on the shared test bed, read only: `restore --from-root`. The first installation's root stays
byte-identical and its agent keeps running with its lock held. A third one, whose Elasticsearch sees no folder
of the first's, is brought up by `move` from the offsite repository alone (the search snapshot repository
travels there)."""
from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from actors.actions.offsite import Restic
from actors.minio.mirror import reconcile
from actors.search.backup import SnapshotRepo
from core import clients, locks
from core.config import load_settings
from core.mirror_paths import INDEX_FILE
from core.source_root import snapshot_index
from testbed import settings as tb
from testbed.polling import wait_for
from testbed.private_servers import PrivateMinio, PrivateStack
from testbed.seed import Dataset, remove, seed
from tests.conftest import reach
from tests.faults.harness import cli, kill, start_cli, text_of, write_config

NO_SCHEDULE = {"backup": "", "verify": "", "reconcile": "", "versions_prune": "", "drill": ""}


@pytest.fixture(scope="module")
def second_ragflow(testbed_env) -> Iterator[PrivateStack]:
    """The second installation's services, one set per module (Elasticsearch takes a while and 512 MB). Its
    Elasticsearch lists the shared test bed's snapshot folder in path.repo: the shared folder a staging
    server is given to restore the first one's snapshots from (read only)."""
    folder = Path(tempfile.mkdtemp(prefix="ragflow-backup-move-", dir="/var/tmp"))  # ES runs as another user
    folder.chmod(0o711)
    stack = PrivateStack(folder, testbed_env, es_also_repo=(testbed_env["SNAPSHOT_ROOT"],))
    try:
        reach("the second installation's MariaDB, MinIO, Elasticsearch and Redis (private servers)", stack.start)
        yield stack
    finally:
        stack.kill()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def lone_ragflow(testbed_env) -> Iterator[PrivateStack]:
    """A new machine's services: its Elasticsearch's path.repo is its own folder only (it never sees the
    shared test bed's snapshot folder), so search chunks can reach it only from the offsite repository."""
    folder = Path(tempfile.mkdtemp(prefix="ragflow-backup-lone-", dir="/var/tmp"))
    folder.chmod(0o711)
    stack = PrivateStack(folder, testbed_env)
    try:
        reach("the new machine's MariaDB, MinIO, Elasticsearch and Redis (private servers)", stack.start)
        yield stack
    finally:
        stack.kill()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def first_ragflow(tmp_path, testbed_env, redis_db, redis_url) -> Iterator[tuple[Dataset, Path, dict]]:
    """The first installation: a seeded RAGFlow in this test's own database, indices and Redis DB of the
    shared test bed (its objects in a MinIO of its own: the bed's MinIO holds every helper's buckets), a
    complete backup and its mirror; its config."""
    source_minio = PrivateMinio(testbed_env, tmp_path / "first-minio")
    source_minio.data.mkdir(parents=True)
    reach("MinIO (the first installation's, from the test bed's binary)", source_minio.start)
    database, repository = f"t_{uuid.uuid4().hex[:10]}", f"repo_{uuid.uuid4().hex[:10]}"
    services = {"mysql": tb.mysql(testbed_env, database=database), "minio": source_minio.settings(),
                "search": tb.search("elasticsearch", testbed_env, repository=repository),
                "redis": tb.redis(testbed_env, db=redis_db)}
    dataset = seed(database=database, ragflow_dir=tmp_path / "first" / "docker", env=testbed_env, size="tiny",
                   **services)
    config = write_config(tmp_path / "first.yml", {
        "storage_root": str(tmp_path / "first-backups"), "ragflow_dir": str(dataset.ragflow_dir),
        "broker": {"url": redis_url, "namespace": f"first-{uuid.uuid4().hex[:8]}"}, "metrics": {"port": 0},
        "schedule": NO_SCHEDULE,
        "mysql": {"host": testbed_env["MYSQL_HOST"], "port": int(testbed_env["MYSQL_PORT"]), "database": database,
                  "password": testbed_env["MYSQL_PASSWORD"]},
        "minio": {"endpoint": source_minio.endpoint, "access_key": source_minio.access_key,
                  "secret_key": source_minio.secret_key, "events": False},
        "search": {"url": testbed_env["ES_URL"], "password": testbed_env["ES_PASSWORD"], "repository": repository,
                   "repository_path": services["search"].repository_path, "indices": dataset.indices},
        "redis": {"enabled": True, "host": testbed_env["REDIS_HOST"], "port": int(testbed_env["REDIS_PORT"]),
                  "password": testbed_env["REDIS_PASSWORD"], "db": redis_db},
    })
    assert reconcile(load_settings(config)).complete  # the mirror, as the first installation's agent keeps it
    backup = cli(config, "backup", "--local")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    try:
        yield dataset, config, services
    finally:
        repo = SnapshotRepo(clients.search_client(services["search"]), "elasticsearch", repository)
        for snap in repo.snapshots():
            repo.delete(snap["snapshot"])
        repo.unregister()
        remove(dataset, mysql=services["mysql"], search=services["search"], redis=services["redis"])
        source_minio.kill()


def second_config(tmp_path: Path, stack: PrivateStack, database: str, repository: str) -> Path:
    """The second installation's config; its MinIO emptied of what an earlier test of the module restored."""
    client = stack.minio.client()
    for bucket in client.list_buckets():
        for item in client.list_objects(bucket.name, recursive=True):
            client.remove_object(bucket.name, item.object_name)
        client.remove_bucket(bucket.name)
    docker = tmp_path / "second" / "docker"
    docker.mkdir(parents=True)
    return write_config(tmp_path / "second.yml", {
        "storage_root": str(tmp_path / "second-backups"), "ragflow_dir": str(docker),
        "mysql": {"host": "127.0.0.1", "port": stack.mariadb.port, "user": "root",
                  "password": stack.mariadb.password, "database": database},
        "minio": {"endpoint": stack.minio.endpoint, "access_key": stack.minio.access_key,
                  "secret_key": stack.minio.secret_key},
        "search": {"url": stack.elasticsearch.url, "password": stack.elasticsearch.password,
                   "repository": repository, "repository_path": str(stack.elasticsearch.repo_root / repository)},
        "redis": {"enabled": True, "host": "127.0.0.1", "port": stack.redis.port, "password": stack.redis.password,
                  "db": 3},
    })


def tree_digest(root: Path, own: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file under `root` (the mirror index and its -wal included), but the files named in
    `own`: what the owner's running agent itself rewrites while it runs."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*"))
            if path.is_file() and not any(str(path.relative_to(root)).startswith(name) for name in own)}


def index_rows(mirror: Path, scratch: Path) -> dict[str, list]:
    """Every row of a mirror index, read through a copy (core/source_root.py's, which writes nothing there)."""
    scratch.mkdir()
    snapshot_index(mirror / INDEX_FILE, scratch / INDEX_FILE)
    with closing(sqlite3.connect(scratch / INDEX_FILE)) as conn:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in ("objects", "versions", "pruned")}


def table_checksums(connection) -> dict[str, int]:
    with connection as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        tables = [row[0] for row in cur.fetchall()]
        cur.execute("CHECKSUM TABLE " + ", ".join(f"`{t}`" for t in tables))
        return {row[0].split(".")[-1]: row[1] for row in cur.fetchall()}


def bucket_digests(client, buckets: list[str]) -> dict[str, dict[str, str]]:
    found = {}
    for bucket in buckets:
        found[bucket] = {}
        for item in client.list_objects(bucket, recursive=True):
            response = client.get_object(bucket, item.object_name)
            try:
                found[bucket][item.object_name] = hashlib.sha256(response.read()).hexdigest()
            finally:
                response.close()
                response.release_conn()
    return found


def redis_content(client, keys: list[str]) -> dict[str, object]:
    """Each key's value, by its type (DUMP's bytes may order a hash's fields differently)."""
    read = {b"string": client.get, b"hash": client.hgetall, b"list": lambda k: client.lrange(k, 0, -1),
            b"set": client.smembers, b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            b"stream": lambda k: client.xrange(k), b"none": lambda k: None}
    return {key: read[client.type(key)](key) for key in keys}


def test_a_second_ragflow_is_restored_from_the_first_ones_root_which_stays_unchanged(
        tmp_path, second_ragflow, first_ragflow, testbed_env):
    dataset, first, services = first_ragflow
    first_settings = load_settings(first)
    root = first_settings.storage_root
    agent_log = tmp_path / "first-agent.log"
    agent = start_cli(first, agent_log, "agent")
    try:
        wait_for(lambda: "agent started" in text_of(agent_log), "the first installation's agent")
        # The running agent rewrites its console history, and its lock files carry its pid: those are its own.
        # It also opens and closes its mirror index (health, console): the last one out folds the -wal into
        # the file, so the index is compared by what it holds; its files are compared by
        # tests/core/test_source_root.py, where nobody else is at work. Its binlog archiver (actors/binlog/)
        # adds the server's binlogs to its mysql_binlog/ as they appear.
        own = ("state/console-history.sqlite", "locks/", f"minio_mirror/{INDEX_FILE}", "mysql_binlog/")
        before, held_before = tree_digest(root, own), index_rows(root / "minio_mirror", tmp_path / "before")
        stack = second_ragflow
        staging_db, staging_repo = f"staging_{uuid.uuid4().hex[:8]}", f"repo_{uuid.uuid4().hex[:8]}"
        second = second_config(tmp_path, stack, staging_db, staging_repo)

        result = cli(second, "restore", "--from-root", str(root), "--yes", timeout=900)

        assert result.returncode == 0, result.stdout + result.stderr
        assert tree_digest(root, own) == before
        assert index_rows(root / "minio_mirror", tmp_path / "after") == held_before
        assert agent.poll() is None, text_of(agent_log)
        assert locks.is_held(root / "locks" / "agent.lock")
    finally:
        kill(agent, signal.SIGTERM)
    # What was mapped is said: the database name differs, the Redis DB number too.
    assert f"{dataset.database}" in result.stdout and staging_db in result.stdout and "mapped" in result.stdout
    expected_rows = table_checksums(clients.mysql_connection(first_settings.mysql))
    assert table_checksums(stack.mariadb.connection(staging_db)) == expected_rows
    assert bucket_digests(stack.minio.client(), dataset.buckets) == dataset.objects
    es = clients.search_client(load_settings(second).search)
    for index, count in dataset.doc_counts.items():
        es.indices.refresh(index=index)
        assert es.count(index=index)["count"] == count
    keys = dataset.redis_keys  # the first agent's broker shares that Redis DB: its own keys are left out
    restored = redis_content(stack.redis.client(3), keys)
    assert keys and None not in restored.values()
    assert restored == redis_content(clients.redis_client(services["redis"]), keys)
    # The safety point and the restore's state are in the second installation's own root.
    assert (tmp_path / "second-backups" / "state" / "last_restore.json").is_file()
    assert not (root / "state" / "last_restore.json").exists()


def offsite_section(tmp_path: Path) -> dict:
    password = tmp_path / "offsite.pass"
    password.write_text("correct horse battery staple\n")
    password.chmod(0o600)
    return {"enabled": True, "repository": str(tmp_path / "usb" / "ragflow"), "password_file": str(password)}


def test_a_move_from_the_offsite_repository_alone_brings_up_a_working_copy(tmp_path, lone_ragflow, first_ragflow):
    dataset, first, services = first_ragflow
    offsite = offsite_section(tmp_path)
    write_config(first, {**yaml.safe_load(first.read_text()), "offsite": offsite})
    copied = cli(first, "offsite", "copy")
    assert copied.returncode == 0, copied.stdout + copied.stderr
    assert "not copied" not in copied.stdout
    stack = lone_ragflow
    new_db = f"moved_{uuid.uuid4().hex[:8]}"
    second = second_config(tmp_path, stack, new_db, f"repo_{uuid.uuid4().hex[:8]}")
    write_config(second, {**yaml.safe_load(second.read_text()), "offsite": offsite})
    stack.redis.stop()  # the new machine's data services are not all up yet when the move starts

    log = tmp_path / "move.log"
    moving = start_cli(second, log, "move", "--from-offsite", "--yes", "--wait-minutes", "20")
    try:
        wait_for(lambda: "waiting for redis" in text_of(log), "the move to say Redis is not up yet", timeout=600)
        stack.redis.start()
        moving.wait(900)
    finally:
        kill(moving)
    output = text_of(log)
    assert moving.returncode == 0, output
    assert "30-minute objective" in output
    assert "fetched the source's search snapshot repository" in output  # the chunks came from the offsite copy
    first_docker, second_docker = Path(yaml.safe_load(first.read_text())["ragflow_dir"]), tmp_path / "second" / "docker"
    assert (second_docker / ".env").read_bytes() == (first_docker / ".env").read_bytes()
    assert table_checksums(stack.mariadb.connection(new_db)) == \
        table_checksums(clients.mysql_connection(load_settings(first).mysql))
    assert bucket_digests(stack.minio.client(), dataset.buckets) == dataset.objects
    es = clients.search_client(load_settings(second).search)
    source_es = clients.search_client(services["search"])
    for index, count in dataset.doc_counts.items():
        es.indices.refresh(index=index)
        assert es.count(index=index)["count"] == count
        assert chunk_ids(es, index) == chunk_ids(source_es, index)
    restored = redis_content(stack.redis.client(3), dataset.redis_keys)
    assert None not in restored.values()
    # The fetched copy of the repository was registered for the move only, and is gone.
    assert [name for name in es.snapshot.get_repository() if name.startswith("offsite_")] == []
    assert not list(stack.elasticsearch.repo_root.glob("ragflow-backup-offsite_*"))


def chunk_ids(client, index: str) -> list[str]:
    hits = client.search(index=index, query={"match_all": {}}, size=10000, source=False)["hits"]["hits"]
    return sorted(hit["_id"] for hit in hits)


def test_an_offsite_copy_leaves_out_an_unreadable_search_repository_and_status_and_doctor_say_why(tmp_path, first_ragflow):
    dataset, first, services = first_ragflow
    elsewhere = "/usr/share/elasticsearch/backups/only-in-the-container"  # the search server's path, not ours
    settings = yaml.safe_load(first.read_text())
    write_config(first, {**settings, "offsite": offsite_section(tmp_path),
                         "search": {**settings["search"], "repository_path": elsewhere}})

    copied = cli(first, "offsite", "copy")
    status = cli(first, "status")

    assert copied.returncode == 0, copied.stdout + copied.stderr  # the point, mirror and config still go
    said, shown = " ".join(copied.stdout.split()), " ".join(status.stdout.split())  # lines wrap at the width
    assert "search snapshot repository was not copied" in said
    assert f"{elsewhere} is not a folder on this machine" in said
    assert "the search snapshot repository is NOT copied offsite" in shown, status.stdout + status.stderr
    assert elsewhere in shown
    [offsite_check] = [check for check in json.loads(cli(first, "doctor", "--json").stdout)["checks"]
                       if check["name"] == "offsite"]
    assert offsite_check["status"] == "warn"
    assert "the search snapshot repository is not copied there" in offsite_check["detail"]
    assert elsewhere in offsite_check["detail"]
    assert [s for s in Restic(load_settings(first)).snapshots() if s.kind == "search_repo"] == []


def test_a_restore_from_the_offsite_repository_shows_the_names_it_maps_and_brings_the_chunks(
        tmp_path, lone_ragflow, first_ragflow):
    dataset, first, services = first_ragflow
    offsite = offsite_section(tmp_path)
    write_config(first, {**yaml.safe_load(first.read_text()), "offsite": offsite})
    copied = cli(first, "offsite", "copy")
    assert copied.returncode == 0, copied.stdout + copied.stderr
    staging_db = f"staging_{uuid.uuid4().hex[:8]}"
    second = second_config(tmp_path, lone_ragflow, staging_db, f"repo_{uuid.uuid4().hex[:8]}")
    write_config(second, {**yaml.safe_load(second.read_text()), "offsite": offsite})

    result = cli(second, "restore", "--from", "offsite", "--yes", "-C", "mysql", "-C", "search", timeout=900)

    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert "names mapped from the source installation to this one" in said
    assert dataset.database in said and staging_db in said and "mapped" in said
    es = clients.search_client(load_settings(second).search)
    source_es = clients.search_client(services["search"])
    for index, count in dataset.doc_counts.items():
        es.indices.refresh(index=index)
        assert es.count(index=index)["count"] == count
        assert chunk_ids(es, index) == chunk_ids(source_es, index)
    assert table_checksums(lone_ragflow.mariadb.connection(staging_db)) == \
        table_checksums(clients.mysql_connection(load_settings(first).mysql))
