"""MySQL / MariaDB: a consistent mysqldump of RAGFlow's database, gzipped into the point as it streams.

Two ways to reach the server: `tcp` runs a local client (password in a 0600 option file in a private temp
dir), `docker` runs the client inside the compose-labelled mysql container through the Docker API (password
in the exec's environment). Either way the password never reaches an argv or a log.

While the dump streams, rows are counted per table from the dump text itself, so the manifest records what
a restore must find again, and `verify` can recount the file later.
"""
from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Iterator
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

from actors.mysql import change_point, rows
from actors.mysql.changes import ChangeWriter, NotAChangePoint
from actors.mysql.compress import GzipWriter, ZstdWriter
from actors.mysql.session import client_failure, client_session
from core import clients
from core.atomic import atomic_file
from core.checks import DECODE_ERRORS, CorruptArtifact, check_gzip, check_zstd, open_compressed, verify_artifacts
from core.child_output import CHUNK, clean_stderr
from core.component import ComponentResult, PermanentError
from core.config import MySQLSettings, Settings
from core.manifest import Artifact, ComponentRecord
from core.points import Point
from core.safe_paths import UnsafePath

NAME = "mysql"
ARTIFACT = "mysql_dump.sql.gz"
ARTIFACT_ZSTD = "mysql_dump.sql.zst"  # mysql.compression: zstd
COMPLETED = b"-- Dump completed"
CHANGES_COMPLETED = b"-- Changes completed"  # the last line of a change point's changes file
DUMP_TOOLS = ("mysqldump", "mariadb-dump")  # MariaDB 11 images ship only mariadb-dump
QUERY_TOOLS = ("mysql", "mariadb")
# Always: one consistent InnoDB snapshot without locking RAGFlow out, stored code, binary-safe BLOBs,
# rows streamed rather than buffered, emoji-safe text. No tablespaces: they need PROCESS on MySQL 8 and
# RAGFlow's InnoDB tables do not use them.
BASE_OPTIONS = ["--single-transaction", "--routines", "--triggers", "--events", "--hex-blob", "--quick",
                "--default-character-set=utf8mb4", "--no-tablespaces"]
# Rows in primary-key order, one a line (actors/mysql/rows.py), so that the rows of a full dump can be compared
# with the live ones (a change point, actors/mysql/changes.py). MariaDB's tools write extended INSERTs one row a
# line themselves; other tools are asked for a statement per row, which rows.packed packs again.
ROW_OPTIONS = ["--skip-extended-insert", "--order-by-primary"]
MARIADB_ROW_OPTIONS = ["--order-by-primary"]


def row_options(client_version: str, point: Point) -> list[str]:
    """The row options for this dump tool (its --version line): a MariaDB tool's own extended INSERTs, unless a
    point records that this tool wrote several rows on one line (older MariaDB tools do)."""
    if "mariadb" in client_version.lower() and not change_point.rows_on_one_line(point, client_version):
        return MARIADB_ROW_OPTIONS
    return ROW_OPTIONS
# MariaDB's dump tools (10.5.25, 10.6.18, 10.11.8 and later) open the dump with this line: MariaDB's client reads
# `\-` as its sandbox command, Oracle's MySQL 8 client (RAGFlow's server) stops on it as an unknown command.
SANDBOX_LINE = re.compile(rb"/\*M!999999\\- enable the sandbox mode \*/[ \t]*\r?\n")

# ---------------------------------------------------------------- counting rows in a dump

# A quoted SQL string as mysqldump writes it (backslash escapes; newlines are escaped, so never spans lines).
_STRING = re.compile(rb"'[^'\\\n]*(?:\\.[^'\\\n]*)*'")
_IDENT = rb"`((?:[^`\n]|``)+)`"
# The top-level lines that matter, each anchored at a line start.
_LINE = re.compile(
    rb"^(?:(?:INSERT(?: IGNORE)?|REPLACE) INTO " + _IDENT + rb"(?: \([^\n]*?\))? VALUES ?"
    rb"|CREATE TABLE " + _IDENT +
    rb"|DELIMITER (\S+)[ \t]*$"
    rb"|DELETE FROM " + _IDENT + rb"( WHERE [^\n]* IN \($|;$)"
    rb"|-- CHANGE (?:MASTER|REPLICATION SOURCE) TO (?:MASTER|SOURCE)_LOG_FILE='([^'\n]*)', "
    rb"(?:MASTER|SOURCE)_LOG_POS=(\d+))",
    re.MULTILINE,
)


class DumpCounter:
    """Rows per table, binlog coordinates and completeness of a mysqldump stream fed in arbitrary pieces.

    Extended INSERTs come one statement per line (MySQL, older MariaDB) or one row per line (MariaDB
    10.11.8+: `INSERT INTO `t` VALUES` then `(...),` lines). Once quoted strings are removed, a row
    is exactly one `(` of the statement's values, whichever the layout; in the second layout a row is
    also a line starting with `(`, which is counted without removing strings (most of the CPU). A statement ends at the first
    line ending in `);`: strings never hold a raw newline, so that cannot be inside one. INSERTs inside
    stored code (between `DELIMITER ;;` and `DELIMITER ;`) are not data and are skipped.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.deleted: dict[str, int] = {}  # a change point's deleted rows per table, -1: all (actors/mysql/changes.py)
        self.binlog: dict[str, Any] | None = None
        self.plain_bytes = 0
        self._pending: list[bytes] = []  # the unfinished last line, in pieces (joined once it ends)
        self._table: str | None = None  # inside this table's INSERT statement
        self._row_per_line = False  # that statement has one row per line
        self._deleting = False  # the statement is a DELETE with one key per line
        self._delimiter = b";"
        self._last_line = b""

    def feed(self, data: bytes) -> None:
        self.plain_bytes += len(data)
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending.append(data)
            return
        block = data[: cut + 1]
        if self._pending:
            block = b"".join((*self._pending, block))
            self._pending = []
        if cut + 1 < len(data):
            self._pending.append(data[cut + 1:])
        self._lines(block)

    def add_rows(self, plain_bytes: int, counts: dict[str, int]) -> None:
        """The dump's size and the rows counted elsewhere (rows.TextScan), when only its text was fed."""
        self.plain_bytes = plain_bytes
        for table, n in counts.items():
            self.counts[table] = self.counts.get(table, 0) + n

    def finish(self) -> DumpCounter:
        if self._pending:
            self._lines(b"".join(self._pending) + b"\n")
            self._pending = []
        return self

    @property
    def completed(self) -> bool:
        """The dump ran to its end: mysqldump writes this line last, and only on success."""
        return self._table is None and self._last_line.startswith(COMPLETED)

    @property
    def changes_completed(self) -> bool:
        """A change point's changes file ran to its end (actors/mysql/changes.py writes this line last)."""
        return self._table is None and self._last_line.startswith(CHANGES_COMPLETED)

    def _lines(self, block: bytes) -> None:
        """Handle complete lines (`block` ends with a newline)."""
        tail = block.rstrip()
        if tail:
            self._last_line = tail[tail.rfind(b"\n") + 1:]
        pos, end = 0, len(block)
        while pos < end:
            if self._table is not None:
                stop = block.find(b");\n", pos)
                body = block[pos:end if stop < 0 else stop + 1]
                if self._deleting:  # one key per line
                    self.deleted[self._table] += body.count(b"\n") + (stop >= 0)
                elif self._row_per_line:  # each row a line of its own: count the lines (no string can hold one)
                    self.counts[self._table] += body.count(b"\n(") + (body[:1] == b"(")
                else:
                    if b"'" in body:
                        body = _STRING.sub(b"", body)
                    self.counts[self._table] += body.count(b"(")
                if stop < 0:
                    return
                self._table, self._deleting, pos = None, False, stop + 3
                continue
            match = _LINE.search(block, pos)
            if match is None:
                return
            pos = match.end()
            insert, create, delimiter, delete, delete_how, log_file, log_pos = match.groups()
            if delimiter is not None:
                self._delimiter = delimiter
            elif self._delimiter != b";":
                continue  # the body of a routine, trigger or event
            elif delete is not None:
                table = rows.unquoted(delete)
                if delete_how == b";":
                    self.deleted[table] = -1
                elif self.deleted.get(table, 0) >= 0:
                    self.deleted.setdefault(table, 0)
                    self._table, self._deleting, pos = table, True, pos + 1
            elif insert is not None:
                self._deleting = False
                self._table = rows.unquoted(insert)
                self._row_per_line = block[pos:pos + 1] == b"\n"  # `VALUES` ends its line: MariaDB's layout
                self.counts.setdefault(self._table, 0)
            elif create is not None:
                self.counts.setdefault(rows.unquoted(create), 0)  # tables without rows count too
            elif log_file is not None and self.binlog is None:
                self.binlog = {"file": log_file.decode(), "position": int(log_pos)}


def scan_dump(path: Path, chunk: int = CHUNK) -> DumpCounter:
    """Stream a dump file (gzip, zstd or plain) through a DumpCounter; CorruptArtifact if it cannot be read."""
    path = Path(path)
    counter = DumpCounter()
    try:
        with open_compressed(path) as stream:
            while block := stream.read(chunk):
                counter.feed(block)
    except DECODE_ERRORS as exc:
        kind = "zstd" if path.suffix == ".zst" else "gzip"
        raise CorruptArtifact(f"{path.name}: not a sound {kind} stream ({exc})") from None
    return counter.finish()


def count_dump_rows(path: Path, chunk: int = CHUNK) -> dict[str, int]:
    """Rows per table in a mysqldump file (gzipped or plain), counted exactly from its INSERTs."""
    return scan_dump(path, chunk).counts


# ---------------------------------------------------------------- backup and verify


def without_sandbox_line(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The dump as mysqldump streams it, less MariaDB's sandbox line at its start, so that any MySQL client
    loads it (`gunzip | mysql`). Restore asks the client for its sandbox itself (actors/mysql/sandbox.py)."""
    head = b""
    chunks = iter(chunks)
    for chunk in chunks:
        head += chunk
        if b"\n" in head or len(head) > 256:
            break
    if match := SANDBOX_LINE.match(head):
        head = head[match.end():]
    if head:
        yield head
    yield from chunks


def _dump_options(help_text: bytes, log_bin: bool) -> list[str]:
    """BASE_OPTIONS plus what this client supports and this server needs."""
    options = list(BASE_OPTIONS)
    if log_bin:  # the binlog position of the snapshot, as a comment, for point-in-time recovery
        options.append("--source-data=2" if b"--source-data" in help_text else "--master-data=2")
    if b"--set-gtid-purged" in help_text:  # Oracle's client: keep GTID_PURGED out of a single-db dump
        options.append("--set-gtid-purged=OFF")
    if b"--column-statistics" in help_text:  # Oracle's client: MariaDB servers have no histogram table
        options.append("--column-statistics=0")
    return options


def dump_artifact(record: ComponentRecord) -> str | None:
    """The dump's name in a record: mysql_dump.sql.gz, or .zst for a backup made with zstd."""
    return next((a.name for a in record.artifacts if a.name in (ARTIFACT, ARTIFACT_ZSTD)), None)


def backup(settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
    """A change point when mysql.full_every_days and a base allow it (actors/mysql/change_point.py), else a full one."""
    cfg = settings.mysql
    password = clients.secret(cfg.password) or ""
    with client_session(settings) as session:
        dump = session.find(DUMP_TOOLS)
        query = session.find(QUERY_TOOLS)
        if dump is None or query is None:
            missing = "mysqldump / mariadb-dump" if dump is None else "mysql / mariadb"
            if session.mode == "tcp":
                raise PermanentError(f"no {missing} client on PATH: install one (apt-get install "
                                     f"default-mysql-client) or use mysql.mode: docker")
            raise PermanentError(f"no {missing} client runs in {session.where}: use mysql.mode: tcp")
        dump_tool, client_version = dump
        code, out, err = session.run(query[0], ["--batch", "--skip-column-names", "-e", "SELECT VERSION(), @@log_bin"])
        if code != 0:
            raise client_failure(query[0], code, clean_stderr(err, password), session.where, cfg)
        server_version, _, log_bin = out.decode("utf-8", "replace").strip().partition("\t")
        options = [*_dump_options(session.run(dump_tool, ["--help"], connect=False)[1], log_bin.strip() == "1"),
                   *row_options(client_version, point)]
        dump = _Dump(session, dump_tool, options, password, cfg, log)
        log.info("dumping database %s from %s (%s) with %s %s", cfg.database, session.where, server_version,
                 dump_tool, " ".join(options))
        result = None
        base = change_point.newest_full(settings, point, log) \
            if cfg.full_every_days and cfg.compression == "gzip" else None
        if base is not None:
            schema = dump.schema()
            if schema.sha256 != base.record.details.get("schema_sha256"):
                log.info("a full MySQL point: the schema differs from that of the newest full point %s",
                         base.point.ref)
            elif schema.triggers:
                log.info("a full MySQL point: the database has triggers, which would fire as a change point's "
                         "rows load by hand")
            else:
                try:
                    result = dump.changes(point, base, schema)
                except (NotAChangePoint, ValueError, EOFError, zlib.error, UnsafePath) as exc:
                    log.warning("a full MySQL point instead of the changes of %s: %s", base.point.ref, exc)
        if result is None:
            result = dump.full(point)
    result.details = {"mode": session.mode, "database": cfg.database, "client_version": client_version,
                      "server_version": server_version, **result.details, "options": options}
    return result


class _Dump:
    """mysqldump of the configured database, written as a full point or as a change point."""

    def __init__(self, session: Any, tool: str, options: list[str], password: str, cfg: MySQLSettings,
                 log: logging.Logger):
        self.session, self.tool, self.password, self.cfg, self.log = session, tool, password, cfg, log
        self.options = options

    def _stream(self, *extra: str) -> Any:
        return closing(self.session.stream(self.tool, [*self.options, *extra, "--databases", self.cfg.database]))

    def _failed(self) -> None:
        """Raises if the last dump failed (its stderr logged either way)."""
        stderr = clean_stderr(self.session.stderr, self.password)
        if stderr:
            self.log.warning("%s stderr: %s", self.tool, stderr)
        if self.session.exit_code != 0:
            raise client_failure(self.tool, self.session.exit_code, stderr, self.session.where, self.cfg)

    def schema(self) -> rows.Schema:
        """The live schema (`--no-data`), to compare with the base's."""
        with self._stream("--no-data") as chunks:
            schema = rows.schema_of(without_sandbox_line(chunks))
        self._failed()
        return schema

    @property
    def extended(self) -> bool:
        """mysqldump writes extended INSERTs (one row a line, or so it should: see rows.TextScan)."""
        return "--skip-extended-insert" not in self.options

    def full(self, point: Point) -> ComponentResult:
        cfg = self.cfg
        counter, schema = DumpCounter(), rows.Schema.new()
        # MariaDB's own layout is kept as it streams: the scan counts its rows and hands the counter only its text.
        scan = rows.TextScan(schema, on_text=counter.feed) if self.extended else None
        streamed = 0  # bytes of the dump, when the scan reads it
        zstd = cfg.compression == "zstd"
        name = ARTIFACT_ZSTD if zstd else ARTIFACT

        def check(temp: Path) -> None:
            # Runs before the rename: nothing appears under the final name unless all of this holds.
            self._failed()
            if not counter.completed:
                raise RuntimeError(f"the dump from {self.session.where} does not end with '-- Dump completed' "
                                   f"(cut short); nothing was kept")
            plain = check_zstd(temp) if zstd else check_gzip(temp)
            if plain != counter.plain_bytes:
                raise CorruptArtifact(f"{name} reads back as {plain} bytes, {counter.plain_bytes} were written")

        packing = ZstdWriter if zstd else GzipWriter
        with atomic_file(point.path(name), check=check) as out_file:
            with self._stream() as chunks, \
                    packing(out_file, cfg.zstd_level if zstd else cfg.compression_level) as packer:
                # As it streams (only its text looked at), or packed again from a statement per row.
                blocks = without_sandbox_line(chunks) if scan else rows.packed(without_sandbox_line(chunks), schema)
                for block in blocks:
                    packer.write(block)  # compressed on another thread while this one counts rows
                    if scan:
                        streamed += len(block)
                        scan.feed(block)
                    else:
                        counter.feed(block)
                if scan:
                    scan.finish()
                    counter.add_rows(streamed, {rows.ident(table): n for table, n in scan.counts.items()})
            counter.finish()
        written = out_file.result  # type: ignore[attr-defined]
        self.log.info("dumped %d tables, %d rows, %d bytes (%d compressed with %s)", len(counter.counts),
                      sum(counter.counts.values()), counter.plain_bytes, written.bytes, cfg.compression)
        return ComponentResult(
            artifacts=[Artifact(name=name, bytes=written.bytes, sha256=written.sha256, kind="zst" if zstd else "gzip")],
            counts=dict(counter.counts),
            details={"binlog": counter.binlog, "uncompressed_bytes": counter.plain_bytes,
                     "schema_sha256": schema.sha256, "rows_per_line": scan.rows_per_line if scan else True},
        )

    def changes(self, point: Point, base: change_point.Base, schema: rows.Schema) -> ComponentResult:
        """The live rows that differ from the base's dump, as the point's CHANGES, with the base linked in."""
        live, written_back = DumpCounter(), DumpCounter()  # the live dump's text; the changes file
        writer = ChangeWriter(point.folder, on_live_text=live.feed)  # rows spooled in unlinked files there

        def check(temp: Path) -> None:
            self._failed()
            if not live.completed:
                raise RuntimeError(f"the dump from {self.session.where} does not end with '-- Dump completed' "
                                   f"(cut short); nothing was kept")
            if not written_back.changes_completed or check_gzip(temp) != written_back.plain_bytes:
                raise CorruptArtifact(f"{change_point.CHANGES} does not read back as written")

        with change_point.opened(base) as handle:
            with atomic_file(point.path(change_point.CHANGES), check=check) as out_file:
                with self._stream() as chunks, open_compressed(handle) as base_stream, \
                        GzipWriter(out_file, self.cfg.compression_level) as packer:
                    base_items = rows.items(rows.lines(iter(partial(base_stream.read, CHUNK), b"")), strict=True)
                    live_items = rows.items(rows.lines(without_sandbox_line(chunks)), strict=self.extended)
                    for block in writer.run(base_items, live_items, schema):
                        packer.write(block)
                        written_back.feed(block)
                written_back.finish()
                live.finish()
            written = out_file.result  # type: ignore[attr-defined]
            try:
                base_artifact = change_point.link_into(handle, base, point)
            except BaseException:
                point.path(change_point.CHANGES).unlink(missing_ok=True)
                raise
        counts = {rows.ident(table): n for table, n in writer.counts.items()}
        deleted = {rows.ident(table): n for table, n in writer.deleted.items()}
        inserted = {rows.ident(table): n for table, n in writer.inserted.items()}
        self.log.info("wrote the changes of %s: %d rows deleted, %d inserted, %d tables whole (%d bytes "
                      "compressed); %d rows in %d tables", base.point.ref, sum(n for n in deleted.values() if n > 0),
                      sum(inserted.values()), sum(1 for n in deleted.values() if n < 0), written.bytes,
                      sum(counts.values()), len(counts))
        return ComponentResult(
            artifacts=[base_artifact, Artifact(name=change_point.CHANGES, bytes=written.bytes, sha256=written.sha256,
                                               kind="gzip")],
            counts=counts,
            details={"binlog": live.binlog, "uncompressed_bytes": written_back.plain_bytes,
                     "schema_sha256": schema.sha256,
                     "change_of": {"point": base.point.ref, "sha256": base.artifact.sha256},
                     "changed_rows": {"deleted": deleted, "inserted": inserted}},
        )


def dump_files(record: ComponentRecord) -> list[str]:
    """The point's dump files in the order a restore reads them: a change point's base, then its changes."""
    if change_point.is_change_point(record):
        return [change_point.BASE, change_point.CHANGES]
    name = dump_artifact(record)
    return [name] if name else []


def verify(settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
    """Artifacts against the manifest, then the dump itself: complete, and the same rows per table (for a change
    point: the base's rows, less those its changes delete, plus those they insert)."""
    problems = verify_artifacts(point, record)
    names = dump_files(record)
    if not names:
        return [*problems, f"the record names no {ARTIFACT} (or {ARTIFACT_ZSTD})"]
    if not all((point.folder / name).is_file() for name in names):
        return problems
    counters = []
    for name in names:
        try:
            counters.append(scan_dump(point.folder / name))
        except CorruptArtifact as exc:
            return problems if str(exc) in problems else [*problems, str(exc)]
    if not counters[0].completed:
        problems.append(f"{names[0]} does not end with '-- Dump completed': the dump is cut short")
    counts, what = counters[0].counts, names[0]
    if len(counters) == 2:
        changes = counters[1]
        if not changes.changes_completed:
            problems.append(f"{names[1]} does not end with '{CHANGES_COMPLETED.decode()}': the changes are cut short")
        counts = change_point.expected_counts(counts, changes.deleted, changes.counts)
        what = f"{names[0]} with {names[1]}"
        base_sha = next(a.sha256 for a in record.artifacts if a.name == names[0])
        if (record.details.get("change_of") or {}).get("sha256") != base_sha:
            problems.append(f"{names[0]} is not the dump the record says the changes are of (details.change_of)")
    for table in sorted(set(counts) | set(record.counts)):
        found, expected = counts.get(table), record.counts.get(table)
        if found != expected:
            problems.append(f"{what}: table `{table}` has {found if found is not None else 'no'} rows in the "
                            f"dump, the manifest says {expected if expected is not None else 'none'}")
    return problems
