"""The mirror's files as its index names them (core/mirror_store.py).

The index is read back from the storage root, so a path in it is untrusted: the store acts on a file (renames it
into place, links it as a version, deletes it) only when its path is one the mirror could have written, plain
names beneath the mirror folder with no symbolic link on the way (the mirror makes none). Any other row keeps
its file untouched: a tampered index never moves, copies in or deletes a file outside the mirror.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from core.atomic import DIR_MODE, FILE_MODE, fsync_dir
from core.safe_paths import UnsafePath, plain_parts


def make_private_dirs(path: Path) -> None:
    """Create missing folders one level at a time, each 0700 (mkdir(parents=True) ignores the mode)."""
    if not path.is_dir():
        make_private_dirs(path.parent)
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass


def is_regular_file(path: Path, inode: int | None = None) -> bool:
    """A regular file (not a symlink), and the one with `inode` if given."""
    try:
        info = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    return stat.S_ISREG(info.st_mode) and (inode is None or info.st_ino == inode)


def beneath(root: Path, relative: object) -> Path | None:
    """root/relative if `relative` is plain names (no '..', not absolute); else None. Where a file is about to
    be placed: a link planted on the way is cleared first (MirrorStore._make_way)."""
    try:
        return root.joinpath(*plain_parts(relative, "mirror index path"))
    except UnsafePath:
        return None


def inside(root: Path, relative: object) -> Path | None:
    """`beneath`, and no folder on the way is a symbolic link; else None. Where a file is read, linked or deleted."""
    path = beneath(root, relative)
    if path is None:
        return None
    folder = root
    for part in path.relative_to(root).parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            return None
    return path


def held_file(root: Path, relative: object, inode: int | None = None) -> Path | None:
    """`inside`, and a regular file there (not a link; the one with `inode` if given); else None."""
    path = inside(root, relative)
    return path if path is not None and is_regular_file(path, inode) else None


def link_or_copy(source: Path, target: Path) -> None:
    """A second name for the old bytes: a hard link, or a durable copy where links are not supported."""
    make_private_dirs(target.parent)
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:  # a file system without hard links: a durable private copy
        shutil.copyfile(source, target, follow_symlinks=False)
        os.chmod(target, FILE_MODE)
        with open(target, "rb") as copy:
            os.fsync(copy.fileno())
    fsync_dir(target.parent)


__all__ = ["beneath", "held_file", "inside", "is_regular_file", "link_or_copy", "make_private_dirs"]
