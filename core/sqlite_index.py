"""A SQLite index that must survive power loss, shared by processes: WAL, full sync, a busy timeout.

The mirror's index (core/mirror_store.py) is opened by the agent and its workers at once, and by a CLI
restore beside them.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

BUSY_SECONDS = 30


def open_index(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit); each committed step is on disk."""
    conn = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
    _enable_wal(conn)
    conn.execute("PRAGMA synchronous=FULL")  # a committed step must survive power loss
    conn.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. SQLite answers 'database is locked' here at once, without its busy handler, while
    another process holds the file (two processes opening a new or converting mirror together)."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
