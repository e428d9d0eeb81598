"""A point's archive loaded into a scratch database, as untrusted input.

A custom-format archive is a list of entries, each with a type label and SQL of its own; a hostile one can
label anything as anything. So three walls, each enough for what it covers:

1. Only entries labelled as RAGFlow's schema has them (tables, their data, sequences, defaults, constraints,
   indexes in `public`) are handed to pg_restore (`-L` with a filtered `--list`); functions, extensions,
   triggers, views, rules, policies, casts, event triggers, publications, ACLs and owners are left out.
2. pg_restore logs in as a role made for this load alone: no superuser, no CREATEDB / CREATEROLE, no
   pg_execute_server_program or pg_read_server_files (so no `COPY ... PROGRAM` or server files), allowed to
   connect to the scratch database only and to create in its `public` schema.
3. Afterwards the scratch database's catalog is read: any function, trigger, view, rule, policy, extension
   or schema that RAGFlow's tables do not have refuses the load, whatever its entry claimed to be.

Then the rows are counted against the manifest, and the tables handed to the configured account.
"""
from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import closing, contextmanager

import psycopg
from psycopg import sql

from actors.postgres.backup import ARTIFACT, NAME, SYSTEM_SCHEMAS, table_key
from actors.postgres.loader import archive_list, load_entries
from actors.postgres.session import connect, connect_failure, dump_tools
from actors.postgres.watchdog import Watchdog
from core.component import PermanentError
from core.config import PostgresSettings, Settings
from core.manifest import ComponentRecord
from core.points import Point
from core.scratch_restore import checked_dump

MAINTENANCE_DB = "postgres"  # where the statements that create, rename and drop databases run
# Entry types (pg_restore --list) that RAGFlow's peewee schema consists of; longest first for matching.
ALLOWED_ENTRIES = ("SEQUENCE OWNED BY", "FK CONSTRAINT", "SEQUENCE SET", "TABLE DATA", "CONSTRAINT", "SEQUENCE",
                   "DEFAULT", "INDEX", "TABLE")
_ENTRY = re.compile(r"^(\d+); \d+ \d+ (.*)$")
_SAFE_NAME = re.compile(r"[^\x00]{1,63}")
LOADER_PREFIX = "ragflow_backup_load_"
_TOKEN = re.compile(r"[0-9a-f]{6}")
_FOREIGN_OBJECTS = {
    "function": "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
    "trigger": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal",
    "view or foreign table": "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE c.relkind IN ('v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', "
                             "'information_schema')",
    "rule": "SELECT r.rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON "
            "n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND c.relkind NOT IN ('v', 'm')",  # a view's own rule is its definition: the view is named
    "policy": "SELECT polname FROM pg_policy",
    "extension": "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'",
    "schema": "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('public', 'information_schema') "
              "AND nspname NOT LIKE 'pg\\_%'",
}


def checked_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise PermanentError(f"{what} {name!r} is not a PostgreSQL database name (1 to 63 characters)")
    return name


def scratch_name(target: str, purpose: str, token: str) -> str:
    """`<target>__<purpose>_<token>`, the target cut so the whole fits PostgreSQL's 63 bytes."""
    suffix = f"__{purpose}_{token}"
    return target.encode()[:63 - len(suffix)].decode("utf-8", "ignore") + suffix


def database_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def drop_database(settings: Settings, name: str, missing_ok: bool = False) -> None:
    """Drop `name`; with `missing_ok`, a server that cannot be reached (hung, restarting) only logs it, so the
    failure that brought us here is the one reported."""
    try:
        with closing(connect(settings.postgres, MAINTENANCE_DB)) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        if not missing_ok:
            raise
        logging.getLogger("ragflow_backup.postgres_restore").warning(
            "could not drop %s now (%s): drop it by hand once the server answers", name, str(exc).strip()[:200])


def row_counts(conn: psycopg.Connection) -> dict[str, int]:
    tables = conn.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname <> ALL(%s) ORDER BY 1, 2",
                          (list(SYSTEM_SCHEMAS),)).fetchall()
    return {table_key(s, t): conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
        sql.Identifier(s), sql.Identifier(t))).fetchone()[0] for s, t in tables}


def mismatches(found: dict[str, int], expected: dict[str, int]) -> list[str]:
    return [f"{t}: {found.get(t, 'no table')} rows found, {expected.get(t, 'no table')} expected"
            for t in sorted(set(found) | set(expected)) if found.get(t) != expected.get(t)]


def filtered_list(listing: str) -> tuple[str, list[str]]:
    """pg_restore's `--list` cut to RAGFlow's kind of entries in `public`: (the list to restore, what was left
    out). pg_restore reads only each line's leading entry id from the list we hand back."""
    kept, skipped = [], []
    for line in listing.splitlines():
        match = _ENTRY.match(line)
        if not match:
            continue
        rest = match.group(2)
        kind = next((k for k in ALLOWED_ENTRIES if rest.startswith(k + " ")), None)
        if kind is not None and rest[len(kind) + 1:].startswith("public "):
            kept.append(f"{match.group(1)};")
        elif not rest.startswith(("SCHEMA - public ", "COMMENT - SCHEMA public ", "ACL ")):
            skipped.append(rest[:120])
    return "\n".join(kept) + "\n", skipped


def foreign_objects(conn: psycopg.Connection) -> list[str]:
    found = []
    for kind, query in _FOREIGN_OBJECTS.items():
        found += [f"{kind} {row[0]}" for row in conn.execute(query).fetchall()]
    return found


def sweep_leftovers(admin: psycopg.Connection, target: str, log: logging.Logger) -> None:
    """What an earlier restore into `target` left when its server hung or restarted under it (its own cleanup
    needs the server): its scratch databases `<target>__restore_<token>`, their loading roles, and the target
    refusing connections (a swap cut off after ALLOW_CONNECTIONS false). Called under the restore lock
    (actors/actions/restore.py one_at_a_time), so nothing of the kind is in use."""
    prefix = scratch_name(target, "restore", "0" * 6)[:-6]  # cut as a real token's name is
    for (name,) in admin.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                 (prefix,)).fetchall():
        token = name[len(prefix):]
        if not _TOKEN.fullmatch(token):
            continue
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(LOADER_PREFIX + token)))
        log.warning("dropped %s and its loading role, left by a restore that was cut off", name)
    row = admin.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (target,)).fetchone()
    if row is not None and not row[0]:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(target)))
        log.warning("%s took no connections (a restore's swap was cut off): it takes them again", target)


def clean_up(cfg: PostgresSettings, scratch: str, loader: str, log: logging.Logger) -> None:
    """Drop the scratch database and the loading role over a fresh connection (the restore's own may have
    been cut); when the server cannot do it now, the next restore into the same database does
    (sweep_leftovers)."""
    try:
        with closing(connect(cfg, MAINTENANCE_DB)) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(loader)))
    except psycopg.Error as exc:
        log.warning("could not drop the scratch database %s and role %s now (%s): the next restore into the "
                    "same database drops them", scratch, loader, str(exc).strip()[:200])


@contextmanager
def staged(settings: Settings, point: Point, record: ComponentRecord, target: str, token: str,
           log: logging.Logger, watch: Watchdog) -> Iterator[str]:
    """The archive loaded into `<target>__restore_<token>` whose tables match the manifest; it and its tables
    belong to the target's owner (RAGFlow's account, which may not be the configured one), or to the configured
    account for a new target, and PUBLIC may connect as to any new database. The scratch database (if still
    there: a swap renames it) and the loading role are dropped afterwards."""
    cfg = settings.postgres
    path = checked_dump(point, record, NAME, lambda _: ARTIFACT)
    scratch = scratch_name(target, "restore", token)
    loader, password = LOADER_PREFIX + token, secrets.token_urlsafe(24)
    try:
        admin = watch.connect(MAINTENANCE_DB)
    except psycopg.Error as exc:
        raise connect_failure(exc, cfg) from None
    with closing(admin), dump_tools(settings) as tools:
        sweep_leftovers(admin, target, log)
        listing, skipped = filtered_list(archive_list(tools, path, point))
        row = admin.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (target,)).fetchone()
        owner = sql.Identifier(row[0]) if row else sql.SQL("CURRENT_USER")
        if skipped:
            log.warning("left out of the restore (not part of RAGFlow's schema): %s", "; ".join(skipped[:20]))
        list_file = tools.put_file(f"ragflow-backup-restore-{token}.list", listing.encode())  # entry ids only
        # Hashed here (libpq's PQencryptPasswordConn): the statement, which a server may log, holds no password.
        verifier = admin.pgconn.encrypt_password(password.encode(), loader.encode(), b"scram-sha-256").decode()
        try:  # from here on, whatever exists is dropped at the end (or by the next restore)
            try:
                admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT "
                                      "NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {} PASSWORD {}").format(
                    sql.Identifier(loader), sql.Literal(cfg.restore_jobs + 2), sql.Literal(verifier)))
            except psycopg.errors.InsufficientPrivilege:
                raise _lacks(cfg.user, "CREATEROLE") from None
            admin.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(loader)))  # to take its tables
            try:
                admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                    sql.Identifier(scratch)))
            except psycopg.errors.InsufficientPrivilege:
                raise _lacks(cfg.user, "CREATEDB") from None
            admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(scratch)))
            admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(scratch),
                                                                              sql.Identifier(loader)))
            with closing(watch.connect(scratch)) as conn:
                conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(sql.Identifier(loader)))
            load_entries(cfg, tools, path, list_file, scratch, loader, password, watch)
            with closing(watch.connect(scratch)) as conn:
                foreign = foreign_objects(conn)
                if foreign:
                    raise PermanentError(f"the archive of {point.ref} holds what RAGFlow's schema does not have "
                                         f"({', '.join(foreign[:10])}), so nothing was restored: choose another "
                                         f"point, and find out who changed this one")
                try:
                    conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(sql.Identifier(loader), owner))
                    admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(scratch), owner))
                except psycopg.errors.InsufficientPrivilege:
                    raise PermanentError(f"PostgreSQL user '{cfg.user}' may not hand tables to {target}'s owner "
                                         f"({row[0] if row else cfg.user}): restore as that account, or GRANT "
                                         f"it to '{cfg.user}'; nothing was changed") from None
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(loader)))
                admin.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO PUBLIC").format(
                    sql.Identifier(scratch)))  # PostgreSQL's default, revoked for the load
                found = row_counts(conn)
            problems = mismatches(found, record.counts)
            if problems:
                raise PermanentError(f"the archive of {point.ref} does not hold the rows its manifest records, "
                                     f"so nothing was restored: {'; '.join(problems)}. Run `ragflow-backup "
                                     f"verify` and choose another point")
            log.info("scratch database %s holds %d tables, %d rows, as the manifest says", scratch, len(found),
                     sum(found.values()))
            yield scratch
        finally:
            clean_up(cfg, scratch, loader, log)
            with contextlib.suppress(Exception):  # in the container's /tmp: nothing secret, and tiny
                tools.remove_file(list_file)


def _lacks(user: str, what: str) -> PermanentError:
    return PermanentError(f"PostgreSQL user '{user}' may not {'create roles' if what == 'CREATEROLE' else 'create databases'}"
                          f", which a restore needs (a loading role of least power, a scratch database): "
                          f"ALTER ROLE {user} {what}, or restore as RAGFlow's superuser account; nothing was changed")
