"""MySQL / MariaDB restore from a point's mysql_dump.sql.gz (or a change point's base and changes): staged in a scratch database, checked, then swapped in.

`restore` loads the dump into `<target>__restore_<hex6>` (the dump's `CREATE DATABASE` / `USE` / `ALTER DATABASE`
lines are rewritten to that name as the dump streams, so the source database is never touched), compares every
table's rows with the manifest, and only then swaps: one `RENAME TABLE` statement moves all of the target's tables
to `<target>__old_<hex6>` and all staged tables into the target (atomic in MySQL/MariaDB). The old database is
dropped once the swap is done, or kept for the caller's rollback (`keep_previous=True`); it holds the previous
tables with their triggers, routines and events. If the swap fails midway the target is put back as it was.

`restore_kb` brings back one knowledge base's rows (knowledgebase, document, file2document, file, task) from a
staged copy, in one transaction in the target, and leaves every other knowledge base as it is now.

Where the dump is loaded: `tcp` mode feeds it to the local mariadb/mysql client (password in a 0600 option file,
as the backup does); `docker` mode feeds it to the client inside the mysql container through the Docker API
socket (`docker exec -i`, password in the exec's environment), so no local client is needed. Either way the
client logs in as a temporary account that may touch the scratch database only (actors/mysql/sandbox.py): the
dump is untrusted input. The statements that inspect, count and swap run over PyMySQL to mysql.host:mysql.port
as the configured account (in docker mode that is the published port, RAGFlow's 5455 by default).

Limits, all outside what RAGFlow uses: sequences are refused (RENAME TABLE cannot move them across databases);
views cannot be moved either, so they are re-created in the target from SHOW CREATE VIEW, like stored routines
and events (actors/mysql/objects.py); MySQL refuses to move a table with triggers to another database, so
triggers are dropped before the swap and re-created right after it (for that moment the target's tables have
none); if the event scheduler is on, the dump's events may fire in the scratch database while it exists, and the
previous ones in a kept old database. Stop RAGFlow's server and task executors before a restore into the live
database: the swap waits at most LOCK_WAIT_SECONDS for their open transactions, and a table they create meanwhile
would stay behind in the target.
"""
from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from actors.mysql import backup as mysql
from actors.mysql.load import (
    checked_name,
    database_charset,
    database_exists,
    load_dump,
    quote_name,
    scratch_name,
)
from actors.mysql.objects import (
    StoredObject,
    base_tables,
    create,
    drop,
    mismatches,
    redefined,
    refuse_file_access,
    routines_and_events,
    row_counts,
    stored_code,
    triggers,
    views,
)
from actors.mysql.replay import replay
from actors.mysql.sandbox import (
    Definers,
    account_exists,
    client_host,
    current_account,
    load_account,
)
from core import clients, scratch_restore
from core.component import PermanentError, before_first_write
from core.config import Settings
from core.manifest import ComponentRecord
from core.pitr import ReplayPlan
from core.points import Point
from core.scratch_restore import BATCH, KB_TABLES, DatabaseRestoreResult, KBRestoreResult

LOG = logging.getLogger("ragflow_backup.mysql_restore")
NAME = "mysql"
LOCK_WAIT_SECONDS = 60


@dataclass
class MySQLRestoreResult(DatabaseRestoreResult):
    """A whole MySQL database restored (core/scratch_restore.py), with what MySQL adds."""

    compare = staticmethod(mismatches)

    stored_code: list[str] = field(default_factory=list)  # "TRIGGER x", "PROCEDURE y", ... re-created
    replayed_to: datetime | None = None  # the archived binlog was replayed up to this second


# ---------------------------------------------------------------- staging


@contextlib.contextmanager
def _staged(settings: Settings, conn: Any, point: Point, record: ComponentRecord, target: str,
            log: logging.Logger, token: str, plan: ReplayPlan | None = None) -> Iterator[tuple[str, Definers, dict[str, int]]]:
    """The dump loaded into a scratch database whose tables match the manifest (then, with `plan`, the archived
    binlog replayed into it), the definers its code named, and its rows per table; dropped afterwards, and then
    the temporary account that loaded it (MySQL 8 refuses to drop an account that objects still name as their
    definer)."""
    # .gz, or .zst (mysql.compression: zstd), or a change point's base then its changes
    names = (mysql.dump_files(record) or [mysql.ARTIFACT]) if record is not None else [mysql.ARTIFACT]
    paths = [scratch_restore.checked_dump(point, record, NAME, lambda _, name=name: name) for name in names]
    scratch = scratch_name(target, "restore", token)
    definers = Definers(current_account(conn), account_exists(conn))
    # The docker-mode client connects through the server's socket inside the container: 'localhost'.
    host = "localhost" if settings.mysql.mode == "docker" else client_host(conn)
    with load_account(conn, scratch, host) as account:
        load_dump(settings, conn, paths, scratch, account, definers, record.counts, log)
        try:
            with conn.cursor() as cur:
                found = row_counts(cur, scratch, base_tables(cur, scratch))
            problems = mismatches(found, record.counts)
            if problems:
                raise PermanentError(f"the dump of {point.ref} does not hold the rows its manifest records, so "
                                     f"nothing was restored: {'; '.join(problems)}. Run `ragflow-backup verify` and "
                                     f"choose another point")
            refuse_file_access(stored_code(conn, scratch))
            log.info("scratch database %s holds %d tables, %d rows, as the manifest says", scratch, len(found),
                     sum(found.values()))
            if plan is not None:
                if plan.database != record.details.get("database", plan.database):
                    raise PermanentError(f"the replay plan is for database {plan.database} but {point.ref} dumped "
                                         f"{record.details.get('database')}; nothing was restored")
                replay(settings, conn, plan, scratch, account, log)
                refuse_file_access(stored_code(conn, scratch))
                with conn.cursor() as cur:
                    found = row_counts(cur, scratch, base_tables(cur, scratch))
                log.info("after the replay to %s, %s holds %d tables, %d rows", plan.stop_at.isoformat(), scratch,
                         len(found), sum(found.values()))
            yield scratch, definers, found
        finally:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {quote_name(scratch)}")


# ---------------------------------------------------------------- restore: the whole database


def _swap(conn: Any, scratch: str, target: str, old: str, definers: Definers,
          log: logging.Logger) -> tuple[bool, list[str]]:
    """Move the target's tables to `old` and the scratch tables into the target, with their triggers, routines,
    events and views (re-created: RENAME TABLE cannot move them across databases; the new ones with the
    definers the dump named, as `definers` accepted them). On failure the target is put back as it was.
    Returns (target was created, code re-created)."""
    with conn.cursor() as cur:
        created = not database_exists(cur, target)
        new_tables, live_tables = base_tables(cur, scratch), ([] if created else base_tables(cur, target))
    new_code = redefined(stored_code(conn, scratch), definers, log)
    live_code = [] if created else stored_code(conn, target)
    new_triggers = [c for c in new_code if c.kind == "TRIGGER"]
    live_triggers = [c for c in live_code if c.kind == "TRIGGER"]
    with conn.cursor() as cur:
        if created:
            cur.execute(f"CREATE DATABASE {quote_name(target)} {database_charset(cur, scratch)}")
        cur.execute(f"CREATE DATABASE {quote_name(old)} {database_charset(cur, target)}")
    renamed = False
    try:
        # MySQL refuses to move a table with triggers to another database: they come off first.
        drop(conn, scratch, new_triggers)
        drop(conn, target, live_triggers)
        pairs = [f"{quote_name(target)}.{quote_name(t)} TO {quote_name(old)}.{quote_name(t)}" for t in live_tables]
        pairs += [f"{quote_name(scratch)}.{quote_name(t)} TO {quote_name(target)}.{quote_name(t)}" for t in new_tables]
        if pairs:
            with conn.cursor() as cur:
                cur.execute("RENAME TABLE " + ", ".join(pairs))  # one statement: all tables or none
        renamed = True
        log.info("swapped %d tables into %s (%d previous tables moved to %s)", len(new_tables), target,
                 len(live_tables), old)
        create(conn, old, live_code)
        drop(conn, target, [c for c in live_code if c.kind != "TRIGGER"])
        create(conn, target, [c for c in new_code if c.kind != "TRIGGER"] + [c for c in new_code if c.kind == "TRIGGER"])
    except Exception as exc:
        try:
            _unswap(conn, scratch, target, old, renamed, new_tables, live_tables, live_code)
        except Exception as undo:  # noqa: BLE001 - both are reported; the old database is kept
            raise PermanentError(
                f"restoring {target} failed ({type(exc).__name__}: {exc}) and putting its previous state back "
                f"failed too ({type(undo).__name__}: {undo}). The previous tables are in database {old}; move them "
                f"back with RENAME TABLE and re-create their triggers, routines and events") from exc
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {quote_name(old)}")
            if created:
                cur.execute(f"DROP DATABASE IF EXISTS {quote_name(target)}")
        if re.search(r"\b1205\b", str(exc)):
            raise PermanentError(f"tables of {target} are held open by another client (lock wait timeout after "
                                 f"{LOCK_WAIT_SECONDS}s): stop RAGFlow's server and task executors, then restore "
                                 f"again; {target} was left as it was") from exc
        raise
    return created, [c.label for c in new_code]


def _unswap(conn: Any, scratch: str, target: str, old: str, renamed: bool, new_tables: list[str],
            live_tables: list[str], live_code: list[StoredObject]) -> None:
    """Put the target back as it was before a swap that failed: tables, then routines and events, then triggers."""
    if renamed:
        with conn.cursor() as cur:
            drop(conn, target, triggers(cur, target))
            drop(conn, old, triggers(cur, old))
            pairs = [f"{quote_name(target)}.{quote_name(t)} TO {quote_name(scratch)}.{quote_name(t)}" for t in new_tables]
            pairs += [f"{quote_name(old)}.{quote_name(t)} TO {quote_name(target)}.{quote_name(t)}" for t in live_tables]
            if pairs:
                cur.execute("RENAME TABLE " + ", ".join(pairs))
        drop(conn, target, views(conn, target) + routines_and_events(conn, target))
        create(conn, target, [c for c in live_code if c.kind != "TRIGGER"])
    with conn.cursor() as cur:
        present = {c.name for c in triggers(cur, target)}
    create(conn, target, [c for c in live_code if c.kind == "TRIGGER" and c.name not in present])


def restore(settings: Settings, point: Point, record: ComponentRecord, target_database: str | None = None,
            log: logging.Logger | None = None, keep_previous: bool = False,
            replay_plan: ReplayPlan | None = None) -> MySQLRestoreResult:
    """Make `target_database` (default: mysql.database) hold exactly the tables and rows of the point's dump,
    or with `replay_plan` of the dump with the archived binlog replayed up to `replay_plan.stop_at`.

    Nothing in the target changes unless the staged copy matches the manifest (and the replay succeeded). With
    keep_previous the pre-restore tables stay in `result.previous_database` (for a rollback); otherwise they are
    dropped.
    """
    log = log or LOG
    started = time.monotonic()
    target = checked_name(target_database or settings.mysql.database, "target database")
    token = secrets.token_hex(3)
    old = scratch_name(target, "old", token)
    with contextlib.closing(clients.mysql_connection(settings.mysql, database="")) as conn:
        with conn.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = %s", (LOCK_WAIT_SECONDS,))
        with contextlib.ExitStack() as staging:
            with before_first_write():  # the dump's checks, its row counts, the replay: all in the scratch database
                scratch, definers, staged = staging.enter_context(_staged(settings, conn, point, record, target, log,
                                                                          token, replay_plan))
            created, code = _swap(conn, scratch, target, old, definers, log)
        with conn.cursor() as cur:
            found = row_counts(cur, target, base_tables(cur, target))
        result = MySQLRestoreResult(point=point.ref, target=target, expected=dict(staged), found=found,
                                    seconds=0.0, stored_code=code,
                                    replayed_to=replay_plan.stop_at if replay_plan else None)
        if result.mismatches:
            result.previous_database = old  # kept whatever was asked: the caller will want to roll back
            result.seconds = time.monotonic() - started
            raise scratch_restore.recount_differs(result, point, f"The previous tables are kept in {old}")
        if keep_previous:
            result.previous_database = old
        else:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {quote_name(old)}")
    result.seconds = time.monotonic() - started
    scratch_restore.log_restored(log, result, created)
    return result


# ---------------------------------------------------------------- restore_kb: one knowledge base


def _ids(cur: Any, sql: str, args: tuple) -> set[str]:
    cur.execute(sql, args)
    return {row[0] for row in cur.fetchall()}


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    items = sorted(items)
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]


def _kb_rows(cur: Any, db: str, kb_id: str) -> dict[str, set[str]]:
    """Ids of one knowledge base's rows per table, by RAGFlow's links: documents by kb_id, tasks and
    file2document by document, files through file2document, plus the KB's folder under .knowledgebase
    (the parent of its files; RAGFlow deletes it with the KB)."""
    d = quote_name(db)
    docs = f"SELECT id FROM {d}.`document` WHERE kb_id = %s"
    linked = f"SELECT file_id FROM {d}.`file2document` WHERE document_id IN ({docs})"
    return {
        "knowledgebase": _ids(cur, f"SELECT id FROM {d}.`knowledgebase` WHERE id = %s", (kb_id,)),
        "document": _ids(cur, docs, (kb_id,)),
        "file2document": _ids(cur, f"SELECT id FROM {d}.`file2document` WHERE document_id IN ({docs})", (kb_id,)),
        "file": _ids(cur, f"SELECT id FROM {d}.`file` WHERE id IN ({linked}) OR (type = 'folder' AND "
                          f"source_type = 'knowledgebase' AND id IN (SELECT parent_id FROM {d}.`file` "
                          f"WHERE id IN ({linked})))", (kb_id, kb_id)),
        "task": _ids(cur, f"SELECT id FROM {d}.`task` WHERE doc_id IN ({docs})", (kb_id,)),
    }


def _columns(cur: Any, db: str, table: str) -> list[str]:
    cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                "AND EXTRA NOT LIKE '%%GENERATED%%' ORDER BY ORDINAL_POSITION", (db, table))
    return [row[0] for row in cur.fetchall()]


def restore_kb(settings: Settings, point: Point, record: ComponentRecord, kb_id: str,
               target_database: str | None = None, log: logging.Logger | None = None,
               replay_plan: ReplayPlan | None = None) -> KBRestoreResult:
    """Put one knowledge base's rows back as the point has them, in one transaction; other KBs keep theirs.

    The KB's current rows are deleted (by the same links, and by the backup's ids) and the backup's inserted.
    A file-manager file linked into the KB (source_type other than 'knowledgebase') or linked from another KB's
    document is the user's or shared: it is left as it is now, and only inserted if it is gone.
    """
    log = log or LOG
    started = time.monotonic()
    target = checked_name(target_database or settings.mysql.database, "target database")
    kb_id = scratch_restore.checked_kb_id(kb_id)
    token = secrets.token_hex(3)
    # Staged in a scratch database, then one transaction rolled back on any failure: a refusal changed nothing.
    with before_first_write():
        with contextlib.closing(clients.mysql_connection(settings.mysql, database="")) as conn:
            with conn.cursor() as cur:
                cur.execute("SET SESSION lock_wait_timeout = %s", (LOCK_WAIT_SECONDS,))
                if not database_exists(cur, target):
                    raise PermanentError(f"database {target} does not exist: restore the whole database instead")
            with contextlib.ExitStack() as staging, conn.cursor() as cur:
                scratch, _, _ = staging.enter_context(
                    _staged(settings, conn, point, record, target, log, token, replay_plan))
                columns = scratch_restore.kb_columns(partial(_columns, cur, scratch), partial(_columns, cur, target), target, point)
                wanted = _kb_rows(cur, scratch, kb_id)
                if not wanted["knowledgebase"]:
                    raise scratch_restore.kb_not_in_backup(kb_id, point)
                conn.begin()
                try:
                    removed = _replace_kb(cur, scratch, target, kb_id, wanted, columns)
                    now = _kb_rows(cur, target, kb_id)
                    if now != wanted:
                        raise scratch_restore.kb_differs(kb_id, target, now, wanted)
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
    return scratch_restore.kb_restored(point, target, kb_id, wanted, now, removed, started, log)


def _replace_kb(cur: Any, scratch: str, target: str, kb_id: str, wanted: dict[str, set[str]],
                columns: dict[str, list[str]]) -> dict[str, int]:
    t, s = quote_name(target), quote_name(scratch)
    current = _kb_rows(cur, target, kb_id)
    # Files that are not the KB's own (file-manager uploads linked into it, or linked from another KB) stay.
    keep: set[str] = set()
    for batch in _chunks(wanted["file"] | current["file"]):
        marks = ", ".join(["%s"] * len(batch))
        keep |= _ids(cur, f"SELECT id FROM {t}.`file` WHERE id IN ({marks}) "
                          f"AND COALESCE(source_type, '') <> 'knowledgebase'", tuple(batch))
        keep |= _ids(cur, f"SELECT f.file_id FROM {t}.`file2document` f JOIN {t}.`document` d ON d.id = "
                          f"f.document_id WHERE f.file_id IN ({marks}) AND d.kb_id <> %s", (*batch, kb_id))
    removed = {}
    for table in KB_TABLES:
        doomed = (wanted[table] | current[table]) - (keep if table == "file" else set())
        removed[table] = 0
        for batch in _chunks(doomed):
            removed[table] += cur.execute(f"DELETE FROM {t}.{quote_name(table)} WHERE id IN ({', '.join(['%s'] * len(batch))})",
                                          tuple(batch))
    for table in KB_TABLES:
        names = ", ".join(quote_name(c) for c in columns[table])
        for batch in _chunks(wanted[table]):
            marks = ", ".join(["%s"] * len(batch))
            # A kept file is already there; everything else was just deleted.
            cur.execute(f"INSERT INTO {t}.{quote_name(table)} ({names}) SELECT {names} FROM {s}.{quote_name(table)} src "
                        f"WHERE src.id IN ({marks}) AND NOT EXISTS (SELECT 1 FROM {t}.{quote_name(table)} cur "
                        f"WHERE cur.id = src.id)", tuple(batch))
    return removed
