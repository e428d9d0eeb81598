"""Where the binlog streamer runs and how the archive reads what it fetched.

`mariadb-binlog`/`mysqlbinlog --read-from-remote-server --raw --stop-never` connects as a replica would and
writes the server's files, byte for byte, into a staging folder under their server names. In `mysql.mode: tcp`
it is the local client, the connection settings (and password) in a 0600 option file, never in argv; in
`mysql.mode: docker` it is the client inside the MySQL container (so a MySQL 8 server is read by a MySQL 8 tool),
the password in the exec's environment, the staging folder inside the container, read back through the Docker
API. Both run like actors/mysql/session.py's clients; components share no code, so this is the binlog's own.
"""
from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from core import clients
from core.clients import find_mysql_container
from core.component import PermanentError
from core.config import Settings
from core.mysql_option_file import option_value

TOOLS = ("mariadb-binlog", "mysqlbinlog")
QUERY_TOOLS = ("mariadb", "mysql")
QUERY_TIMEOUT = 30
LISTING = re.compile(r"^(?P<name>[^/\s]+) (?P<size>[0-9]+)$")


def replica_id(settings: Settings) -> int:
    """The server_id the streamer announces: stable for one storage root, unlike any real server's small id
    (two replicas with one id make the server drop the older connection)."""
    return 1_000_000_000 + zlib.crc32(str(settings.storage_root).encode()) % 1_000_000_000


def stream_args(tool_version: str, settings: Settings, first_file: str, prefix: str) -> list[str]:
    server_id = replica_id(settings)
    id_option = (f"--stop-never-slave-server-id={server_id}" if "mariadb" in tool_version.lower()
                 else f"--connection-server-id={server_id}")
    return ["--read-from-remote-server", "--raw", "--stop-never", id_option, f"--result-file={prefix}", first_file]


class BinlogSource:
    """The streamer and its staging folder, somewhere."""

    where = ""
    tool = ""
    tool_version = ""

    def query(self, sql: str) -> list[tuple[str, ...]]:
        raise NotImplementedError

    def start(self, first_file: str) -> None:
        raise NotImplementedError

    def running(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def failure(self) -> str:
        """The streamer's last words (stderr, the password scrubbed), once it stopped."""
        raise NotImplementedError

    def staged(self) -> dict[str, int]:
        """The files in the staging folder and their sizes."""
        raise NotImplementedError

    def read(self, name: str, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> BinlogSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scrub(text: bytes, password: str) -> str:
    said = text.decode("utf-8", "replace")
    if password:
        said = said.replace(password, "***")
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    return " | ".join(lines[-5:])[-1000:]


class LocalSource(BinlogSource):
    """tcp mode: the local client; staging in a private temp folder."""

    def __init__(self, settings: Settings):
        cfg = settings.mysql
        self.settings = settings
        self.where = f"{cfg.host}:{cfg.port}"
        self.password = clients.secret(cfg.password) or ""
        self.folder = Path(tempfile.mkdtemp(prefix="ragflow-backup-binlog-"))  # 0700
        # Beside the option file in the private temp folder (not under the storage root): what the client writes
        self.staging = Path(tempfile.mkdtemp(prefix="staging-", dir=self.folder))  # 0700
        self.option_file = self.folder / "client.cnf"
        text = (f"[client]\nuser={option_value(cfg.user, 'mysql.user')}\n"
                f"password={option_value(self.password, 'mysql.password')}\n"
                f"host={option_value(cfg.host, 'mysql.host')}\nport={cfg.port}\nprotocol=TCP\n")
        fd = os.open(self.option_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        self.env = {key: value for key, value in os.environ.items() if key != "MYSQL_PWD"}
        self.process: subprocess.Popen | None = None
        self.tool, self.tool_version = self._find(settings.binlog.tool)
        self.connection: Any = None

    def _find(self, wanted: str | None) -> tuple[str, str]:
        for tool in (wanted,) if wanted else TOOLS:
            path = shutil.which(tool)
            if path:
                done = subprocess.run([path, "--no-defaults", "--version"], capture_output=True, env=self.env,
                                      timeout=QUERY_TIMEOUT)
                if done.returncode == 0:
                    return path, done.stdout.decode("utf-8", "replace").strip()
        raise PermanentError(f"no {' or '.join((wanted,) if wanted else TOOLS)} here to stream MySQL's binary log: "
                             f"install the MariaDB or MySQL client (Debian: apt-get install mariadb-client), or use "
                             f"mysql.mode: docker to run the one in the MySQL container")

    def query(self, sql: str) -> list[tuple[str, ...]]:
        if self.connection is None:
            self.connection = clients.mysql_connection(self.settings.mysql, database="")
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(sql)
                return [tuple("" if v is None else str(v) for v in row) for row in cursor.fetchall()]
        except Exception:
            self.connection.close()
            self.connection = None
            raise

    def start(self, first_file: str) -> None:
        self.stop()
        for stale in self.staging.iterdir():
            stale.unlink()
        argv = [self.tool, f"--defaults-extra-file={self.option_file}",
                *stream_args(self.tool_version, self.settings, first_file, f"{self.staging}/")]
        self.errors = open(self.folder / "stderr", "w+b")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=self.errors, env=self.env, start_new_session=True)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.errors.seek(0)
        self.last_words = _scrub(self.errors.read()[-65536:], self.password)
        self.errors.close()
        self.process = None

    def failure(self) -> str:
        if self.process is not None and self.process.poll() is not None:
            self.stop()
        return getattr(self, "last_words", "")

    def staged(self) -> dict[str, int]:
        return {entry.name: entry.stat().st_size for entry in self.staging.iterdir() if entry.is_file()}

    def read(self, name: str, offset: int, length: int) -> bytes:
        with open(self.staging / name, "rb") as handle:
            handle.seek(offset)
            return handle.read(length)

    def close(self) -> None:
        self.stop()
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        shutil.rmtree(self.folder, ignore_errors=True)


class DockerSource(BinlogSource):
    """docker mode: the client in the MySQL container, through its socket; staging inside the container."""

    def __init__(self, settings: Settings):
        try:
            self.container = find_mysql_container(settings)
        except LookupError as exc:
            raise PermanentError(f"no MySQL container to stream the binary log from: {exc}. Start RAGFlow's mysql "
                                 f"service, or set mysql.compose_service / mysql.compose_project (and docker.host) "
                                 f"to match its compose labels") from None
        self.settings = settings
        self.api = self.container.client.api
        self.where = f"container {self.container.name}"
        self.user = settings.mysql.user
        self.password = clients.secret(settings.mysql.password) or ""
        self.staging = f"/tmp/ragflow-backup-binlog-{secrets.token_hex(6)}"
        self.tool, self.tool_version = self._find(settings.binlog.tool)
        self.query_tool = next((t for t in QUERY_TOOLS if self._run([t, "--version"])[0] == 0), "mysql")
        self.started = False

    def _run(self, cmd: list[str], secret: bool = False) -> tuple[int, bytes, bytes]:
        env = {"MYSQL_PWD": self.password} if secret else None
        exec_id = self.api.exec_create(self.container.id, cmd, environment=env, stdout=True, stderr=True)["Id"]
        out, err = self.api.exec_start(exec_id, demux=True)
        code = None
        for _ in range(100):  # the output can end a moment before the daemon notes the exit
            state = self.api.exec_inspect(exec_id)
            if not state.get("Running"):
                code = state.get("ExitCode")
                break
            time.sleep(0.05)
        return (code if code is not None else -1), out or b"", err or b""

    def _find(self, wanted: str | None) -> tuple[str, str]:
        for tool in (wanted,) if wanted else TOOLS:
            code, out, _ = self._run([tool, "--no-defaults", "--version"])
            if code == 0:
                return tool, out.decode("utf-8", "replace").strip()
        raise PermanentError(f"the MySQL container {self.container.name} has no "
                             f"{' or '.join((wanted,) if wanted else TOOLS)} to stream the binary log")

    def query(self, sql: str) -> list[tuple[str, ...]]:
        code, out, err = self._run([self.query_tool, f"--user={self.user}", "-N", "-B", "-e", sql], secret=True)
        if code != 0:
            raise ConnectionError(f"{self.query_tool} in {self.where} failed: {_scrub(err, self.password)}")
        return [tuple(line.split("\t")) for line in out.decode("utf-8", "replace").splitlines() if line]

    def start(self, first_file: str) -> None:
        self.stop()
        self._run(["sh", "-c", f"rm -rf {self.staging} && mkdir -m 700 {self.staging}"])
        args = " ".join(shlex.quote(a) for a in [self.tool, f"--user={self.user}",
                                                 *stream_args(self.tool_version, self.settings, first_file,
                                                              f"{self.staging}/data/")])
        script = (f"mkdir -m 700 {self.staging}/data && echo $$ > {self.staging}/pid && "
                  f"exec {args} 2> {self.staging}/stderr")
        exec_id = self.api.exec_create(self.container.id, ["sh", "-c", script],
                                       environment={"MYSQL_PWD": self.password})["Id"]
        self.api.exec_start(exec_id, detach=True)
        self.exec_id, self.started = exec_id, True

    def running(self) -> bool:
        return self.started and bool(self.api.exec_inspect(self.exec_id).get("Running"))

    def stop(self) -> None:
        if self.started:
            self._run(["sh", "-c", f"kill $(cat {self.staging}/pid) 2>/dev/null; true"])
            self.started = False

    def failure(self) -> str:
        return _scrub(self._run(["sh", "-c", f"tail -c 4096 {self.staging}/stderr"])[1], self.password)

    def staged(self) -> dict[str, int]:
        code, out, _ = self._run(["find", f"{self.staging}/data", "-maxdepth", "1", "-type", "f",
                                  "-printf", "%f %s\\n"])
        sizes = {}
        for line in out.decode("utf-8", "replace").splitlines() if code == 0 else ():
            match = LISTING.match(line)
            if match:
                sizes[match["name"]] = int(match["size"])
        return sizes

    def read(self, name: str, offset: int, length: int) -> bytes:
        if not LISTING.match(f"{name} 0"):
            raise ValueError(f"unexpected staged name {name!r}")
        path = shlex.quote(f"{self.staging}/data/{name}")
        code, out, err = self._run(["sh", "-c", f"tail -c +{offset + 1} {path} | head -c {length}"])
        if code != 0:
            raise OSError(f"reading {name} in {self.where} failed: {err.decode('utf-8', 'replace')[:300]}")
        return out

    def close(self) -> None:
        try:
            self.stop()
            self._run(["rm", "-rf", self.staging])
        finally:
            self.container.client.close()


def open_source(settings: Settings) -> BinlogSource:
    return DockerSource(settings) if settings.mysql.mode == "docker" else LocalSource(settings)
