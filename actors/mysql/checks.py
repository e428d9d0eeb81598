"""doctor's checks of MySQL (the server and database over TCP, or the container and its mysqldump), and
whether a point's dump holds a knowledge base, before a restore of it."""
from __future__ import annotations

import shutil
from pathlib import Path

from actors.mysql.backup import dump_files
from core import clients
from core.checks import CorruptArtifact, open_compressed
from core.clients import find_mysql_container
from core.component import Check, failed_check, off_check
from core.config import Settings
from core.manifest import ComponentRecord
from core.points import Point
from core.ragflow_deployment import read_deployment

CHUNK = 1 << 20


def unsupported_reason(settings: Settings) -> str:
    """Why RAGFlow's .env puts MySQL out of our reach ('' when it does not)."""
    found = read_deployment(settings.ragflow_env())
    if found.postgres_supported:  # the postgres component backs it up
        return "RAGFlow uses PostgreSQL (the postgres component backs it up)"
    return "" if found.mysql_supported else f"DB_TYPE={found.db_type} is not supported (MySQL is): back it up with its own tools"


def check_mysql(settings: Settings) -> Check:
    cfg = settings.mysql
    if not cfg.enabled:
        return off_check("mysql", unsupported_reason(settings))
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
        return failed_check("mysql", exc, f"check mysql.host/port/user and MYSQL_PASSWORD ({cfg.host}:{cfg.port})")
    if not exists:
        return Check("mysql", "fail", f"server {version} has no database '{cfg.database}'", "set mysql.database")
    return Check("mysql", "ok", f"{version} at {cfg.host}:{cfg.port}, database {cfg.database}")


def check_mysql_container(settings: Settings) -> Check:
    try:
        container = find_mysql_container(settings)
        result = container.exec_run(["mysqldump", "--version"])
    except Exception as exc:  # noqa: BLE001
        return failed_check("mysql (docker)", exc, "start RAGFlow, or set mysql.compose_project / docker.host")
    if result.exit_code != 0:
        return Check("mysql (docker)", "fail", f"mysqldump not runnable in {container.name}",
                     "use mysql.mode: tcp with a local client")
    return Check("mysql (docker)", "ok", f"container {container.name}: {result.output.decode().strip()}")


# ---------------------------------------------------------------- before a restore of one knowledge base


def kb_in_dump(path: Path, kb_id: str) -> bool:
    """Does any row of the dump start with this id (a knowledgebase row: its id is its first column)?
    Read as a stream in chunks, so a dump of any size (or a tampered one) keeps memory bounded."""
    needle = f"('{kb_id}',".encode()
    tail = b""
    with open_compressed(path) as stream:
        while block := stream.read(CHUNK):
            if needle in tail + block:
                return True
            tail = block[-len(needle):]
    return False


def kb_problems(point: Point, record: ComponentRecord, kb_id: str) -> list[str]:
    names = dump_files(record)
    if not names:
        return []
    for name in names:  # a change point: in its base or in its changes (one it deletes is found after the load)
        try:
            if kb_in_dump(point.folder / name, kb_id):
                return []
        except (OSError, EOFError, ValueError, CorruptArtifact) as exc:
            return [f"{name} cannot be read ({exc})"]
    return [f"knowledge base {kb_id} is not in {point.ref} (its MySQL dump has no such knowledgebase row): check "
            "the id (RAGFlow's knowledgebase table), or choose a point made while it existed (`ragflow-backup list`)"]
