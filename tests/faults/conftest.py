"""Fixtures of the fault matrix: private servers to stop, hang and restart, a webhook inbox that
receives the product's notifications, and a fingerprint of the storage root's existing points."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.private_servers import PrivateElasticsearch, PrivateMariadb, PrivateMinio, PrivateRedis
from testbed.webhook import Inbox, receiving
from tests.conftest import reach
from tests.faults.harness import cli, write_config

# ---------------------------------------------------------------- notifications


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with receiving() as box:
        yield box


# ---------------------------------------------------------------- private servers


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "private-redis")
    reach("Redis (private redis-server)", server.start)
    yield server
    server.kill()


@pytest.fixture
def private_mariadb(tmp_path) -> Iterator[PrivateMariadb]:
    server = PrivateMariadb(tmp_path / "private-mariadb")
    reach("MariaDB (private mariadbd)", server.start)
    yield server
    server.kill()


@pytest.fixture
def private_minio(testbed_env, tmp_path) -> Iterator[PrivateMinio]:
    server = PrivateMinio(testbed_env, tmp_path / "private-minio")
    server.data.mkdir(parents=True)
    reach("MinIO (private server from the test bed's binary)", server.start)
    yield server
    server.kill()


@pytest.fixture(scope="session")
def session_elasticsearch() -> Iterator[PrivateElasticsearch]:
    """One private Elasticsearch for the session (it takes a while to start); tests resume it.

    Its folder is outside pytest's: Elasticsearch runs as another user, and every pytest run resets
    /tmp/pytest-of-root to 0700, which would lock it out of its own files."""
    folder = Path(tempfile.mkdtemp(prefix="ragflow-backup-fault-es-", dir="/var/tmp"))
    folder.chmod(0o711)
    server = PrivateElasticsearch(folder / "node")
    try:
        reach("Elasticsearch (private node of the test bed's install)", server.start)
        yield server
    finally:
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def private_elasticsearch(session_elasticsearch) -> Iterator[PrivateElasticsearch]:
    """The session's private Elasticsearch, running and answering when the test starts and ends."""
    server = session_elasticsearch
    for _ in ("before", "after"):
        server.resume()
        if server.pid() is None:
            server.start()
        server.wait_ready()
        if _ == "before":
            yield server


# ---------------------------------------------------------------- a point to break


@pytest.fixture
def config_point(tmp_path):
    """A config with only RAGFlow's config files enabled, and one complete point of them."""
    from core.points import Storage
    from tests.faults.test_concurrency import ragflow_dir

    docker = ragflow_dir(tmp_path)
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(docker), "minio": {"enabled": False},
        "mysql": {"enabled": False}, "search": {"enabled": False}})
    assert cli(config, "backup", "--local", "-C", "config").returncode == 0
    [point] = Storage(tmp_path / "backups").points("daily")
    return config, point
