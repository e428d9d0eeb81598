"""What the two SQL engines' restores (actors/mysql/restore.py, actors/postgres/restore.py) share: both load a
point's dump into a scratch database, check it against the manifest, and swap it in or copy one knowledge base's
rows from it. Here: the dump checked against its record before anything is touched, the results, the error of
a swap whose recount differs, the knowledge base's tables with the check that the target can take their
columns, and the faces' glue (a restore request dispatched, a drill into a scratch database dropped after). How
each engine loads, counts and swaps stays in its own package."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from core.atomic import sha256_of
from core.component import PermanentError
from core.face import RestoreRequest
from core.manifest import ComponentRecord
from core.points import Point

KB_TABLES = ("knowledgebase", "document", "file2document", "file", "task")  # a knowledge base's own rows
BATCH = 500  # ids per statement when a knowledge base's rows are fetched, deleted or inserted


def checked_dump(point: Point, record: ComponentRecord | None, component: str,
                 artifact_name: Callable[[ComponentRecord], str]) -> Path:
    """The dump of `component` in the point (`artifact_name` says its name from the record), checked against the
    record (status, size and SHA-256) before anything is touched."""
    where = f"backup point {point.ref}"
    if record is None:
        raise PermanentError(f"{where} has no {component} record; choose a point that has it (`ragflow-backup list`)")
    if record.component != component:
        raise PermanentError(f"the record given is of component '{record.component}', not {component}")
    if record.status != "ok":
        raise PermanentError(f"the {component} backup in {where} failed ({record.error}); choose another point")
    name = artifact_name(record)
    entry = next((a for a in record.artifacts if a.name == name), None)
    if entry is None:
        raise PermanentError(f"the {component} record of {where} names no {name}; choose another point")
    path = point.path(name)
    if not path.is_file():
        raise PermanentError(f"{path} is missing; choose another point")
    if path.stat().st_size != entry.bytes or sha256_of(path) != entry.sha256:
        raise PermanentError(f"{path} differs from the manifest (size or SHA-256): it changed after the backup; "
                             f"run `ragflow-backup verify` and choose another point")
    return path


@dataclass
class DatabaseRestoreResult:
    """A whole database restored; each engine's subclass says its mismatches in its own words (`compare`)."""

    compare: ClassVar[Callable[[dict[str, int], dict[str, int]], list[str]]]

    point: str
    target: str
    expected: dict[str, int]  # rows per table, from the manifest (after a replay: in the scratch database)
    found: dict[str, int]  # rows per table in the target after the swap
    seconds: float
    previous_database: str | None = None  # the pre-restore tables, when kept

    @property
    def mismatches(self) -> list[str]:
        return type(self).compare(self.found, self.expected)

    @property
    def ok(self) -> bool:
        return not self.mismatches


class RestoreCheckFailed(PermanentError):
    """The swap was done but the target's recount differs from the manifest; `.result` has both, and the
    previous tables are kept in `.result.previous_database` for a rollback."""

    def __init__(self, message: str, result: DatabaseRestoreResult):
        super().__init__(message)
        self.result = result


@dataclass
class KBRestoreResult:
    point: str
    target: str
    kb_id: str
    expected: dict[str, int]  # the knowledge base's rows per table in the backup
    found: dict[str, int]  # ... in the target after the restore
    removed: dict[str, int]  # rows deleted from the target before the backup's went in
    seconds: float

    @property
    def ok(self) -> bool:
        return self.found == self.expected


def kb_columns(in_backup: Callable[[str], list[str]], in_target: Callable[[str], list[str]], target: str,
               point: Point) -> dict[str, list[str]]:
    """The columns to copy per table of KB_TABLES (`in_backup` / `in_target` list a table's columns, [] when
    there is no such table); refuses when the target lacks a table or a column the backup has."""
    columns = {}
    for table in KB_TABLES:
        have, present = in_backup(table), set(in_target(table))
        if not have:
            raise PermanentError(f"the backup {point.ref} has no table {table}: it is not a RAGFlow database")
        if not present:
            raise PermanentError(f"database {target} has no table {table}: restore the whole database instead")
        missing = [c for c in have if c not in present]
        if missing:
            raise PermanentError(f"{target}.{table} lacks column(s) {', '.join(missing)} that the backup {point.ref} "
                                 f"has (RAGFlow's schema changed?): restore the whole database instead")
        if "id" not in have:
            raise PermanentError(f"{table} of the backup {point.ref} has no id column")
        columns[table] = have
    return columns


def checked_kb_id(kb_id: object) -> str:
    if not isinstance(kb_id, str) or not kb_id.strip():
        raise PermanentError(f"knowledge base id {kb_id!r} is empty; give the 32-hex id RAGFlow shows")
    return kb_id


def kb_not_in_backup(kb_id: str, point: Point) -> PermanentError:
    return PermanentError(f"knowledge base {kb_id} is not in the backup {point.ref}: check the id, or choose a "
                          f"point made while it existed")


def kb_differs(kb_id: str, target: str, now: dict[str, set[str]], wanted: dict[str, set[str]]) -> PermanentError:
    """The error that undoes a knowledge base's restore (raised inside its transaction) whose rows came out wrong."""
    return PermanentError(f"after restoring knowledge base {kb_id} into {target} its rows differ from the backup "
                          f"({'; '.join(f'{t}: {len(now[t])} found, {len(wanted[t])} expected' for t in KB_TABLES)}); "
                          f"nothing was changed")


def kb_restored(point: Point, target: str, kb_id: str, wanted: dict[str, set[str]], now: dict[str, set[str]],
                removed: dict[str, int], started: float, log: logging.Logger) -> KBRestoreResult:
    """The result of a knowledge base's restore begun at `started` (time.monotonic()), logged."""
    result = KBRestoreResult(point=point.ref, target=target, kb_id=kb_id,
                             expected={t: len(wanted[t]) for t in KB_TABLES}, found={t: len(now[t]) for t in KB_TABLES},
                             removed=removed, seconds=time.monotonic() - started)
    log.info("restored knowledge base %s into %s from %s: %s (removed first: %s) in %.1fs", kb_id, target, point.ref,
             result.found, removed, result.seconds)
    return result


def recount_differs(result: DatabaseRestoreResult, point: Point, kept: str) -> RestoreCheckFailed:
    """The error of a swap whose target's recount differs from the manifest; `kept` says where the previous
    tables are."""
    return RestoreCheckFailed(f"{result.target} was restored from {point.ref} but its rows differ from the manifest "
                              f"(is RAGFlow writing to it?): {'; '.join(result.mismatches)}. {kept}", result)


def log_restored(log: logging.Logger, result: DatabaseRestoreResult, created: bool) -> None:
    log.info("restored %s%s from %s: %d tables, %d rows as in the manifest, in %.1fs", result.target,
             " (created)" if created else "", result.point, len(result.found), sum(result.found.values()),
             result.seconds)


def requested(request: RestoreRequest, whole: Callable[..., Any], one_kb: Callable[..., Any], **extra: Any) -> Any:
    """A component's restore as the face asks for it: one knowledge base (`one_kb`) or the whole database
    (`whole`), into `request.target` or the configured database; `extra` goes to either."""
    target = str(request.target) if request.target else None
    if request.kb:
        return one_kb(request.point, request.record, request.kb, target_database=target, log=request.log, **extra)
    return whole(request.point, request.record, target_database=target, log=request.log, **extra)


def drilled(target: str, restore: Callable[[str], DatabaseRestoreResult],
            drop: Callable[[str], None]) -> tuple[bool, str]:
    """A drill: the point restored into the scratch database `target`, which is dropped whatever happened;
    (ok, what was done), as the face's drill returns it."""
    try:
        result = restore(target)
    finally:
        drop(target)
    return result.ok, f"{sum(result.found.values())} rows in {len(result.found)} tables into {target} (dropped)"
