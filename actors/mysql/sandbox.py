"""What a dump may do while it loads: nothing beyond its scratch database.

A dump read back from the storage root is untrusted input (anyone who can write there can rewrite it and its
manifest together). So it is fed to the client as a temporary account made for the one load (random name and
password, granted every privilege on the scratch database and nothing else, dropped afterwards even on failure),
with the client's local-infile and shell/file commands off. A statement that reaches further (CREATE DATABASE,
USE, `other`.t, GRANT, CREATE USER, SET GLOBAL, SELECT ... INTO OUTFILE, LOAD DATA, a DEFINER of another account)
is refused by the server and ends the load.

The dump's own database lines are rewritten to the scratch name as it streams (`DumpRewriter`), and so are the
DEFINER clauses of views, triggers, routines and events that mysqldump writes: an account without SUPER may only
name itself as definer, so each clause becomes `DEFINER=CURRENT_USER` (the temporary account) and the definer it
named is remembered for the swap, which re-creates the objects in the target (actors/mysql/restore.py). Only two
definers are accepted: the restoring account itself (the operator lends its rights to the restore), and one that
does not exist on this server, which is said and replaced (see `Definers.missing`). A definer naming any other
existing account would hand the dump's code that account's rights: the load is refused.

Triggers, routines and events cannot be created by the loading account where the binary log is on (MySQL 8's
default): they are held back from the client (`StoredCode`, only CREATE statements of mysqldump's exact layout,
one unqualified name each) and created in the scratch database by the restoring account, with the loading account
as their definer until the swap. What remains: restored code whose definer is the restoring account runs with
that account's rights once it is in the target, as any stored code does; LOAD_FILE / INTO OUTFILE in it is
refused (actors/mysql/objects.py), other statements in its body are not inspected.
"""
from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from core.component import PermanentError

ACCOUNT_PREFIX = "ragflow_restore_"  # 16 + 12 hex: within MySQL 8's 32-character user names
# Client options that take away what a dump has no business doing, when the client knows them: no LOAD DATA
# LOCAL (it would read the loading machine's files), MariaDB's sandbox (no \! system, source, tee, ...),
# MySQL 8.0.40+'s system-command switch. --binary-mode (always given) already stops client commands but
# `charset` and `delimiter` in piped input.
GUARD_OPTIONS = (("--local-infile", "--local-infile=0"), ("--sandbox", "--sandbox"),
                 ("--system-command", "--system-command=OFF"))
# Stored code that would read or write the server's files with its definer's FILE privilege once restored.
FILE_ACCESS = re.compile(r"\bload_file\s*\(|\binto\s+(?:outfile|dumpfile)\b", re.IGNORECASE)
# LOAD_FILE without the FILE privilege quietly gives NULL rather than failing: a dump that calls it (mysqldump
# writes only literals) is refused as it streams. A quoted string as mysqldump writes it never spans lines.
_LOAD_FILE = re.compile(rb"load_file\s*\(", re.IGNORECASE)
_STRING = re.compile(rb"'[^'\\\n]*(?:\\.[^'\\\n]*)*'")


def q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def account_sql(user: str, host: str) -> str:
    return "'{}'@'{}'".format(*(part.replace("\\", "\\\\").replace("'", "''") for part in (user, host)))


def guard_options(help_text: bytes) -> list[str]:
    """The guard options this client (its --help text) supports."""
    return [option for name, option in GUARD_OPTIONS if name.encode() in help_text]


def _grant_pattern(database: str) -> str:
    # A database name in GRANT is a LIKE pattern: `_` and `%` would let the grant cover other databases.
    return q(database.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%"))


@dataclass
class LoadAccount:
    user: str
    host: str
    password: str = field(repr=False)

    @property
    def sql(self) -> str:
        return account_sql(self.user, self.host)


def current_account(conn: Any) -> tuple[str, str]:
    """The account the server matched for this connection (CURRENT_USER())."""
    with conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        user, _, host = cur.fetchone()[0].rpartition("@")
    return user, host


def client_host(conn: Any) -> str:
    """The host the server sees this connection come from (USER()'s host part)."""
    with conn.cursor() as cur:
        cur.execute("SELECT USER()")
        return cur.fetchone()[0].rpartition("@")[2]


def replay_privilege(conn: Any) -> str:
    """The privilege that lets an account run mysqlbinlog's BINLOG statements: MariaDB's own (10.5.2+), MySQL
    8's BINLOG_ADMIN."""
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        return "BINLOG REPLAY" if "mariadb" in cur.fetchone()[0].lower() else "BINLOG_ADMIN"


def allow_replay(conn: Any, account: LoadAccount) -> None:
    """Let the account run the decoded binlog's row events (BINLOG statements) too, once the dump is in (a dump
    must never run one): those ignore table grants, so actors/mysql/replay.py checks that each names the scratch
    database before the client sees it."""
    with conn.cursor() as cur:
        cur.execute(f"GRANT {replay_privilege(conn)} ON *.* TO {account.sql}")


@contextlib.contextmanager
def load_account(conn: Any, scratch: str, host: str) -> Iterator[LoadAccount]:
    """A temporary account with every privilege on `scratch` (which need not exist yet) and nothing else;
    dropped afterwards, its sessions ended first. The password goes to the server in the statement only."""
    account = LoadAccount(ACCOUNT_PREFIX + secrets.token_hex(6), host,
                          secrets.token_urlsafe(24) + "-aA1")  # passes a password-strength policy too
    with conn.cursor() as cur:
        try:
            cur.execute(f"CREATE USER {account.sql} IDENTIFIED BY %s", (account.password,))
        except Exception as exc:
            raise PermanentError(f"restore could not create its temporary MySQL account to load the dump with "
                                 f"({type(exc).__name__}: {exc}): the configured account (mysql.user) needs the "
                                 f"CREATE USER privilege and GRANT OPTION, e.g. root") from None
    try:
        with conn.cursor() as cur:
            cur.execute(f"GRANT ALL PRIVILEGES ON {_grant_pattern(scratch)}.* TO {account.sql}")
        yield account
    finally:
        with conn.cursor() as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (account.user,))
            for (thread_id,) in cur.fetchall():
                with contextlib.suppress(Exception):  # it may have ended by itself
                    cur.execute(f"KILL CONNECTION {int(thread_id)}")
            cur.execute(f"DROP USER IF EXISTS {account.sql}")


def accounts(conn: Any, user_prefix: str = ACCOUNT_PREFIX) -> set[str]:
    """Accounts whose name starts with `user_prefix` (the temporary ones left behind, if any)."""
    with conn.cursor() as cur:
        cur.execute("SELECT User, Host FROM mysql.user WHERE User LIKE %s",
                    (user_prefix.replace("_", "\\_") + "%",))
        return {f"{user}@{host}" for user, host in cur.fetchall()}


# ---------------------------------------------------------------- definers


@dataclass
class Definers:
    """The definers the dump named, per object, and what the swap will use instead of the temporary account.

    `kept[(kind, name)]` is the account to re-create the object with; an object in `missing` named a definer
    that does not exist here. Views and routines then run as SQL SECURITY INVOKER with the restoring account as
    definer: the rights of whoever uses them, never the restoring account's lent to the dump's code (which is
    what a definer that exists nowhere could not have had either). Triggers and events always run as their
    definer, so they get the restoring account; the log says so for each.
    """

    restorer: tuple[str, str]
    exists: Callable[[str, str], bool]
    kept: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    missing: dict[tuple[str, str], str] = field(default_factory=dict)

    def judge(self, kind: str, name: str, user: str, host: str) -> None:
        if (user, host) == self.restorer:
            self.kept[(kind, name)] = (user, host)
        elif not self.exists(user, host):
            self.missing[(kind, name)] = f"{user}@{host}"
            self.kept[(kind, name)] = self.restorer
        else:
            raise PermanentError(
                f"the dump's {kind} `{name}` names DEFINER {account_sql(user, host)}, an existing account other "
                f"than the restoring one ({account_sql(*self.restorer)}): restoring it would run the dump's code "
                f"with that account's rights, so nothing was restored. Restore with that account as mysql.user "
                f"if the backup is yours, or choose another point")


def account_exists(conn: Any) -> Callable[[str, str], bool]:
    def exists(user: str, host: str) -> bool:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM mysql.user WHERE User = %s AND Host = %s", (user, host))
            return cur.fetchone() is not None
    return exists


# ---------------------------------------------------------------- the dump's text, rewritten as it streams

_STARTS = (b"/*!", b"CREATE ", b"USE ", b"ALTER ")
_IDENT = rb"`(?:[^`\n]|``)+`"
_WORD = rb"(?:`(?:[^`\n]|``)+`|[A-Za-z0-9_$]+)"  # an unqualified name: no `db`. in front
_LINE = re.compile(
    # The database lines: CREATE DATABASE, USE, ALTER DATABASE.
    rb"^(?P<head>(?:/\*!\d+ )?(?:CREATE DATABASE (?:/\*!32312 IF NOT EXISTS\*/ )?|USE |ALTER DATABASE ))"
    rb"(?P<name>" + _IDENT + rb")"
    rb"|^DELIMITER (?P<delimiter>\S+)[ \t]*$"
    # DEFINER clauses as mysqldump writes them (MariaDB's and MySQL 8's alike): a view's line 2 of 3, a
    # trigger's or event's versioned comment, a routine's CREATE.
    rb"|^(?P<dhead>/\*!50013 |/\*!50003 CREATE\*/ /\*!50017 |/\*!50106 CREATE\*/ /\*!50117 |CREATE )"
    rb"DEFINER=(?P<user>`(?:[^`\n]|``)*`)@(?P<host>`(?:[^`\n]|``)*`)"
    rb"(?P<dtail>(?:\*/ /\*!\d+ (?P<kind>TRIGGER|EVENT)| (?P<routine>PROCEDURE|FUNCTION)) (?P<object>" + _WORD + rb"))?"
    # A view's name, on the line after its DEFINER.
    rb"|^/\*!50001 VIEW (?P<view>" + _IDENT + rb")"
    # The session settings stored code is created under.
    rb"|^/\*!\d+ SET (?P<setting>(?i:sql_mode|collation_connection|time_zone))\s*=\s*(?P<value>'[^'\n]*'|@\w+)",
    re.MULTILINE,
)
# Stored code as mysqldump writes it (DEFINER already rewritten): what the restoring account creates itself.
_EVENTS = rb"(?:INSERT|UPDATE|DELETE)(?:\s+OR\s+(?:INSERT|UPDATE|DELETE))*"
_CODE = re.compile(
    rb"^(?:/\*!50003 CREATE\*/ /\*!50017 DEFINER=CURRENT_USER\*/ /\*!50003 TRIGGER\s+" + _WORD +
    rb"\s+(?:BEFORE|AFTER)\s+" + _EVENTS + rb"\s+ON\s+" + _WORD + rb"\s+FOR\s+EACH\s+ROW\s"
    rb"|CREATE DEFINER=CURRENT_USER (?:PROCEDURE|FUNCTION) " + _WORD + rb"\s*\("
    rb"|/\*!50106 CREATE\*/ /\*!50117 DEFINER=CURRENT_USER\*/ /\*!50106 EVENT " + _WORD + rb"\s+ON\s+SCHEDULE\s)",
    re.IGNORECASE,
)


@dataclass
class StoredCode:
    """A trigger, routine or event the dump creates, held back from the loading account: with the binary log on,
    the server lets only SUPER create them (error 1419), so the restoring account creates them in the scratch
    database once the tables are in, with the session settings the dump set for it. Only the CREATE statements
    of `_CODE` are held back: one name each, in the selected database, nothing run at creation."""

    statement: str
    sql_mode: str | None
    collation: str | None
    time_zone: str | None


def create_stored_code(conn: Any, scratch: str, code: list[StoredCode], account: LoadAccount) -> None:
    """Create the held-back stored code in `scratch` as the restoring account (see StoredCode), with the loading
    account as definer: an event the scheduler fires while the scratch database exists, or a trigger, runs
    with no more rights than the load had. The swap gives each its judged definer (actors/mysql/objects.py)."""
    if not code:
        return
    conn.select_db(scratch)
    with conn.cursor() as cur:
        cur.execute("SELECT @@SESSION.sql_mode, @@SESSION.collation_connection, @@SESSION.time_zone")
        defaults = cur.fetchone()
        for item in code:
            cur.execute("SET SESSION sql_mode = %s, collation_connection = %s, time_zone = %s",
                        tuple(value if value is not None else default
                              for value, default in zip((item.sql_mode, item.collation, item.time_zone), defaults)))
            try:
                cur.execute(item.statement.replace("DEFINER=CURRENT_USER", f"DEFINER={account.sql}", 1))
            except Exception as exc:
                raise PermanentError(f"the server refused the dump's stored code "
                                     f"{' '.join(item.statement.split())[:200]!r}: {exc}; nothing was restored") from None
        cur.execute("SET SESSION sql_mode = %s, collation_connection = %s, time_zone = %s", defaults)


def _name(raw: bytes) -> str:
    if raw[:1] == b"`":
        raw = raw[1:-1].replace(b"``", b"`")
    return raw.decode("utf-8", "replace")


class DumpRewriter:
    """Rewrites the dump's database lines to the scratch name and its DEFINER clauses to the loading account,
    line-aligned, chunk by chunk; each definer is judged by `definers`."""

    def __init__(self, scratch: str, definers: Definers):
        self.scratch = q(scratch).encode()
        self.definers = definers
        self.source: str | None = None
        self.rewritten = 0
        self._pending: list[bytes] = []
        self._delimiter = b";"
        self._view_definer: tuple[str, str] | None = None
        self._settings: dict[str, str | None] = {}
        self._statement: list[bytes] = []  # the unfinished statement of a DELIMITER ;; region
        self.code: list[StoredCode] = []

    def feed(self, data: bytes) -> bytes:
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending.append(data)
            return b""
        block = b"".join((*self._pending, data[: cut + 1]))
        self._pending = [data[cut + 1:]] if cut + 1 < len(data) else []
        return self._rewrite(block)

    def finish(self) -> bytes:
        block, self._pending = b"".join(self._pending), []
        out = self._rewrite(block)
        # A statement left unterminated at the end goes to the client as it is, which will refuse it.
        out, self._statement = out + b"".join(self._statement), []
        return out

    def _rewrite(self, block: bytes) -> bytes:
        if b"load_file" in block.lower():
            for line in block.splitlines():
                if _LOAD_FILE.search(_STRING.sub(b"''", line)):
                    text = line.decode("utf-8", "replace")
                    raise PermanentError(f"the dump calls LOAD_FILE, which reads the server's files: "
                                         f"{(text if len(text) <= 200 else text[:200] + '...')!r}; nothing was "
                                         f"restored. It was not written by a backup: choose another point")
        if self._delimiter == b";" and b"DELIMITER" not in block:
            # Every line _LINE looks at starts like one of these; rows never do (they start with `(` or INSERT).
            if not block.startswith(_STARTS) and not any(b"\n" + start in block for start in _STARTS):
                return block
            return _LINE.sub(self._replace, block)
        out = []
        for line in block.splitlines(keepends=True):
            if self._delimiter == b";" or (not self._statement and line.startswith(b"DELIMITER ")):
                out.append(_LINE.sub(self._replace, line))
                continue
            self._statement.append(line)
            if not line.rstrip().endswith(self._delimiter):
                continue
            text, self._statement = _LINE.sub(self._replace, b"".join(self._statement)), []
            if _CODE.match(text):
                body = text.rstrip()[: -len(self._delimiter)].decode("utf-8", "replace")
                self.code.append(StoredCode(body, self._settings.get("sql_mode"),
                                            self._settings.get("collation_connection"), self._settings.get("time_zone")))
                out.append(b"\n" * text.count(b"\n"))  # the client's line numbers stay the dump's
            else:
                out.append(text)
        return b"".join(out)

    def _replace(self, match: re.Match[bytes]) -> bytes:
        if match["delimiter"] is not None:
            self._delimiter = match["delimiter"]
            return match[0]
        if match["setting"] is not None:
            value = match["value"].decode("utf-8", "replace")
            self._settings[match["setting"].decode().lower()] = value[1:-1] if value.startswith("'") else None
            return match[0]
        if match["user"] is not None:
            return self._definer(match)
        if match["view"] is not None:
            if self._view_definer is not None:
                self.definers.judge("VIEW", _name(match["view"]), *self._view_definer)
                self._view_definer = None
            return match[0]
        if self._delimiter != b";":
            return match[0]  # inside a routine, trigger or event body
        name = _name(match["name"])
        if self.source is None:
            self.source = name
        elif name != self.source:
            raise PermanentError(f"the dump names database '{name}' besides '{self.source}': it holds more than "
                                 f"one database, which restore does not handle; nothing was restored")
        self.rewritten += 1
        return match["head"] + self.scratch

    def _definer(self, match: re.Match[bytes]) -> bytes:
        user, host = _name(match["user"]), _name(match["host"])
        head = match["dhead"]
        if head == b"/*!50013 ":
            self._view_definer = (user, host)  # judged when the view's name follows
        elif match["object"] is not None:
            self.definers.judge((match["kind"] or match["routine"]).decode(), _name(match["object"]), user, host)
        else:
            return match[0]  # not a layout mysqldump writes: left for the server to refuse
        return head + b"DEFINER=CURRENT_USER" + (match["dtail"] or b"")
