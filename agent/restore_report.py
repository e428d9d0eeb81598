"""A restore's outcome per component in words and numbers, for the table `restore` prints (the results
themselves are the component modules' dataclasses; printed raw they were unreadable)."""
from __future__ import annotations

from typing import Any

from actors.config.restore import ConfigRestoreResult
from actors.minio.restore import MinioRestoreResult
from actors.mysql.restore import MySQLRestoreResult
from actors.postgres.restore import PostgresRestoreResult
from actors.search.restore import KBRestoreResult as SearchKBResult
from actors.search.restore import SearchRestoreResult
from agent.commands.common import human_bytes
from agent.upgrade_report import removals
from core.scratch_restore import KBRestoreResult as DatabaseKBResult


def _plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else (many or word + 's')}"


def _counted(found: dict[str, int], expected: dict[str, int], what: str) -> str:
    differ = [f"{name}: {found.get(name, 0)} found, {expected.get(name, 0)} expected"
              for name in sorted(set(found) | set(expected)) if found.get(name, 0) != expected.get(name, 0)]
    if differ:
        return f"MISMATCH ({'; '.join(differ)})"
    return f"as many {what} as the backup counted"


def _config(result: ConfigRestoreResult) -> str:
    parts = [_plural(len(result.written), "file") + " written", f"{len(result.unchanged)} unchanged"]
    if result.deleted:
        parts.append(f"{len(result.deleted)} deleted")
    if result.left_alone:
        parts.append(f"{len(result.left_alone)} not in the backup left alone")
    text = f"{', '.join(parts)} in {result.target_dir}; {result.found} of {result.expected} checked"
    return text + (f"; problems: {'; '.join(result.problems)}" if result.problems else "")


def _mysql(result: MySQLRestoreResult) -> str:
    rows = sum(result.found.values())
    text = (f"database {result.target}: {_plural(rows, 'row')} in {_plural(len(result.found), 'table')}, "
            f"{_counted(result.found, result.expected, 'rows')}")
    if result.replayed_to is not None:  # expected = the scratch database's rows after the replay, not the manifest's
        text += f" (the point's dump + the archived binlog to {result.replayed_to.astimezone().isoformat(timespec='seconds')})"
    if result.stored_code:
        text += f"; {_plural(len(result.stored_code), 'trigger/routine/view', 'triggers/routines/views')} re-created"
    if result.previous_database:
        text += f"; the tables before are kept in {result.previous_database}"
    return text


def _database_kb(result: DatabaseKBResult) -> str:
    rows = ", ".join(f"{table} {count}" for table, count in result.found.items())
    return (f"knowledge base {result.kb_id} in {result.target}: rows {rows}; "
            f"{sum(result.removed.values())} removed first; {_counted(result.found, result.expected, 'rows')}")


def _postgres(result: PostgresRestoreResult) -> str:
    text = (f"database {result.target}: {_plural(sum(result.found.values()), 'row')} in "
            f"{_plural(len(result.found), 'table')}, {_counted(result.found, result.expected, 'rows')}")
    return text + (f"; the database before is kept as {result.previous_database}" if result.previous_database else "")


def _search(result: SearchRestoreResult) -> str:
    names = "live names" if result.live else "renamed copies"
    return (f"{_plural(len(result.indices), 'index', 'indices')} from snapshot {result.snapshot} ({names}): "
            f"{_plural(sum(result.found.values()), 'document')}, {_counted(result.found, result.expected, 'documents')}")


def _search_kb(result: SearchKBResult) -> str:
    return (f"knowledge base {result.kb_id}: {_plural(sum(result.found.values()), 'chunk')} in "
            f"{_plural(len(result.found), 'index', 'indices')} from snapshot {result.snapshot} "
            f"({sum(result.replaced.values())} replaced); {_counted(result.found, result.expected, 'chunks')}")


def _minio(result: MinioRestoreResult) -> str:
    text = (f"objects as at {result.at.isoformat(timespec='seconds')}: {result.put} put "
            f"({human_bytes(result.bytes_written)}), {result.removed} removed")
    if result.created_buckets:
        text += f", {_plural(len(result.created_buckets), 'bucket')} created"
    text += (f"; {_plural(sum(result.found.values()), 'object')} in {_plural(len(result.found), 'bucket')}, "
             f"{_counted(result.found, result.expected, 'objects')}")
    return text + (f"; problems: {'; '.join(result.problems[:5])}" if result.problems else "")


WORDS = [(ConfigRestoreResult, _config), (MySQLRestoreResult, _mysql), (PostgresRestoreResult, _postgres),
         (DatabaseKBResult, _database_kb),  # a KB's rows, from MySQL or PostgreSQL (core/scratch_restore.py)
         (SearchRestoreResult, _search), (SearchKBResult, _search_kb), (MinioRestoreResult, _minio)]


def in_words(component: str, result: Any) -> str:
    """What a component's restore did, e.g. 'database rag_flow: 1234 rows in 20 tables, as many rows as the
    backup counted'."""
    exact = "".join(f"; {row.found}" for row in removals(component, result))  # restore --exact's removals
    for kind, words in WORDS:
        if isinstance(result, kind):
            return words(result) + exact
    if isinstance(result, str):  # a component that says it in words
        return result
    if component == "redis" and isinstance(result, int):
        return f"{_plural(result, 'key')} restored with their TTLs" + exact
    return type(result).__name__  # an unknown result: its kind, never a dump of its fields
