"""`init`: write a config from RAGFlow's docker/.env, without copying any secret into it."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
import yaml

from agent.commands.common import console, fail, state
from core.config import DEFAULT_CONFIG_PATH, ConfigError, load_settings
from core.ragflow_env import read_ragflow_env


def build_config(ragflow_dir: Path, storage_root: Path, network: Literal["host", "compose"]) -> dict:
    env = read_ragflow_env(ragflow_dir)
    engine = "opensearch" if env.get("DOC_ENGINE", "elasticsearch") == "opensearch" else "elasticsearch"
    search_service = "opensearch01" if engine == "opensearch" else "es01"
    if network == "compose":
        mysql_host, mysql_port = "mysql", 3306
        # RAGFlow's opensearch01 listens on 9201 inside the network (http.port=9201), es01 on 9200.
        minio = "minio:9000"
        search_url = f"http://{search_service}:{9201 if engine == 'opensearch' else 9200}"
        redis_host, redis_port = "redis", 6379
    else:
        mysql_host, mysql_port = "127.0.0.1", int(env.get("MYSQL_PORT", 5455))
        minio = f"127.0.0.1:{env.get('MINIO_PORT', 9000)}"
        search_port = env.get("OS_PORT", 1201) if engine == "opensearch" else env.get("ES_PORT", 1200)
        search_url = f"http://127.0.0.1:{search_port}"
        redis_host, redis_port = "127.0.0.1", int(env.get("REDIS_PORT", 6379))
    home = "/usr/share/opensearch" if engine == "opensearch" else "/usr/share/elasticsearch"
    return {
        "storage_root": str(storage_root),
        "ragflow_dir": str(ragflow_dir.resolve()),
        # DB 1 is RAGFlow's; the password comes from REDIS_PASSWORD in its .env.
        "broker": {"url": f"redis://{redis_host}:{redis_port}/2"},
        "mysql": {"mode": "tcp", "host": mysql_host, "port": mysql_port, "user": "root",
                  "database": env.get("MYSQL_DBNAME", "rag_flow")},
        "minio": {"endpoint": minio},
        "search": {"engine": engine, "url": search_url, "user": "elastic" if engine == "elasticsearch" else "admin",
                   "repository_path": f"{home}/backups/ragflow_backup"},
        "redis": {"enabled": False, "host": redis_host, "port": redis_port, "db": 1},
    }


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
    config = build_config(ragflow_dir, storage_root.resolve(), network)  # type: ignore[arg-type]
    text = ("# ragflow-backup config written by `ragflow-backup init`. Passwords are read from\n"
            f"# {ragflow_dir.resolve()}/.env at run time; none is stored here.\n" + yaml.safe_dump(config, sort_keys=False))
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
    console.print(f"wrote {target}; check it with `ragflow-backup --config {target} doctor`")
