"""PostgreSQL restore from a point's archive: staged in a scratch database (actors/postgres/load.py), checked,
then swapped in; or one knowledge base's rows put back.

The swap renames databases: `ALTER DATABASE target RENAME TO old; ALTER DATABASE scratch RENAME TO target` in
one transaction, after the target stops taking connections (ALLOW_CONNECTIONS false) and RAGFlow's are
terminated. A schema rename inside the target would need no disconnection, but pg_restore cannot load an
archive of `public` into another schema, and RAGFlow's pool reconnects by itself; so the downtime is the
moment between terminating the connections and the commit (milliseconds), and either both renames happen or
neither. The previous database is dropped afterwards, or kept for the caller (`keep_previous`).

`restore_kb` brings back one knowledge base's rows (the tables MySQL's per-KB restore touches) from the staged
copy in one transaction in the target; PostgreSQL cannot read across databases, so the rows pass through here.
"""
from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from actors.postgres.load import (
    MAINTENANCE_DB,
    checked_name,
    database_exists,
    mismatches,
    row_counts,
    scratch_name,
    staged,
)
from actors.postgres.session import connect
from actors.postgres.watchdog import Watchdog
from core import scratch_restore
from core.component import NothingChanged, PermanentError, before_first_write
from core.config import PostgresSettings, Settings
from core.manifest import ComponentRecord
from core.points import Point
from core.scratch_restore import BATCH, KB_TABLES, DatabaseRestoreResult, KBRestoreResult

LOG = logging.getLogger("ragflow_backup.postgres_restore")
DISCONNECT_WAIT_SECONDS = 60


@dataclass
class PostgresRestoreResult(DatabaseRestoreResult):
    """A whole PostgreSQL database restored (core/scratch_restore.py); `previous_database` is the old one when
    kept."""

    compare = staticmethod(mismatches)


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def _disconnect(admin: psycopg.Connection, database: str) -> None:
    admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(_ident(database)))
    deadline = time.monotonic() + DISCONNECT_WAIT_SECONDS
    while True:
        left = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s "
                             "AND pid <> pg_backend_pid()", (database,)).fetchone()[0]
        if not left:
            return
        if time.monotonic() > deadline:
            raise PermanentError(f"{left} connection(s) to {database} would not end within {DISCONNECT_WAIT_SECONDS}s "
                                 f"(another superuser's?): stop RAGFlow's server and task executors, then restore "
                                 f"again")
        time.sleep(0.2)


def _reopen(cfg: PostgresSettings, admin: psycopg.Connection, target: str, log: logging.Logger) -> None:
    """Let the target take connections again after a failed swap, over a fresh connection when `admin` was cut
    (a restarted server); a hung one leaves that to the next restore (load.sweep_leftovers)."""
    statement = sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(_ident(target))
    for conn in (admin, None):
        try:
            if conn is None:
                with closing(connect(cfg, MAINTENANCE_DB)) as fresh:
                    fresh.execute(statement)
            elif not conn.closed and not conn.broken:
                conn.execute(statement)
            else:
                continue
            return
        except psycopg.errors.InvalidCatalogName:  # the target was never there
            return
        except psycopg.Error:
            continue
    log.warning("%s may refuse connections until the next restore into it (or: ALTER DATABASE %s WITH "
                "ALLOW_CONNECTIONS true)", target, target)


def swap(cfg: PostgresSettings, admin: psycopg.Connection, scratch: str, target: str, old: str,
         log: logging.Logger) -> bool:
    """Put `scratch` in the place of `target` (moved to `old`); True when the target did not exist. On failure
    the target is left as it was, taking connections again."""
    if not database_exists(admin, target):
        admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_ident(scratch), _ident(target)))
        return True
    try:
        _disconnect(admin, target)
        with admin.transaction():  # both renames or neither
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_ident(target), _ident(old)))
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_ident(scratch), _ident(target)))
    except BaseException:
        _reopen(cfg, admin, target, log)
        raise
    admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(_ident(old)))
    log.info("swapped the restored database into %s (the previous one is %s)", target, old)
    return False


@contextmanager
def guarded(cfg: PostgresSettings, target: str, what: str) -> Iterator[Watchdog]:
    """The block's connections and pg_restore under a watchdog (actors/postgres/watchdog.py); whatever a hang
    broke comes out as one message saying what became of the live database."""
    with Watchdog(cfg) as watch:
        try:
            yield watch
        except Exception:
            if not watch.fired.is_set():
                raise
            raise TimeoutError(f"{watch.hang_message(what)}. The swap into {target} is one transaction, so it "
                               f"holds either its data from before or the restored, checked copy; the scratch "
                               f"database and the loading role are dropped by the next restore into {target}. Find "
                               f"out why the server hung (stopped process, frozen VM, full disk), then restore "
                               f"again") from None


def restore(settings: Settings, point: Point, record: ComponentRecord, target_database: str | None = None,
            log: logging.Logger | None = None, keep_previous: bool = False) -> PostgresRestoreResult:
    """Make `target_database` (default: postgres.database) hold exactly the tables and rows of the point's archive.
    Nothing in the target changes unless the staged copy matches the manifest."""
    log = log or LOG
    started = time.monotonic()
    cfg = settings.postgres
    target = checked_name(target_database or cfg.database, "target database")
    token = secrets.token_hex(3)
    old = scratch_name(target, "old", token)
    with guarded(cfg, target, "a restore") as watch:
        with ExitStack() as stack:
            with before_first_write():  # the archive's checks and its row counts: all in the scratch database
                scratch = stack.enter_context(staged(settings, point, record, target, token, log, watch))
            admin = stack.enter_context(closing(watch.connect(MAINTENANCE_DB)))
            created = swap(cfg, admin, scratch, target, old, log)
        with closing(watch.connect(target)) as conn:
            found = row_counts(conn)
    result = PostgresRestoreResult(point=point.ref, target=target, expected=dict(record.counts), found=found,
                                   seconds=0.0, previous_database=None if created else old)
    result.seconds = time.monotonic() - started
    if result.mismatches:
        raise scratch_restore.recount_differs(result, point, f"The previous database is kept as {old}")
    if not keep_previous and not created:
        with closing(connect(cfg, MAINTENANCE_DB)) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(_ident(old)))
        result.previous_database = None
    scratch_restore.log_restored(log, result, created)
    return result


# ---------------------------------------------------------------- one knowledge base


def _ids(conn: psycopg.Connection, query: str, args: tuple) -> set[str]:
    return {row[0] for row in conn.execute(query, args).fetchall()}


def kb_rows(conn: psycopg.Connection, kb_id: str) -> dict[str, set[str]]:
    """Ids of one knowledge base's rows per table, by RAGFlow's links (as actors/mysql/restore.py finds them)."""
    docs = 'SELECT id FROM "document" WHERE kb_id = %s'
    linked = f'SELECT file_id FROM "file2document" WHERE document_id IN ({docs})'
    return {
        "knowledgebase": _ids(conn, 'SELECT id FROM "knowledgebase" WHERE id = %s', (kb_id,)),
        "document": _ids(conn, docs, (kb_id,)),
        "file2document": _ids(conn, f'SELECT id FROM "file2document" WHERE document_id IN ({docs})', (kb_id,)),
        "file": _ids(conn, f"SELECT id FROM \"file\" WHERE id IN ({linked}) OR (type = 'folder' AND "
                           f"source_type = 'knowledgebase' AND id IN (SELECT parent_id FROM \"file\" "
                           f"WHERE id IN ({linked})))", (kb_id, kb_id)),
        "task": _ids(conn, f'SELECT id FROM "task" WHERE doc_id IN ({docs})', (kb_id,)),
    }


def _columns(conn: psycopg.Connection, table: str) -> list[str]:
    return [row[0] for row in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
        "AND is_generated = 'NEVER' ORDER BY ordinal_position", (table,)).fetchall()]


def _batches(items: set[str]) -> list[list[str]]:
    ordered = sorted(items)
    return [ordered[i:i + BATCH] for i in range(0, len(ordered), BATCH)]


def _fetch(conn: psycopg.Connection, table: str, columns: list[str], ids: set[str]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    query = sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(
        sql.SQL(", ").join(map(_ident, columns)), _ident(table))
    for batch in _batches(ids):
        rows += conn.execute(query, (batch,)).fetchall()
    return rows


def restore_kb(settings: Settings, point: Point, record: ComponentRecord, kb_id: str,
               target_database: str | None = None, log: logging.Logger | None = None) -> KBRestoreResult:
    """Put one knowledge base's rows back as the point has them, in one transaction; other KBs keep theirs.
    A file-manager file linked into the KB, or linked from another KB's document, is left as it is now."""
    log = log or LOG
    started = time.monotonic()
    cfg = settings.postgres
    target = checked_name(target_database or cfg.database, "target database")
    kb_id = scratch_restore.checked_kb_id(kb_id)
    with guarded(cfg, target, "a knowledge base's restore") as watch, \
            closing(watch.connect(MAINTENANCE_DB)) as admin:
        if not database_exists(admin, target):
            raise NothingChanged(f"database {target} does not exist: restore the whole database instead")
    # Staged in a scratch database, then one transaction rolled back on any failure: a refusal changed nothing.
    with before_first_write(), guarded(cfg, target, "a knowledge base's restore") as watch, \
            staged(settings, point, record, target, secrets.token_hex(3), log, watch) as scratch, \
            closing(watch.connect(scratch)) as source, closing(watch.connect(target)) as live:
        columns = scratch_restore.kb_columns(partial(_columns, source), partial(_columns, live), target, point)
        wanted = kb_rows(source, kb_id)
        if not wanted["knowledgebase"]:
            raise scratch_restore.kb_not_in_backup(kb_id, point)
        rows = {table: _fetch(source, table, columns[table], wanted[table]) for table in KB_TABLES}
        with live.transaction():
            removed = _replace_kb(live, kb_id, wanted, columns, rows)
            now = kb_rows(live, kb_id)
            if now != wanted:
                raise scratch_restore.kb_differs(kb_id, target, now, wanted)
    return scratch_restore.kb_restored(point, target, kb_id, wanted, now, removed, started, log)


def _replace_kb(live: psycopg.Connection, kb_id: str, wanted: dict[str, set[str]], columns: dict[str, list[str]],
                rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, int]:
    current = kb_rows(live, kb_id)
    keep: set[str] = set()  # files that are not the KB's own stay as they are now
    for batch in _batches(wanted["file"] | current["file"]):
        keep |= _ids(live, "SELECT id FROM \"file\" WHERE id = ANY(%s) AND COALESCE(source_type, '') <> "
                           "'knowledgebase'", (batch,))
        keep |= _ids(live, 'SELECT f.file_id FROM "file2document" f JOIN "document" d ON d.id = f.document_id '
                           'WHERE f.file_id = ANY(%s) AND d.kb_id <> %s', (batch, kb_id))
    removed = {}
    for table in KB_TABLES:
        doomed = (wanted[table] | current[table]) - (keep if table == "file" else set())
        removed[table] = 0
        for batch in _batches(doomed):
            removed[table] += live.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(_ident(table)),
                                           (batch,)).rowcount
    for table in KB_TABLES:
        insert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(  # a kept file is there
            _ident(table), sql.SQL(", ").join(map(_ident, columns[table])),
            sql.SQL(", ").join(sql.Placeholder() * len(columns[table])))
        with live.cursor() as cur:
            cur.executemany(insert, rows[table])
    return removed
