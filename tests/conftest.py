"""Fixtures over the real test bed (`make services`). A service that cannot be reached fails the test
with its name; nothing is skipped. Each test gets its own Redis DB, database, bucket and index names."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core import clients, redact
from testbed import env as testbed_env_file
from testbed import settings as testbed_settings
from testbed.leases import leased_redis_db
from testbed.leases import redis_url as leased_url
from testbed.minio_server import PrivateMinio


def reach(service: str, probe: Callable[[], Any]) -> Any:
    """Run `probe`; on any error fail the test, naming the service and how to start it."""
    try:
        return probe()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(
            f"{service} is not reachable ({type(exc).__name__}: {exc}). "
            f"Start the test bed with `make services`; its logs are in .testbed/logs/.",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def fresh_secret_masking() -> Iterator[None]:
    """Each test starts with no remembered secrets: one test's password is not masked in another's output."""
    redact.forget_all()
    yield
    redact.forget_all()


@pytest.fixture(scope="session")
def testbed_env() -> dict[str, str]:
    try:
        return testbed_env_file.load()
    except testbed_env_file.TestbedMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Print each service's version at the top of the run, so a log says what was tested against."""
    try:
        env = testbed_env_file.load()
    except testbed_env_file.TestbedMissing as exc:
        return [f"test bed: {exc}"]
    lines = []
    probes = {
        "redis": lambda: clients.redis_client(testbed_settings.redis(env)).info("server")["redis_version"],
        "mariadb": lambda: _mysql_version(testbed_settings.mysql(env)),
        "mariadb (docker)": lambda: _mysql_version(testbed_settings.mysql(env, docker=True)),
        "elasticsearch": lambda: clients.search_server_version(clients.search_client(testbed_settings.search("elasticsearch", env))),
        "opensearch": lambda: clients.search_server_version(clients.search_client(testbed_settings.search("opensearch", env))),
        "minio": lambda: f"{env['MINIO_ENDPOINT']} ({len(clients.minio_client(testbed_settings.minio(env)).list_buckets())} buckets)",
        "docker engine": lambda: clients.docker_client(env["DOCKER_HOST"]).version()["Version"],
    }
    for name, probe in probes.items():
        try:
            lines.append(f"test bed {name}: {probe()}")
        except Exception as exc:  # noqa: BLE001
            lines.append(f"test bed {name}: UNREACHABLE ({type(exc).__name__})")
    return lines


def _mysql_version(settings) -> str:
    with clients.mysql_connection(settings, database="") as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        return cur.fetchone()[0]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------- Redis: one DB per test

@pytest.fixture
def redis_db(testbed_env) -> Iterator[int]:
    """A Redis DB of this test's own, flushed before and after."""
    lease = leased_redis_db(testbed_env)
    yield reach("Redis", lease.__enter__)
    lease.__exit__(None, None, None)


@pytest.fixture
def redis_url(testbed_env, redis_db) -> str:
    return leased_url(testbed_env, redis_db)


# ---------------------------------------------------------------- MariaDB: one database per test


def scratch_database(service: str, settings_for: Callable[[str], Any]) -> Iterator[str]:
    """Create an empty database of a unique name, yield its name, drop it afterwards."""
    name = unique("t_")
    conn = reach(service, lambda: clients.mysql_connection(settings_for(name), database=""))
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield name
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture
def mysql_database(testbed_env) -> Iterator[str]:
    """A fresh, empty database on the host MariaDB, dropped afterwards."""
    yield from scratch_database("MariaDB", lambda name: testbed_settings.mysql(testbed_env, database=name))


@pytest.fixture
def docker_mysql_database(testbed_env) -> Iterator[str]:
    """A fresh database on the MariaDB inside the compose-labelled Docker container."""
    yield from scratch_database(
        "MariaDB in Docker", lambda name: testbed_settings.mysql(testbed_env, database=name, docker=True))


# ---------------------------------------------------------------- MinIO: one bucket per test


@pytest.fixture
def minio_client(testbed_env):
    client = clients.minio_client(testbed_settings.minio(testbed_env))
    reach("MinIO", client.list_buckets)
    return client


def remove_bucket(client, bucket: str) -> None:
    if not client.bucket_exists(bucket):
        return
    # MinIO hides "a/b" from listings while an object "a" exists: list again until nothing is left.
    for _ in range(10):
        items = list(client.list_objects(bucket, recursive=True, include_version=True))
        if not items:
            break
        for item in items:
            client.remove_object(bucket, item.object_name, version_id=item.version_id)
    client.remove_bucket(bucket)


@pytest.fixture
def bucket(minio_client) -> Iterator[str]:
    name = unique("test-")
    minio_client.make_bucket(name)
    yield name
    remove_bucket(minio_client, name)


# ---------------------------------------------------------------- Elasticsearch / OpenSearch


@pytest.fixture(params=["elasticsearch", "opensearch"])
def search_settings(request, testbed_env):
    """Settings for each engine, with a repository of this test's own under path.repo."""
    settings = testbed_settings.search(request.param, testbed_env, repository=unique("repo_"))
    client = clients.search_client(settings)
    reach(settings.engine.capitalize(), lambda: clients.search_server_version(client))
    yield settings
    from actors.search.backup import SnapshotRepo

    try:
        SnapshotRepo(client, settings.engine, settings.repository).unregister()
    except Exception:  # noqa: BLE001 - the test may never have registered it
        pass


@pytest.fixture
def index_prefix(search_settings) -> Iterator[str]:
    """A unique index-name prefix; every index under it is deleted afterwards."""
    prefix = unique("test_")
    yield prefix
    client = clients.search_client(search_settings)
    # Wildcard deletes are refused by default (action.destructive_requires_name), so name each index.
    for name in client.indices.get(index=f"{prefix}*", allow_no_indices=True, expand_wildcards="all"):
        client.indices.delete(index=name)


# ---------------------------------------------------------------- Docker


@pytest.fixture
def docker_client(testbed_env):
    client = clients.docker_client(testbed_env["DOCKER_HOST"])
    reach("Docker engine", client.ping)
    return client


# ---------------------------------------------------------------- a private MinIO server


@pytest.fixture
def private_minio(testbed_env, tmp_path) -> Iterator[PrivateMinio]:
    server = PrivateMinio(testbed_env, tmp_path / "private-minio")
    server.data.mkdir()
    reach("MinIO (private server from the test bed's binary)", server.start)
    yield server
    server.kill()
