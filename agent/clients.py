"""Clients of the services we back up, built from settings. Each is created on demand and connects lazily."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config import MinioSettings, MySQLSettings, RedisSettings, SearchSettings


def secret(value: Any) -> str | None:
    """The plain text of a SecretStr (or a str), for handing to a client library, never to a log."""
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def mysql_connection(settings: MySQLSettings, database: str | None = None, **kwargs: Any):
    """A PyMySQL connection over TCP; `database=""` connects without selecting one."""
    import pymysql

    return pymysql.connect(
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=secret(settings.password) or "",
        database=settings.database if database is None else (database or None),
        charset="utf8mb4",
        connect_timeout=10,
        autocommit=True,
        **kwargs,
    )


def minio_client(settings: MinioSettings):
    import os

    import certifi
    import urllib3
    from minio import Minio

    # minio's own defaults wait 5 minutes per read and retry 5 times: a hung server would stall a
    # reconcile for half an hour. A read that gets no byte for timeout_seconds fails instead.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10, read=settings.timeout_seconds),
        maxsize=max(10, settings.reconcile_workers + 2),  # a connection per reconcile thread
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        cert_reqs="CERT_REQUIRED", ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )
    return Minio(
        settings.endpoint,
        access_key=settings.access_key,
        secret_key=secret(settings.secret_key),
        secure=settings.secure,
        http_client=http,
    )


def search_client(settings: SearchSettings):
    """An Elasticsearch 8.x client or an OpenSearch client; the ES client refuses OpenSearch servers."""
    auth = (settings.user, secret(settings.password)) if settings.user and settings.password else None
    if settings.engine == "opensearch":
        from opensearchpy import OpenSearch

        return OpenSearch(
            hosts=[settings.url], http_auth=auth, verify_certs=settings.verify_certs, timeout=60
        )
    from elasticsearch import Elasticsearch

    return Elasticsearch(settings.url, basic_auth=auth, verify_certs=settings.verify_certs, request_timeout=60)


def search_server_version(client) -> str:
    """The server's version from the local node's info (works where GET / is not served)."""
    nodes = client.nodes.info(node_id="_local")
    body = nodes.body if hasattr(nodes, "body") else nodes
    return next(iter(body["nodes"].values()))["version"]


def redis_client(settings: RedisSettings):
    import redis

    return redis.Redis(
        host=settings.host, port=settings.port, password=secret(settings.password), db=settings.db,
        socket_timeout=10, socket_connect_timeout=10,
    )


def docker_client(host: str | None = None, timeout: int = 60):
    """`timeout`: seconds per API call (docker-py's default is 60)."""
    import docker

    return docker.DockerClient(base_url=host, timeout=timeout) if host else docker.from_env(timeout=timeout)
