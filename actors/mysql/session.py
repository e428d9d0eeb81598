"""Where the MySQL clients run (the local client over TCP, or the one in RAGFlow's mysql container) and what
their failures say. Split from actors/mysql/backup.py; actors/mysql/load.py uses it too."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core import clients
from core.component import PermanentError
from core.config import MySQLSettings, Settings
from core.docker_exec import ContainerTools, compose_container
from core.mysql_option_file import option_value
from core.tool_session import ToolSession

CONNECT_TIMEOUT = 10  # seconds the query client waits for a server's greeting
RUN_TIMEOUT = 120  # seconds for a query client run (version, row counts)

# ---------------------------------------------------------------- errors


def client_failure(what: str, code: int | None, stderr: str, where: str, cfg: MySQLSettings) -> Exception:
    """Classify a client failure: PermanentError for what a person must fix, else a retryable error."""
    said = f"{what} said: {stderr}" if stderr else f"{what} said nothing"
    if re.search(r"\b1045\b", stderr):
        return PermanentError(f"MySQL at {where} denied access to user '{cfg.user}' (wrong password?): check "
                              f"mysql.user and mysql.password (or MYSQL_PASSWORD in RAGFlow's docker/.env). {said}")
    if re.search(r"\b(1820|1862)\b", stderr):
        return PermanentError(f"the password of MySQL user '{cfg.user}' at {where} has expired: set a new one on the "
                              f"server (ALTER USER ... IDENTIFIED BY ...) and in mysql.password (or MYSQL_PASSWORD in "
                              f"RAGFlow's docker/.env). {said}")
    if re.search(r"\b1049\b", stderr) or "Unknown database" in stderr:
        return PermanentError(f"database '{cfg.database}' does not exist at {where}: set mysql.database to "
                              f"RAGFlow's database (usually rag_flow). {said}")
    if "Access denied" in stderr:
        return PermanentError(f"user '{cfg.user}' lacks a privilege mysqldump needs at {where}: grant SELECT, "
                              f"SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD and (for the binlog position) "
                              f"BINLOG MONITOR / REPLICATION CLIENT, or use root. {said}")
    if code is not None and code < 0:
        return RuntimeError(f"{what} at {where} was killed by signal {-code}. {said}")
    if re.search(r"\b(2002|2003|2005|2006|2013)\b", stderr) or "Can't connect" in stderr:
        return ConnectionError(f"cannot reach MySQL at {where} (will retry). {said}")
    return RuntimeError(f"{what} failed at {where} (exit code {code}). {said}")


# ---------------------------------------------------------------- where the clients run


class _Local(ToolSession):
    """tcp mode: the local client, connection settings in a 0600 option file in a private temp dir."""

    mode = "tcp"

    def __init__(self, cfg: MySQLSettings, folder: Path):
        self.where = f"{cfg.host}:{cfg.port}"
        self.folder = folder
        self.stall = cfg.stall_timeout_seconds
        self.option_file = folder / "client.cnf"
        password = clients.secret(cfg.password) or ""
        text = (f"[client]\nuser={option_value(cfg.user, 'mysql.user')}\n"
                f"password={option_value(password, 'mysql.password')}\n"
                f"host={option_value(cfg.host, 'mysql.host')}\nport={cfg.port}\nprotocol=TCP\n"
                # A hung server (accepting, never answering) fails the query client in seconds; mysqldump
                # has no such option: stream() watches it for stalls instead.
                f"[mysql]\nconnect-timeout={CONNECT_TIMEOUT}\n")
        fd = os.open(self.option_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        # Our children need no password variable; never pass one on by accident.
        self.env = {key: value for key, value in os.environ.items() if key != "MYSQL_PWD"}

    def _argv(self, tool: str, args: list[str], connect: bool) -> list[str]:
        path = shutil.which(tool) or tool
        # --defaults-extra-file is only honoured as the very first option.
        first = [f"--defaults-extra-file={self.option_file}"] if connect else ["--no-defaults"]
        return [path, *first, *args]

    def find(self, tools: tuple[str, ...]) -> tuple[str, str] | None:
        return super().find(tuple(t for t in tools if shutil.which(t)))

    def run(self, tool: str, args: list[str], connect: bool = True) -> tuple[int, bytes, bytes]:
        try:
            done = subprocess.run(self._argv(tool, args, connect), stdin=subprocess.DEVNULL, capture_output=True,
                                  env=self.env, timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{tool} got no answer from MySQL at {self.where} within {RUN_TIMEOUT}s "
                               f"(is the server hung?)") from None
        return done.returncode, done.stdout, done.stderr

    def stream(self, tool: str, args: list[str]) -> Iterator[bytes]:
        yield from self.child_blocks(self._argv(tool, args, True), self.env, self.folder / "stderr", self.stall,
                                     "MySQL", "mysql.stall_timeout_seconds")


class _Docker(ContainerTools):
    """docker mode: the client inside the mysql container via the Docker API, password in the exec's env.

    It connects through the server's own socket (no host/port: those are the published ones)."""

    def __init__(self, cfg: MySQLSettings, container: Any):
        super().__init__(container)
        self.user = cfg.user
        self.password = clients.secret(cfg.password) or ""

    def create_exec(self, tool: str, args: list[str], connect: bool) -> str:
        cmd = [tool, f"--user={self.user}", *args] if connect else [tool, *args]
        env = {"MYSQL_PWD": self.password} if connect else None
        return self.api.exec_create(self.container.id, cmd, environment=env, stdout=True, stderr=True)["Id"]


@contextmanager
def client_session(settings: Settings) -> Iterator[ToolSession]:
    cfg = settings.mysql
    if cfg.mode == "docker":
        with compose_container(settings.docker.host, cfg.compose_service, cfg.compose_project, "MySQL",
                               "mysql") as container:
            yield _Docker(cfg, container)
        return
    folder = Path(tempfile.mkdtemp(prefix="ragflow-backup-mysql-"))  # 0700
    try:
        yield _Local(cfg, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

