"""Settings objects pointing at the running test bed, for tests, the seeder and the demo."""
from __future__ import annotations

from pathlib import Path

from core.config import (
    MinioSettings,
    MySQLSettings,
    PostgresSettings,
    RedisSettings,
    SearchSettings,
)
from testbed.env import load


def mysql(env: dict[str, str] | None = None, database: str = "rag_flow", docker: bool = False) -> MySQLSettings:
    env = env or load()
    port = int(env["DOCKER_MYSQL_PORT"] if docker else env["MYSQL_PORT"])
    return MySQLSettings(
        mode="docker" if docker else "tcp", host=env["MYSQL_HOST"], port=port, user=env["MYSQL_USER"],
        password=env["MYSQL_PASSWORD"], database=database, compose_project=env.get("DOCKER_COMPOSE_PROJECT"),
    )


def minio(env: dict[str, str] | None = None) -> MinioSettings:
    env = env or load()
    return MinioSettings(endpoint=env["MINIO_ENDPOINT"], access_key=env["MINIO_ACCESS_KEY"], secret_key=env["MINIO_SECRET_KEY"])


def search(engine: str = "elasticsearch", env: dict[str, str] | None = None, repository: str = "ragflow_backup") -> SearchSettings:
    env = env or load()
    path = str(Path(env["SNAPSHOT_ROOT"]) / repository)
    if engine == "opensearch":
        return SearchSettings(engine="opensearch", url=env["OPENSEARCH_URL"], user=None, repository=repository, repository_path=path)
    return SearchSettings(
        engine="elasticsearch", url=env["ES_URL"], user=env["ES_USER"], password=env["ES_PASSWORD"],
        repository=repository, repository_path=path,
    )


def redis(env: dict[str, str] | None = None, db: int = 1) -> RedisSettings:
    env = env or load()
    return RedisSettings(enabled=True, host=env["REDIS_HOST"], port=int(env["REDIS_PORT"]), password=env["REDIS_PASSWORD"], db=db)


def postgres(env: dict[str, str] | None = None, database: str = "rag_flow", docker: bool = False) -> PostgresSettings:
    env = env or load()
    port = int(env["DOCKER_PG_PORT"] if docker else env["PG_PORT"])
    return PostgresSettings(
        enabled=True, mode="docker" if docker else "tcp", host=env["PG_HOST"], port=port, user=env["PG_USER"],
        password=env["PG_PASSWORD"], database=database, compose_project=env.get("DOCKER_COMPOSE_PROJECT"),
    )
