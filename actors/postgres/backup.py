"""PostgreSQL: pg_dump's custom format of RAGFlow's database, and what a point's archive holds.

Rows are counted per table inside one exported snapshot (REPEATABLE READ, `pg_export_snapshot()`) and
pg_dump dumps that very snapshot (`--snapshot`), so the manifest's counts are exactly the archive's. Before
the archive gets its final name it is read back with pg_restore (its data as COPY text; the container's own
pg_restore in docker mode, else the local one after a `--list`) and recounted: nothing is kept unless every
table's rows are there.
"""
from __future__ import annotations

import logging
import re
import subprocess
from contextlib import closing
from pathlib import Path

import psycopg

from actors.postgres.session import (
    DockerTools,
    connect,
    connect_failure,
    deadline,
    dump_tools,
    failure,
    local_tools,
)
from core import clients
from core.atomic import atomic_file
from core.checks import CorruptArtifact, verify_artifacts
from core.child_output import CHUNK, STDERR_KEEP, clean_stderr
from core.component import ComponentResult, PermanentError
from core.config import PostgresSettings, Settings
from core.manifest import Artifact, ComponentRecord
from core.points import Point
from core.tool_session import ToolSession

NAME = "postgres"
ARTIFACT = "postgres_dump.pgdump"  # pg_dump --format=custom
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
_IDENT = rb'(?:"(?:[^"]|"")+"|[^ ."(]+)'
_COPY = re.compile(rb"^COPY (" + _IDENT + rb")\.(" + _IDENT + rb") .*FROM stdin;$")


def table_key(schema: str, table: str) -> str:
    """A table's name in the manifest: bare in the public schema (as RAGFlow's are), else schema.table."""
    return table if schema == "public" else f"{schema}.{table}"


def major(version_text: str) -> int | None:
    """The major version in 'pg_dump (PostgreSQL) 15.18 (Debian ...)' or '15.18'."""
    found = re.search(r"\b(\d+)(?:\.\d+|beta|rc|devel)", version_text)
    return int(found.group(1)) if found else None


def _unquote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


class CopyCounter:
    """Rows per table in pg_restore's plain output fed in arbitrary pieces: each `COPY s.t (...) FROM stdin;`
    is followed by one line per row (newlines inside values are escaped) and a line `\\.`."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._pending = b""
        self._table: str | None = None

    def feed(self, data: bytes) -> None:
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending += data
            return
        block, self._pending = self._pending + data[:cut + 1], data[cut + 1:]
        pos, end = 0, len(block)
        while pos < end:
            if self._table is not None:
                stop = block.find(b"\\.\n", pos)
                while stop > pos and block[stop - 1:stop] != b"\n":  # only a whole line `\.` ends the data
                    stop = block.find(b"\\.\n", stop + 1)
                if stop < 0:
                    self.counts[self._table] += block.count(b"\n", pos, end)
                    return
                self.counts[self._table] += block.count(b"\n", pos, stop)
                self._table, pos = None, stop + 3
                continue
            line_end = block.find(b"\n", pos)
            line = block[pos:line_end]
            pos = line_end + 1
            if line.startswith(b"COPY ") and (match := _COPY.match(line)):
                self._table = table_key(_unquote(match.group(1)), _unquote(match.group(2)))
                self.counts.setdefault(self._table, 0)

    def finish(self) -> dict[str, int]:
        if self._pending:
            self.feed(b"\n")
        return self.counts


def archive_rows(path: Path, cfg: PostgresSettings, tools: ToolSession | None = None) -> dict[str, int]:
    """Rows per table in a custom-format archive, counted from its data as pg_restore prints it (nothing is
    executed: `-f -` only writes text): the container's own pg_restore, fed the archive on stdin, when `tools`
    runs in docker mode (so no local client of the server's version is needed), else the local one.
    CorruptArtifact when pg_restore cannot read it."""
    if isinstance(tools, DockerTools):
        return _container_archive_rows(path, tools)
    counter = CopyCounter()
    with local_tools(cfg) as local:
        code, _, err = local.run("pg_restore", ["--list", str(path)], connect=False)
        if code == 127:
            raise PermanentError("no pg_restore on PATH: install PostgreSQL's client (apt-get install "
                                 "postgresql-client) of the server's major version or newer")
        if code != 0:
            raise CorruptArtifact(f"{path.name}: pg_restore cannot read it ({clean_stderr(err, '')})")
        with open(local.folder / "stderr", "w+b") as errors:  # a file: a full stderr pipe would block pg_restore
            proc = subprocess.Popen(["pg_restore", "--data-only", "-f", "-", str(path)], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=errors, env=local.env)
            assert proc.stdout is not None
            with closing(proc.stdout):
                while block := proc.stdout.read(CHUNK):
                    counter.feed(block)
            code = proc.wait()
            errors.seek(0)
            err = errors.read(STDERR_KEEP)
        if code != 0:
            raise CorruptArtifact(f"{path.name}: pg_restore stopped reading its data ({clean_stderr(err, '')})")
    return counter.finish()


def _container_archive_rows(path: Path, tools: DockerTools) -> dict[str, int]:
    counter = CopyCounter()
    with closing(tools.fed("pg_restore", ["--data-only", "-f", "-"], path)) as blocks:
        for block in blocks:
            counter.feed(block)
    if tools.exit_code in (126, 127):
        raise PermanentError(f"no pg_restore runs in {tools.where}: use postgres.mode: tcp with a local "
                             f"postgresql-client of the server's major version")
    if tools.exit_code != 0:
        raise CorruptArtifact(f"{path.name}: pg_restore in {tools.where} cannot read it "
                              f"({clean_stderr(tools.stderr, '')})")
    return counter.finish()


def _snapshot_counts(conn: psycopg.Connection) -> dict[str, int]:
    tables = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
        "AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%' ORDER BY 1, 2").fetchall()
    counts = {}
    for schema, table in tables:
        query = psycopg.sql.SQL("SELECT count(*) FROM {}.{}").format(psycopg.sql.Identifier(schema),
                                                                      psycopg.sql.Identifier(table))
        counts[table_key(schema, table)] = conn.execute(query).fetchone()[0]
    return counts


def backup(settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
    cfg = settings.postgres
    password = clients.secret(cfg.password) or ""
    try:
        conn = connect(cfg)
    except psycopg.Error as exc:
        raise connect_failure(exc, cfg) from None
    with closing(conn), dump_tools(settings) as tools:
        dump_version = tools.version("pg_dump")
        if dump_version is None:
            raise PermanentError(f"no pg_dump runs in {tools.where}: install postgresql-client (tcp mode) or use "
                                 f"postgres.mode: docker" if tools.mode == "tcp" else
                                 f"no pg_dump runs in {tools.where}: use postgres.mode: tcp")
        where = f"{cfg.host}:{cfg.port}"
        with deadline(conn, cfg.stall_timeout_seconds, "its version", where):
            server_version = conn.execute("SHOW server_version").fetchone()[0]
        server_major, client_major = major(server_version), major(dump_version)
        if client_major is not None and server_major is not None and client_major < server_major:
            raise PermanentError(f"{dump_version} in {tools.where} is older than the server ({server_version}): "
                                 f"pg_dump must be of the server's major version or newer (apt-get install "
                                 f"postgresql-client-{server_major}, or postgres.mode: docker)")
        # One snapshot for the counts and the dump: the manifest then says exactly what the archive holds.
        conn.autocommit = False
        with deadline(conn, cfg.stall_timeout_seconds, "the row counts", where):
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            counts = _snapshot_counts(conn)
        args = ["--format=custom", f"--compress={cfg.compression_level}", f"--snapshot={snapshot}",
                *tools.connection_args(cfg.database)]
        log.info("dumping database %s from %s (PostgreSQL %s) with %s", cfg.database, tools.where, server_version,
                 dump_version)

        def check(temp: Path) -> None:
            # Runs before the rename: nothing appears under the final name unless all of this holds.
            stderr = clean_stderr(tools.stderr, password)
            if tools.exit_code != 0:
                raise failure("pg_dump", tools.exit_code, stderr, tools.where, cfg)
            if stderr:
                log.warning("pg_dump stderr: %s", stderr)
            found = archive_rows(temp, cfg, tools)
            if found != counts:
                raise CorruptArtifact(f"{ARTIFACT} reads back with rows {_differences(found, counts)}; nothing "
                                      f"was kept")

        with atomic_file(point.path(ARTIFACT), check=check) as out_file:
            with closing(tools.stream("pg_dump", args)) as chunks:
                for chunk in chunks:
                    out_file.write(chunk)
        with deadline(conn, cfg.stall_timeout_seconds, "the end of the snapshot", where):
            conn.rollback()
        written = out_file.result  # type: ignore[attr-defined]
    log.info("dumped %d tables, %d rows, %d bytes", len(counts), sum(counts.values()), written.bytes)
    return ComponentResult(
        artifacts=[Artifact(name=ARTIFACT, bytes=written.bytes, sha256=written.sha256, kind="file")],
        counts=counts,
        details={"mode": tools.mode, "database": cfg.database, "format": "custom", "server_version": server_version,
                 "pg_dump_version": dump_version},
    )


def _differences(found: dict[str, int], expected: dict[str, int]) -> str:
    return "; ".join(f"{t}: {found.get(t, 'none')} found, {expected.get(t, 'none')} expected"
                     for t in sorted(set(found) | set(expected)) if found.get(t) != expected.get(t))


def verify(settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
    """Artifacts against the manifest, then the archive itself: pg_restore reads it, and the same rows per table."""
    problems = verify_artifacts(point, record)
    path = point.folder / ARTIFACT
    if not any(a.name == ARTIFACT for a in record.artifacts):
        return [*problems, f"the record names no {ARTIFACT}"]
    if problems or not path.is_file():
        return problems
    try:
        if settings.postgres.mode == "docker":
            try:
                with dump_tools(settings) as tools:
                    found = archive_rows(path, settings.postgres, tools)
            except PermanentError:  # no container here (RAGFlow stopped, an offsite copy): the local client
                found = archive_rows(path, settings.postgres)
        else:
            found = archive_rows(path, settings.postgres)
    except CorruptArtifact as exc:
        return [str(exc)]
    if found != record.counts:
        problems.append(f"{ARTIFACT}: rows differ from the manifest ({_differences(found, record.counts)})")
    return problems
