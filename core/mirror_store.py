"""The MinIO mirror on disk: current objects browsable under `<root>/<bucket>/`, superseded ones kept
under `<root>/.versions/`, and an SQLite index of both that answers "what did the store hold at T?".

Object keys are untrusted: core/mirror_paths.py maps each to its own readable path inside the mirror,
escaping only what cannot be a path. Where a key's file must make way for a folder ("a" when "a/b"
arrives), it moves to `a%~file` in the same steps as a commit (see `_stage`). The index's `path` column
says where each file is; an index of an older layout is converted in place on opening
(core/mirror_convert.py).
Writes are serialised by SQLite's write lock (BEGIN IMMEDIATE), so threads and processes may share a
store. Replacing a current file is two durable steps (see `commit`) so that a crash at any moment
neither loses the old bytes nor leaves a half file under the current name.
"""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from core.atomic import FILE_MODE, fsync_dir, private_dir
from core.batch_sync import fsync_files
from core.mirror_convert import FORMAT, convert_layout
from core.mirror_files import beneath, held_file, inside, is_regular_file, link_or_copy, make_private_dirs
from core.mirror_paths import INDEX_FILE, bucket_dir, encode_key, has_subkeys, is_flat, object_path, version_path
from core.mirror_queries import finer_times, pitr_since, stats
from core.mirror_records import STAMP, Brief, DamagedIndex, Entry, ObjectRef, Version
from core.mirror_records import parse_stamp as _dt
from core.mirror_records import stamp as _ts
from core.mirror_records import utc as _utc
from core.mirror_schema import SCHEMA, add_missing_columns
from core.sqlite_index import open_index

STALE_TEMP_SECONDS = 86_400
_replace = os.replace  # the rename that puts new bytes in place (tests inject faults here)


# A current row as a commit reads it: HELD's columns first (a version of it takes those), then the rest.
HELD_COLUMNS = ("path", "size", "etag", "content_type", "metadata", "md5", "last_modified", "headers")
ROW_COLUMNS = (*HELD_COLUMNS, "pending", "pending_ino", "seen_at")
HELD, ROW = ", ".join(HELD_COLUMNS), ", ".join(ROW_COLUMNS)
PATH, PENDING, SEEN_AT = (ROW_COLUMNS.index(name) for name in ("path", "pending", "seen_at"))
# `pruned.horizon`: when the newest version a prune dropped was superseded. Restores as of any moment since
# are whole (every version superseded later is kept); earlier ones are not (see `pitr_since`).
COLUMNS = "key, path, size, etag, content_type, metadata, last_modified, md5, headers"


def _names_and_values(text: str | None) -> dict:
    """A JSON column of names and values (metadata, headers); NULL (a row older than the column) is none."""
    return {} if text is None else json.loads(text)


class MirrorStore:
    def __init__(self, root: Path, snapshot: Path | None = None):
        # `snapshot`: another installation's mirror, read through our copy of its index (core/source_root.py)
        self._local, self.read_only = threading.local(), snapshot is not None
        self.root = Path(root) if self.read_only else private_dir(Path(root))  # nothing there is written
        self.index = Path(snapshot) if snapshot else self.root / INDEX_FILE
        self.tmp = None if self.read_only else private_dir(self.root / ".tmp")
        if self.read_only:  # our own copy of the other index: brought up to SCHEMA like ours
            with self._write() as conn:
                add_missing_columns(conn)
            return
        # Create the file with our mode (SQLite gives -wal/-shm the same), but never open an existing one
        # ourselves: closing any descriptor of it drops this process's POSIX locks, and another process
        # closing its last connection would then take itself for the last one and delete the WAL (data lost).
        try:
            os.close(os.open(self.index, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        except FileExistsError:
            pass
        with self._write() as conn:
            fresh = conn.execute("SELECT 1 FROM sqlite_master WHERE name='objects'").fetchone() is None
            for statement in filter(str.strip, SCHEMA.split(";")):  # executescript would COMMIT early
                conn.execute(statement)
            add_missing_columns(conn)
            if fresh:
                conn.execute(f"PRAGMA user_version={FORMAT}")
            current = conn.execute("PRAGMA user_version").fetchone()[0] == FORMAT
            for bucket, key in conn.execute("SELECT bucket, key FROM objects WHERE pending IS NOT NULL").fetchall():
                self._settle(conn, bucket, key)  # finish what a crashed process left half done
            for path in self.tmp.iterdir():  # downloads a crash left behind (a pending one was just placed)
                try:
                    if time.time() - path.stat().st_mtime > STALE_TEMP_SECONDS:
                        path.unlink(missing_ok=True)
                except FileNotFoundError:
                    continue  # a live copy in another process placed or dropped it since the listing
        if not current:
            convert_layout(self.root, self._write)  # a mirror of an older layout, once

    # ---------------------------------------------------------------- connections
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # never reuse a connection across fork()
            conn = open_index(self.index)  # WAL, synchronous=FULL: a committed step survives power loss
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        if getattr(self._local, "conn", None) is not None:
            self._local.conn.close()
            self._local.conn = None

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction. durable=False: its COMMIT does not fsync the WAL; the next durable commit's
        fsync covers it (WAL frames are appended in order), and until then a crash may lose it, so only
        a transaction whose loss is repaired on opening may use it (a commit's step 2, see commit_many)."""
        conn = self._conn()
        if not durable:
            conn.execute("PRAGMA synchronous=NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            if not durable:
                conn.execute("PRAGMA synchronous=FULL")

    # ---------------------------------------------------------------- paths
    def path_of(self, bucket: str, key: str) -> Path:
        """The file of a current key (where the index says), else where the key would go."""
        row = self._conn().execute("SELECT path FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
        return self.root / (row[0] if row else object_path(bucket, key))

    def temp_file(self, bucket: str) -> Path:
        """A new empty private file on the mirror's file system, so the final rename is atomic."""
        path, fd = self.open_temp(bucket)
        os.close(fd)
        return path

    def open_temp(self, bucket: str) -> tuple[Path, int]:
        """`temp_file` and a descriptor open for writing it (the caller closes it): no second open."""
        path = self.tmp / f"{bucket_dir(bucket)}.{secrets.token_hex(8)}.part"
        return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)

    def _version_path(self, bucket: str, key: str, when: datetime) -> Path:
        return self.root / version_path(bucket, key, _utc(when).strftime("%Y%m%dT%H%M%S%fZ"), secrets.token_hex(4))

    # ---------------------------------------------------------------- writing
    def _settle(self, conn: sqlite3.Connection, bucket: str, key: str, unsynced: set[Path] | None = None) -> None:
        """Roll a committed-but-unplaced object forward: its temp file is renamed into place (in a write tx).
        `unsynced`: collect the folder for the caller to fsync (once per folder) before it commits; a
        folder already in it was cleared and made by this pass (nothing in a pass puts a file where a
        folder goes: `_place`), so it is not looked at again."""
        row = conn.execute("SELECT path, pending, pending_ino FROM objects WHERE bucket=? AND key=?",
                           (bucket, key)).fetchone()
        if row is None or row[1] is None:
            return
        final, temp = beneath(self.root, row[0]), inside(self.root, row[1])
        if final is None or temp is None:  # no mirror of ours wrote that: forget the row, the next run re-fetches
            conn.execute("DELETE FROM objects WHERE bucket=? AND key=?", (bucket, key))
            return
        if is_regular_file(temp, row[2]):
            if unsynced is None or final.parent not in unsynced:  # else this pass has made its folders already
                self._make_way(conn, final)
                make_private_dirs(final.parent)
            _replace(temp, final)
            if unsynced is None:
                fsync_dir(final.parent)
            else:
                unsynced.add(final.parent)
        elif not is_regular_file(final, row[2]):
            # The new bytes vanished before being placed: forget the row so the next mirror run re-fetches.
            conn.execute("DELETE FROM objects WHERE bucket=? AND key=?", (bucket, key))
            return
        conn.execute("UPDATE objects SET pending=NULL, pending_ino=NULL WHERE bucket=? AND key=?", (bucket, key))

    def _make_way(self, conn: sqlite3.Connection, final: Path) -> None:
        """Clear the folders `final` needs: a file moved aside (see `_move_aside`) whose rename is still due
        goes first; a file no row knows is one a crash left behind after its key was removed (its bytes
        were kept under .versions first, see `remove`), so it is dropped, and so is a symlink (the mirror
        makes none; a folder must never lead out of it)."""
        relative = final.relative_to(self.root)
        for folder in [*reversed(relative.parents)][1:]:
            for (bucket, key) in conn.execute("SELECT bucket, key FROM objects WHERE pending=?",
                                              (str(folder),)).fetchall():
                self._settle(conn, bucket, key)
            where = self.root / folder
            if where.is_symlink() or (where.exists() and not where.is_dir()):
                if conn.execute("SELECT 1 FROM objects WHERE path=?", (str(folder),)).fetchone() is None:
                    where.unlink()

    def _place(self, conn: sqlite3.Connection, bucket: str, key: str, held: str | None) -> str:
        """Where (relative to the root) a key's new bytes go: where it is (`held`: its row's path, None
        without a row), if current; else its own path, or `<name>%~file` if other keys need that name as a
        folder. A file in the way of this key's folders is moved aside."""
        plain = str(object_path(bucket, key))
        if held is not None and held in (plain, str(object_path(bucket, key, file_mark=True))):
            return held
        if has_subkeys(conn, bucket, key) or (self.root / plain).is_dir():
            return str(object_path(bucket, key, file_mark=True))
        if not is_flat(encode_key(key)):  # a too-long key, stored flat, needs no folders
            parts = key.split("/")
            for depth in range(1, len(parts)):
                self._move_aside(conn, bucket, "/".join(parts[:depth]))
        return plain

    def _move_aside(self, conn: sqlite3.Connection, bucket: str, key: str) -> None:
        """If `key` is stored under its plain name, record it under `<name>%~file` with the rename due (the
        same pending mark a commit uses: `_settle` does the rename, a crash in between loses nothing)."""
        row = conn.execute("SELECT path, pending FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
        if row is None:
            return
        plain = str(object_path(bucket, key))
        if row[0] != plain:
            return
        marked = str(object_path(bucket, key, file_mark=True))
        if row[1] is not None:  # its new bytes still wait in a temp file: they go to the new name
            conn.execute("UPDATE objects SET path=? WHERE bucket=? AND key=?", (marked, bucket, key))
            return
        held = self.root / plain
        inode = held.lstat().st_ino if is_regular_file(held) else None
        conn.execute("UPDATE objects SET path=?, pending=?, pending_ino=? WHERE bucket=? AND key=?",
                     (marked, plain if inode is not None else None, inode, bucket, key))

    def _supersede(self, conn: sqlite3.Connection, bucket: str, key: str, now: datetime, until: datetime,
                   reason: str) -> bool:
        """Give the current bytes a second name under .versions and index it; False if there is none."""
        row = conn.execute(f"SELECT {HELD} FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
        return row is not None and self._keep_version(conn, bucket, key, row, now, until, reason)

    def _keep_version(self, conn: sqlite3.Connection, bucket: str, key: str, row: tuple, now: datetime,
                      until: datetime, reason: str) -> bool:
        """`_supersede` for the key's row as read (HELD's columns first)."""
        held = held_file(self.root, row[PATH])
        if held is None:
            return False
        version = self._version_path(bucket, key, now)
        link_or_copy(held, version)
        conn.execute("INSERT INTO versions (bucket, key, path, size, etag, content_type, metadata, md5, valid_from, "
                     "headers, superseded_at, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                     (bucket, key, str(version.relative_to(self.root)), *row[1:len(HELD_COLUMNS)], _ts(until), reason))
        return True

    def commit(self, bucket: str, key: str, temp: Path, entry: Entry, now: datetime) -> bool:
        """Make the (complete) temp file the current object; False if the mirror already has it.

        Step 1 (one transaction): the old file gets a second name under .versions, the index records the
        version and the new entry marked pending. Step 2: the temp is renamed over the current name and
        the mark cleared. A crash before step 1 commits leaves the old state; after it, any later access
        rolls step 2 forward. The store owns `temp` from here on.
        """
        return self.commit_many(bucket, [(key, temp, entry)], now)[0]

    def commit_many(self, bucket: str, items: list[tuple[str, Path, Entry]], now: datetime,
                    synced: bool = False) -> list[bool]:
        """`commit` for several keys of a bucket, each step one transaction for all of them (a reconcile
        copying thousands of objects pays for two commits per batch instead of two per object).
        synced=True: the caller fsynced every temp file itself (each on the thread that downloaded it, in
        parallel, instead of here, where other commits wait)."""
        done: list[bool] = []
        try:
            if not synced:
                fsync_files(temp for _, temp, _ in items)  # one syncfs, then each fsync is cheap
            with self._write() as conn:
                for key, temp, entry in items:
                    done.append(self._stage(conn, bucket, key, temp, entry, now))
        except BaseException:
            for _, temp, _ in items:
                temp.unlink(missing_ok=True)  # step 1 did not commit: the temps are nobody's
            raise
        # Step 2 clears the pending marks. Its loss in a crash is repaired on opening (the marks are rolled
        # forward, `_settle`), and each object is already durable (step 1 committed, its rename fsynced
        # below): one WAL fsync per commit instead of two, in the commit a burst's events wait for.
        with self._write(durable=False) as conn:
            unsynced: set[Path] = set()
            for (key, _, _), staged in zip(items, done):
                if staged:
                    self._settle(conn, bucket, key, unsynced)
            # The renames are durable before the marks are cleared: every folder fsynced, after one syncfs
            # when there are several (core/batch_sync.py: a batch's keys span many folders, and an fsync
            # each was most of a reconcile's serial commit time).
            fsync_files(unsynced)
        return done

    def _stage(self, conn: sqlite3.Connection, bucket: str, key: str, temp: Path, entry: Entry,
               now: datetime) -> bool:
        """Step 1 of a commit, inside the caller's write transaction; False (temp removed) if not needed.
        The key's row is read once (it was read five times per new key: docs/benchmarks.md, "Issue 16:
        figure 1a, client and server CPU per object"), and again only after rolling a pending commit forward."""
        row = conn.execute(f"SELECT {ROW} FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
        if row is not None and row[PENDING] is not None:
            self._settle(conn, bucket, key)
            row = conn.execute(f"SELECT {ROW} FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
        present = row is not None and held_file(self.root, row[PATH]) is not None
        if (present and (row[2], row[1]) == (entry.etag, entry.size)) or self._stale(conn, bucket, key, entry, row):
            temp.unlink(missing_ok=True)
            return False
        until = min(_utc(now), _utc(entry.last_modified)) if entry.last_modified else now
        if present:
            self._keep_version(conn, bucket, key, row, now, until, "overwritten")
        conn.execute(
            "INSERT OR REPLACE INTO objects (bucket, key, path, size, etag, content_type, metadata, md5, "
            "last_modified, seen_at, mirrored_at, pending, pending_ino, headers) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (bucket, key, self._place(conn, bucket, key, row[PATH] if row is not None else None), entry.size,
             entry.etag, entry.content_type, json.dumps(entry.metadata, sort_keys=True), entry.md5,
             _ts(entry.last_modified), _ts(entry.seen_at), _ts(now), str(temp.relative_to(self.root)),
             temp.stat().st_ino, json.dumps(entry.headers, sort_keys=True)))
        return True

    @staticmethod
    def _stale(conn: sqlite3.Connection, bucket: str, key: str, entry: Entry, row: tuple | None) -> bool:
        """Was the source seen (present or absent) after `entry` was? Then a late task must not undo that.
        `row`: the key's current row as read (ROW's columns), None if it has none."""
        if entry.seen_at is None:
            return False
        if row is not None:
            seen = row[SEEN_AT]
        else:
            seen = conn.execute("SELECT MAX(superseded_at) FROM versions WHERE bucket=? AND key=? AND "
                                "reason='deleted'", (bucket, key)).fetchone()[0]
        return seen is not None and _ts(entry.seen_at) < seen

    def remove(self, bucket: str, key: str, now: datetime, seen_at: datetime | None = None) -> bool:
        """Move the current object into versions (reason 'deleted'); False if the mirror does not have it.

        `seen_at`: when the source was seen without the key; an object seen there later is kept.
        """
        with self._write() as conn:
            self._settle(conn, bucket, key)
            row = conn.execute("SELECT path, seen_at FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
            if row is None or (seen_at is not None and row[1] is not None and row[1] > _ts(seen_at)):
                return False
            self._supersede(conn, bucket, key, now, min(_utc(now), _utc(seen_at or now)), "deleted")
            conn.execute("DELETE FROM objects WHERE bucket=? AND key=?", (bucket, key))
        held = inside(self.root, row[0])
        with self._write():  # the lock keeps a concurrent commit from using a folder we are removing
            if held is not None:
                held.unlink(missing_ok=True)
                self._prune_dirs(held.parent, self.root / bucket_dir(bucket))
        return True

    @staticmethod
    def _prune_dirs(folder: Path, stop: Path) -> None:
        while folder != stop and stop in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def prune_versions(self, older_than: datetime, budget_bytes: int | None = None) -> int:
        """Drop versions superseded before `older_than`, then, oldest first, as many more as it takes for
        the rest to fit in `budget_bytes` (None: no budget). Rows first, in the transaction that moves the
        horizon (see `pitr_since`): a crash leaves only orphan files, never an index naming a missing one."""
        with self._write() as conn:
            rows = conn.execute("SELECT id, bucket, path, superseded_at, size FROM versions "
                                "ORDER BY superseded_at, id").fetchall()
            drop, kept_bytes = [], sum(row[4] for row in rows)
            for row in rows:
                if row[3] >= _ts(older_than) and (budget_bytes is None or kept_bytes <= budget_bytes):
                    break
                drop.append(row)
                kept_bytes -= row[4]
            conn.executemany("DELETE FROM versions WHERE id=?", [(row[0],) for row in drop])
            if drop:
                conn.execute("INSERT INTO pruned (id, horizon) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET "
                             "horizon = MAX(horizon, excluded.horizon)", (drop[-1][3],))
        with self._write():
            for _, bucket, path, _, _ in drop:
                held = inside(self.root, path)
                if held is not None:
                    held.unlink(missing_ok=True)
                    self._prune_dirs(held.parent, self.root / ".versions" / bucket_dir(bucket))
        return len(drop)

    def pitr_since(self) -> tuple[datetime | None, bool]:
        """core/mirror_queries.py's pitr_since."""
        return pitr_since(self._conn())

    def refine_times(self, bucket: str, listed: list[tuple[str, str, datetime]]) -> int:
        """core/mirror_queries.py's finer_times, in one write transaction (a lost one is redone by the next
        reconcile, so it need not be durable)."""
        if not listed:
            return 0
        with self._write(durable=False) as conn:
            return finer_times(conn, bucket, listed)

    # ---------------------------------------------------------------- reading
    def _settled(self, bucket: str, key: str | None = None) -> sqlite3.Connection:
        """A connection to read from, after rolling forward any pending commit of the bucket (or key)."""
        conn = self._conn()
        pending = [row[0] for row in conn.execute("SELECT key FROM objects WHERE pending IS NOT NULL AND bucket=? "
                                                  "AND (? IS NULL OR key=?)", (bucket, key, key)).fetchall()]
        if pending and not self.read_only:  # read only: each file is checked before an upload anyway
            with self._write() as writer:
                for name in pending:
                    self._settle(writer, bucket, name)
        return conn

    def entry(self, bucket: str, key: str) -> Entry | None:
        row = self._settled(bucket, key).execute(
            "SELECT size, etag, content_type, metadata, last_modified, md5, seen_at, mirrored_at, path, headers "
            "FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
        if row is None:
            return None
        try:
            return Entry(row[0], row[1], row[2], json.loads(row[3]), _dt(row[4]), row[5], _dt(row[6]), _dt(row[7]),
                         self.root / row[8], _names_and_values(row[9]))
        except (ValueError, TypeError) as exc:
            raise self._damaged(key, exc) from None

    def brief(self, bucket: str, keys: list[str]) -> dict[str, Brief]:
        """Etag, size, file and Last-Modified of those of `keys` that are current and settled, in one query (reconcile
        compares whole listing pages with it; a pending key is left out, so its caller looks closer)."""
        if not keys:
            return {}
        rows = self._conn().execute(
            f"SELECT key, etag, size, path, last_modified FROM objects WHERE bucket=? AND pending IS NULL AND key IN "
            f"({','.join('?' * len(keys))})", (bucket, *keys)).fetchall()
        root = f"{self.root}{os.sep}"
        return {row[0]: Brief(row[1], row[2], root + row[3], row[4]) for row in rows}

    def _ref(self, row: tuple, kind: type[ObjectRef] = ObjectRef) -> ObjectRef:
        """A row as a restore reads it. The index comes from the storage root (untrusted): a value of the
        wrong kind is a DamagedIndex naming the key, never a traceback half-way through a restore."""
        key, path, size, etag, ctype, meta, valid_from, md5, headers, *rest = row
        try:
            if not (isinstance(key, str) and isinstance(path, str) and type(size) is int and size >= 0
                    and isinstance(etag, str) and isinstance(ctype, str | None) and isinstance(md5, str | None)):
                raise ValueError("a column holds a value of the wrong kind")
            extra = (_dt(rest[0]), rest[1]) if rest else ()
            return kind(key, self.root / path, size, etag, ctype, json.loads(meta), _dt(valid_from), md5,
                        _names_and_values(headers), *extra)
        except (ValueError, TypeError) as exc:
            raise self._damaged(key, exc) from None

    def _damaged(self, key: object, exc: Exception) -> DamagedIndex:
        if isinstance(exc, DamagedIndex):  # a time that is not one: it says so itself
            return DamagedIndex(f"the mirror index's row for {key!r} cannot be read: {exc}")
        return DamagedIndex(f"the mirror index's row for {key!r} cannot be read ({exc}): {self.index}: "
                            f"{DamagedIndex.ADVICE}")

    def empty(self) -> bool:
        """No current object at all: a first mirror."""
        return self._conn().execute("SELECT 1 FROM objects LIMIT 1").fetchone() is None

    def buckets(self) -> list[str]:
        return [row[0] for row in self._conn().execute("SELECT DISTINCT bucket FROM objects ORDER BY bucket")]

    def keys(self, bucket: str) -> Iterator[str]:
        """Every current key, in pages, so callers may write to the store while iterating."""
        last = None
        while True:
            rows = self._conn().execute(
                "SELECT key FROM objects WHERE bucket=? AND (? IS NULL OR key > ?) ORDER BY key LIMIT 1000",
                (bucket, last, last)).fetchall()
            if not rows:
                return
            yield from (row[0] for row in rows)
            last = rows[-1][0]

    def sample(self, count: int) -> list[tuple[str, str]]:
        return self._conn().execute("SELECT bucket, key FROM objects ORDER BY random() LIMIT ?", (count,)).fetchall()

    def versions(self, bucket: str, key: str) -> list[Version]:
        rows = self._conn().execute(
            f"SELECT {COLUMNS.replace('last_modified', 'valid_from')}, superseded_at, reason FROM versions "
            "WHERE bucket=? AND key=? ORDER BY superseded_at, id", (bucket, key)).fetchall()
        return [self._ref(row, Version) for row in rows]  # type: ignore[misc]

    def state_at(self, bucket: str, when: datetime) -> dict[str, ObjectRef]:
        """The objects that existed at `when`, each with the file holding its bytes then."""
        at = _ts(when)
        conn = self._settled(bucket)
        current = conn.execute(f"SELECT {COLUMNS} FROM objects WHERE bucket=? AND COALESCE(last_modified, "
                               "mirrored_at) <= ?", (bucket, at)).fetchall()
        old = conn.execute(f"SELECT {COLUMNS.replace('last_modified', 'valid_from')} FROM versions WHERE bucket=? "
                           "AND COALESCE(valid_from, '') <= ? AND superseded_at > ?", (bucket, at, at)).fetchall()
        refs = sorted((self._ref(row) for row in [*old, *current]), key=lambda ref: _ts(ref.valid_from) or "")
        return {ref.key: ref for ref in refs}  # should two claim a key (clock skew), the later one wins

    def stats(self) -> dict:
        """core/mirror_queries.py's stats."""
        return stats(self._conn())


__all__ = ["STAMP", "Brief", "DamagedIndex", "Entry", "MirrorStore", "ObjectRef", "Version"]
