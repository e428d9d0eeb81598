"""Streaming a dump into a scratch database (the local client or the one in RAGFlow's container), and the
names of the databases involved. Split from actors/mysql/restore.py, which decides what goes where."""
from __future__ import annotations

import contextlib
import gzip
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import zlib
from pathlib import Path
from typing import Any

import zstandard

from actors.mysql.backup import DumpCounter
from actors.mysql.change_point import expected_counts
from actors.mysql.objects import (
    mismatches,
)
from actors.mysql.sandbox import (
    Definers,
    DumpRewriter,
    LoadAccount,
    create_stored_code,
    guard_options,
)
from actors.mysql.session import client_session
from core import clients, docker_exec
from core.checks import open_compressed
from core.child_output import CHUNK, STDERR_KEEP, clean_stderr
from core.component import PermanentError
from core.config import Settings

MAX_NAME = 64  # MySQL's limit for a database name
SYSTEM_SCHEMAS = {"mysql", "information_schema", "performance_schema", "sys"}
LOAD_TOOLS = ("mariadb", "mysql")  # MariaDB 11 warns when called as `mysql`
# Batch mode stops at the first error; no reconnect, so a killed load stays dead.
LOAD_OPTIONS = ["--batch", "--binary-mode", "--skip-reconnect", "--default-character-set=utf8mb4"]


# ---------------------------------------------------------------- names


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def checked_name(name: str, what: str) -> str:
    if not name or len(name) > MAX_NAME or "\x00" in name or name != name.rstrip() or "/" in name or "\\" in name:
        raise PermanentError(f"{what} {name!r} is not a usable database name (1-{MAX_NAME} characters, no "
                             f"slashes, no trailing space)")
    if name.lower() in SYSTEM_SCHEMAS:
        raise PermanentError(f"{what} {name!r} is a system schema of the server; restore into another database")
    return name


def scratch_name(target: str, kind: str = "restore", token: str | None = None) -> str:
    """`<target>__<kind>_<hex6>`, the target part shortened so the whole fits MySQL's 64 characters."""
    token = token or secrets.token_hex(3)
    suffix = f"__{kind}_{token}"
    return target[: MAX_NAME - len(suffix)] + suffix


def drop_database(settings: Settings, name: str) -> None:
    """Drop a scratch or old database; refuses the configured live database and the server's own schemas."""
    checked_name(name, "database")
    if name == settings.mysql.database:
        raise PermanentError(f"refusing to drop '{name}': it is the live database (mysql.database)")
    with contextlib.closing(clients.mysql_connection(settings.mysql, database="")) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {quote_name(name)}")


def database_exists(cur: Any, name: str) -> bool:
    cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
    return cur.fetchone() is not None


def database_charset(cur: Any, name: str) -> str:
    cur.execute("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                "WHERE SCHEMA_NAME = %s", (name,))
    charset, collation = cur.fetchone()
    return f"CHARACTER SET {charset} COLLATE {collation}"


# ---------------------------------------------------------------- streaming the dump into a scratch database

class _LocalLoad:
    """The local client reading the dump on stdin, as the temporary account (its own 0600 option file)."""

    def __init__(self, session: Any, tool: str, account: LoadAccount, options: list[str]):
        self.stderr_path = session.folder / "load.stderr"
        option_file = session.folder / "load.cnf"
        fd = os.open(option_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:  # host, port and protocol come from the session's own file
            handle.write(f"[client]\nuser={account.user}\npassword={account.password}\n")
        # --defaults-extra-file must come first; the session's file is read through !include before it.
        include = session.folder / "load-include.cnf"
        include.write_text(f"!include {session.option_file}\n!include {option_file}\n")
        argv = [shutil.which(tool) or tool, f"--defaults-extra-file={include}", *options]
        with open(self.stderr_path, "wb") as errors:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors,
                                         env=session.env)

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)  # BrokenPipeError when the client has stopped

    def finish(self) -> tuple[int | None, bytes]:
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        code = self.proc.wait()
        return code, self.stderr_path.read_bytes()[-STDERR_KEEP:]

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()  # type: ignore[union-attr]

    def reap(self) -> None:
        self.proc.wait()


class _DockerLoad:
    """The client inside the container (`docker exec -i`), fed through the exec's hijacked API socket."""

    def __init__(self, session: Any, tool: str, account: LoadAccount, options: list[str]):
        self.session = session
        cmd = [tool, f"--user={account.user}", *options]
        self.exec_id = session.api.exec_create(session.container.id, cmd, stdin=True, stdout=True, stderr=True,
                                               environment={"MYSQL_PWD": account.password})["Id"]
        self.sock = session.api.exec_start(self.exec_id, socket=True)
        self.raw: socket.socket = docker_exec.raw_socket(self.sock)
        self.errors = bytearray()

        def drain() -> None:  # output must be read or the client would block on a full pipe
            with contextlib.suppress(Exception):
                for _ in docker_exec.stdout_frames(self.sock, self.errors):
                    pass

        self.reader = threading.Thread(target=drain, name="mysql-restore-exec", daemon=True)
        self.reader.start()

    def write(self, data: bytes) -> None:
        self.raw.sendall(data)

    def finish(self) -> tuple[int | None, bytes]:
        with contextlib.suppress(OSError):
            self.raw.shutdown(socket.SHUT_WR)  # the client's stdin ends
        self.reader.join()
        code = self.session.exec_exit_code(self.exec_id)
        docker_exec.close(self.sock, self.raw)
        return code, bytes(self.errors)

    def abort(self) -> None:
        docker_exec.close(self.sock, self.raw)  # the client sees the end of its input; the caller kills its server connection

    def reap(self) -> None:
        self.reader.join(10)
        self.session.exec_exit_code(self.exec_id)  # waits up to 10 s for the client to end


Loader = _LocalLoad | _DockerLoad  # write(data), finish() -> (exit code, stderr), abort(), reap()


def open_loader(session: Any, tool: str, account: LoadAccount, options: list[str]) -> Loader:
    """The client that reads SQL on stdin as `account`: local in tcp mode, in the container in docker mode."""
    return _DockerLoad(session, tool, account, options) if session.mode == "docker" else \
        _LocalLoad(session, tool, account, options)


def _dump_line(paths: list[Path], number: int) -> str:
    """Line `number` of the dump's files read in order (the client names the line of a statement it failed
    on), shortened."""
    index = 0
    for path in paths:
        with open_compressed(path) as stream:
            for line in stream:
                index += 1
                if index == number:
                    text = line.decode("utf-8", "replace").strip()
                    return text if len(text) <= 300 else text[:300] + "..."
    return ""


def _load_failure(tool: str, code: int | None, stderr: str, where: str, account: LoadAccount,
                  paths: list[Path]) -> Exception:
    said = f"{tool} said: {stderr}" if stderr else f"{tool} said nothing"
    if code is not None and code < 0:
        return RuntimeError(f"{tool} loading the dump at {where} was killed by signal {-code}; nothing was "
                            f"restored. {said}")
    if re.search(r"\b(2002|2003|2005|2006|2013)\b", stderr) or "Can't connect" in stderr:
        return ConnectionError(f"lost or could not reach MySQL at {where} while loading the dump (try again). {said}")
    at_line = re.search(r"\bERROR \d+ \(\w+\) at line (\d+)|\bERROR at line (\d+)", stderr)
    if at_line is None and (re.search(r"\b1045\b", stderr) or "Access denied" in stderr):
        return PermanentError(f"the temporary account {account.user}@{account.host} that restore made to load the "
                              f"dump could not log in at {where} (does the server see the client come from "
                              f"another host?); nothing was restored. {said}")
    if at_line is not None:
        number = int(at_line[1] or at_line[2])
        with contextlib.suppress(Exception):
            said += f" (line {number} of the dump: {_dump_line(paths, number)!r})"
        if re.search(r"\b(1044|1045|1142|1143|1227|1370|4166)\b|Access denied|Unknown command|not allowed", stderr):
            return PermanentError(f"the dump holds a statement that reaches beyond its scratch database (another "
                                  f"database, accounts, server settings, files or client commands), which the server "
                                  f"refused at {where}; nothing was restored. It was not written by a backup: choose "
                                  f"another point. {said}")
    if at_line is not None or re.search(r"\bERROR \d+", stderr):
        return PermanentError(f"the server refused a statement of the dump at {where}; nothing was restored. {said}")
    return RuntimeError(f"{tool} failed loading the dump at {where} (exit code {code}); nothing was restored. {said}")


def kill_sessions(conn: Any, database: str) -> None:
    """End the server connections working in `database` (a load we abandoned)."""
    with conn.cursor() as cur:
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                    (database,))
        for (thread_id,) in cur.fetchall():
            with contextlib.suppress(Exception):  # it may have ended by itself
                cur.execute(f"KILL CONNECTION {int(thread_id)}")


def load_dump(settings: Settings, conn: Any, paths: list[Path], scratch: str, account: LoadAccount,
              definers: Definers, expected: dict[str, int], log: logging.Logger) -> None:
    """Stream the (gzip or zstd) dump into a new database `scratch` as `account`, which has no power beyond it
    (actors/mysql/sandbox.py): its one file, or a change point's base then its changes, one session. On any
    failure the scratch database is dropped."""
    with conn.cursor() as cur:
        if database_exists(cur, scratch):
            raise PermanentError(f"the scratch database {scratch} already exists; drop it or try again")
    password = clients.secret(settings.mysql.password) or ""
    counters, rewriter = [DumpCounter() for _ in paths], DumpRewriter(scratch, definers)
    path = paths[-1]  # named in errors: the last file read
    with client_session(settings) as session:
        found = session.find(LOAD_TOOLS)
        if found is None:
            hint = "install mariadb-client (or mysql-client) here" if session.mode == "tcp" else \
                "the container has no mariadb/mysql client; use mysql.mode: tcp with a local client"
            raise PermanentError(f"no MySQL client to load the dump with at {session.where}: {hint}")
        tool = found[0]
        options = LOAD_OPTIONS + guard_options(session.run(tool, ["--help"], connect=False)[1])
        log.info("loading %s into scratch database %s at %s with %s as temporary account %s",
                 " then ".join(p.name for p in paths), scratch, session.where, tool, account.user)
        loader = open_loader(session, tool, account, options)
        try:
            try:
                for path, counter in zip(paths, counters, strict=True):
                    with open_compressed(path) as stream:
                        while block := stream.read(CHUNK):
                            counter.feed(block)
                            if data := rewriter.feed(block):
                                loader.write(data)
                    counter.finish()
                if data := rewriter.finish():
                    loader.write(data)
            except (BrokenPipeError, ConnectionError) as exc:
                code, err = loader.finish()  # the client stopped early: its stderr says why
                raise _load_failure(tool, code, clean_stderr(err, password), session.where, account,
                                    paths) from exc
            except (EOFError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError) as exc:
                raise PermanentError(f"{path} is corrupt after {counter.plain_bytes} bytes ({exc}); nothing was "
                                     f"restored: run `ragflow-backup verify` and choose another point") from None
            code, err = loader.finish()
            if code != 0:
                raise _load_failure(tool, code, clean_stderr(err, password), session.where, account, paths)
            if not counters[0].completed:
                raise PermanentError(f"{paths[0]} does not end with '-- Dump completed' (cut short); nothing was "
                                     f"restored: choose another point")
            if len(counters) > 1 and not counters[1].changes_completed:
                raise PermanentError(f"{paths[1]} does not end with '-- Changes completed' (cut short); nothing "
                                     f"was restored: choose another point")
            counts = counters[0].counts if len(counters) == 1 else \
                expected_counts(counters[0].counts, counters[1].deleted, counters[1].counts)
            if not rewriter.rewritten:
                raise PermanentError(f"{path} has no CREATE DATABASE / USE line (not made with --databases); "
                                     f"restore cannot stage it")
            create_stored_code(conn, scratch, rewriter.code, account)
            problems = mismatches(counts, expected)  # as `verify` counts the dump's INSERTs
            if problems:
                raise PermanentError(f"{path} does not hold the rows its manifest records, so nothing was "
                                     f"restored: {'; '.join(problems)}. Run `ragflow-backup verify` and choose "
                                     f"another point")
        except BaseException:
            # Stop the client, end its server session, and drop what it loaded. Once more after it has
            # ended: a client stopped before its USE line is not yet seen working in the scratch database.
            loader.abort()
            for _ in range(2):
                with contextlib.suppress(Exception):
                    kill_sessions(conn, scratch)
                with contextlib.suppress(Exception):
                    loader.reap()
                with contextlib.suppress(Exception), conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS {quote_name(scratch)}")
            raise
    log.info("loaded %d bytes of dump (source database %s) into %s", sum(c.plain_bytes for c in counters),
             rewriter.source, scratch)

