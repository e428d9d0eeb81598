"""PostgreSQL fixtures: a seeded database of each test's own on the test bed's server (or its container)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.postgres_seed import PgDataset, connect, drop_database, seed_postgres
from tests.conftest import reach


def _seeded(env: dict[str, str], port_key: str, service: str) -> Iterator[PgDataset]:
    reach(service, lambda: connect(env, "postgres", port_key).close())
    dataset = seed_postgres(env, size="tiny", port_key=port_key)
    yield dataset
    drop_database(dataset.database, env, port_key)


@pytest.fixture
def pg_dataset(testbed_env) -> Iterator[PgDataset]:
    """RAGFlow's tables and rows in a uuid-named database of the test bed's PostgreSQL."""
    yield from _seeded(testbed_env, "PG_PORT", "PostgreSQL (test bed, port PG_PORT)")


@pytest.fixture
def docker_pg_dataset(testbed_env) -> Iterator[PgDataset]:
    """The same in the test bed's PostgreSQL container (docker mode)."""
    yield from _seeded(testbed_env, "DOCKER_PG_PORT", "PostgreSQL in Docker (DOCKER_PG_PORT)")
