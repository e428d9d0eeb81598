"""Servers of one test's own (Redis, MariaDB, MinIO, Elasticsearch), for fault tests that stop, hang
(SIGSTOP), restart, flush or re-key them: the shared test bed is never touched.

Each has start(), stop() (SIGTERM, then SIGKILL), kill(), pause() (SIGSTOP), resume() (SIGCONT) and
restart(); stop() and kill() resume a paused server first (a stopped process ignores SIGTERM until then).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
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
    """Stop, hang and restart for a server whose main process is `self.process` (or `self.pid()`)."""

    process: subprocess.Popen | None = None
    paused = False

    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    def pause(self) -> None:
        """Hang the server: it keeps its sockets open but answers nothing (SIGSTOP)."""
        pid = self.pid()
        assert pid, "the server is not running"
        os.kill(pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        pid = self.pid()
        if pid and self.paused:
            os.kill(pid, signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = 30) -> None:
        self.resume()
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
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

    def __init__(self, folder: Path, password: str = "fault-es-pw"):
        self.folder, self.password = Path(folder), password
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
            f"path.data: {self.data}", f"path.logs: {self.logs}", f'path.repo: ["{self.repo_root}"]',
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
