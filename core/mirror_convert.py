"""Converting a mirror of the first layout (every folder with a `%` suffix, every byte outside
[A-Za-z0-9._-] percent-escaped: `docs%/%E6%8A%A5.pdf`) to the readable one of core/mirror_paths.py,
in place: renames only, no download.

Two passes over the index, each resumable: every file first goes to a flat staging name under
.convert/ (so old and new names never meet: the old folder `a%` is the new file of a key "a%"), then
to its new path. Each batch of renames is followed, in the same write transaction, by the index's
`path` update, and every name is a function of the row alone, so a crash between a rename and its
commit is recognised later (the file is at the row's next name, not at its path). Between the passes,
whatever is left in the old folders is a file the index did not know: it is moved under .orphans/,
never deleted. PRAGMA user_version records the stage: 0 the first layout, STAGED, FORMAT (done).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from core.atomic import fsync_dir
from core.mirror_files import held_file, make_private_dirs
from core.mirror_paths import has_subkeys, object_path, version_path

FORMAT, STAGED = 2, 1
STAGING, ORPHANS = ".convert", ".orphans"
RESERVED = frozenset({".index.sqlite", ".index.sqlite-wal", ".index.sqlite-shm", ".index.sqlite-journal", ".tmp",
                      STAGING, ORPHANS})
BATCH = 500
Writer = Callable[[], AbstractContextManager[sqlite3.Connection]]
log = logging.getLogger(__name__)


class ConversionError(OSError):
    """A file of the mirror could not be moved; the message says which and what to do."""


def _stage(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def convert_layout(root: Path, write: Writer) -> None:
    """Bring the mirror at `root` to FORMAT; `write()` opens a write transaction on its index.
    Processes opening the mirror at once share the work: every step checks the stage in its transaction."""
    with write() as conn:
        if _stage(conn) == FORMAT:
            return
    log.info("converting the MinIO mirror at %s to readable paths (renames only; an interrupted run resumes)", root)
    while _pass(root, write, 0, _to_staging):
        pass
    with write() as conn:
        if _stage(conn) == 0:
            _sweep_old_folders(root)
            conn.execute(f"PRAGMA user_version={STAGED}")
    while _pass(root, write, STAGED, _to_final):
        pass
    with write() as conn:
        if _stage(conn) == STAGED:
            try:
                (root / STAGING).rmdir()
            except FileNotFoundError:
                pass
            conn.execute(f"PRAGMA user_version={FORMAT}")
    log.info("the MinIO mirror at %s now keeps every object at its own path", root)


def _pass(root: Path, write: Writer, stage: int, step: Callable) -> bool:
    """One batch of a pass; False once the pass has nothing left (or another process moved past it)."""
    with write() as conn:
        if _stage(conn) != stage:
            return False
        folders: set[Path] = set()
        moves = step(conn, root, folders)
        for folder in folders:  # the renames are durable before the index says so
            if folder.is_dir():
                fsync_dir(folder)
        for table, row_id, path in moves:
            conn.execute(f"UPDATE {table} SET path=? WHERE rowid=?", (path, row_id))
        return bool(moves)


def _staging_name(table: str, bucket: str, key: str, row_id: int) -> str:
    if table == "versions":
        return f"{STAGING}/v{row_id}"
    return f"{STAGING}/o{hashlib.sha256(f'{bucket}/{key}'.encode('utf-8', 'surrogatepass')).hexdigest()[:40]}"


def _to_staging(conn: sqlite3.Connection, root: Path, folders: set[Path]) -> list[tuple[str, int, str]]:
    moves = []
    for table in ("objects", "versions"):
        rows = conn.execute(f"SELECT rowid, bucket, key, path FROM {table} WHERE substr(path, 1, {len(STAGING) + 1})"
                            f" != ? LIMIT ?", (f"{STAGING}/", BATCH)).fetchall()
        for row_id, bucket, key, path in rows:
            staged = _staging_name(table, bucket, key, row_id)
            _move(root, path, staged, folders)
            moves.append((table, row_id, staged))
    return moves


def _to_final(conn: sqlite3.Connection, root: Path, folders: set[Path]) -> list[tuple[str, int, str]]:
    moves = []
    rows = conn.execute("SELECT rowid, bucket, key, path FROM objects WHERE substr(path, 1, ?) = ? LIMIT ?",
                        (len(STAGING) + 1, f"{STAGING}/", BATCH)).fetchall()
    for row_id, bucket, key, path in rows:
        final = str(object_path(bucket, key, file_mark=has_subkeys(conn, bucket, key)))
        _move(root, path, final, folders)
        moves.append(("objects", row_id, final))
    rows = conn.execute("SELECT id, bucket, key, path, superseded_at FROM versions WHERE substr(path, 1, ?) = ? "
                        "LIMIT ?", (len(STAGING) + 1, f"{STAGING}/", BATCH)).fetchall()
    for row_id, bucket, key, path, superseded in rows:
        stamp = re.sub(r"[^0-9A-Za-z]", "", str(superseded))[:22]
        final = str(version_path(bucket, key, stamp, f"{row_id % (1 << 32):08x}"))
        _move(root, path, final, folders)
        moves.append(("versions", row_id, final))
    return moves


def _move(root: Path, source: str, target: str, folders: set[Path]) -> None:
    """Rename the file at `source` to `target`; a file not at `source` is already there (an interrupted
    run) or was missing before (the row follows anyway; a reconcile fetches a missing object again)."""
    old, new = held_file(root, source), root / target
    if old is None:
        return
    try:
        make_private_dirs(new.parent)
        os.replace(old, new)
    except OSError as exc:
        raise ConversionError(f"converting the MinIO mirror at {root} to readable paths: moving {source} to "
                              f"{target} failed ({exc.strerror or exc}); fix that (space, permissions) and start "
                              "again: the conversion resumes where it stopped, nothing is lost") from None
    folders.update((old.parent, new.parent))


def _sweep_old_folders(root: Path) -> None:
    """Empty the first layout's folders (every indexed file is staged): files nobody indexed go under
    .orphans/ with their old paths, empty folders go."""
    orphans = 0
    for top in sorted(os.listdir(root)):
        if top in RESERVED:
            continue
        if not (root / top).is_dir() or (root / top).is_symlink():
            _keep_orphan(root, Path(top))
            orphans += 1
            continue
        for folder, dirs, files in os.walk(root / top, topdown=False):
            here = Path(folder)
            for name in [*files, *(d for d in dirs if (here / d).is_symlink())]:
                _keep_orphan(root, (here / name).relative_to(root))
                orphans += 1
            for name in dirs:
                try:
                    (here / name).rmdir()
                except OSError:
                    pass
        try:
            (root / top).rmdir()
        except OSError:
            pass
    if orphans:
        log.warning("%d file(s) in the MinIO mirror at %s were in no index: kept under %s", orphans, root,
                    root / ORPHANS)


def _keep_orphan(root: Path, relative: Path) -> None:
    target = root / ORPHANS / relative
    make_private_dirs(target.parent)
    os.replace(root / relative, target)
