"""A mysqldump's rows, one at a time: the dump read as lines and split into rows and the text around them, the
rows packed back into multi-row INSERTs, a row's key, and a digest of the schema part.

Every dump is taken in primary-key order (`--order-by-primary`) with one row per line, which is what lets a
change point (actors/mysql/changes.py) compare a full dump with the live database row by row. MariaDB's dump
tools (10.11.8 and later, 11.x) write extended INSERTs that way themselves (`INSERT INTO `t` VALUES`, then
`(...),` lines, the last `(...);`): their dump is kept as it streams and only its text is looked at (TextScan),
block by block. Other tools (Oracle's mysqldump writes all of a statement's rows on one line) are asked for one
row per statement (`--skip-extended-insert`), which `packed` packs again into that same layout (statements of
about PACK_BYTES), which loads as fast as an extended-insert dump. mysqldump escapes newlines inside strings,
so a row never spans lines, and DumpCounter (actors/mysql/backup.py) counts the rows of this layout cheaply.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

PACK_BYTES = 1 << 20  # about this much per packed INSERT statement (MariaDB's max_allowed_packet is 16 MiB+)
OUT_BLOCK = 1 << 20  # output handed on in blocks of about this size
_ONE_ROW = re.compile(rb"INSERT INTO (`(?:[^`\n]|``)+`) VALUES \(")
_OPEN_PACKED = re.compile(rb"INSERT INTO (`(?:[^`\n]|``)+`) VALUES\n")
_DELIMITER = re.compile(rb"DELIMITER (\S+)[ \t]*\n")
_CREATE = re.compile(rb"CREATE TABLE (`(?:[^`\n]|``)+`) \(\n")
_COLUMN = re.compile(rb"  (`(?:[^`\n]|``)+`) ")
_PRIMARY = re.compile(rb"  PRIMARY KEY \((`(?:[^`\n]|``)+`)\)")
_AUTO_INCREMENT = re.compile(rb" AUTO_INCREMENT=\d+")
_STRING = re.compile(rb"'[^'\\\n]*(?:\\.[^'\\\n]*)*'")
# Text lines that are not the schema: comments (dates, host, binlog coordinates), blank lines, and what only a
# dump with data has around its rows.
_NOT_SCHEMA = re.compile(rb"--|\n|LOCK TABLES |UNLOCK TABLES;|/\*!40000 ALTER TABLE `(?:[^`\n]|``)+` (?:DIS|EN)ABLE KEYS")


def lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The stream as lines, each with its newline (a last line without one gets none)."""
    pending = b""
    for chunk in chunks:
        if b"\n" not in chunk:
            pending += chunk
            continue
        parts = (pending + chunk).split(b"\n")
        pending = parts.pop()
        for part in parts:
            yield part + b"\n"
    if pending:
        yield pending


@dataclass(frozen=True)
class Row:
    table: bytes  # the quoted name, as in the dump: b"`document`"
    values: bytes  # b"(...)", without the `,` / `;` that followed it


def items(lines_in: Iterable[bytes], strict: bool = False) -> Iterator[Row | bytes]:
    """The dump's rows (Row) and its other lines (bytes), from either layout; INSERTs inside stored code
    (between `DELIMITER ;;` and `DELIMITER ;`) are text. `strict`: a one-line INSERT of several rows (a dump tool
    that writes extended INSERTs on one line) raises ValueError; otherwise such a line is taken as one row."""
    delimiter = b";"
    packed: bytes | None = None  # inside a row-per-line statement of this table
    for line in lines_in:
        if packed is not None:
            yield Row(packed, line[:-2])
            if line.endswith(b");\n"):
                packed = None
            continue
        if line.startswith(b"INSERT INTO `") and delimiter == b";":
            if line.endswith(b");\n") and (one := _ONE_ROW.match(line)):
                if strict and not one_row(line):
                    raise ValueError(f"the dump has several rows on one line ({line[:80]!r}...): the dump tool "
                                     f"writes extended INSERTs on one line")
                yield Row(one[1], line[one.end() - 1:-2])
                continue
            if opened := _OPEN_PACKED.fullmatch(line):
                packed = opened[1]
                continue
        elif line.startswith(b"DELIMITER ") and (found := _DELIMITER.fullmatch(line)):
            delimiter = found[1]
        yield line


def one_row(line: bytes) -> bool:
    """A one-line INSERT holds a single row."""
    return not rows_beyond_the_first(line)


def rows_beyond_the_first(line: bytes) -> int:
    """The rows of a one-line INSERT after its first: once its strings are gone, each is after a `),(` (a
    dump's values are numbers, NULL, hex and strings: no parentheses of their own)."""
    return _STRING.sub(b"", line).count(b"),(")


class TextScan:
    """A dump of row-per-line INSERTs fed in blocks of any size: its text lines go to `schema` and to `on_text`,
    while its rows are only counted per table (`counts`), statement by statement, without splitting them into
    lines (a statement ends at the first line that ends in `);`, as no string holds a raw newline).
    `rows_per_line` turns False at a one-line INSERT of several rows: such a dump cannot be the base of a change
    point."""

    def __init__(self, schema: Schema, on_text: Callable[[bytes], object]):
        self.schema, self.on_text = schema, on_text
        self.rows_per_line = True
        self.counts: dict[bytes, int] = {}  # rows per table (its quoted name)
        self._pending: list[bytes] = []  # the unfinished last text line, in pieces
        self._table: bytes | None = None  # inside a row-per-line INSERT statement of this table
        self._tail = b""  # in rows: the last bytes before this block (`);\n` may straddle two blocks)
        self._delimiter = b";"

    def feed(self, block: bytes) -> None:
        if self._table is not None:
            # The statement's end, `);\n`, in this block or across the seam with the last one (no block copied).
            seam = (self._tail + block[:2]).find(b");\n")
            stop = seam - len(self._tail) if seam >= 0 else block.find(b");\n")
            if seam < 0 and stop < 0:
                self.counts[self._table] += block.count(b"\n")
                self._tail = (self._tail + block[-2:])[-2:]
                return
            self.counts[self._table] += block.count(b"\n", 0, stop + 3)
            self._table, self._tail = None, b""
            block = block[stop + 3:]
        cut = block.rfind(b"\n") + 1
        if not cut:
            self._pending.append(block)
            return
        if self._pending:
            block, cut = b"".join(self._pending) + block, cut + sum(map(len, self._pending))
            self._pending = []
        self._text(block, cut)

    def _text(self, block: bytes, cut: int) -> None:
        pos = 0
        while pos < cut:
            end = block.find(b"\n", pos, cut) + 1 or cut
            line = block[pos:end]
            if line.startswith(b"INSERT INTO `") and self._delimiter == b";":
                if opened := _OPEN_PACKED.fullmatch(line):
                    table = opened[1]
                    self.counts.setdefault(table, 0)
                    stop = block.find(b");\n", end)
                    if stop < 0:
                        self.counts[table] += block.count(b"\n", end)
                        self._table, self._tail = table, block[-2:]
                        return
                    self.counts[table] += block.count(b"\n", end, stop + 3)
                    pos = stop + 3
                    continue
                if line.endswith(b");\n") and (one := _ONE_ROW.match(line)):
                    several = rows_beyond_the_first(line)
                    self.rows_per_line = self.rows_per_line and not several
                    self.counts[one[1]] = self.counts.get(one[1], 0) + 1 + several
                    pos = end
                    continue
            elif line.startswith(b"DELIMITER ") and (found := _DELIMITER.fullmatch(line)):
                self._delimiter = found[1]
            self.schema.feed(line)
            self.on_text(line)
            pos = end
        if cut < len(block):
            self._pending.append(block[cut:])

    def finish(self) -> None:
        if self._pending:
            line = b"".join(self._pending)
            self._pending = []
            self._text(line, len(line))


class Packer:
    """Rows into row-per-line INSERT statements of about PACK_BYTES, text passed on as it is; output in blocks."""

    def __init__(self) -> None:
        self.table: bytes | None = None  # the open statement's table
        self.size = 0
        self.out: list[bytes] = []
        self.out_size = 0

    def row(self, row: Row) -> None:
        if row.table == self.table and self.size < PACK_BYTES:
            self.out.append(b",\n")
        else:
            self.close()
            self.out.append(b"INSERT INTO " + row.table + b" VALUES\n")
            self.table, self.size = row.table, 0
        self.out.append(row.values)
        self.size += len(row.values)
        self.out_size += len(row.values)

    def text(self, line: bytes) -> None:
        self.close()
        self.out.append(line)
        self.out_size += len(line)

    def close(self) -> None:
        if self.table is not None:
            self.out.append(b";\n")
            self.table = None

    def take(self, force: bool = False) -> bytes:
        """What is ready once a block's worth has gathered (everything with `force`), b"" otherwise."""
        if force:
            self.close()
        elif self.out_size < OUT_BLOCK:
            return b""
        block, self.out, self.out_size = b"".join(self.out), [], 0
        return block


def packed(chunks: Iterable[bytes], schema: Schema) -> Iterator[bytes]:
    """A one-row-per-statement dump as row-per-line multi-row INSERTs, in blocks; its text fed to `schema`."""
    packer = Packer()
    for item in items(lines(chunks)):
        if isinstance(item, Row):
            packer.row(item)
        else:
            schema.feed(item)
            packer.text(item)
        if block := packer.take():
            yield block
    if block := packer.take(force=True):
        yield block


def row_key(values: bytes) -> tuple[int, int | bytes]:
    """The row's first value, comparable in the order mysqldump's ORDER BY gives for integers and for
    strings compared byte by byte (a table whose keys do not rise strictly in this order is copied whole)."""
    if values[1:2] == b"'":
        found = _STRING.match(values, 1)
        return (1, found[0] if found else values)
    end = values.find(b",")
    first = values[1:end if end > 0 else -1]
    try:
        return (0, int(first))
    except ValueError:
        return (2, first)


@dataclass
class Schema:
    """What the text of a dump says about its tables: which are keyed by their first column (the merge's key)."""

    digest: Any  # a hashlib sha256
    keyed: dict[bytes, bytes]  # table -> its first column, for tables whose primary key is exactly that column
    triggers: int = 0  # they would fire while a change point's rows load: such a database gets full points
    _table: bytes | None = None
    _first: bytes | None = None

    @classmethod
    def new(cls) -> Schema:
        return cls(hashlib.sha256(), {})

    def feed(self, line: bytes) -> None:
        """A text line of the dump (never a row)."""
        if _NOT_SCHEMA.match(line):
            return
        self.digest.update(_AUTO_INCREMENT.sub(b"", line))
        if line.startswith(b"/*!50003 CREATE*/") and b" TRIGGER " in line:
            self.triggers += 1
        if line.startswith(b"CREATE TABLE ") and (found := _CREATE.fullmatch(line)):
            self._table, self._first = found[1], None
        elif self._table is not None:
            if line.startswith(b") "):
                self._table = None
            elif self._first is None and (column := _COLUMN.match(line)):
                self._first = column[1]
            elif (primary := _PRIMARY.fullmatch(line.rstrip(b",\n"))) and primary[1] == self._first:
                self.keyed[self._table] = self._first

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


def schema_of(chunks: Iterable[bytes]) -> Schema:
    """The schema of a dump without rows (`--no-data`)."""
    schema = Schema.new()
    for item in items(lines(chunks)):
        if not isinstance(item, Row):
            schema.feed(item)
    return schema


def same_but_auto_increment(old: bytes, new: bytes) -> bool:
    return _AUTO_INCREMENT.sub(b"", old) == _AUTO_INCREMENT.sub(b"", new)


def auto_increment(line: bytes) -> bytes | None:
    found = _AUTO_INCREMENT.search(line)
    return found[0].strip() if found else None


def ident(quoted: bytes) -> str:
    """A table's name from its `quoted` form in the dump."""
    return unquoted(quoted[1:-1])


def unquoted(inner: bytes) -> str:
    """A name from what stands between its backquotes (a backquote in it is doubled)."""
    return inner.replace(b"``", b"`").decode("utf-8", "replace")
