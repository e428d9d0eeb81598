"""Pre-flight checks: is each configured service reachable, and is our storage usable?

Each check returns a Check with what was found and, when something is wrong, how to fix it.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from croniter import croniter

from agent import clients
from agent.config import Settings
from agent.ragflow_deployment import read_deployment
from agent.ragflow_folder import kept_files

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


def eviction_risk(policy: str) -> str:
    """What a Redis maxmemory-policy can evict, judged by its effect and not its name: '' when it cannot
    drop a queued task (our messages and RAGFlow's task stream carry no TTL)."""
    if policy.startswith("allkeys-"):
        return "it can evict any key, queued tasks included, under memory pressure"
    if policy.startswith("volatile-") or policy == "noeviction":
        return ""  # volatile-*: only keys with a TTL; noeviction: none (writes fail instead)
    return "a policy this check does not know: make sure it never evicts keys without a TTL"


def check_broker(settings: Settings) -> Check:
    import redis

    try:
        client = redis.Redis.from_url(settings.broker.url.get_secret_value(), socket_connect_timeout=5)
        info = client.info("server")
        version = info.get("valkey_version") or info["redis_version"]
        server = "Valkey" if "valkey_version" in info else "Redis"
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
    except Exception as exc:  # noqa: BLE001 - any failure is reported with its cause
        return _failure("broker (Redis)", exc, "check broker.url: host, port, password and DB")
    detail = f"{server} {version}, maxmemory-policy {policy}"
    risk = eviction_risk(policy)
    if risk:
        return Check("broker (Redis)", "warn", f"{detail}: {risk}",
                     "use a separate Redis for broker.url, or a volatile-* policy (RAGFlow's own default, "
                     "volatile-lru) or noeviction on this one")
    if policy.startswith("volatile-"):
        detail += " (evicts only keys with a TTL; queued tasks have none)"
    return Check("broker (Redis)", "ok", detail)


def unsupported_reason(settings: Settings, part: str) -> str:
    """Why RAGFlow's .env puts a part out of our reach ('' when it does not): shown for a disabled part."""
    found = read_deployment(settings.ragflow_env())
    if part == "search" and not found.search_supported:
        return (f"DOC_ENGINE={found.doc_engine} is not supported (Elasticsearch and OpenSearch are): re-parse the "
                "documents after a restore to rebuild their chunks")
    if part == "mysql" and not found.mysql_supported:
        return f"DB_TYPE={found.db_type} is not supported (MySQL is): back it up with its own tools"
    if part == "minio" and not found.storage_mirrored:
        return f"STORAGE_IMPL={found.storage_impl} is not supported (MinIO and S3-compatible stores are)"
    return ""


def off(settings: Settings, part: str, name: str | None = None) -> Check:
    return Check(name or part, "off", unsupported_reason(settings, part) or "disabled in the config")


def reconcile_interval_seconds(settings: Settings) -> float | None:
    """The longest gap between two scheduled reconciles over the next day: the mirror's RPO without events."""
    if not settings.schedule.reconcile:
        return None
    ticks = croniter(settings.schedule.reconcile, datetime.now())
    times = [ticks.get_next(datetime) for _ in range(2)]
    while (times[-1] - times[0]).total_seconds() < 86400 and len(times) < 2000:
        times.append(ticks.get_next(datetime))
    return max((b - a).total_seconds() for a, b in zip(times, times[1:]))


def mirror_rpo(settings: Settings) -> str:
    """How much of the store a loss can take, in words, for doctor and status."""
    if settings.minio.events:
        return "bucket notifications: changes mirrored within seconds; reconcile heals missed events"
    interval = reconcile_interval_seconds(settings)
    if interval is None:
        return "minio.events is false and schedule.reconcile is off: nothing mirrors the store"
    return (f"minio.events is false: reconcile alone mirrors, RPO {interval / 60:.0f} min "
            f"(schedule.reconcile '{settings.schedule.reconcile}')")


def check_mysql(settings: Settings) -> Check:
    cfg = settings.mysql
    if not cfg.enabled:
        return off(settings, "mysql")
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


def find_mysql_container(settings: Settings):
    """The running container of RAGFlow's mysql service, found by its compose labels (names vary)."""
    labels = [f"com.docker.compose.service={settings.mysql.compose_service}"]
    if settings.mysql.compose_project:
        labels.append(f"com.docker.compose.project={settings.mysql.compose_project}")
    found = clients.docker_client(settings.docker.host).containers.list(filters={"label": labels})
    if len(found) != 1:
        where = ", ".join(labels)
        raise LookupError(f"{len(found)} running containers carry {where}; expected exactly one")
    return found[0]


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
        return off(settings, "minio")
    client = clients.minio_client(settings.minio)
    if settings.minio.events:
        try:  # refused by the client itself, without a request, for Amazon S3 endpoints
            client.listen_bucket_notification("ragflow-backup-probe")
        except ValueError as exc:
            return Check("minio", "fail", f"{settings.minio.endpoint}: {exc}",
                         "set minio.events: false: the scheduled reconcile alone then mirrors the store")
    try:
        buckets = client.list_buckets()
    except Exception as exc:  # noqa: BLE001
        return _failure("minio", exc, "check minio.endpoint and MINIO_USER / MINIO_PASSWORD")
    detail = f"{settings.minio.endpoint}: {len(buckets)} buckets; {mirror_rpo(settings)}"
    if not settings.minio.events and not settings.schedule.reconcile:
        return Check("minio", "fail", detail, "set schedule.reconcile (e.g. '*/15 * * * *') or minio.events: true")
    return Check("minio", "ok", detail)


def compose_override(engine: str) -> str:
    service = "es01" if engine == "elasticsearch" else "opensearch01"
    home = "/usr/share/elasticsearch" if engine == "elasticsearch" else "/usr/share/opensearch"
    return (
        f"add to RAGFlow's compose (docker-compose.override.yml):\n"
        f"  services:\n    {service}:\n      environment:\n        - path.repo={home}/backups\n"
        f"      volumes:\n        - /share/backups/ragflow/{engine}_repo:{home}/backups\n"
        f"then set search.repository_path to a folder under {home}/backups and restart {service}"
    )


def check_search(settings: Settings) -> Check:
    cfg = settings.search
    name = cfg.engine
    if not cfg.enabled:
        return off(settings, "search", name)
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
    from agent.offsite import OffsiteError, OffsitePermanent, Restic

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
    from agent.component import PermanentError
    from agent.encryption import recipient_args

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
