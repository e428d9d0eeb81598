"""doctor's checks of PostgreSQL: the connection, the account's privileges, and a pg_dump and (for a restore) a
pg_restore of the server's major version or newer, where they run (here, or in the container in docker mode);
and whether a point holds a knowledge base, before a restore of it."""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path

from actors.postgres.backup import ARTIFACT, major
from actors.postgres.session import connect, dump_tools
from core.component import Check, failed_check, off_check
from core.config import Settings
from core.points import Point

NAME = "postgres"


def _privileges(settings: Settings) -> tuple[str, str, str]:
    """(server version, what the account may do, what it lacks for a restore)."""
    cfg = settings.postgres
    with closing(connect(cfg)) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        superuser, createdb, createrole = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
        unreadable = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
            "AND NOT has_table_privilege(format('%I.%I', schemaname, tablename), 'SELECT')").fetchone()[0]
        owner = conn.execute("SELECT pg_has_role(datdba, 'MEMBER') FROM pg_database "
                             "WHERE datname = current_database()").fetchone()[0]
    if unreadable:
        return version, "", f"cannot read {unreadable} table(s) of {cfg.database}: pg_dump would fail"
    if superuser:
        return version, "superuser", ""
    lacks = [what for what, has in (("CREATEDB", createdb), ("CREATEROLE", createrole),
                                    (f"the role of {cfg.database}'s owner", owner)) if not has]
    return version, "reads every table", (f"lacks {', '.join(lacks)}, which a restore needs (a scratch database, "
                                          f"a loading role, the rename)" if lacks else "")


def check_postgres(settings: Settings) -> list[Check]:
    cfg = settings.postgres
    if not cfg.enabled:
        return [off_check(NAME, "")]
    try:
        version, can, lacks = _privileges(settings)
    except Exception as exc:  # noqa: BLE001
        return [failed_check(NAME, exc, f"check postgres.host/port/user/database and POSTGRES_PASSWORD "
                                        f"({cfg.host}:{cfg.port})")]
    checks = [Check(NAME, "fail" if not can else "warn" if lacks else "ok",
                    f"PostgreSQL {version} at {cfg.host}:{cfg.port}, database {cfg.database}"
                    + (f"; {lacks}" if lacks else f"; the account {can}"),
                    "use RAGFlow's own account (POSTGRES_USER), the owner of its database" if lacks else "")]
    try:
        with dump_tools(settings) as tools:  # a restore loads where the dump is made (actors/postgres/loader.py)
            dump_version, restore_version = tools.version("pg_dump"), tools.version("pg_restore")
            where = tools.where
    except Exception as exc:  # noqa: BLE001
        return [*checks, failed_check(f"{NAME} pg_dump", exc, "start RAGFlow's postgres service, or set "
                                                              "postgres.compose_project / docker.host")]
    server = major(version)
    for tool, found, place in (("pg_dump", dump_version, where),
                               ("pg_restore", restore_version, where if cfg.mode == "docker" else "PATH")):
        client = major(found) if found else None
        if found is None:
            checks.append(Check(f"{NAME} {tool}", "fail", f"no {tool} runs in {place}",
                                "apt-get install postgresql-client, or use postgres.mode: docker"
                                if cfg.mode != "docker" else "use postgres.mode: tcp with a local postgresql-client"))
        elif client is not None and server is not None and client < server:
            checks.append(Check(f"{NAME} {tool}", "fail", f"{found} in {place} is older than the server ({version})",
                                f"install postgresql-client-{server} or newer"))
        else:
            checks.append(Check(f"{NAME} {tool}", "ok", f"{found} in {place}"))
    return checks


# ---------------------------------------------------------------- before a restore of one knowledge base


KB_ROWS = ["--data-only", "--schema=public", "--table=knowledgebase", "-f", "-"]  # COPY text: nothing runs


def kb_in_copy(lines: Iterable[bytes], kb_id: str) -> bool | None:
    """Does pg_restore's COPY text of the knowledgebase table hold this id? None when there is no such table."""
    wanted, column = kb_id.encode(), None
    for line in lines:  # one row a line: newlines inside values are escaped
        if column is None:
            if line.startswith(b"COPY ") and b" (" in line:
                names = line.split(b" (", 1)[1].split(b")", 1)[0].split(b", ")
                column = names.index(b"id") if b"id" in names else -1
            continue
        if line == b"\\.\n" or column < 0:
            break
        fields = line.rstrip(b"\n").split(b"\t")
        if column < len(fields) and fields[column] == wanted:
            return True
    return False if column is not None and column >= 0 else None


def lines_of(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines (each with its newline) of a stream of blocks."""
    rest = b""
    for block in blocks:
        rest += block
        *whole, rest = rest.split(b"\n")
        for line in whole:
            yield line + b"\n"
    if rest:
        yield rest


def kb_in_archive(settings: Settings, path: Path, kb_id: str) -> bool | None:
    """Does the archive's knowledgebase table hold this id? Read where the restore would load it
    (actors/postgres/loader.py): with the local pg_restore, or in docker mode the container's, fed the archive on
    its stdin. None when it cannot be told there (no pg_restore, no container, no such table)."""
    if settings.postgres.mode == "docker":
        try:
            with dump_tools(settings) as tools, closing(tools.fed("pg_restore", KB_ROWS, path)) as blocks:
                return kb_in_copy(lines_of(blocks), kb_id)
        except Exception:  # noqa: BLE001 - the restore itself says what is wrong with the container
            return None
    tool = shutil.which("pg_restore")
    if tool is None:
        return None
    proc = subprocess.Popen([tool, *KB_ROWS, str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        return kb_in_copy(proc.stdout, kb_id)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def kb_problems(settings: Settings, point: Point, kb_id: str) -> list[str]:
    path = point.folder / ARTIFACT
    if not path.is_file():  # encrypted: the restore decrypts it and says so if the KB is not there
        return []
    if kb_in_archive(settings, path, kb_id) is False:
        return [f"knowledge base {kb_id} is not in {point.ref} (its PostgreSQL archive has no such knowledgebase "
                "row): check the id (RAGFlow's knowledgebase table), or choose a point made while it existed "
                "(`ragflow-backup list`)"]
    return []
