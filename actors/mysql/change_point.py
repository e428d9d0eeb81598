"""Change points of MySQL (mysql.full_every_days): which full point a new point can be the changes of, its dump
opened and bound to its recorded SHA-256, linked into the new point, and a change point's files and counts.

A change point's folder holds `mysql_base.sql.gz` (a hard link to the base point's full dump: pruning the base
point never breaks it) and `mysql_changes.sql.gz` (actors/mysql/changes.py); both plain gzip, so
`gunzip -c mysql_base.sql.gz mysql_changes.sql.gz | mysql` restores it by hand. Always the changes of the
newest FULL point, never of another change point: no chains.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

from core import safe_paths
from core.atomic import atomic_file, fsync_dir
from core.config import Settings
from core.manifest import Artifact, ComponentRecord
from core.points import Point

NAME = "mysql"
FULL = "mysql_dump.sql.gz"
BASE = "mysql_base.sql.gz"
CHANGES = "mysql_changes.sql.gz"


@dataclass
class Base:
    point: Point
    record: ComponentRecord
    artifact: Artifact

    @property
    def path(self) -> Path:
        return self.point.folder / self.artifact.name


def newest_full(settings: Settings, point: Point, log: logging.Logger) -> Base | None:
    """The newest full gzip MySQL point of this database, if it is young enough to be a base (records are
    untrusted: anything odd means no base, and a full point is made)."""
    cfg = settings.mysql
    newest: tuple[datetime, Point, ComponentRecord] | None = None
    for other in point.storage.points():
        if other.folder == point.folder:
            continue
        try:
            manifest = other.manifest()
        except Exception:  # noqa: BLE001 - an unreadable manifest is no base
            continue
        record = manifest.components.get(NAME)
        if record is None or record.status != "ok" or not any(a.name == FULL for a in record.artifacts):
            continue
        if newest is None or manifest.created_at > newest[0]:
            newest = (manifest.created_at, other, record)
    if newest is None:
        return None
    created, other, record = newest
    artifact = next(a for a in record.artifacts if a.name == FULL)
    try:
        now = point.manifest().created_at  # the new point's moment (a simulated day in bench/storage_30_days.py)
    except Exception:  # noqa: BLE001 - a point being written always has its manifest; if not, the clock
        now = datetime.now(timezone.utc)
    why = None
    if now - created >= timedelta(days=cfg.full_every_days) or created > now:
        why = f"it is older than mysql.full_every_days ({cfg.full_every_days})"
    elif record.details.get("database") != cfg.database:
        why = f"it is of database {record.details.get('database')!r}"
    elif artifact.kind != "gzip" or artifact.encrypted is not None:
        why = "its dump is encrypted" if artifact.encrypted is not None else "its dump is not gzip"
    elif not isinstance(record.details.get("schema_sha256"), str):
        why = "it was made before change points"
    elif record.details.get("rows_per_line") is False:
        why = "its dump has several rows on a line (a dump tool older than MariaDB 10.11.8 writes them so)"
    if why is not None:
        log.info("a full MySQL point: the newest full point %s is no base (%s)", other.ref, why)
        return None
    return Base(other, record, artifact)


def rows_on_one_line(point: Point, client_version: str) -> bool:
    """A MySQL record of another point says this dump tool (its --version line) wrote its extended INSERTs with
    several rows on one line (`rows_per_line: false`, actors/mysql/backup.py): such a dump is never a base, so
    this tool is asked for a statement per row instead. Records are untrusted: a false one costs CPU only."""
    for other in point.storage.points():
        if other.folder == point.folder:
            continue
        try:
            record = other.manifest().components.get(NAME)
        except Exception:  # noqa: BLE001 - an unreadable manifest says nothing
            continue
        if record is not None and record.details.get("client_version") == client_version \
                and record.details.get("rows_per_line") is False:
            return True
    return False


@contextlib.contextmanager
def opened(base: Base) -> Iterator[BinaryIO]:
    """The base's dump, open, checked against the SHA-256 of its record (ValueError if it differs); reads of
    the handle and a link made from it (`link_into`) are of the file that was checked."""
    # Untrusted storage root: never a symlink, FIFO or device (core/safe_paths.py), only the regular file itself.
    with safe_paths.opened(base.point.folder, [base.artifact.name], "MySQL dump") as handle:
        digest = hashlib.sha256()
        size = 0
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
        if digest.hexdigest() != base.artifact.sha256 or size != base.artifact.bytes:
            raise ValueError(f"{base.path} differs from its record (size or SHA-256)")
        handle.seek(0)
        yield handle


def link_into(handle: BinaryIO, base: Base, point: Point) -> Artifact:
    """The base's dump as the point's BASE: a hard link to the very file checked (its inode), or a copy of that
    file where a link is impossible (another file system, or the base pruned or replaced meanwhile)."""
    final = point.path(BASE)
    checked = os.fstat(handle.fileno())
    try:
        os.link(base.path, final, follow_symlinks=False)
        linked = os.lstat(final)
        if (linked.st_dev, linked.st_ino) != (checked.st_dev, checked.st_ino):
            raise FileExistsError(f"{base.path} was replaced after it was checked")
        fsync_dir(final.parent)
    except OSError:
        final.unlink(missing_ok=True)
        handle.seek(0)
        with atomic_file(final) as out:
            shutil.copyfileobj(handle, out, 1 << 20)
    return Artifact(name=BASE, bytes=base.artifact.bytes, sha256=base.artifact.sha256, kind="gzip")


def is_change_point(record: ComponentRecord) -> bool:
    names = {a.name for a in record.artifacts}
    return BASE in names and CHANGES in names


def expected_counts(base: dict[str, int], deleted: dict[str, int], inserted: dict[str, int]) -> dict[str, int]:
    """Rows per table after the changes (`deleted` -1: the whole table)."""
    counts = dict(base)
    for table, n in deleted.items():
        counts[table] = 0 if n < 0 else counts.get(table, 0) - n
    for table, n in inserted.items():
        counts[table] = counts.get(table, 0) + n
    return counts
