"""The mirror index's tables (core/mirror_store.py; opened by core/sqlite_index.py)."""
from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    content_type TEXT, metadata TEXT NOT NULL, md5 TEXT, last_modified TEXT, seen_at TEXT, mirrored_at TEXT NOT NULL,
    pending TEXT, pending_ino INTEGER, PRIMARY KEY (bucket, key));
CREATE INDEX IF NOT EXISTS objects_pending ON objects (pending) WHERE pending IS NOT NULL;
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
    etag TEXT NOT NULL, content_type TEXT, metadata TEXT NOT NULL, md5 TEXT, valid_from TEXT,
    superseded_at TEXT NOT NULL, reason TEXT NOT NULL CHECK (reason IN ('overwritten', 'deleted')));
CREATE INDEX IF NOT EXISTS versions_key ON versions (bucket, key, superseded_at);
CREATE INDEX IF NOT EXISTS versions_superseded ON versions (superseded_at);
CREATE TABLE IF NOT EXISTS pruned (id INTEGER PRIMARY KEY CHECK (id = 1), horizon TEXT NOT NULL);
"""
