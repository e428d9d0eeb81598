"""Where PostgreSQL's client tools run, and what their failures say.

`tcp` mode runs the local pg_dump / pg_restore against postgres.host:port with the password in a 0600
PGPASSFILE inside a private temp dir; `docker` mode runs the server's own pg_dump inside the compose-labelled
postgres container through the Docker API, connecting over the container's own socket, with the password in
the exec's environment (PGPASSWORD), and its own pg_restore fed an archive on stdin (`DockerTools.fed`) to read
it back or to load it (actors/postgres/load.py). Either way the password never reaches an argv or a log. The
statements that inspect, count and swap go over psycopg to postgres.host:port (in docker mode: the published
port).
"""
from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from core import clients, docker_exec
from core.child_output import clean_stderr
from core.component import PermanentError
from core.config import PostgresSettings, Settings
from core.docker_exec import ContainerTools, compose_container
from core.tool_session import ToolSession

CONNECT_TIMEOUT = 10  # seconds a client waits for the server
RUN_TIMEOUT = 120  # seconds for a short tool run (versions, --list)
CONTAINER_TMP = "/tmp"  # where a file for the container's tools goes (a restore's list of entries)
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

    def put_file(self, name: str, data: bytes) -> str:
        """Write a file the tools here read (in the private temp dir, removed with it); its path."""
        path = self.folder / name
        path.write_bytes(data)
        return str(path)

    def remove_file(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)

    def start(self, tool: str, args: list[str], stderr: Any) -> subprocess.Popen:
        """The tool started with its output discarded and its stderr to `stderr` (a file), for a caller that
        watches it (actors/postgres/watchdog.py)."""
        return subprocess.Popen(self._argv(tool, args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr, env=self.env)

    def stream(self, tool: str, args: list[str]) -> Iterator[bytes]:
        yield from self.child_blocks(self._argv(tool, args), self.env, self.folder / "stderr", self.stall,
                                     "PostgreSQL", "postgres.stall_timeout_seconds")


class DockerTools(ContainerTools):
    """docker mode: the server's own tools inside its container, over the container's socket, the password in
    the exec's environment."""

    def __init__(self, cfg: PostgresSettings, container: Any):
        super().__init__(container)
        self.cfg = cfg
        self.password = clients.secret(cfg.password) or ""

    def connection_args(self, database: str) -> list[str]:
        return ["-U", self.cfg.user, "-d", database, "-w"]

    def create_exec(self, tool: str, args: list[str], connect: bool) -> str:
        env = {"PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT)} if connect else None
        return self.api.exec_create(self.container.id, [tool, *args], environment=env, stdout=True, stderr=True)["Id"]

    def fed(self, tool: str, args: list[str], path: Path, environment: dict[str, str] | None = None,
            cut_by: Callable[[Callable[[], None]], None] | None = None) -> Iterator[bytes]:
        """Run `tool` with the file at `path` as its stdin (and `environment`: with none, it does not connect);
        yield its stdout. Afterwards `exit_code` and `stderr` are set. `cut_by`: as core/docker_exec.py's."""
        self.exit_code, self.stderr = None, b""
        exec_id = self.api.exec_create(self.container.id, [tool, *args], stdin=True, stdout=True, stderr=True,
                                       environment=environment)["Id"]
        yield from docker_exec.fed_stdout(self.api, exec_id, path, "postgres-exec-stdin", self.finished, cut_by)

    def put_file(self, name: str, data: bytes) -> str:
        """Write a file the tools in the container read, into its CONTAINER_TMP; its path there. Readable by
        whichever user the exec runs as: it must hold nothing secret."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            entry = tarfile.TarInfo(name)
            entry.size, entry.mode = len(data), 0o644
            tar.addfile(entry, io.BytesIO(data))
        if not self.container.put_archive(CONTAINER_TMP, buffer.getvalue()):
            raise RuntimeError(f"could not write {name} into {CONTAINER_TMP} of {self.where}")
        return f"{CONTAINER_TMP}/{name}"

    def remove_file(self, path: str) -> None:
        self.run("rm", ["-f", path], connect=False)


@contextmanager
def local_tools(cfg: PostgresSettings, user: str | None = None, password: str | None = None) -> Iterator[LocalTools]:
    folder = Path(tempfile.mkdtemp(prefix="ragflow-backup-postgres-"))  # 0700
    try:
        yield LocalTools(cfg, folder, user, password)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def dump_tools(settings: Settings) -> Iterator[LocalTools | DockerTools]:
    """Where pg_dump and pg_restore run: in the container (docker mode) or here (tcp mode)."""
    cfg = settings.postgres
    if cfg.mode == "docker":
        with compose_container(settings.docker.host, cfg.compose_service, cfg.compose_project, "PostgreSQL",
                               "postgres") as container:
            yield DockerTools(cfg, container)
        return
    with local_tools(settings.postgres) as tools:
        yield tools
