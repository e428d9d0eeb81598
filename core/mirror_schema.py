"""The mirror index's tables (core/mirror_store.py; opened by core/sqlite_index.py)."""
from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    content_type TEXT, metadata TEXT NOT NULL, md5 TEXT, last_modified TEXT, seen_at TEXT, mirrored_at TEXT NOT NULL,
    pending TEXT, pending_ino INTEGER, headers TEXT, PRIMARY KEY (bucket, key));
CREATE INDEX IF NOT EXISTS objects_pending ON objects (pending) WHERE pending IS NOT NULL;
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
    etag TEXT NOT NULL, content_type TEXT, metadata TEXT NOT NULL, md5 TEXT, valid_from TEXT,
    superseded_at TEXT NOT NULL, reason TEXT NOT NULL CHECK (reason IN ('overwritten', 'deleted')),
    headers TEXT);
CREATE INDEX IF NOT EXISTS versions_key ON versions (bucket, key, superseded_at);
CREATE INDEX IF NOT EXISTS versions_superseded ON versions (superseded_at);
CREATE TABLE IF NOT EXISTS pruned (id INTEGER PRIMARY KEY CHECK (id = 1), horizon TEXT NOT NULL);
"""

# Columns added after indexes were in use: (table, column, declaration). `headers`: the object's content
# headers (Content-Encoding, Cache-Control, ...) as JSON; NULL for rows mirrored before it was kept.
ADDED_COLUMNS = (("objects", "headers", "headers TEXT"), ("versions", "headers", "headers TEXT"))


def add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring an index made before a column was added up to SCHEMA (inside the caller's write transaction)."""
    for table, column, declaration in ADDED_COLUMNS:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {declaration}")
