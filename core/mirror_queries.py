"""Queries of the mirror index (core/mirror_store.py) that need none of the store's files: counts, the
point-in-time horizon, and finer modification times from a listing."""
from __future__ import annotations

import sqlite3
from datetime import datetime

from core.mirror_records import parse_stamp, stamp

STATS = ("objects", "bytes", "versions", "version_bytes")


def stats(conn: sqlite3.Connection) -> dict:
    """objects, bytes, versions, version_bytes: in total and per bucket (under "buckets")."""
    per: dict[str, dict[str, int]] = {}
    for table, count, size in (("objects", *STATS[:2]), ("versions", *STATS[2:])):
        for bucket, n, total in conn.execute(
                f"SELECT bucket, COUNT(*), COALESCE(SUM(size), 0) FROM {table} GROUP BY bucket"):
            per.setdefault(bucket, dict.fromkeys(STATS, 0)).update({count: n, size: total})
    return {**{name: sum(b[name] for b in per.values()) for name in STATS}, "buckets": per}


def pitr_since(conn: sqlite3.Connection) -> tuple[datetime | None, bool]:
    """Since when the store can be restored as of any moment, and whether a prune (retention or the
    version budget) set that bound; (None, False) for an empty store. Without a prune, the history
    starts with the oldest moment the index records."""
    row = conn.execute("SELECT horizon FROM pruned WHERE id=1").fetchone()
    if row is not None:
        return parse_stamp(row[0]), True
    first = conn.execute("SELECT MIN(t) FROM (SELECT MIN(mirrored_at) AS t FROM objects UNION ALL "
                         "SELECT MIN(superseded_at) FROM versions)").fetchone()
    return parse_stamp(first[0] if first else None), False


def finer_times(conn: sqlite3.Connection, bucket: str, listed: list[tuple[str, str, datetime]]) -> int:
    """Give current objects mirrored with a Last-Modified to the second (a GET's header: the event path) the
    listing's, to the millisecond. `listed`: (key, etag, when) as a listing gave them; a row changes only if it
    still holds that ETag and a time that is `when` cut to the second. How many rows changed."""
    changed = 0
    for key, etag, when in listed:
        changed += conn.execute(
            "UPDATE objects SET last_modified=? WHERE bucket=? AND key=? AND etag=? AND last_modified=?",
            (stamp(when), bucket, key, etag, stamp(when.replace(microsecond=0)))).rowcount
    return changed
