"""A change point's `mysql_changes.sql.gz`: the rows that differ between the newest full dump (the base) and the
live database, so that `gunzip -c mysql_base.sql.gz mysql_changes.sql.gz | mysql` restores the live state.

Both sides stream in primary-key order (the base as written by actors/mysql/rows.py, the live one from
mysqldump `--skip-extended-insert --order-by-primary`) and are merged row by row in constant memory: a base row
whose key is gone or whose values differ is deleted (`DELETE FROM t WHERE pk IN (` then one key per line), a
live row that is new or changed is inserted (row-per-line INSERTs). A table's DELETEs (statements of about
BATCH_BYTES) all come before its INSERTs, whose rows wait in an unlinked temp file meanwhile. A table whose
primary key is not exactly its first column is written whole (`DELETE FROM t;` and all its rows); keys that do
not rise strictly (a collation that sorts otherwise than byte by byte) raise NotAChangePoint.

The text around the rows (schema, views, routines, triggers, events) must be the same on both sides, but for
comments and AUTO_INCREMENT counters (carried over with ALTER TABLE); anything else raises NotAChangePoint,
and the backup makes a full point instead.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from actors.mysql.rows import PACK_BYTES, Packer, Row, Schema, auto_increment, row_key, same_but_auto_increment

CHANGES_COMPLETED = b"-- Changes completed"
BATCH_BYTES = PACK_BYTES
_END = object()


class NotAChangePoint(Exception):
    """The live dump cannot be written as changes of the base (its text differs, or keys out of order); make a
    full point."""


class _Peek:
    def __init__(self, source: Iterable[Row | bytes]):
        self.source = iter(source)
        self.head: object = next(self.source, _END)

    def take(self) -> object:
        item, self.head = self.head, next(self.source, _END)
        return item


class ChangeWriter:
    """Merges a base dump's items with the live dump's and yields the changes file in blocks.

    After the run: `counts` (live rows per table, what a restore must find) and `deleted` / `inserted` per
    table; `on_live_text` is given each text line of the live dump (its binlog coordinates, its last line).
    Rows to insert are spooled in unlinked files in `spool_dir`."""

    def __init__(self, spool_dir: Path, on_live_text: Any = None):
        self.whole: set[bytes] = set()  # tables written whole
        self.on_live_text = on_live_text
        self.counts: dict[bytes, int] = {}
        self.deleted: dict[bytes, int] = {}
        self.inserted: dict[bytes, int] = {}
        self.packer = Packer()
        self.pending_keys: list[bytes] = []  # base keys of the next DELETE statement
        self.pending_size = 0
        self.spool: BinaryIO | None = None  # the current table's rows to insert, one per line
        self.spool_dir = spool_dir
        self.table: bytes | None = None  # the table whose rows are being merged
        self.key_column: dict[bytes, bytes] = {}
        self.last_keys: tuple[object, object] = (None, None)
        self.in_header = True  # before the dump's CREATE DATABASE: its session settings go into the changes
        self.created: bytes | None = None  # the table of the last CREATE TABLE

    def run(self, base: Iterable[Row | bytes], live: Iterable[Row | bytes], schema: Schema) -> Iterator[bytes]:
        """The changes file in blocks; `schema` is the base's (which tables are keyed by their first column)."""
        self.key_column = schema.keyed
        old, new = _Peek(base), _Peek(live)
        while old.head is not _END or new.head is not _END:
            o, n = old.head, new.head
            if isinstance(o, Row) or isinstance(n, Row):
                table = (o if isinstance(o, Row) else n).table  # type: ignore[union-attr]
                if isinstance(o, Row) and isinstance(n, Row) and o.table != n.table:
                    raise NotAChangePoint(f"rows of {o.table!r} in the base meet rows of {n.table!r} in the live dump")
                if table != self.table:
                    yield from self._leave()
                    self._enter(table)
                self._merge_step(old, new)
            else:
                yield from self._leave()
                old.take()
                new.take()
                if o is _END or n is _END:
                    raise NotAChangePoint("one dump ends before the other")
                self._text(o, n)  # type: ignore[arg-type]
            if block := self.packer.take():
                yield block
        yield from self._leave()
        self.packer.text(CHANGES_COMPLETED + b" on " +
                         datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S").encode() + b"\n")
        yield self.packer.take(force=True)

    # ---------------------------------------------------------------- text

    def _text(self, old: bytes, new: bytes) -> None:
        if self.on_live_text is not None:
            self.on_live_text(new)
        if old != new:
            if old.startswith(b"--") and new.startswith(b"--"):
                return  # dates, host, server version, binlog coordinates
            if not same_but_auto_increment(old, new):
                raise NotAChangePoint(f"the schema changed since the base: {old[:120]!r} became {new[:120]!r}")
            if (value := auto_increment(new)) and self.created is not None:
                self.packer.text(b"ALTER TABLE " + self.created + b" " + value + b";\n")
        if new.startswith(b"CREATE TABLE `"):
            self.created = new[len(b"CREATE TABLE "):new.rindex(b"`") + 1]
            self.counts.setdefault(self.created, 0)
            self.in_header = False
        elif new.startswith(b"CREATE DATABASE "):
            self.in_header = False
        elif new.startswith(b"/*!") and (b" SET " in new and (self.in_header or b"=@OLD_" in new)):
            self.packer.text(new)  # the session settings the rows need (time zone, checks off), and their undo


    # ---------------------------------------------------------------- rows

    def _enter(self, table: bytes) -> None:
        self.table = table
        self.last_keys = (None, None)
        self.counts.setdefault(table, 0)
        if table not in self.key_column:
            self.whole.add(table)
        if table in self.whole:
            self.packer.text(b"DELETE FROM " + table + b";\n")
            self.deleted[table] = -1  # all

    def _merge_step(self, old: _Peek, new: _Peek) -> None:
        table = self.table
        o = old.head if isinstance(old.head, Row) else None
        n = new.head if isinstance(new.head, Row) else None
        if table in self.whole:
            if o is not None:
                old.take()
            if n is not None:
                new.take()
                self.counts[table] += 1
                self._insert(n)
            return
        ko = row_key(o.values) if o is not None else None
        kn = row_key(n.values) if n is not None else None
        last_old, last_new = self.last_keys
        if (ko is not None and last_old is not None and ko <= last_old) or \
                (kn is not None and last_new is not None and kn <= last_new):
            raise NotAChangePoint(f"the keys of {table!r} do not rise strictly in byte order")
        if o is not None and (n is None or ko < kn):  # gone from the live database
            old.take()
            self._delete(o)
            self.last_keys = (ko, last_new)
        elif n is not None and (o is None or kn < ko):  # new
            new.take()
            self.counts[table] += 1
            self._insert(n)
            self.last_keys = (last_old, kn)
        else:
            old.take()
            new.take()
            self.counts[table] += 1
            if o.values != n.values:  # changed: out, then in again
                self._delete(o)
                self._insert(n)
            self.last_keys = (ko, kn)

    def _delete(self, row: Row) -> None:
        end = row.values.find(b",")
        key = row.values[1:end if end > 0 else -1]
        if row.values[1:2] == b"'":
            key = row_key(row.values)[1]  # type: ignore[assignment]
        self.pending_keys.append(key)
        self.pending_size += len(key)
        self.deleted[row.table] = self.deleted.get(row.table, 0) + 1
        if self.pending_size >= BATCH_BYTES:
            self._flush_deletes()

    def _insert(self, row: Row) -> None:
        """Spooled until the table's DELETEs are all out: a unique value that moves from a deleted row to an
        inserted one must be gone before it comes back."""
        if self.spool is None:
            self.spool = tempfile.TemporaryFile(dir=self.spool_dir)
        self.spool.write(row.values + b"\n")  # a row never holds a raw newline (mysqldump escapes them)
        self.inserted[row.table] = self.inserted.get(row.table, 0) + 1

    def _flush_deletes(self) -> None:
        if self.pending_keys:
            column = self.key_column[self.table]  # type: ignore[index]
            self.packer.text(b"DELETE FROM " + self.table + b" WHERE " + column + b" IN (\n" +  # type: ignore[operator]
                             b",\n".join(self.pending_keys) + b");\n")
        self.pending_keys, self.pending_size = [], 0

    def _leave(self) -> Iterator[bytes]:
        """The table's last DELETE, then its spooled rows as INSERTs, in blocks."""
        if self.table is None:
            return
        self._flush_deletes()
        if self.spool is not None:
            self.spool.seek(0)
            for line in self.spool:
                self.packer.row(Row(self.table, line[:-1]))
                if block := self.packer.take():
                    yield block
            self.spool.close()
            self.spool = None
        self.packer.close()
        self.table = None
