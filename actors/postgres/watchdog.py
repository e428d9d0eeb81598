"""A restore's guard against a PostgreSQL server that hangs (SIGSTOP, a frozen VM) while it works.

A hung server still acknowledges TCP, so pg_restore and psycopg would wait on it forever, and pg_restore sends
no output while it loads, so its silence says nothing. Instead the watchdog asks the server `SELECT 1` every
few seconds over a connection of its own; a server that gives no answer within postgres.stall_timeout_seconds
is hung, however busy the restore keeps it. Then the watchdog stops pg_restore and shuts the sockets of the
restore's connections, so each wait ends with an error that `fired` explains. A server that restarts is no
hang: the restore's connections break by themselves.
"""
from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Callable
from contextlib import closing
from typing import Any

import psycopg

from actors.postgres.session import connect, deadline
from core.config import PostgresSettings

MAINTENANCE_DB = "postgres"


class Watchdog:
    def __init__(self, cfg: PostgresSettings):
        self.cfg = cfg
        self.stall = cfg.stall_timeout_seconds
        self.where = f"{cfg.host}:{cfg.port}"
        self.fired = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[psycopg.Connection] = []
        self._stoppers: list[Callable[[], None]] = []
        self._thread = threading.Thread(target=self._watch, name="postgres-restore-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def connect(self, database: str | None = None, **kwargs: Any) -> psycopg.Connection:
        """A connection (session.connect) the watchdog ends if the server hangs."""
        conn = connect(self.cfg, database, **kwargs)
        with self._lock:
            self._connections.append(conn)
        if self.fired.is_set():
            self._cut()
        return conn

    def process(self, proc: subprocess.Popen) -> None:
        """A client tool the watchdog kills if the server hangs."""
        self.on_hang(lambda: proc.kill() if proc.poll() is None else None)

    def on_hang(self, stop: Callable[[], None]) -> None:
        """What stops a client tool if the server hangs: for one in the server's container, a function that ends
        the exec's connection (core/docker_exec.py fed_stdout); the tool there waits on the server until it
        answers again."""
        with self._lock:
            self._stoppers.append(stop)
        if self.fired.is_set():
            self._cut()

    def hang_message(self, what: str) -> str:
        return (f"PostgreSQL at {self.where} gave no answer for {self.stall}s in the middle of {what} (is the server "
                f"hung?): the restore was stopped (postgres.stall_timeout_seconds)")

    def _watch(self) -> None:
        interval = max(1.0, min(5.0, self.stall / 3))
        conn: psycopg.Connection | None = None
        while not self._stop.wait(interval):
            try:
                if conn is None or conn.closed:
                    conn = connect(self.cfg, MAINTENANCE_DB, connect_timeout=max(2, self.stall))
                with deadline(conn, self.stall, "the watchdog's SELECT 1", self.where):
                    conn.execute("SELECT 1")
            except TimeoutError:
                self._fire()
                break
            except psycopg.OperationalError as exc:
                if conn is not None:
                    conn.close()
                conn = None
                if "timeout expired" in str(exc):  # the postmaster took the connection but never answered
                    self._fire()
                    break
        if conn is not None:
            with closing(conn):
                pass

    def _fire(self) -> None:
        self.fired.set()
        self._cut()

    def _cut(self) -> None:
        with self._lock:
            stoppers, connections = list(self._stoppers), list(self._connections)
        for stop in stoppers:
            stop()
        for conn in connections:
            try:
                with socket.socket(fileno=os.dup(conn.fileno())) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except (OSError, psycopg.Error):
                pass
