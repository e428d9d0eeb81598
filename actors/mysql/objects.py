"""The objects of a MySQL database as a restore sees them: base tables and their row counts, and what a swap
re-creates rather than renames (triggers, routines, events, views), as statements that re-create them in another
database with the definers the dump named (actors/mysql/sandbox.py judged them)."""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pymysql
import pymysql.cursors

from actors.mysql.sandbox import FILE_ACCESS, Definers, q
from core.component import PermanentError

TABLE_TYPES = ("BASE TABLE", "SYSTEM VERSIONED")


def objects(cur: Any, db: str) -> dict[str, str]:
    cur.execute("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (db,))
    return dict(cur.fetchall())


def base_tables(cur: Any, db: str) -> list[str]:
    """Base tables of `db`; PermanentError for sequences, which cannot be swapped (views are re-created)."""
    found = objects(cur, db)
    other = sorted(f"{name} ({kind.lower()})" for name, kind in found.items() if kind not in (*TABLE_TYPES, "VIEW"))
    if other:
        raise PermanentError(f"database {db} holds {', '.join(other)}: restore swaps base tables and views only "
                             f"(RAGFlow defines no sequences); drop them or restore by hand")
    return sorted(name for name, kind in found.items() if kind in TABLE_TYPES)


def row_counts(cur: Any, db: str, tables: Iterable[str]) -> dict[str, int]:
    counts = {}
    for table in tables:
        cur.execute(f"SELECT COUNT(*) FROM {q(db)}.{q(table)}")
        counts[table] = int(cur.fetchone()[0])
    return counts


def mismatches(found: dict[str, int], expected: dict[str, int]) -> list[str]:
    problems = []
    for table in sorted(set(found) | set(expected)):
        have, want = found.get(table), expected.get(table)
        if have != want:
            problems.append(f"`{table}` has {'no table' if have is None else f'{have} rows'}, the manifest says "
                            f"{'no table' if want is None else f'{want} rows'}")
    return problems


@dataclass
class StoredObject:
    """A trigger, routine, event or view, as a statement to re-create it in another database."""

    kind: str  # TRIGGER, PROCEDURE, FUNCTION, EVENT, VIEW
    name: str
    create: str
    sql_mode: str
    collation: str
    time_zone: str | None = None
    invoker: bool = False  # a routine to mark SQL SECURITY INVOKER once created

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


def definer_sql(value: str) -> str:
    user, at, host = value.rpartition("@")
    if not at:
        return "CURRENT_USER"
    return "'{}'@'{}'".format(*(part.replace("'", "''") for part in (user, host)))


def triggers(cur: Any, db: str) -> list[StoredObject]:
    # Rebuilt from information_schema rather than SHOW CREATE TRIGGER, whose text may name the old database.
    cur.execute("SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_STATEMENT, "
                "DEFINER, SQL_MODE, COLLATION_CONNECTION FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
                "ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER", (db,))
    return [StoredObject("TRIGGER", name, f"CREATE DEFINER={definer_sql(definer)} TRIGGER {q(name)} {timing} {event} ON "
                                   f"{q(table)} FOR EACH ROW {statement}", mode, collation)
            for name, table, timing, event, statement, definer, mode, collation in cur.fetchall()]


def routines_and_events(conn: Any, db: str) -> list[StoredObject]:
    with conn.cursor() as cur:
        cur.execute("SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
                    "AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION') ORDER BY ROUTINE_TYPE, ROUTINE_NAME", (db,))
        names = list(cur.fetchall())
        cur.execute("SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s "
                    "ORDER BY EVENT_NAME", (db,))
        names += list(cur.fetchall())
    code = []
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        for kind, name in names:
            cur.execute(f"SHOW CREATE {kind} {q(db)}.{q(name)}")
            row = cur.fetchone()
            statement = row.get(f"Create {kind.capitalize()}")
            if not statement:
                raise PermanentError(f"cannot read the definition of {kind} {db}.{name} (missing privilege?): "
                                     f"restore as a user who may, e.g. root")
            code.append(StoredObject(kind, name, statement, row["sql_mode"], row["collation_connection"],
                                     row.get("time_zone")))
    return code


def views(conn: Any, db: str) -> list[StoredObject]:
    """The views of `db`, as statements that re-create them in another database: SHOW CREATE VIEW, asked
    with `db` selected, names the view's tables without their database."""
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s ORDER BY 1", (db,))
        names = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT @@SESSION.sql_mode")
        mode = cur.fetchone()[0]
    if not names:
        return []
    conn.select_db(db)
    found = []
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        for name in names:
            cur.execute(f"SHOW CREATE VIEW {q(db)}.{q(name)}")
            row = cur.fetchone()
            found.append(StoredObject("VIEW", name, row["Create View"], mode, row["collation_connection"]))
    return found


def stored_code(conn: Any, db: str) -> list[StoredObject]:
    """Triggers, routines, events and views: what a swap re-creates rather than renames."""
    with conn.cursor() as cur:
        found = triggers(cur, db)
    return found + routines_and_events(conn, db) + views(conn, db)


DEFINED = re.compile(r"^CREATE (?P<algorithm>ALGORITHM=\w+ )?DEFINER=(?:`(?:[^`]|``)*`|'(?:[^']|'')*')@"
                      r"(?:`(?:[^`]|``)*`|'(?:[^']|'')*') (?:SQL SECURITY (?P<security>\w+) )?")


def redefined(items: list[StoredObject], definers: Definers, log: logging.Logger) -> list[StoredObject]:
    """The scratch database's code (made by the temporary account) with the definers the dump named and the
    restore accepted (actors/mysql/sandbox.py: Definers); views and routines of a definer missing here run
    as SQL SECURITY INVOKER."""
    result = []
    for item in items:
        account = definers.kept.get((item.kind, item.name))
        missing = account is None or (item.kind, item.name) in definers.missing
        definer = definer_sql("@".join(account or definers.restorer))
        match = DEFINED.match(item.create)
        if match is None:
            raise PermanentError(f"cannot read the definition of {item.label} in the staged copy: {item.create[:200]}")
        security = match["security"]  # views only: a routine's is among its characteristics
        if missing:
            named = definers.missing.get((item.kind, item.name), "none")
            invoker = item.kind in ("VIEW", "PROCEDURE", "FUNCTION")
            log.warning("%s named definer %s, which does not exist here: re-created with definer %s%s", item.label,
                        named, "@".join(definers.restorer), " and SQL SECURITY INVOKER" if invoker else
                        " (it always runs with its definer's rights)")
            if item.kind == "VIEW":
                security = "INVOKER"
        head = f"CREATE {match['algorithm'] or ''}DEFINER={definer} " + (f"SQL SECURITY {security} " if security else "")
        result.append(StoredObject(item.kind, item.name, head + item.create[match.end():], item.sql_mode,
                                   item.collation, item.time_zone,
                                   invoker=missing and item.kind in ("PROCEDURE", "FUNCTION")))
    return result


def refuse_file_access(items: list[StoredObject]) -> None:
    """Refuse stored code that reads or writes the server's files: restored, it would do so with its definer's
    FILE privilege (the temporary account could create it, having none, but not run it)."""
    for item in items:
        body = re.sub(r"'(?:[^'\\]|\\.|'')*'", "''", item.create)
        if FILE_ACCESS.search(body):
            raise PermanentError(f"the dump's {item.label} reads or writes the server's files (LOAD_FILE, INTO "
                                 f"OUTFILE/DUMPFILE): restore does not re-create such code with an account's rights, "
                                 f"so nothing was restored; choose another point")


def create(conn: Any, db: str, items: Iterable[StoredObject]) -> None:
    """Create each item in `db` with the sql_mode and collation it was defined with."""
    items = list(items)
    if not items:
        return
    conn.select_db(db)  # definitions name their tables without a database
    with conn.cursor() as cur:
        cur.execute("SELECT @@SESSION.sql_mode, @@SESSION.collation_connection, @@SESSION.time_zone")
        mode, collation, zone = cur.fetchone()
        try:
            while items:  # a view on another view waits for it: rounds until every one is in
                waiting: list[tuple[StoredObject, Exception]] = []
                for item in items:
                    cur.execute("SET SESSION sql_mode = %s, collation_connection = %s, time_zone = %s",
                                (item.sql_mode, item.collation, item.time_zone or zone))
                    try:
                        cur.execute(item.create)
                    except pymysql.MySQLError as exc:
                        if item.kind != "VIEW" or exc.args[0] != 1146:  # 1146: a table (view) it uses is missing
                            raise
                        waiting.append((item, exc))
                        continue
                    if item.invoker:
                        cur.execute(f"ALTER {item.kind} {q(item.name)} SQL SECURITY INVOKER")
                if len(waiting) == len(items):
                    raise waiting[0][1]
                items = [item for item, _ in waiting]
        finally:
            cur.execute("SET SESSION sql_mode = %s, collation_connection = %s, time_zone = %s", (mode, collation, zone))


def drop(conn: Any, db: str, items: Iterable[StoredObject]) -> None:
    with conn.cursor() as cur:
        for item in items:
            cur.execute(f"DROP {item.kind} IF EXISTS {q(db)}.{q(item.name)}")
