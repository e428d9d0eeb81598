"""Replaying the archived binary log into the scratch database, up to a moment, with no power beyond it.

The archive's files (core/pitr.py's ReplayPlan) are decoded by the server's own client (`mariadb-binlog` or
`mysqlbinlog`; in docker mode the one inside the container, fed each file on stdin) from the point's
coordinates, keeping only the point's database's events (`--database`) and renaming them to the scratch
database (`--rewrite-db`), up to the moment asked; the text is piped into the client that loads the scratch
database as the restore's temporary account (actors/mysql/sandbox.py: granted the scratch database only, and
once the dump is in, BINLOG REPLAY to run the decoded row events; binary mode, no local-infile).

The binlog is untrusted input read back from the storage root, and the server applies a row event (`BINLOG
'...'`) to whatever table its table map names, whatever the account's table privileges (seen on MariaDB
10.11). So `BinlogGuard` reads every BINLOG statement the decoder wrote before the client gets it: only
format-description, table-map and row events, each table map naming the scratch database; anything else that
mentions BINLOG is refused. A statement bigger than the server's max_allowed_packet is re-encoded from the
events checked, in pieces that fit (see `_statements`). Statements (DDL, BEGIN/COMMIT) are checked by the server
against the account's grants, as a dump's are. The decoder's `SET @@session.gtid_seq_no / server_id / gtid_domain_id` lines are
dropped: the replayed transactions get this server's next GTIDs instead of repeating old ones in its binlog.

Where to stop is decided here, not with the decoder's `--stop-datetime`: that stops at the first event of ANY
database whose timestamp is at or after the value (a session of another application that set its TIMESTAMP
ahead would cut the replay short). The guard reads the decoder's comment line of each statement and row
event it kept (the database's own; the decoder runs with TZ=UTC) and ends the stream at the first one at or
after T + 1 s: every statement of second T is applied and none of T + 1, in the log's order. A transaction cut
there has no COMMIT and is rolled back when the client's input ends.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from actors.mysql.load import LOAD_OPTIONS, LOAD_TOOLS, Loader, kill_sessions, open_loader
from actors.mysql.sandbox import LoadAccount, allow_replay, guard_options
from actors.mysql.session import client_session
from core import clients, docker_exec
from core.child_output import CHUNK, STDERR_KEEP, clean_stderr
from core.component import PermanentError
from core.config import Settings
from core.pitr import ReplayPlan
from core.tool_session import ToolSession

LOG = logging.getLogger("ragflow_backup.mysql_replay")
DECODE_TOOLS = ("mariadb-binlog", "mysqlbinlog")
FORMAT_DESCRIPTION, TABLE_MAP = 15, 19
# Row events: v1 (23-25), v2 (30-32), MySQL's partial update (39), MariaDB's compressed ones (166-171).
ROW_EVENTS = frozenset({23, 24, 25, 30, 31, 32, 39, 166, 167, 168, 169, 170, 171})
STATEMENT_BYTES = 4 << 20  # events per BINLOG statement fed to the client (see _statements)
HEADER = 19  # a v4 event's common header: timestamp 4, type 1, server id 4, size 4, next position 4, flags 2
_GTID_LINE = re.compile(rb"^/\*M!100001 SET @@session\.(?:gtid_seq_no|server_id|gtid_domain_id)=\d+\*//\*!\*/;$")
_CHUNK = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
# The decoder's own lines that name the binlog: the start event's comment and its closing ROLLBACK, and where a
# replay crosses from one file to the next, the rotate event's and MariaDB's checkpoint event's comments (each a
# '#' comment to the client), naming a file by a plain name.
# The decoder's comment line heading an event of the kept database, with its time (UTC under TZ=UTC), e.g.
# "#261130  2:30:13 server id 1  end_log_pos 1300 CRC32 0x..\tTable_map: ...". GTID, Xid and the file's own
# events are printed for every database, so they never decide the stop.
_EVENT_TIME = re.compile(rb"^#(\d\d)(\d\d)(\d\d) +(\d{1,2}):(\d\d):(\d\d) server id \d+ [^\t]*\t"
                         rb"(?:Table_map|Write_rows|Update_rows|Delete_rows|Query)")
_DECODER_LINES = re.compile(rb"^(?:#\d{6} +\d+:\d\d:\d\d server id \d+ .*Start: binlog v 4, server v [^\n]*"
                            rb"|#\d{6} +\d+:\d\d:\d\d server id \d+ +end_log_pos \d+ (?:CRC32 0x[0-9a-f]+ )?\t"
                            rb"(?:Rotate to [A-Za-z0-9._-]+ +pos: \d+|Binlog checkpoint [A-Za-z0-9._-]+)"
                            rb"|ROLLBACK /\* added by mysqlbinlog \*/;)$")


def stop_bound(stop_at: datetime) -> datetime:
    """The first moment not replayed: every event of stop_at's second is, none later (UTC)."""
    if stop_at.tzinfo is None:
        raise ValueError("stop_at must be an aware datetime")
    return stop_at.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)


def _refuse(why: str) -> PermanentError:
    return PermanentError(f"the archived binlog {why}; nothing was restored. It was not written by this server's "
                          f"log as archived: check the archive (`ragflow-backup timeline`) or restore to the "
                          f"point's time instead")


class BinlogGuard:
    """Passes the decoder's text line by line, holding each BINLOG statement until its events are checked (and
    giving the client the checked events, re-encoded), until the first statement after the moment."""

    def __init__(self, scratch: str, stop_at: datetime | None = None):
        self.scratch = scratch.encode()
        self.bound = stop_bound(stop_at) if stop_at is not None else None
        self.stopped = False  # an event at or after the bound was reached: nothing more passes
        self.table_map_post_header = 8  # until a format-description event says otherwise
        self.statements = 0  # BINLOG statements passed
        self.transactions = 0  # COMMITs passed
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        text, out, at = self._pending + data, [], 0
        while not self.stopped:
            newline = text.find(b"\n", at)
            if newline < 0:
                break
            if text[at:newline] != b"BINLOG '":
                out.append(self._line(text[at:newline + 1]))
                at = newline + 1
                continue
            # A BINLOG statement: base64 lines up to the first line that starts with a quote (found in one go:
            # there are many of them).
            end = text.find(b"\n'", newline)
            closed = text.find(b"\n", end + 1) if end >= 0 else -1
            if closed < 0:
                break  # the rest is still to come
            if text[end + 1:closed].rstrip(b"\r") != b"'/*!*/;":
                raise _refuse(f"has a BINLOG statement the decoder does not write ({text[end + 1:closed][:80]!r})")
            events = self._check(b"".join(text[newline + 1:end].split()))
            # Within the packet limit the decoder's own text goes on: strictly valid base64 (checked), so the
            # server decodes the very bytes checked; bigger ones are cut and re-encoded.
            out.append(text[at:closed + 1] if sum(map(len, events)) <= STATEMENT_BYTES else _statements(events))
            self.statements += 1
            at = closed + 1
        self._pending = b"" if self.stopped else text[at:]
        return b"".join(out)

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        if rest.startswith(b"BINLOG '\n") and not self.stopped:
            raise _refuse("ends inside a BINLOG statement")
        return self._line(rest) if rest else b""

    def _line(self, line: bytes) -> bytes:
        bare = line.rstrip(b"\r\n")
        if self.stopped:
            return b""
        if self.bound is not None and (when := _EVENT_TIME.match(bare)):
            year, month, day, hour, minute, second = (int(part) for part in when.groups()[:6])
            try:
                moment = datetime(2000 + year, month, day, hour, minute, second, tzinfo=UTC)
            except ValueError:
                raise _refuse(f"has an event time the decoder does not write ({bare[:40]!r})") from None
            if moment >= self.bound:
                self.stopped = True
                return b""
        if bare == b"BINLOG '":  # only at the very end of the text (finish): cut short
            raise _refuse("ends inside a BINLOG statement")
        if _GTID_LINE.match(bare):
            return b""
        if b"binlog" in bare.lower() and not _DECODER_LINES.match(bare):
            raise _refuse(f"holds a statement naming BINLOG that the decoder does not write ({bare[:120]!r})")
        if bare.startswith(b"COMMIT"):
            self.transactions += 1
        return line

    def _check(self, encoded: bytes) -> list[bytes]:
        try:
            # The decoder encodes event by event, each chunk padded; the server reads the chunks one after another.
            payload = b"".join(base64.b64decode(chunk, validate=True) for chunk in _CHUNK.findall(encoded))
            if sum(map(len, _CHUNK.findall(encoded))) != len(encoded):
                raise ValueError("stray characters")
        except (binascii.Error, ValueError):
            raise _refuse("has a BINLOG statement that is not base64") from None
        at, events = 0, []
        while at < len(payload):
            if len(payload) - at < HEADER:
                raise _refuse("has a BINLOG statement with a cut event")
            kind, size = payload[at + 4], int.from_bytes(payload[at + 9:at + 13], "little")
            if size < HEADER or at + size > len(payload):
                raise _refuse("has a BINLOG statement with an event of a wrong size")
            event = payload[at:at + size]
            if kind == FORMAT_DESCRIPTION:
                self._format(event)
            elif kind == TABLE_MAP:
                body = event[HEADER + self.table_map_post_header:]
                database = body[1:1 + body[0]] if body else b""
                if database != self.scratch:
                    raise _refuse(f"has a row event for database {database.decode('utf-8', 'replace')!r}, not the "
                                  f"scratch database")
            elif kind not in ROW_EVENTS:
                raise _refuse(f"has an event of type {kind} in a BINLOG statement (only row events are replayed; "
                              f"MySQL's binlog_transaction_compression is not supported)")
            events.append(event)
            at += size
        return events

    def _format(self, event: bytes) -> None:
        # binlog version 2, server version 50, created 4, common header length 1, then post-header lengths.
        lengths = HEADER + 2 + 50 + 4
        if len(event) < lengths + 1 + TABLE_MAP or event[lengths] != HEADER:
            raise _refuse("has a format-description event this restore cannot read")
        post_header = event[lengths + 1 + TABLE_MAP - 1]
        if post_header not in (6, 8):
            raise _refuse("has a format-description event with an unknown table-map layout")
        self.table_map_post_header = post_header


def _statements(events: list[bytes]) -> bytes:
    """The checked events as BINLOG statements again, encoded here (the server runs exactly what was checked),
    at most about STATEMENT_BYTES of events each: the decoder writes all row events of one logged statement (an
    UPDATE of every row) as one BINLOG statement, which would pass the server's max_allowed_packet (16 MiB by
    default). The server forgets the table maps at the end of each BINLOG statement (and would skip row events
    of a table id it does not know), so every piece repeats the table maps (and the format description) first."""
    head = [event for event in events if event[4] in (FORMAT_DESCRIPTION, TABLE_MAP)]
    rows = [event for event in events if event[4] not in (FORMAT_DESCRIPTION, TABLE_MAP)]
    if sum(map(len, events)) <= STATEMENT_BYTES or not rows:
        return _statement(events)
    if events[:len(head)] != head:  # maps after rows: not the decoder's layout; keep it whole
        return _statement(events)
    out, group, size = [], [], sum(map(len, head))
    for event in rows:
        if group and size + len(event) > STATEMENT_BYTES:
            out.append(_statement(head + group))
            group, size = [], sum(map(len, head))
        group.append(event)
        size += len(event)
    out.append(_statement(head + group))
    return b"".join(out)


def _statement(events: list[bytes]) -> bytes:
    return b"BINLOG '\n" + base64.encodebytes(b"".join(events)) + b"'/*!*/;\n"


@dataclass
class ReplayResult:
    files: int
    statements: int  # BINLOG statements (row-event batches) applied
    transactions: int
    bytes: int  # decoded text fed to the client


def _decode_args(plan: ReplayPlan, scratch: str) -> list[str]:
    if "->" in plan.database or "->" in scratch:
        raise PermanentError(f"database {plan.database!r} cannot be replayed by name (it holds '->')")
    return ["--verify-binlog-checksum", f"--database={plan.database}", f"--rewrite-db={plan.database}->{scratch}"]


def _local_decoded(session: ToolSession, tool: str, plan: ReplayPlan, scratch: str,
                   extra: list[str]) -> Iterator[bytes]:
    argv = [shutil.which(tool) or tool, "--no-defaults", *_decode_args(plan, scratch), *extra,
            f"--start-position={plan.start.position}", "--", *(str(path) for path in plan.files)]
    env = {**session.env, "TZ": "UTC"}  # type: ignore[attr-defined]
    with open(session.folder / "decode.stderr", "w+b") as errors:  # type: ignore[attr-defined]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, env=env)
        try:
            assert proc.stdout is not None
            while block := proc.stdout.read(CHUNK):
                yield block
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
        if code != 0:
            errors.seek(max(0, errors.tell() - STDERR_KEEP))
            raise _decode_failure(tool, code, errors.read(), session.where)


def _docker_decoded(session: Any, tool: str, plan: ReplayPlan, scratch: str, extra: list[str]) -> Iterator[bytes]:
    """The container's decoder, one file at a time on stdin (the archive is on this host, not in there)."""
    for index, path in enumerate(plan.files):
        start = [f"--start-position={plan.start.position}"] if index == 0 else []
        exec_id = session.api.exec_create(session.container.id, [tool, *_decode_args(plan, scratch), *extra, *start, "-"],
                                          stdin=True, stdout=True, stderr=True, environment={"TZ": "UTC"})["Id"]
        ended = docker_exec.Ended()
        yield from docker_exec.fed_stdout(session.api, exec_id, path, "mysql-replay-feed", ended)
        if ended.code != 0:
            raise _decode_failure(tool, ended.code, ended.stderr, session.where)


def _decode_failure(tool: str, code: int | None, stderr: bytes, where: str) -> PermanentError:
    said = clean_stderr(stderr, "") or "nothing"
    return PermanentError(f"{tool} at {where} could not decode the archived binlog (exit code {code}; it said: "
                          f"{said}); nothing was restored. Check the archive (`ragflow-backup timeline`)")


def replay(settings: Settings, conn: Any, plan: ReplayPlan, scratch: str, account: LoadAccount,
           log: logging.Logger | None = None) -> ReplayResult:
    """Apply `plan` to `scratch` as `account`, which is granted BINLOG REPLAY for it (sandbox.allow_replay).
    On failure the client is stopped and its session ended; the caller drops the scratch database."""
    log = log or LOG
    if not plan.files:
        raise PermanentError("the replay plan names no archived binlog file")
    for path in plan.files:
        if not Path(path).is_file():
            raise PermanentError(f"the archived binlog file {path} is missing; nothing was restored")
    password = clients.secret(settings.mysql.password) or ""
    guard, fed = BinlogGuard(scratch, plan.stop_at), 0
    allow_replay(conn, account)
    with client_session(settings) as session:
        decoder, loader_tool = session.find(DECODE_TOOLS), session.find(LOAD_TOOLS)
        if decoder is None or loader_tool is None:
            raise PermanentError(f"no {'binlog decoder (mariadb-binlog / mysqlbinlog)' if decoder is None else 'MySQL client'} "
                                 f"at {session.where} to replay the archive with: install mariadb-client (or "
                                 f"mysql-client){' in the container' if session.mode == 'docker' else ''}")
        options = LOAD_OPTIONS + guard_options(session.run(loader_tool[0], ["--help"], connect=False)[1])
        log.info("replaying %d archived binlog file(s) from %s:%d through %s into %s at %s",
                 len(plan.files), plan.start.file, plan.start.position, plan.stop_at.isoformat(), scratch,
                 session.where)
        # MySQL's mysqlbinlog: no SET GTID_NEXT lines (they need SYSTEM_VARIABLES_ADMIN; and the replayed
        # transactions are to get the server's next GTIDs, as MariaDB's lines are dropped by the guard for).
        extra = ["--skip-gtids"] if b"--skip-gtids" in session.run(decoder[0], ["--help"], connect=False)[1] else []
        decoded = (_docker_decoded if session.mode == "docker" else _local_decoded)(session, decoder[0], plan,
                                                                                      scratch, extra)
        loader: Loader = open_loader(session, loader_tool[0], account, options)
        try:
            try:
                for block in decoded:
                    if data := guard.feed(block):
                        loader.write(data)
                        fed += len(data)
                    if guard.stopped:
                        decoded.close()  # type: ignore[attr-defined] - the rest is after the moment asked
                        break
                if data := guard.finish():
                    loader.write(data)
                    fed += len(data)
            except (BrokenPipeError, ConnectionError):
                code, err = loader.finish()
                raise _replay_failure(loader_tool[0], code, clean_stderr(err, password), session.where) from None
            code, err = loader.finish()
            if code != 0:
                raise _replay_failure(loader_tool[0], code, clean_stderr(err, password), session.where)
        except BaseException:
            with contextlib.suppress(Exception):
                decoded.close()  # type: ignore[attr-defined]
            loader.abort()
            with contextlib.suppress(Exception):
                kill_sessions(conn, scratch)
            with contextlib.suppress(Exception):
                loader.reap()
            raise
    log.info("replayed %d transactions (%d row-event statements, %d bytes) into %s", guard.transactions,
             guard.statements, fed, scratch)
    return ReplayResult(files=len(plan.files), statements=guard.statements, transactions=guard.transactions,
                        bytes=fed)


def _replay_failure(tool: str, code: int | None, stderr: str, where: str) -> PermanentError:
    said = f"{tool} said: {stderr}" if stderr else f"{tool} said nothing"
    if re.search(r"\b(1044|1142|1143|1227|1370)\b|Access denied", stderr):
        return PermanentError(f"the archived binlog holds a statement that reaches beyond the scratch database, "
                              f"which the server refused at {where}; nothing was restored. {said}")
    return PermanentError(f"replaying the archived binlog failed at {where} (exit code {code}); nothing was "
                          f"restored. {said}")

