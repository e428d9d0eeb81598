"""What RAGFlow's docker/.env says about its deployment: where each service listens, and what we can back up.

Two `.env` layouts are in the field. Up to v0.23, MYSQL_PORT is the port MySQL is published on (5455); since
v0.24 MYSQL_PORT (3306) is the port inside the compose network and EXPOSE_MYSQL_PORT the published one. We tell
them apart by the variables present, never by a version number. ES_PORT, OS_PORT, MINIO_PORT and REDIS_PORT are
published ports in both (docker/docker-compose-base.yml maps them to 9200, 9201, 9000 and 6379 inside).

The .env is untrusted input: every value read here is checked before it is used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# DOC_ENGINE values RAGFlow accepts; only the first two have snapshots we can take.
SEARCH_ENGINES = {"elasticsearch": "es01", "opensearch": "opensearch01"}
INNER_SEARCH_PORTS = {"elasticsearch": 9200, "opensearch": 9201}  # opensearch01 runs with http.port=9201
SUPPORTED_STORAGE = "MINIO"
S3_COMPATIBLE = {"AWS_S3"}  # mirrored by reconcile alone: no MinIO bucket notifications there
# POSTGRES_HOST's default is service_conf.yaml.template's (RAGFlow's compose has no postgres service of its own).
DEFAULT_HOSTS = {"MYSQL_HOST": "mysql", "MINIO_HOST": "minio", "REDIS_HOST": "redis", "POSTGRES_HOST": "postgres"}
MINIO_IMAGES = ("minio/minio", "quay.io/minio/minio")  # MinIO's own images: bucket notifications are there
_WORD = re.compile(r"[\w.-]{1,64}")
_IMAGE = re.compile(r"[\w./:@+-]{1,255}")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


class EnvError(ValueError):
    """A value in RAGFlow's .env that cannot be used; the message names the variable."""


def env_port(env: dict[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise EnvError(f"{name}={raw!r} in RAGFlow's .env is not a port number (1-65535)")
    return int(raw)


def env_host(env: dict[str, str], name: str) -> str:
    raw = (env.get(name) or "").strip() or DEFAULT_HOSTS[name]
    if not _HOSTNAME.fullmatch(raw):
        raise EnvError(f"{name}={raw!r} in RAGFlow's .env is not a host name")
    return raw


@dataclass
class Deployment:
    """What init needs from a .env: endpoints per network, and the parts we will and will not back up."""

    doc_engine: str
    db_type: str
    storage_impl: str
    layout: str  # "v0.24+" (EXPOSE_MYSQL_PORT present) or "pre-v0.24"
    image: str | None
    backed_up: list[str] = field(default_factory=list)
    not_backed_up: list[str] = field(default_factory=list)

    @property
    def search_supported(self) -> bool:
        return self.doc_engine in SEARCH_ENGINES

    @property
    def mysql_supported(self) -> bool:
        return self.db_type == "mysql"

    @property
    def postgres_supported(self) -> bool:
        return self.db_type == "postgres"

    @property
    def storage_mirrored(self) -> bool:
        """Mirrored with bucket notifications (MinIO) or by reconcile alone (S3-compatible)."""
        return self.storage_impl == SUPPORTED_STORAGE or self.storage_impl in S3_COMPATIBLE


def _word(env: dict[str, str], name: str, default: str) -> str:
    """A setting's value when it is a plain word, for messages and comments; anything else (a newline, quotes:
    the .env is untrusted) is shown as a placeholder that matches no engine."""
    value = (env.get(name) or default).strip()
    return value if _WORD.fullmatch(value) else "(unreadable value)"


def image_name(value: object) -> str | None:
    """An image reference ('infiniflow/ragflow:v0.27.0') read from an untrusted file, or None if it is not one."""
    text = value.strip() if isinstance(value, str) else ""
    return text if _IMAGE.fullmatch(text) else None


def read_deployment(env: dict[str, str]) -> Deployment:
    engine = _word(env, "DOC_ENGINE", "elasticsearch").lower()
    db_type = _word(env, "DB_TYPE", "mysql").lower()
    storage = _word(env, "STORAGE_IMPL", SUPPORTED_STORAGE).upper()
    layout = "v0.24+" if "EXPOSE_MYSQL_PORT" in env else "pre-v0.24"
    found = Deployment(engine, db_type, storage, layout, image_name(env.get("RAGFLOW_IMAGE")))
    if found.mysql_supported:
        found.backed_up.append("MySQL: the database dump (users, knowledge bases, documents, chats, agents)")
    elif found.postgres_supported:
        found.backed_up.append("PostgreSQL: the database dump (users, knowledge bases, documents, chats, agents)")
    else:
        found.not_backed_up.append(f"the metadata database (DB_TYPE={db_type}): only MySQL and PostgreSQL are "
                                   "supported; back it up with its own tools. Per-KB restore needs it too.")
    if storage == SUPPORTED_STORAGE:
        found.backed_up.append("MinIO: every bucket mirrored as objects change (bucket notifications)")
    elif storage in S3_COMPATIBLE:
        found.backed_up.append(f"S3-compatible store (STORAGE_IMPL={storage}): mirrored by reconcile alone "
                               "(no bucket notifications); the mirror's RPO is the reconcile interval")
    else:
        found.not_backed_up.append(f"uploaded files (STORAGE_IMPL={storage}): only MinIO and S3-compatible stores "
                                   "are mirrored; back the store up with its provider's tools")
    if found.search_supported:
        found.backed_up.append(f"{engine}: snapshots of RAGFlow's indices")
    else:
        found.not_backed_up.append(f"the search index (DOC_ENGINE={engine}): only Elasticsearch and OpenSearch "
                                   "snapshots are supported; after a restore, re-parse the documents in RAGFlow to "
                                   "rebuild their chunks")
    found.backed_up.append("RAGFlow's docker/ folder (.env, compose files, service_conf.yaml.template) in Git")
    return found


def mysql_endpoint(env: dict[str, str], network: str) -> tuple[str, int]:
    """(host, port) of RAGFlow's MySQL from the agent's side: published ports on the host, else the service."""
    host = env_host(env, "MYSQL_HOST")
    external = host != DEFAULT_HOSTS["MYSQL_HOST"]  # an external MySQL: RAGFlow itself reaches it there
    if "EXPOSE_MYSQL_PORT" in env:  # v0.24+: MYSQL_PORT is the port RAGFlow connects to
        inner = env_port(env, "MYSQL_PORT", 3306)
        if external:
            return host, inner
        return ("mysql", inner) if network == "compose" else ("127.0.0.1", env_port(env, "EXPOSE_MYSQL_PORT", 3306))
    if external:
        return host, 3306 if network == "compose" else env_port(env, "MYSQL_PORT", 3306)
    return ("mysql", 3306) if network == "compose" else ("127.0.0.1", env_port(env, "MYSQL_PORT", 5455))


def postgres_endpoint(env: dict[str, str], network: str) -> tuple[str, int]:
    """(host, port) of RAGFlow's PostgreSQL (POSTGRES_HOST / POSTGRES_PORT, service_conf.yaml.template's 5432):
    an external server where RAGFlow reaches it; a compose service by its name inside the network, else its
    published port on this host."""
    host, port = env_host(env, "POSTGRES_HOST"), env_port(env, "POSTGRES_PORT", 5432)
    if host != DEFAULT_HOSTS["POSTGRES_HOST"] or network == "compose":
        return host, port
    return "127.0.0.1", port


def search_url(env: dict[str, str], engine: str, network: str) -> str:
    if network == "compose":
        host = (env.get("OS_HOST") if engine == "opensearch" else env.get("ES_HOST")) or SEARCH_ENGINES[engine]
        if not _HOSTNAME.fullmatch(host.strip()):
            raise EnvError(f"{'OS_HOST' if engine == 'opensearch' else 'ES_HOST'}={host!r} is not a host name")
        return f"http://{host.strip()}:{INNER_SEARCH_PORTS[engine]}"
    port = env_port(env, "OS_PORT", 1201) if engine == "opensearch" else env_port(env, "ES_PORT", 1200)
    return f"http://127.0.0.1:{port}"


def minio_endpoint(env: dict[str, str], network: str) -> str:
    if network == "compose":
        return f"{env_host(env, 'MINIO_HOST')}:9000"
    return f"127.0.0.1:{env_port(env, 'MINIO_PORT', 9000)}"


def redis_endpoint(env: dict[str, str], network: str) -> tuple[str, int]:
    if network == "compose":
        return env_host(env, "REDIS_HOST"), 6379
    return "127.0.0.1", env_port(env, "REDIS_PORT", 6379)


def compose_image(ragflow_dir: Path, service: str) -> str | None:
    """The image a service of RAGFlow's compose files runs (e.g. v0.27's minio is `pgsty/silo`, a MinIO fork);
    None when the files are missing, unreadable or do not name one. The files are untrusted: only read."""
    for name in ("docker-compose-base.yml", "docker-compose.yml"):
        try:
            services = (yaml.safe_load((Path(ragflow_dir) / name).read_text(errors="replace")) or {}).get("services")
            image = (services or {}).get(service, {}).get("image")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if image_name(image):
            return image_name(image)
    return None


def minio_fork_note(ragflow_dir: Path) -> str:
    """A line for init when RAGFlow's object store is not MinIO's own image ('' when it is, or is unknown)."""
    image = compose_image(ragflow_dir, "minio")
    if not image or image.split(":", 1)[0] in MINIO_IMAGES:
        return ""
    return (f"RAGFlow's object store runs {image}, not MinIO's own image: if the agent alerts that the MinIO "
            "listener is not listening, the store has no bucket notifications; set minio.events: false and the "
            "scheduled reconcile alone mirrors it (its interval is then the RPO)")
