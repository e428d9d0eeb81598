"""What the console's plots need over time, in a small SQLite file: <storage_root>/state/console-history.sqlite

    samples  one row a minute or so: mirror lag, queue depth, bytes in backups, the file system's use
    runs     one row per (point, component) that finished: when, how long, how many bytes, ok or failed

Bounded: rows older than KEEP_*_DAYS or beyond MAX_* rows go at every write (a transaction: a crash
leaves the previous state). Runs are copied from the manifests, so the plots keep a run that
retention has since deleted. The file lives under the storage root, so it is untrusted on read: every
query has a LIMIT, and a value that is not a plain finite number (or a plain name) is skipped.
"""
from __future__ import annotations

import math
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from core.layout import Layout
from core.manifest import Manifest
from core.points import Storage
from core.safe_paths import entry_problem, private_folder

HISTORY_FILE = "console-history.sqlite"
KEEP_SAMPLE_DAYS = 35
MAX_SAMPLES = 60_000  # a sample a minute for 35 days fits
KEEP_RUN_DAYS = 400
MAX_RUNS = 20_000
MAX_READ = 5_000  # rows any one query returns
PLAIN = re.compile(r"[A-Za-z0-9_.:/-]{1,120}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    at REAL PRIMARY KEY, mirror_lag REAL, queue_depth INTEGER, storage_bytes INTEGER, fs_used_ratio REAL,
    fs_free_bytes INTEGER);
CREATE TABLE IF NOT EXISTS runs (
    point TEXT NOT NULL, component TEXT NOT NULL, finished REAL NOT NULL, seconds REAL NOT NULL,
    bytes INTEGER NOT NULL, status TEXT NOT NULL, PRIMARY KEY (point, component));
CREATE INDEX IF NOT EXISTS runs_finished ON runs (finished);
"""


@dataclass(frozen=True)
class Sample:
    at: float  # epoch seconds
    mirror_lag: float | None
    queue_depth: int | None
    storage_bytes: int | None
    fs_used_ratio: float | None
    fs_free_bytes: int | None


@dataclass(frozen=True)
class Run:
    point: str
    component: str
    finished: float
    seconds: float
    bytes: int
    status: str


def _number(value: object, upper: float = 1e18) -> float | None:
    """A finite, non-negative number below `upper`, else None (a hostile or torn row)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0 <= value <= upper else None


def _whole(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


class HistoryStore:
    def __init__(self, storage_root: Path):
        self.path = Layout(storage_root).state_file(HISTORY_FILE)

    def _connect(self, create: bool) -> sqlite3.Connection:
        state = self.path.parent
        if create:
            private_folder(state.parent, (state.name,))
        problem = entry_problem(state, want_dir=True)
        if problem is None:
            problem = entry_problem(self.path, want_dir=False)
            problem = None if problem == "is gone" and create else problem
        if problem:
            raise OSError(f"the console's history: {self.path if 'link' in problem else state} {problem}")
        mode = "rwc" if create else "ro"
        conn = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True, timeout=10)
        conn.execute("PRAGMA busy_timeout=10000")
        if create:
            conn.executescript(SCHEMA)
        return conn

    # ------------------------------------------------------------ writing (the agent)

    def add_sample(self, sample: Sample) -> None:
        conn = self._connect(create=True)
        try:
            with conn:  # one transaction: the row and the pruning, or neither
                conn.execute("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?)",
                             (sample.at, sample.mirror_lag, sample.queue_depth, sample.storage_bytes,
                              sample.fs_used_ratio, sample.fs_free_bytes))
                conn.execute("DELETE FROM samples WHERE at < ?", (sample.at - KEEP_SAMPLE_DAYS * 86400,))
                conn.execute("DELETE FROM samples WHERE at NOT IN (SELECT at FROM samples ORDER BY at DESC LIMIT ?)",
                             (MAX_SAMPLES,))
        finally:
            conn.close()

    def add_runs(self, storage: Storage) -> int:
        """Copy the finished components of every point's manifest (those already kept are left alone)."""
        rows = []
        for point in storage.points():
            try:
                manifest: Manifest = point.manifest()
            except Exception:  # noqa: BLE001 - an unreadable manifest is verify's to report, not the history's
                continue
            if manifest.status == "running" or manifest.promoted_from:
                continue  # a promotion repeats its daily point's runs
            for name, record in manifest.components.items():
                rows.append((point.ref, name, record.finished_at.timestamp(), max(record.seconds, 0.0),
                             record.added_bytes, record.status))
        conn = self._connect(create=True)
        try:
            with conn:
                before = conn.total_changes
                conn.executemany("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?)", rows)
                added = conn.total_changes - before
                conn.execute("DELETE FROM runs WHERE finished < ?", (time.time() - KEEP_RUN_DAYS * 86400,))
                conn.execute("DELETE FROM runs WHERE rowid NOT IN (SELECT rowid FROM runs ORDER BY finished DESC LIMIT ?)",
                             (MAX_RUNS,))
        finally:
            conn.close()
        return added

    # ------------------------------------------------------------ reading (the page): untrusted

    def samples(self, since: float, limit: int = MAX_READ) -> list[Sample]:
        """Samples after `since`, oldest first (at most `limit`, evenly thinned)."""
        limit = max(1, min(limit, MAX_READ))
        if not self.path.exists():
            return []
        conn = self._connect(create=False)
        try:
            (count,) = conn.execute("SELECT COUNT(*) FROM samples WHERE at >= ?", (since,)).fetchone()
            step = max(1, -(-int(_whole(count) or 0) // limit))  # ceiling: at most `limit` rows
            rows = conn.execute("SELECT at, mirror_lag, queue_depth, storage_bytes, fs_used_ratio, fs_free_bytes "
                                "FROM (SELECT *, ROW_NUMBER() OVER (ORDER BY at) AS n FROM samples WHERE at >= ?) "
                                "WHERE (n - 1) % ? = 0 ORDER BY at LIMIT ?", (since, step, limit)).fetchall()
        finally:
            conn.close()
        found = []
        for at, lag, depth, used, ratio, free in rows:
            if (at := _number(at, 4e9)) is None:
                continue
            found.append(Sample(at, _number(lag), _whole(depth), _whole(used), _number(ratio, 1.0), _whole(free)))
        return found

    def runs(self, since: float) -> list[Run]:
        """Runs finished after `since`, oldest first (the newest MAX_READ)."""
        if not self.path.exists():
            return []
        conn = self._connect(create=False)
        try:
            rows = conn.execute("SELECT * FROM (SELECT point, component, finished, seconds, bytes, status FROM runs "
                                "WHERE finished >= ? ORDER BY finished DESC LIMIT ?) ORDER BY finished",
                                (since, MAX_READ)).fetchall()
        finally:
            conn.close()
        found = []
        for point, component, finished, seconds, size, status in rows:
            values = (_number(finished, 4e9), _number(seconds, 1e7), _whole(size))
            names = (point, component, status)
            if None in values or not all(isinstance(n, str) and PLAIN.fullmatch(n) for n in names):
                continue
            found.append(Run(point, component, values[0], values[1], values[2], status))  # type: ignore[arg-type]
        return found
