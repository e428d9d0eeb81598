"""A mirror as the first layout wrote it (every folder `name%`, every byte outside [A-Za-z0-9._-]
`%XX`; versions `<name>%v<time>-<token>`; index PRAGMA user_version 0), for the conversion tests.
The encoder is the first layout's, copied here: the product no longer writes it."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

# The index's tables as the first layout made them (before the `headers` columns: core/mirror_schema.py).
SCHEMA = """
CREATE TABLE objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    content_type TEXT, metadata TEXT NOT NULL, md5 TEXT, last_modified TEXT, seen_at TEXT, mirrored_at TEXT NOT NULL,
    pending TEXT, pending_ino INTEGER, PRIMARY KEY (bucket, key));
CREATE INDEX objects_pending ON objects (pending) WHERE pending IS NOT NULL;
CREATE TABLE versions (
    id INTEGER PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
    etag TEXT NOT NULL, content_type TEXT, metadata TEXT NOT NULL, md5 TEXT, valid_from TEXT,
    superseded_at TEXT NOT NULL, reason TEXT NOT NULL CHECK (reason IN ('overwritten', 'deleted')));
CREATE INDEX versions_key ON versions (bucket, key, superseded_at);
CREATE INDEX versions_superseded ON versions (superseded_at);
CREATE TABLE pruned (id INTEGER PRIMARY KEY CHECK (id = 1), horizon TEXT NOT NULL);
"""

SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


def old_segment(text: str) -> str:
    raw = text.encode("utf-8", "surrogatepass")
    if not raw:
        return "%_"
    out = "".join(chr(b) if b in SAFE and not (i == 0 and b == 0x2E) else f"%{b:02X}" for i, b in enumerate(raw))
    if len(out) <= 200:
        return out
    cut = 150 if "%" not in out[148:150] else out.rindex("%", 0, 150)
    return out[:cut] + "%~" + hashlib.sha256(raw).hexdigest()[:40]


def old_path(key: str) -> PurePosixPath:
    parts = key.split("/")
    encoded = [old_segment(part) + "%" for part in parts[:-1]] + [old_segment(parts[-1])]
    if sum(len(part) + 1 for part in encoded) > 3000:
        return PurePosixPath("%~long%", hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest())
    return PurePosixPath(*encoded)


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(data)
    os.chmod(path, 0o600)


def build(root: Path, bucket: str, current: dict[str, bytes], old: dict[str, list[bytes]]) -> None:
    """Files and index rows as the first layout left them: `current` keys with their bytes, and for
    `old` keys their superseded versions (oldest first), each valid for an hour."""
    root.mkdir(parents=True, mode=0o700)
    with closing(sqlite3.connect(root / ".index.sqlite", isolation_level=None)) as conn:
        for statement in filter(str.strip, SCHEMA.split(";")):
            conn.execute(statement)
        for key, data in current.items():
            relative = PurePosixPath(old_segment(bucket)) / old_path(key)
            write_file(root / relative, data)
            md5 = hashlib.md5(data).hexdigest()
            conn.execute("INSERT INTO objects (bucket, key, path, size, etag, content_type, metadata, md5, "
                         "last_modified, seen_at, mirrored_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         (bucket, key, str(relative), len(data), md5, "text/plain", json.dumps({}), md5,
                          T0.strftime(STAMP), T0.strftime(STAMP), T0.strftime(STAMP)))
        for key, datas in old.items():
            for n, data in enumerate(datas):
                relative = old_path(key)
                name = f"{relative.name}%v2025010112{n:02d}00000000Z-{n:08x}"
                path = PurePosixPath(".versions", old_segment(bucket)) / relative.parent / name
                write_file(root / path, data)
                md5 = hashlib.md5(data).hexdigest()
                start, end = T0.replace(minute=n), T0.replace(minute=n + 1)
                conn.execute("INSERT INTO versions (bucket, key, path, size, etag, content_type, metadata, md5, "
                             "valid_from, superseded_at, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                             (bucket, key, str(path), len(data), md5, None, json.dumps({}), md5,
                              start.strftime(STAMP), end.strftime(STAMP), "overwritten"))
