"""`init`: write a config from RAGFlow's docker/.env, without copying any secret into it."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
import yaml

from agent.commands.common import console, fail, state
from core import clients
from core.config import DEFAULT_CONFIG_PATH, ConfigError, SearchSettings, load_settings
from core.ragflow_deployment import (
    S3_COMPATIBLE,
    EnvError,
    minio_endpoint,
    minio_fork_note,
    mysql_endpoint,
    postgres_endpoint,
    read_deployment,
    redis_endpoint,
    search_url,
)
from core.ragflow_env import load_ragflow_env, read_ragflow_env


def build_config(ragflow_dir: Path, storage_root: Path, network: Literal["host", "compose"],
                 env: dict[str, str] | None = None) -> dict:
    env = read_ragflow_env(ragflow_dir) if env is None else env
    found = read_deployment(env)
    engine = found.doc_engine if found.search_supported else "elasticsearch"
    mysql_host, mysql_port = mysql_endpoint(env, network)
    redis_host, redis_port = redis_endpoint(env, network)
    home = "/usr/share/opensearch" if engine == "opensearch" else "/usr/share/elasticsearch"
    minio: dict = {"endpoint": minio_endpoint(env, network)}
    if found.storage_impl in S3_COMPATIBLE:
        # Its endpoint and keys live in service_conf.yaml's s3 section, which we do not copy: the operator
        # sets them and turns it on (init says so). No bucket notifications there: reconcile alone mirrors it.
        minio.update(enabled=False, events=False)
    elif not found.storage_mirrored:
        minio["enabled"] = False
    search: dict = {"engine": engine, "url": search_url(env, engine, network),
                    "user": "elastic" if engine == "elasticsearch" else "admin",
                    "repository_path": f"{home}/backups/ragflow_backup"}
    if not found.search_supported:
        search = {"enabled": False}
    config = {
        "storage_root": str(storage_root),
        "ragflow_dir": str(ragflow_dir.resolve()),
        # DB 1 is RAGFlow's; the password comes from REDIS_PASSWORD in its .env.
        "broker": {"url": f"redis://{redis_host}:{redis_port}/2"},
        "mysql": {"enabled": found.mysql_supported, "mode": "tcp", "host": mysql_host, "port": mysql_port,
                  "user": "root", "database": env.get("MYSQL_DBNAME") or "rag_flow"},
        "minio": minio,
        "search": search,
        "redis": {"enabled": False, "host": redis_host, "port": redis_port, "db": 1},
    }
    if found.postgres_supported:  # DB_TYPE=postgres: RAGFlow's metadata is there, not in MySQL
        postgres_host, postgres_port = postgres_endpoint(env, network)
        config["postgres"] = {"enabled": True, "mode": "tcp", "host": postgres_host, "port": postgres_port,
                              "user": env.get("POSTGRES_USER") or "rag_flow",
                              "database": env.get("POSTGRES_DBNAME") or "rag_flow"}
    return config


def repository_path_on_server(config: dict, env: dict[str, str]) -> str | None:
    """`<path.repo>/ragflow_backup` when the search server is reachable now and has path.repo set; else None
    (the default stays, and `doctor` prints the compose override that sets path.repo)."""
    search = config["search"]
    if search.get("enabled") is False:
        return None
    password = env.get("OPENSEARCH_PASSWORD" if search["engine"] == "opensearch" else "ELASTIC_PASSWORD")
    try:
        settings = SearchSettings(engine=search["engine"], url=search["url"], user=search["user"], password=password)
        client = clients.search_client(settings)
        if hasattr(client, "options"):  # Elasticsearch 8
            info = client.options(request_timeout=5).nodes.info(node_id="_local", metric="settings")
        else:  # OpenSearch
            info = client.nodes.info(node_id="_local", metric="settings", request_timeout=5)
        body = info.body if hasattr(info, "body") else info
        repo = next(iter(body["nodes"].values()))["settings"].get("path", {}).get("repo")
    except Exception:  # noqa: BLE001 - not reachable from here (yet): keep RAGFlow's default layout
        return None
    repo = [repo] if isinstance(repo, str) else list(repo or [])
    return f"{repo[0].rstrip('/')}/ragflow_backup" if repo else None


def describe_coverage(ragflow_dir: Path) -> list[str]:
    """What init tells the operator it will and will not back up for this .env, one line each."""
    found = read_deployment(read_ragflow_env(ragflow_dir))
    lines = [f"RAGFlow {found.image or '(no RAGFLOW_IMAGE in .env)'}, .env layout {found.layout}"]
    lines += [f"  backed up: {item}" for item in found.backed_up]
    lines += [f"  NOT backed up: {item}" for item in found.not_backed_up]
    if found.storage_impl == "MINIO" and (note := minio_fork_note(ragflow_dir)):
        lines.append(f"  note: {note}")
    if found.storage_impl in S3_COMPATIBLE:
        lines.append("  to mirror the S3 store: set minio.endpoint, minio.access_key, minio.secret_key (and "
                     "minio.secure for https) from service_conf.yaml's s3 section, then minio.enabled: true")
    return lines


def init(
    ragflow_dir: Annotated[Path, typer.Option("--ragflow-dir", help="RAGFlow's docker/ folder (holds .env).")],
    storage_root: Annotated[Path, typer.Option(help="Where backups go.")] = Path("/share/backups/ragflow"),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Config file to write; default: --config or /etc/ragflow-backup/config.yml.")] = None,
    network: Annotated[str, typer.Option(help="host: reach RAGFlow's published ports; compose: run inside its network.")] = "host",
    force: Annotated[bool, typer.Option(help="Overwrite an existing config file.")] = False,
) -> None:
    """Write a config that reads RAGFlow's docker/.env (credentials, ports, DOC_ENGINE)."""
    if network not in ("host", "compose"):
        fail(f"--network must be host or compose, not {network!r}", code=2)
    if not (ragflow_dir / ".env").is_file():
        fail(f"{ragflow_dir}/.env not found: --ragflow-dir must be RAGFlow's docker/ folder (it holds .env)", code=2)
    target = output or state.config_path or DEFAULT_CONFIG_PATH
    if target.exists() and not force:
        fail(f"{target} exists; pass --force to overwrite it", code=2)
    try:
        config = build_config(ragflow_dir, storage_root.resolve(), network)  # type: ignore[arg-type]
    except EnvError as exc:
        fail(f"{exc}; fix {ragflow_dir}/.env", code=2)
    if network == "host" and (found := repository_path_on_server(config, read_ragflow_env(ragflow_dir))):
        config["search"]["repository_path"] = found
    coverage = describe_coverage(ragflow_dir)
    # What is left out, and why, stays next to the options that leave it out (one line each: no newline inside).
    left_out = "".join(f"# {' '.join(line.split())}\n" for line in coverage if "NOT backed up" in line)
    text = ("# ragflow-backup config written by `ragflow-backup init`. Passwords are read from\n"
            f"# {ragflow_dir.resolve()}/.env at run time; none is stored here.\n" + left_out
            + yaml.safe_dump(config, sort_keys=False))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    try:
        load_settings(tmp)
    except ConfigError as exc:
        tmp.unlink()
        fail(f"the generated config does not validate (please report this): {exc}")
    tmp.replace(target)
    for line in coverage:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    # A line left out (not UTF-8) left its variable at RAGFlow's default in the config: say which.
    for bad in load_ragflow_env(ragflow_dir).unreadable:
        console.print(f"  warn: {bad.message()}; the config was written as if it were not there",
                      markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {target}; check it with `ragflow-backup --config {target} doctor`")
