"""Where PostgreSQL's client tools run, and what their failures say.

`tcp` mode runs the local pg_dump / pg_restore against postgres.host:port with the password in a 0600
PGPASSFILE inside a private temp dir; `docker` mode runs the server's own pg_dump inside the compose-labelled
postgres container through the Docker API, connecting over the container's own socket, with the password in
the exec's environment (PGPASSWORD), and its own pg_restore fed an archive on stdin (`DockerTools.fed`) to read
it back. Either way the password never reaches an argv or a log. The statements
that inspect, count and swap go over psycopg to postgres.host:port (in docker mode: the published port).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from core import clients, docker_exec
from core.child_output import clean_stderr, stdout_blocks
from core.component import PermanentError
from core.config import PostgresSettings, Settings

CONNECT_TIMEOUT = 10  # seconds a client waits for the server
RUN_TIMEOUT = 120  # seconds for a short tool run (versions, --list)
# Variables a child must not inherit: they would override what we hand it.
_PG_VARIABLES = ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE", "PGHOST", "PGPORT", "PGUSER",
                 "PGDATABASE", "PGOPTIONS")


def connect(cfg: PostgresSettings, database: str | None = None, user: str | None = None,
            password: str | None = None, connect_timeout: int = CONNECT_TIMEOUT) -> psycopg.Connection:
    """A psycopg connection (autocommit) to `database` (default: postgres.database)."""
    return psycopg.connect(host=cfg.host, port=cfg.port, user=user or cfg.user,
                           password=password if password is not None else clients.secret(cfg.password) or "",
                           dbname=database or cfg.database, autocommit=True, connect_timeout=connect_timeout,
                           application_name="ragflow-backup")


@contextmanager
def deadline(conn: psycopg.Connection, seconds: float, what: str, where: str) -> Iterator[None]:
    """End the statements of the block after `seconds`: a server hung mid-query (SIGSTOP, a frozen VM) still
    acknowledges TCP, so psycopg would wait forever. Shutting the socket down ends that wait with an error."""
    fired = threading.Event()

    def cut() -> None:
        fired.set()
        try:
            with socket.socket(fileno=os.dup(conn.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    except psycopg.Error:
        if fired.is_set():
            raise TimeoutError(f"PostgreSQL at {where} did not answer {what} within {seconds}s (is the server hung?); "
                               f"the connection was closed (postgres.stall_timeout_seconds)") from None
        raise
    finally:
        timer.cancel()


def failure(what: str, code: int | None, stderr: str, where: str, cfg: PostgresSettings) -> Exception:
    """PermanentError for what a person must fix, else a retryable error."""
    said = f"{what} said: {stderr}" if stderr else f"{what} said nothing"
    if "password authentication failed" in stderr or "no password supplied" in stderr:
        return PermanentError(f"PostgreSQL at {where} refused user '{cfg.user}' (wrong password?): check "
                              f"postgres.user and postgres.password (or POSTGRES_PASSWORD in RAGFlow's docker/.env). "
                              f"{said}")
    if re.search(r'database "[^"]*" does not exist', stderr):
        return PermanentError(f"database '{cfg.database}' does not exist at {where}: set postgres.database to "
                              f"RAGFlow's database (POSTGRES_DBNAME, usually rag_flow). {said}")
    if "server version mismatch" in stderr or "aborting because of server version mismatch" in stderr:
        return PermanentError(f"{what} is older than the server at {where}: install a client of the server's major "
                              f"version or newer (apt-get install postgresql-client-N), or use postgres.mode: docker. "
                              f"{said}")
    if "permission denied" in stderr:
        return PermanentError(f"user '{cfg.user}' lacks a privilege {what} needs at {where}: use RAGFlow's own "
                              f"account (the owner of its database), or grant it SELECT on every table. {said}")
    if code is not None and code < 0:
        return RuntimeError(f"{what} at {where} was killed by signal {-code}. {said}")
    if "could not connect" in stderr or "Connection refused" in stderr or "server closed the connection" in stderr \
            or "timeout expired" in stderr or "terminating connection" in stderr \
            or "the database system is shutting down" in stderr or "the database system is starting up" in stderr:
        return ConnectionError(f"cannot reach PostgreSQL at {where} (will retry). {said}")
    return RuntimeError(f"{what} failed at {where} (exit code {code}). {said}")


def connect_failure(exc: Exception, cfg: PostgresSettings) -> Exception:
    """A psycopg connection error, classified like a tool's."""
    return failure("the connection", None, clean_stderr(str(exc).encode(), clients.secret(cfg.password) or ""),
                   f"{cfg.host}:{cfg.port}", cfg)


class ToolSession:
    """Runs PostgreSQL client tools somewhere; `connect=True` adds the connection settings and secret."""

    mode = ""
    where = ""
    exit_code: int | None = None
    stderr = b""

    def run(self, tool: str, args: list[str], connect: bool = True) -> tuple[int, bytes, bytes]:
        raise NotImplementedError

    def stream(self, tool: str, args: list[str]) -> Iterator[bytes]:
        """Yield stdout in pieces; afterwards `exit_code` and `stderr` are set."""
        raise NotImplementedError

    def version(self, tool: str) -> str | None:
        code, out, _ = self.run(tool, ["--version"], connect=False)
        return out.decode("utf-8", "replace").strip() if code == 0 else None


class LocalTools(ToolSession):
    """tcp mode: the local tools, the password in a 0600 PGPASSFILE in a private temp dir."""

    mode = "tcp"

    def __init__(self, cfg: PostgresSettings, folder: Path, user: str | None = None, password: str | None = None):
        self.cfg, self.folder = cfg, folder
        self.where = f"{cfg.host}:{cfg.port}"
        self.stall = cfg.stall_timeout_seconds
        self.user = user or cfg.user
        self.password = password if password is not None else clients.secret(cfg.password) or ""
        passfile = folder / f"pgpass-{self.user}"
        escaped = self.password.replace("\\", "\\\\").replace(":", "\\:")
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"*:*:*:*:{escaped}\n")
        self.env = {key: value for key, value in os.environ.items() if key not in _PG_VARIABLES}
        self.env.update(PGPASSFILE=str(passfile), PGCONNECT_TIMEOUT=str(CONNECT_TIMEOUT))

    def connection_args(self, database: str) -> list[str]:
        return ["-h", self.cfg.host, "-p", str(self.cfg.port), "-U", self.user, "-d", database, "-w"]

    def _argv(self, tool: str, args: list[str]) -> list[str]:
        return [shutil.which(tool) or tool, *args]

    def run(self, tool: str, args: list[str], connect: bool = True,
            timeout: float | None = RUN_TIMEOUT) -> tuple[int, bytes, bytes]:
        try:
            done = subprocess.run(self._argv(tool, args), stdin=subprocess.DEVNULL, capture_output=True,
                                  env=self.env, timeout=timeout)
        except FileNotFoundError:
            return 127, b"", f"{tool}: not found".encode()
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{tool} got no answer from PostgreSQL at {self.where} within {timeout}s "
                               f"(is the server hung?)") from None
        return done.returncode, done.stdout, done.stderr

    def start(self, tool: str, args: list[str], stderr: Any) -> subprocess.Popen:
        """The tool started with its output discarded and its stderr to `stderr` (a file), for a caller that
        watches it (actors/postgres/watchdog.py)."""
        return subprocess.Popen(self._argv(tool, args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr, env=self.env)

    def stream(self, tool: str, args: list[str]) -> Iterator[bytes]:
        self.exit_code, self.stderr = None, b""

        def stalled() -> Exception:
            return TimeoutError(f"PostgreSQL at {self.where} sent nothing for {self.stall}s in the middle of the dump "
                                f"(is the server hung?); {tool} was stopped (postgres.stall_timeout_seconds)")

        def finished(exit_code: int | None, stderr: bytes) -> None:
            self.exit_code, self.stderr = exit_code, stderr

        yield from stdout_blocks(self._argv(tool, args), self.env, self.folder / "stderr", self.stall, stalled, finished)


class DockerTools(ToolSession):
    """docker mode: the server's own tools inside its container, over the container's socket, the password in
    the exec's environment."""

    mode = "docker"

    def __init__(self, cfg: PostgresSettings, container: Any):
        self.cfg, self.container = cfg, container
        self.api = container.client.api
        self.where = f"container {container.name}"
        self.password = clients.secret(cfg.password) or ""

    def connection_args(self, database: str) -> list[str]:
        return ["-U", self.cfg.user, "-d", database, "-w"]

    def _exec(self, tool: str, args: list[str], connect: bool) -> str:
        env = {"PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT)} if connect else None
        return self.api.exec_create(self.container.id, [tool, *args], environment=env, stdout=True, stderr=True)["Id"]

    def run(self, tool: str, args: list[str], connect: bool = True) -> tuple[int, bytes, bytes]:
        exec_id = self._exec(tool, args, connect)
        out, err = self.api.exec_start(exec_id, demux=True)
        code = docker_exec.exit_code(self.api, exec_id)
        return (code if code is not None else -1), out or b"", err or b""

    def _finished(self, exit_code: int | None, stderr: bytes) -> None:
        self.exit_code, self.stderr = exit_code, stderr

    def stream(self, tool: str, args: list[str]) -> Iterator[bytes]:
        self.exit_code, self.stderr = None, b""
        yield from docker_exec.stdout_blocks(self.api, self._exec(tool, args, True), self._finished)

    def fed(self, tool: str, args: list[str], path: Path) -> Iterator[bytes]:
        """Run `tool` (no connection) with the file at `path` as its stdin; yield its stdout. Afterwards
        `exit_code` and `stderr` are set."""
        self.exit_code, self.stderr = None, b""
        exec_id = self.api.exec_create(self.container.id, [tool, *args], stdin=True, stdout=True, stderr=True)["Id"]
        yield from docker_exec.fed_stdout(self.api, exec_id, path, "postgres-exec-stdin", self._finished)


def find_container(settings: Settings) -> Any:
    """The running container of RAGFlow's postgres service, found by its compose labels."""
    cfg = settings.postgres
    labels = [f"com.docker.compose.service={cfg.compose_service}"]
    if cfg.compose_project:
        labels.append(f"com.docker.compose.project={cfg.compose_project}")
    found = clients.docker_client(settings.docker.host).containers.list(filters={"label": labels})
    if len(found) != 1:
        raise LookupError(f"{len(found)} running containers carry {', '.join(labels)}; expected exactly one")
    return found[0]


@contextmanager
def local_tools(cfg: PostgresSettings, user: str | None = None, password: str | None = None) -> Iterator[LocalTools]:
    folder = Path(tempfile.mkdtemp(prefix="ragflow-backup-postgres-"))  # 0700
    try:
        yield LocalTools(cfg, folder, user, password)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def dump_tools(settings: Settings) -> Iterator[ToolSession]:
    """Where pg_dump runs: the container's own (docker mode) or the local one (tcp mode)."""
    if settings.postgres.mode == "docker":
        try:
            container = find_container(settings)
        except LookupError as exc:
            raise PermanentError(f"no PostgreSQL container to dump: {exc}. Start RAGFlow's postgres service, or set "
                                 f"postgres.compose_service / postgres.compose_project (and docker.host) to match "
                                 f"its compose labels") from None
        try:
            yield DockerTools(settings.postgres, container)
        finally:
            container.client.close()
        return
    with local_tools(settings.postgres) as tools:
        yield tools
