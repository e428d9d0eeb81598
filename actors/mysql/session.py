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

from core import clients, docker_exec
from core.child_output import stdout_blocks
from core.clients import find_mysql_container
from core.component import PermanentError
from core.config import MySQLSettings, Settings

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


class ClientSession:
    """Runs MySQL client tools somewhere; `connect=True` adds the connection (and secret) settings."""

    mode = ""
    where = ""
    exit_code: int | None = None
    stderr = b""

    def run(self, tool: str, args: list[str], connect: bool = True) -> tuple[int, bytes, bytes]:
        raise NotImplementedError

    def stream(self, tool: str, args: list[str]) -> Iterator[bytes]:
        """Yield stdout in ~CHUNK pieces; afterwards `exit_code` and `stderr` are set."""
        raise NotImplementedError

    def find(self, tools: tuple[str, ...]) -> tuple[str, str] | None:
        """The first of `tools` that runs here, and its --version line."""
        for tool in tools:
            code, out, _ = self.run(tool, ["--version"], connect=False)
            if code == 0:
                return tool, out.decode("utf-8", "replace").strip()
        return None


def _option_value(value: str, setting: str) -> str:
    """A value for a MySQL option file: quoted so '#' and spaces survive, backslash escapes for the rest."""
    escaped = (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
               .replace("\b", "\\b"))
    quote = '"' if '"' not in value else "'"
    if quote in value and "#" in value:
        # The option-file parser would take what follows '#' for a comment.
        raise PermanentError(f"{setting} holds both kinds of quote and a '#', which a MySQL option file cannot "
                             f"carry safely: change it or use mysql.mode: docker")
    return f"{quote}{escaped}{quote}"


class _Local(ClientSession):
    """tcp mode: the local client, connection settings in a 0600 option file in a private temp dir."""

    mode = "tcp"

    def __init__(self, cfg: MySQLSettings, folder: Path):
        self.where = f"{cfg.host}:{cfg.port}"
        self.folder = folder
        self.stall = cfg.stall_timeout_seconds
        self.option_file = folder / "client.cnf"
        password = clients.secret(cfg.password) or ""
        text = (f"[client]\nuser={_option_value(cfg.user, 'mysql.user')}\n"
                f"password={_option_value(password, 'mysql.password')}\n"
                f"host={_option_value(cfg.host, 'mysql.host')}\nport={cfg.port}\nprotocol=TCP\n"
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
        self.exit_code, self.stderr = None, b""

        def stalled() -> Exception:
            return TimeoutError(f"MySQL at {self.where} sent nothing for {self.stall}s in the middle of the dump "
                                f"(is the server hung?); mysqldump was stopped (mysql.stall_timeout_seconds)")

        def finished(exit_code: int | None, stderr: bytes) -> None:
            self.exit_code, self.stderr = exit_code, stderr

        yield from stdout_blocks(self._argv(tool, args, True), self.env, self.folder / "stderr", self.stall, stalled, finished)


class _Docker(ClientSession):
    """docker mode: the client inside the mysql container via the Docker API, password in the exec's env.

    It connects through the server's own socket (no host/port: those are the published ones)."""

    mode = "docker"

    def __init__(self, cfg: MySQLSettings, container: Any):
        self.container = container
        self.api = container.client.api
        self.where = f"container {container.name}"
        self.user = cfg.user
        self.password = clients.secret(cfg.password) or ""

    def _exec(self, tool: str, args: list[str], connect: bool) -> str:
        cmd = [tool, f"--user={self.user}", *args] if connect else [tool, *args]
        env = {"MYSQL_PWD": self.password} if connect else None
        return self.api.exec_create(self.container.id, cmd, environment=env, stdout=True, stderr=True)["Id"]

    def exec_exit_code(self, exec_id: str) -> int | None:
        return docker_exec.exit_code(self.api, exec_id)

    def run(self, tool: str, args: list[str], connect: bool = True) -> tuple[int, bytes, bytes]:
        exec_id = self._exec(tool, args, connect)
        out, err = self.api.exec_start(exec_id, demux=True)
        code = self.exec_exit_code(exec_id)
        return (code if code is not None else -1), out or b"", err or b""

    def _finished(self, exit_code: int | None, stderr: bytes) -> None:
        self.exit_code, self.stderr = exit_code, stderr

    def stream(self, tool: str, args: list[str]) -> Iterator[bytes]:
        self.exit_code, self.stderr = None, b""
        yield from docker_exec.stdout_blocks(self.api, self._exec(tool, args, True), self._finished)


@contextmanager
def client_session(settings: Settings) -> Iterator[ClientSession]:
    cfg = settings.mysql
    if cfg.mode == "docker":

        try:
            container = find_mysql_container(settings)
        except LookupError as exc:
            raise PermanentError(f"no MySQL container to dump: {exc}. Start RAGFlow's mysql service, or set "
                                 f"mysql.compose_service / mysql.compose_project (and docker.host) to match "
                                 f"its compose labels") from None
        try:
            yield _Docker(cfg, container)
        finally:
            container.client.close()
        return
    folder = Path(tempfile.mkdtemp(prefix="ragflow-backup-mysql-"))  # 0700
    try:
        yield _Local(cfg, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

