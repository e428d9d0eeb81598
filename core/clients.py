"""Clients of the services we back up, built from settings. Each is created on demand and connects lazily."""
from __future__ import annotations

import os
from typing import Any

import redis

from core.config import MinioSettings, MySQLSettings, RedisSettings, SearchSettings, Settings


def secret(value: Any) -> str | None:
    """The plain text of a SecretStr (or a str), for handing to a client library, never to a log."""
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def mysql_connection(settings: MySQLSettings, database: str | None = None, **kwargs: Any):
    """A PyMySQL connection over TCP; `database=""` connects without selecting one."""
    import pymysql  # lazy: service clients load on first use (the CLI starts without them)

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


MINIO_CONNECT_SECONDS = 10


def ca_file() -> str:
    """The CA bundle TLS connections to MinIO trust: SSL_CERT_FILE, else certifi's."""
    import certifi  # lazy: service clients load on first use (the CLI starts without them)

    return os.environ.get("SSL_CERT_FILE") or certifi.where()


def minio_http(settings: MinioSettings):
    """The urllib3 pool manager of minio's client (the mirror's own GETs, actors/minio/object_get.py, use
    libcurl with the same timeouts and CA bundle)."""
    import urllib3  # lazy: service clients load on first use (the CLI starts without them)

    # minio's own defaults wait 5 minutes per read and retry 5 times: a hung server would stall a
    # reconcile for half an hour. A read that gets no byte for timeout_seconds fails instead.
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=MINIO_CONNECT_SECONDS, read=settings.timeout_seconds),
        maxsize=max(10, settings.reconcile_workers + 2),  # a connection per reconcile thread
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        cert_reqs="CERT_REQUIRED", ca_certs=ca_file(),
    )


def minio_client(settings: MinioSettings):
    from minio import Minio  # lazy: service clients load on first use (the CLI starts without them)

    return Minio(
        settings.endpoint,
        access_key=settings.access_key,
        secret_key=secret(settings.secret_key),
        secure=settings.secure,
        http_client=minio_http(settings),
    )


def search_client(settings: SearchSettings):
    """An Elasticsearch 8.x client or an OpenSearch client; the ES client refuses OpenSearch servers."""
    auth = (settings.user, secret(settings.password)) if settings.user and settings.password else None
    if settings.engine == "opensearch":
        from opensearchpy import OpenSearch  # lazy: the engine not in use is never loaded

        return OpenSearch(
            hosts=[settings.url], http_auth=auth, verify_certs=settings.verify_certs, timeout=60
        )
    from elasticsearch import Elasticsearch  # lazy: the engine not in use is never loaded

    return Elasticsearch(settings.url, basic_auth=auth, verify_certs=settings.verify_certs, request_timeout=60)


def search_server_version(client) -> str:
    """The server's version from the local node's info (works where GET / is not served)."""
    nodes = client.nodes.info(node_id="_local")
    body = nodes.body if hasattr(nodes, "body") else nodes
    return next(iter(body["nodes"].values()))["version"]


def redis_client(settings: RedisSettings):

    return redis.Redis(
        host=settings.host, port=settings.port, password=secret(settings.password), db=settings.db,
        socket_timeout=10, socket_connect_timeout=10,
    )


def docker_client(host: str | None = None, timeout: int = 60):
    """`timeout`: seconds per API call (docker-py's default is 60)."""
    import docker  # lazy: docker SDK (heavy): only for mysql.mode docker, doctor and the RAGFlow version probe

    return docker.DockerClient(base_url=host, timeout=timeout) if host else docker.from_env(timeout=timeout)


def find_compose_container(docker_host: str | None, service: str, project: str | None):
    """The running container of a compose service, found by its labels (names vary)."""
    labels = [f"com.docker.compose.service={service}"]
    if project:
        labels.append(f"com.docker.compose.project={project}")
    found = docker_client(docker_host).containers.list(filters={"label": labels})
    if len(found) != 1:
        where = ", ".join(labels)
        raise LookupError(f"{len(found)} running containers carry {where}; expected exactly one")
    return found[0]


def find_mysql_container(settings: Settings):
    """The running container of RAGFlow's mysql service."""
    return find_compose_container(settings.docker.host, settings.mysql.compose_service, settings.mysql.compose_project)


def compose_override(engine: str) -> str:
    service = "es01" if engine == "elasticsearch" else "opensearch01"
    home = "/usr/share/elasticsearch" if engine == "elasticsearch" else "/usr/share/opensearch"
    return (
        f"add to RAGFlow's compose (docker-compose.override.yml):\n"
        f"  services:\n    {service}:\n      environment:\n        - path.repo={home}/backups\n"
        f"      volumes:\n        - /share/backups/ragflow/{engine}_repo:{home}/backups\n"
        f"then set search.repository_path to a folder under {home}/backups and restart {service}"
    )
