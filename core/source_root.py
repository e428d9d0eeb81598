"""Another installation's storage root, read only: `restore --from-root` (a staging RAGFlow, a new server).

Its points are read where they lie, with no lock taken: a complete point is never written again
(core/points.py), and the owner's agent and backup runs must never find a lock of ours in their way.
Nothing is written there: the safety point, state/last_restore.json, audit lines and decrypted copies
go to this config's own storage root. The owner's mirror index is never opened for writing: a
consistent copy of it is made in this root's foreign/<token>/ (`snapshot_index`), and the mirror's
files are read through that copy; SQLite never creates a -wal or -shm beside the owner's index for us.
Everything read from there (manifests, names, mirror paths) is untrusted: points and mirror files are
opened through core/safe_paths.py as for our own root.
"""
from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from core.component import PermanentError
from core.config import Settings
from core.layout import MIRROR_DIR, TIER_NAMES
from core.mirror_paths import INDEX_FILE
from core.mirror_store import MirrorStore
from core.points import Point, Storage

# Source mirror folder -> its read-only store: actors/minio/mirror.py's open_store asks here first.
READ_ONLY_MIRRORS: dict[Path, MirrorStore] = {}
COPY_ATTEMPTS = 5
SHOWN = 80  # characters of a name read from the source, in messages and the table


def read_only_mirror(root: Path) -> MirrorStore | None:
    return READ_ONLY_MIRRORS.get(Path(root))


def _stamp(*paths: Path) -> tuple:
    return tuple((p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None for p in paths)


def snapshot_index(index: Path, copy: Path) -> None:
    """Copy the SQLite index `index` (another installation's) to `copy`, consistently, writing nothing beside it.

    While its owner has it open (its -wal and -shm exist), a `mode=ro` connection reads one snapshot
    through them (a WAL reader never blocks the owner's writers). Otherwise nobody has it open: its
    bytes (and a -wal a crash left) are copied, and copied again if they changed meanwhile."""
    wal, shm = Path(f"{index}-wal"), Path(f"{index}-shm")
    if wal.is_symlink() or shm.is_symlink():  # the mirror makes none: a planted one is never followed
        raise PermanentError(f"{index}: its -wal or -shm is a symlink, which the mirror never makes; "
                             "restore from another copy of that storage root")
    if wal.exists() and shm.exists():
        with closing(sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True, timeout=30)) as source, \
                closing(sqlite3.connect(copy)) as target:
            source.backup(target)
        return
    for _ in range(COPY_ATTEMPTS):
        before = _stamp(index, wal)
        shutil.copyfile(index, copy)
        if wal.exists():
            shutil.copyfile(wal, Path(f"{copy}-wal"))
        if _stamp(index, wal) == before and not shm.exists():
            return
        Path(f"{copy}-wal").unlink(missing_ok=True)
        if wal.exists() and shm.exists():  # its owner opened it meanwhile: read it through SQLite
            return snapshot_index(index, copy)
    raise PermanentError(f"the mirror index {index} kept changing while it was copied; try again")


@dataclass(frozen=True)
class Mapped:
    """One name that differs (or not) between the source installation and this one."""

    component: str
    what: str
    source: str
    target: str

    @property
    def changed(self) -> bool:
        return self.source != self.target


def shown(value: object) -> str:
    """A name read from the source, printable and short (it is untrusted)."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


def name_mapping(settings: Settings, point: Point | None, components: list[str],
                 buckets: list[str]) -> list[Mapped]:
    """What each component's names were in the source (its manifest, its mirror) and are here."""
    records = point.manifest().components if point else {}
    out: list[Mapped] = []
    if "config" in components:
        out.append(Mapped("config", "RAGFlow's docker/ folder", "(the point's files)", str(settings.ragflow_dir)))
    if "mysql" in components and "mysql" in records:
        out.append(Mapped("mysql", "database", shown(records["mysql"].details.get("database", "?")),
                          settings.mysql.database))
    if "search" in components and "search" in records:
        for index in sorted(records["search"].counts):
            ours = any(fnmatch(index, pattern) for pattern in settings.search.indices)
            out.append(Mapped("search", "index", shown(index),
                              shown(index) if ours else f"{shown(index)} (not matched by search.indices here)"))
    if "minio" in components:
        for bucket in buckets:
            out.append(Mapped("minio", "bucket", shown(bucket), shown(bucket)))
    if "redis" in components and "redis" in records:
        out.append(Mapped("redis", "database number", shown(records["redis"].details.get("db", "?")),
                          str(settings.redis.db)))
    return out


def refuse_unmappable(settings: Settings, components: list[str], buckets: list[str]) -> None:
    """Single-bucket mode keeps every object in one bucket named by the config: another name here cannot
    be mapped onto it yet (keys would have to be rewritten), so it is refused before anything changes."""
    wanted = settings.minio.bucket
    if "minio" in components and wanted and buckets and buckets != [wanted]:
        raise PermanentError(f"the source mirror holds bucket(s) {', '.join(shown(b) for b in buckets[:5])} but this "
                             f"config's minio.bucket is {wanted!r}: set minio.bucket (and MINIO_BUCKET in RAGFlow's "
                             ".env) to the source's name, or leave MinIO out (-C mysql -C search ...); nothing was changed")


@contextmanager
def opened(settings: Settings, root: Path, mirror_dir: str = MIRROR_DIR) -> Iterator[Storage]:
    """The source root's points, and (when it has a mirror) its mirror read through a copy of its index:
    `settings.minio.mirror_dir` points at the source's mirror for the restore's length. Without a mirror
    there, MinIO is left out (settings.minio.enabled off), said by the caller from `settings`."""
    root = Path(os.path.abspath(root))
    own = Path(os.path.abspath(settings.storage_root))
    if root == own:
        raise PermanentError(f"{root} is this config's own storage root: restore from it without --from-root")
    if not root.is_dir() or not any((root / tier).is_dir() for tier in TIER_NAMES):
        raise PermanentError(f"{root} is not a storage root of ragflow-backup (no daily/, weekly/ or monthly/ "
                             "folder): give the folder the other installation's storage_root names")
    mirror = root / mirror_dir
    index = mirror / INDEX_FILE
    if not settings.minio.enabled or not index.is_file() or index.is_symlink():
        settings.minio.enabled = False
        yield Storage(root)
        return
    Storage(settings.storage_root).prepare()  # ours: a new installation's root may not exist yet
    staging = settings.layout.foreign_staging(secrets.token_hex(6))
    copy = staging / INDEX_FILE
    try:
        snapshot_index(index, copy)
        READ_ONLY_MIRRORS[mirror] = MirrorStore(mirror, snapshot=copy)
        settings.minio.mirror_dir = str(mirror)  # absolute: the layout joins it as it is
        yield Storage(root)
    finally:
        store = READ_ONLY_MIRRORS.pop(mirror, None)
        if store is not None:
            store.close()
        shutil.rmtree(staging, ignore_errors=True)
