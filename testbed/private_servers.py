"""Servers of one test's own (Redis, MariaDB, MinIO, Elasticsearch), for fault tests that stop, hang
(SIGSTOP), restart, flush or re-key them: the shared test bed is never touched.

Each has start(), stop() (SIGTERM, then SIGKILL), kill(), pause() (SIGSTOP), resume() (SIGCONT) and
restart(); stop() and kill() resume a paused server first (a stopped process ignores SIGTERM until then).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed import minio_server

ES_VERSION = "8.11.3"
ES_HOME = Path("/var/cache/ragflow-backup-testbed") / f"elasticsearch-{ES_VERSION}"
SERVICE_USER = "rbtestbed"  # Elasticsearch refuses to run as root (scripts/testbed creates this user)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready: Callable[[], Any], what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(0.2)
    where = f"; see {log}" if log else ""
    raise RuntimeError(f"{what} did not become ready in {timeout:.0f}s ({last!r}){where}")


class Signals:
    """Stop, hang and restart for a server whose main process is `self.process` (or `self.pid()`); a server of
    several processes names them all in `processes()`, and one that stops on another signal sets `stop_signal`."""

    process: subprocess.Popen | None = None
    paused = False
    stop_signal = signal.SIGTERM

    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    def processes(self) -> list[int]:
        """What pause() stops and resume() continues, the main process first."""
        pid = self.pid()
        return [pid] if pid else []

    def pause(self) -> None:
        """Hang the server: it keeps its sockets open but answers nothing (SIGSTOP)."""
        processes = self.processes()
        assert processes, "the server is not running"
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            for pid in self.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = 30) -> None:
        self.resume()
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, self.stop_signal)
        try:
            self._wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        self.resume()
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self._wait(30)

    def _wait(self, timeout: float) -> None:
        assert self.process is not None
        self.process.wait(timeout)

    def wait_ready(self, timeout: float = 180) -> None:
        """Wait until the server answers again (after resume() or start())."""
        wait_until(self.ready, f"{type(self).__name__} to answer", timeout)

    def ready(self) -> bool:
        return True

    def restart(self) -> None:
        self.stop()
        self.start()  # type: ignore[attr-defined] - each server defines it


class PrivateMinio(Signals, minio_server.PrivateMinio):
    """testbed.minio_server.PrivateMinio with pause/resume/stop/restart."""

    def ready(self) -> bool:
        with urllib.request.urlopen(f"http://{self.endpoint}/minio/health/ready", timeout=2) as response:
            return response.status == 200

    def kill(self) -> None:
        Signals.kill(self)


class PrivateRedis(Signals):
    """redis-server on a free port with a password; `persistent` keeps an RDB across restarts."""

    def __init__(self, folder: Path, password: str = "fault-redis-pw", persistent: bool = True):
        self.folder, self.password, self.persistent = Path(folder), password, persistent
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.folder / "redis.log"

    def start(self) -> None:
        config = self.folder / "redis.conf"
        config.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"dir {self.folder}", f"requirepass {self.password}",
            "appendonly no", "save 1 1" if self.persistent else 'save ""', "maxmemory-policy noeviction",
            f"logfile {self.log}", "daemonize no", "",
        ]))
        config.chmod(0o600)  # the password is in it
        self.process = subprocess.Popen(["redis-server", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: self.client().ping(), f"private Redis on port {self.port}", 30, self.log)

    def stop(self, timeout: float = 30) -> None:
        Signals.stop(self, timeout)  # SIGTERM: redis saves its RDB first when persistent

    def ready(self) -> bool:
        return bool(self.client().ping())

    def client(self, db: int = 0):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, db=db, socket_timeout=5,
                           socket_connect_timeout=5)

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"


class PrivateMariadb(Signals):
    """mariadbd with a data directory in a tmp folder, on a free port, root with a password."""

    def __init__(self, folder: Path, password: str = "fault-mysql-pw", log_bin: bool = False):
        """`log_bin`: the binary log on, in ROW format, under folder/binlog/ (what the binlog archive reads)."""
        self.folder, self.password, self.log_bin = Path(folder), password, log_bin
        self.root_password = password  # root@localhost's, which the tests never change
        self.data = self.folder / "data"
        self.socket = self.folder / "mysqld.sock"
        self.port = free_port()
        self.log = self.folder / "mariadb.log"
        self.folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        first = not self.data.exists()
        if first:
            subprocess.run(["mariadb-install-db", f"--datadir={self.data}", "--user=root", "--skip-test-db",
                            "--auth-root-authentication-method=normal", "--skip-name-resolve"],
                           check=True, capture_output=True)
        self.process = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}", f"--port={self.port}",
             "--bind-address=127.0.0.1", "--skip-name-resolve", "--user=root", f"--log-error={self.log}",
             f"--pid-file={self.folder / 'mariadb.pid'}", "--innodb-buffer-pool-size=32M", *self._binlog_options(),
             "--max-connections=50"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if first:
            wait_until(self.socket.exists, f"private MariaDB socket {self.socket}", 60, self.log)
            wait_until(lambda: subprocess.run(["mariadb", f"--socket={self.socket}", "-uroot", "-e", "SELECT 1"],
                                              capture_output=True).returncode == 0, "private MariaDB", 60, self.log)
            # The password goes through stdin, never argv.
            done = subprocess.run(["mariadb", f"--socket={self.socket}", "-uroot"], capture_output=True,
                                  input=(f"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';"
                                         f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{self.password}';"
                                         "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
                                         f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{self.password}';").encode())
            if done.returncode:
                raise RuntimeError(f"setting the private MariaDB's root password failed: {done.stderr.decode()}")
        wait_until(lambda: self.connection().close() or True, f"private MariaDB on port {self.port}", 60, self.log)

    def _binlog_options(self) -> list[str]:
        if not self.log_bin:
            return ["--skip-log-bin"]
        (self.folder / "binlog").mkdir(exist_ok=True)
        return [f"--log-bin={self.folder / 'binlog' / 'binlog'}", "--binlog-format=ROW", "--server-id=1"]

    def ready(self) -> bool:
        self.connection().close()
        return True

    def admin(self):
        """root over the socket (root@localhost): still usable when root@127.0.0.1 is expired or re-keyed."""
        import pymysql

        return pymysql.connect(unix_socket=str(self.socket), user="root", password=self.root_password, autocommit=True)

    def connection(self, database: str = ""):
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password=self.password,
                               database=database or None, autocommit=True, connect_timeout=5)

    def settings(self, database: str):
        from core.config import MySQLSettings

        return MySQLSettings(host="127.0.0.1", port=self.port, user="root", password=self.password, database=database)


class PrivateElasticsearch(Signals):
    """The test bed's Elasticsearch install run as its service user with a config folder of its own,
    a free HTTP and transport port, a small heap, security on (user elastic) and path.repo in the folder."""

    def __init__(self, folder: Path, password: str = "fault-es-pw", also_repo: tuple[str, ...] = ()):
        """`also_repo`: more path.repo folders (another server's snapshots, to restore from read only)."""
        self.folder, self.password, self.also_repo = Path(folder), password, tuple(also_repo)
        self.conf, self.data, self.logs = self.folder / "config", self.folder / "data", self.folder / "logs"
        self.repo_root = self.folder / "snapshots"
        self.port, self.transport_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pidfile = self.folder / "es.pid"
        self.log = self.folder / "elasticsearch.out"
        self._pid: int | None = None

    def pid(self) -> int | None:
        if self._pid is None:
            return None
        try:
            os.kill(self._pid, 0)
        except ProcessLookupError:
            return None
        return self._pid

    def _prepare(self) -> None:
        for folder in (self.folder, self.data, self.logs, self.repo_root):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.conf, ignore_errors=True)
        shutil.copytree(ES_HOME / "config", self.conf)
        (self.conf / "elasticsearch.yml").write_text("\n".join([
            f"cluster.name: fault-{self.port}", "node.name: node-1", "discovery.type: single-node",
            "network.host: 127.0.0.1", f"http.port: {self.port}", f"transport.port: {self.transport_port}",
            f"path.data: {self.data}", f"path.logs: {self.logs}", f"path.repo: {json.dumps([str(self.repo_root), *self.also_repo])}",
            "xpack.security.enabled: true", "xpack.security.http.ssl.enabled: false",
            "xpack.security.transport.ssl.enabled: false", "xpack.ml.enabled: false",
            "cluster.routing.allocation.disk.threshold_enabled: false", "",
        ]))
        # A small fixed heap: without one Elasticsearch takes half the machine's memory (and pre-touches it).
        (self.conf / "jvm.options.d").mkdir(exist_ok=True)
        (self.conf / "jvm.options.d" / "heap.options").write_text("-Xms256m\n-Xmx512m\n")
        options = (self.conf / "jvm.options").read_text()
        options = options.replace("file=logs/gc.log", f"file={self.logs}/gc.log") \
            .replace("HeapDumpPath=data", f"HeapDumpPath={self.data}").replace("ErrorFile=logs/", f"ErrorFile={self.logs}/")
        (self.conf / "jvm.options").write_text(options)
        environment = {**os.environ, "ES_PATH_CONF": str(self.conf), "ES_JAVA_HOME": _java_home()}
        subprocess.run([str(ES_HOME / "bin" / "elasticsearch-keystore"), "create"], env=environment, check=True,
                       capture_output=True)
        subprocess.run([str(ES_HOME / "bin" / "elasticsearch-keystore"), "add", "-x", "bootstrap.password"],
                       env=environment, input=self.password.encode(), check=True, capture_output=True)
        # The service user must also be able to reach the folder through its parents (not pytest's tmp).
        subprocess.run(["chown", "-R", SERVICE_USER, str(self.folder)], check=True)

    def start(self) -> None:
        if not self.conf.exists():
            self._prepare()
        self.pidfile.unlink(missing_ok=True)
        with self.log.open("ab") as out:
            subprocess.run(["runuser", "-u", SERVICE_USER, "--", "env", f"ES_PATH_CONF={self.conf}",
                            f"ES_JAVA_HOME={_java_home()}", str(ES_HOME / "bin" / "elasticsearch"), "-d", "-p",
                            str(self.pidfile)], stdout=out, stderr=out, check=True, timeout=300)
        wait_until(self.pidfile.exists, "private Elasticsearch's pid file", 120, self.log)
        self._pid = int(self.pidfile.read_text().strip())
        wait_until(self._healthy, f"private Elasticsearch on {self.url}", 240, self.logs)

    def ready(self) -> bool:
        return self._healthy()

    def set_password(self, password: str) -> None:
        """Rotate the elastic user's password (bootstrap.password: this build has no security index)."""
        self.stop()
        done = subprocess.run(["runuser", "-u", SERVICE_USER, "--", "env", f"ES_PATH_CONF={self.conf}",
                               f"ES_JAVA_HOME={_java_home()}", str(ES_HOME / "bin" / "elasticsearch-keystore"), "add",
                               "-x", "-f", "bootstrap.password"], input=password.encode(), capture_output=True)
        if done.returncode:
            raise RuntimeError(f"elasticsearch-keystore failed: {done.stdout.decode()} {done.stderr.decode()}")
        self.password = password
        self.start()

    def _healthy(self) -> bool:
        import base64

        request = urllib.request.Request(f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=1s")
        token = base64.b64encode(f"elastic:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pid() is not None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("elasticsearch", timeout)
            time.sleep(0.2)
        self._pid = None

    def settings(self, repository: str):
        from core.config import SearchSettings

        return SearchSettings(engine="elasticsearch", url=self.url, user="elastic", password=self.password,
                              repository=repository, repository_path=str(self.repo_root / repository),
                              snapshot_timeout_seconds=60)


def _java_home() -> str:
    java = shutil.which("java")
    assert java, "java is not installed (scripts/testbed up installs a JDK)"
    return str(Path(os.path.realpath(java)).parent.parent)


PG_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian bookworm's postgresql (scripts/testbed installs it)
PG_USER = "postgres"  # the Debian package's system user: PostgreSQL refuses to run as root


class PrivatePostgres(Signals):
    """A PostgreSQL server of its own on a free port, run as the postgres user; RAGFlow-shaped account
    `rag_flow` (CREATEDB, CREATEROLE, no superuser) with a password. Its folder is under /tmp, not pytest's
    tmp_path, which the postgres user cannot reach; `cleanup()` removes it. stop() is a fast shutdown (SIGINT):
    clients are disconnected, as when the operator stops the service."""

    stop_signal = signal.SIGINT

    def __init__(self, password: str = "fault-pg-pw", user: str = "rag_flow"):
        self.folder = Path(tempfile.mkdtemp(prefix="rbtb-private-pg-"))
        shutil.chown(self.folder, PG_USER, PG_USER)
        self.password, self.user = password, user
        self.data = self.folder / "data"
        self.port = free_port()
        self.log = self.folder / "postgres.log"

    def processes(self) -> list[int]:
        """The postmaster and its children (each backend calls setsid(), so no process group holds them all):
        the postmaster is paused first, so no new backend starts."""
        pid = self.pid()
        if pid is None:
            return []
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(pid):
                children.append(int(stat.parent.name))
        return [pid, *children]

    def _as_postgres(self, *argv: str, **kwargs: Any) -> subprocess.CompletedProcess:
        return subprocess.run(["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups", *argv],
                              capture_output=True, **kwargs)

    def start(self) -> None:
        first = not (self.data / "PG_VERSION").exists()
        if first:
            done = self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                                     "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8",
                                     "--locale=C.UTF-8")
            if done.returncode:
                raise RuntimeError(f"initdb failed: {done.stderr.decode()}")
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups", str(PG_BIN / "postgres"),
                 "-D", str(self.data), "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={self.folder}", "-c", "max_connections=50"],
                stdout=out, stderr=out, start_new_session=True)
        wait_until(lambda: self._psql("SELECT 1").returncode == 0, f"private PostgreSQL on port {self.port}", 60,
                   self.log)
        if first:  # the password goes through stdin, never argv
            done = self._psql(None, input=(f"CREATE ROLE {self.user} LOGIN CREATEDB CREATEROLE PASSWORD "
                                           f"'{self.password}';\nGRANT pg_signal_backend TO {self.user};\n").encode())
            if done.returncode:
                raise RuntimeError(f"creating the private PostgreSQL's account failed: {done.stderr.decode()}")
        wait_until(self.ready, f"private PostgreSQL on port {self.port}", 60, self.log)

    def _psql(self, command: str | None, **kwargs: Any) -> subprocess.CompletedProcess:
        argv = [str(PG_BIN / "psql"), "-h", str(self.folder), "-p", str(self.port), "-U", "postgres", "-X", "-q",
                "-v", "ON_ERROR_STOP=1", "-d", "postgres"]
        return self._as_postgres(*argv, *(["-c", command] if command else []), **kwargs)

    def superuser(self, command: str) -> str:
        """Run one statement as the superuser over the socket (e.g. to change the account's password)."""
        done = self._psql(command)
        if done.returncode:
            raise RuntimeError(f"psql failed: {done.stderr.decode()}")
        return done.stdout.decode()

    def ready(self) -> bool:
        self.connection().close()
        return True

    def connection(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                               dbname=database, autocommit=True, connect_timeout=5)

    def env(self) -> dict[str, str]:
        """The test bed's env keys testbed/postgres_seed.py reads, for this server."""
        return {"PG_HOST": "127.0.0.1", "PG_PORT": str(self.port), "PG_USER": self.user,
                "PG_PASSWORD": self.password, "PG_DATABASE": "postgres"}

    def settings(self, database: str):
        from core.config import PostgresSettings

        return PostgresSettings(enabled=True, host="127.0.0.1", port=self.port, user=self.user,
                                password=self.password, database=database, stall_timeout_seconds=5)

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
class PrivateStack:
    """A second RAGFlow's data services, all of this test's own: MariaDB, MinIO, Elasticsearch, Redis
    (started together, stopped together; `es_also_repo` as PrivateElasticsearch's `also_repo`)."""

    def __init__(self, folder: Path, env: dict[str, str], es_also_repo: tuple[str, ...] = ()):
        self.folder = Path(folder)
        self.mariadb = PrivateMariadb(self.folder / "mariadb")
        self.minio = PrivateMinio(env, self.folder / "minio")
        self.elasticsearch = PrivateElasticsearch(self.folder / "elasticsearch", also_repo=es_also_repo)
        self.redis = PrivateRedis(self.folder / "redis")

    def start(self) -> None:
        self.minio.data.mkdir(parents=True, exist_ok=True)
        for server in (self.mariadb, self.minio, self.redis, self.elasticsearch):
            server.start()

    def kill(self) -> None:
        for server in (self.elasticsearch, self.redis, self.minio, self.mariadb):
            try:
                server.kill()
            except Exception:  # noqa: BLE001 - stop the others even if one is gone already
                pass
