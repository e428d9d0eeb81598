"""Pre-flight checks: is each configured service reachable, and is our storage usable?

Each check returns a Check with what was found and, when something is wrong, how to fix it.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import redis

from actors.actions.offsite import OffsiteError, OffsitePermanent, Restic
from core import clients
from core.clients import compose_override, find_mysql_container
from core.component import PermanentError
from core.config import Settings
from core.encryption import recipient_args
from core.ragflow_folder import kept_files

Status = Literal["ok", "warn", "fail", "off"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def _failure(name: str, exc: Exception, fix: str) -> Check:
    # Client errors carry no secrets we hand them, but keep the message to its first line.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return Check(name, "fail", f"{type(exc).__name__}: {text}", fix)


def check_storage(settings: Settings) -> Check:
    root = settings.storage_root
    probe = root if root.exists() else next((p for p in root.parents if p.exists()), None)
    if probe is None or not os.access(probe, os.W_OK | os.X_OK):
        return Check("storage", "fail", f"{root} is not writable by uid {os.getuid()}",
                     f"create it and give this user write access: mkdir -p {root} && chown $(id -u) {root}")
    usage = shutil.disk_usage(probe)
    used = 1 - usage.free / usage.total
    detail = f"{root}: {usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB ({used:.0%} used)"
    if used > 0.8:
        return Check("storage", "warn", detail, "free space or move storage_root: backups need room to grow")
    return Check("storage", "ok", detail)


def check_broker(settings: Settings) -> Check:

    try:
        client = redis.Redis.from_url(settings.broker.url.get_secret_value(), socket_connect_timeout=5)
        version = client.info("server")["redis_version"]
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
    except Exception as exc:  # noqa: BLE001 - any failure is reported with its cause
        return _failure("broker (Redis)", exc, "check broker.url: host, port, password and DB")
    detail = f"Redis {version}, maxmemory-policy {policy}"
    if policy.startswith("allkeys"):
        return Check("broker (Redis)", "warn", detail,
                     "an allkeys-* eviction policy can drop queued backup tasks under memory pressure; use a "
                     "separate Redis for broker.url, or volatile-lru / noeviction on this one")
    return Check("broker (Redis)", "ok", detail)


def check_mysql(settings: Settings) -> Check:
    cfg = settings.mysql
    if not cfg.enabled:
        return Check("mysql", "off", "disabled in the config")
    if cfg.mode == "docker":
        return check_mysql_container(settings)
    if shutil.which("mysqldump") is None and shutil.which("mariadb-dump") is None:
        return Check("mysql", "fail", "no mysqldump on PATH for TCP mode",
                     "install a MySQL client (apt-get install default-mysql-client) or use mysql.mode: docker")
    try:
        with clients.mysql_connection(cfg, database="") as conn, conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            version = cur.fetchone()[0]
            cur.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (cfg.database,))
            exists = cur.fetchone()[0] == 1
    except Exception as exc:  # noqa: BLE001
        return _failure("mysql", exc, f"check mysql.host/port/user and MYSQL_PASSWORD ({cfg.host}:{cfg.port})")
    if not exists:
        return Check("mysql", "fail", f"server {version} has no database '{cfg.database}'", "set mysql.database")
    return Check("mysql", "ok", f"{version} at {cfg.host}:{cfg.port}, database {cfg.database}")


def check_mysql_container(settings: Settings) -> Check:
    try:
        container = find_mysql_container(settings)
        result = container.exec_run(["mysqldump", "--version"])
    except Exception as exc:  # noqa: BLE001
        return _failure("mysql (docker)", exc, "start RAGFlow, or set mysql.compose_project / docker.host")
    if result.exit_code != 0:
        return Check("mysql (docker)", "fail", f"mysqldump not runnable in {container.name}",
                     "use mysql.mode: tcp with a local client")
    return Check("mysql (docker)", "ok", f"container {container.name}: {result.output.decode().strip()}")


def check_minio(settings: Settings) -> Check:
    if not settings.minio.enabled:
        return Check("minio", "off", "disabled in the config")
    try:
        buckets = clients.minio_client(settings.minio).list_buckets()
    except Exception as exc:  # noqa: BLE001
        return _failure("minio", exc, "check minio.endpoint and MINIO_USER / MINIO_PASSWORD")
    return Check("minio", "ok", f"{settings.minio.endpoint}: {len(buckets)} buckets")


def check_search(settings: Settings) -> Check:
    cfg = settings.search
    name = cfg.engine
    if not cfg.enabled:
        return Check(name, "off", "disabled in the config")
    try:
        client = clients.search_client(cfg)
        version = clients.search_server_version(client)
        info = client.nodes.info(node_id="_local", metric="settings")
        body = info.body if hasattr(info, "body") else info
        node_settings = next(iter(body["nodes"].values()))["settings"]
    except Exception as exc:  # noqa: BLE001
        return _failure(name, exc, f"check search.url ({cfg.url}) and the {name} user/password")
    repo_paths = node_settings.get("path", {}).get("repo") or []
    if isinstance(repo_paths, str):
        repo_paths = [repo_paths]
    if not any(cfg.repository_path.startswith(path.rstrip("/")) for path in repo_paths):
        return Check(name, "fail", f"{version}: path.repo {repo_paths or 'is not set'}; "
                     f"{cfg.repository_path} is outside it", compose_override(cfg.engine))
    return Check(name, "ok", f"{version} at {cfg.url}, path.repo {repo_paths}")


def check_redis(settings: Settings) -> Check:
    if not settings.redis.enabled:
        return Check("redis", "off", "optional; enable redis.enabled to back up RAGFlow's Redis DB")
    try:
        client = clients.redis_client(settings.redis)
        version = client.info("server")["redis_version"]
        keys = client.dbsize()
    except Exception as exc:  # noqa: BLE001
        return _failure("redis", exc, "check redis.host/port and REDIS_PASSWORD")
    return Check("redis", "ok", f"Redis {version}, DB {settings.redis.db} holds {keys} keys")


def check_offsite(settings: Settings) -> Check:
    if not settings.offsite.enabled:
        return Check("offsite", "off", "optional; set offsite.enabled and offsite.repository for a second copy")

    try:
        restic = Restic(settings)
        found = restic.exists()
    except (OffsiteError, OffsitePermanent) as exc:
        return Check("offsite", "fail", str(exc).splitlines()[0],
                     "check offsite.repository, offsite.password_file (or RAGFLOW_BACKUP_OFFSITE_PASSWORD) and "
                     "the backend's credentials")
    if not found:
        return Check("offsite", "warn", f"no repository at {settings.offsite.repository} yet",
                     "`ragflow-backup offsite init` (the first copy also creates it)")
    return Check("offsite", "ok", f"restic repository {settings.offsite.repository} (password from "
                                  f"{restic.password_source})")


def check_encryption(settings: Settings) -> Check:
    if not settings.encryption.enabled:
        return Check("encryption", "off", "optional; encryption.recipients encrypts artifacts at rest (age)")

    try:
        recipients = recipient_args(settings)
    except PermanentError as exc:
        return Check("encryption", "fail", str(exc), "list age public keys (age1...) or recipients files")
    if shutil.which("age") is None:
        return Check("encryption", "fail", "the age tool is not installed", "apt-get install age")
    return Check("encryption", "ok", f"{len(recipients) // 2} recipient(s); the identity stays off this machine")


def check_config_files(settings: Settings) -> Check:
    """What the daily tar keeps and the watcher watches: the list derived from RAGFlow's compose files."""
    folder = settings.ragflow_dir
    if not settings.config_files.enabled:
        return Check("config files", "off", "disabled in the config")
    if folder is None:
        return Check("config files", "off", "ragflow_dir is not set: RAGFlow's docker/ files are not kept",
                     "set ragflow_dir to RAGFlow's docker/ folder to keep .env, compose files and what they mount")
    if not folder.is_dir():
        return Check("config files", "fail", f"ragflow_dir {folder} is not a folder",
                     "set ragflow_dir to RAGFlow's docker/ folder (the one holding .env and docker-compose.yml)")
    files = kept_files(folder, settings.config_files.patterns)
    if not files:
        return Check("config files", "fail", f"nothing to keep in {folder}",
                     "is ragflow_dir RAGFlow's docker/ folder? It holds .env and docker-compose.yml")
    how = "watched and archived daily" if settings.watch.enabled else "archived daily (watch.enabled is off)"
    return Check("config files", "ok", f"{len(files)} files {how} in {folder}: {', '.join(files)}")


CHECKS: list[Callable[[Settings], Check]] = [
    check_storage, check_broker, check_mysql, check_minio, check_search, check_redis, check_offsite,
    check_encryption, check_config_files,
]


def run_checks(settings: Settings) -> list[Check]:
    return [check(settings) for check in CHECKS]
