"""Names read back from the storage root are untrusted: one way to turn them into paths.

Anyone who can write into the storage root (a NAS share, ransomware, an offsite store) can plant a
manifest naming `../../etc/x`, a symlink in place of a tier folder, a point or an artifact, or a FIFO
where a dump should be. Every name read from disk (point names, manifest artifact names, `.age`
names, mirror index paths, archive members, offsite snapshot paths) goes through `plain_name` /
`plain_parts`, and every file beneath a trusted folder is opened from that folder's descriptor one
component at a time with O_NOFOLLOW (`open_dir`, `opened`, `private_folder`), so a symlink anywhere below the
trusted folder is refused, never followed. The trusted folder itself (the storage root from the
config, which may be a symlink, e.g. a QNAP share) is followed.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from core.component import PermanentError

NAME_MAX = 255  # bytes of one name (Linux NAME_MAX): longer ones can never exist on disk
MANIFEST_MAX = 64 << 20  # a real manifest is a few KiB; far larger is planted or broken
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO never hangs open


class UnsafePath(PermanentError, LookupError, OSError):
    """A name or path read from the storage root that would leave its folder, or a symlink, FIFO or
    device where a file or folder of ours belongs. Also a LookupError (a point that cannot be used) and
    an OSError (the storage root is not usable as it is), so callers that report those report it."""

    def __init__(self, path: object, problem: str):
        self.message = f"{path}: {problem}"
        OSError.__init__(self, errno.ELOOP, self.message, str(path))
        self.path, self.problem = path, problem

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # raised in workers and pickled: keep the two arguments
        return (type(self), (self.path, self.problem))


def plain_name(name: object, what: str = "name", where: object = None) -> str:
    """`name` if it is one plain file name (no '/', not '', '.' or '..', no NUL, at most NAME_MAX
    bytes); otherwise UnsafePath naming `where` (the file it was read from) and the problem."""
    problem = None
    if not isinstance(name, str):
        problem = f"the {what} is not a string ({type(name).__name__})"
    elif name in ("", ".", ".."):
        problem = f"the {what} {name!r} is not a file name"
    elif "/" in name or "\0" in name:
        problem = f"the {what} {_short(name)!r} is a path, not a plain name (it could leave its folder)"
    elif len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        problem = f"the {what} {_short(name)!r} is {len(name)} characters long, longer than any file name can be"
    if problem:
        raise UnsafePath(_short(str(where), 200) if where is not None else _short(str(name)), problem)
    return name  # type: ignore[return-value]


def plain_parts(relative: object, what: str = "path", where: object = None) -> tuple[str, ...]:
    """A relative path read from disk (an archive member, a mirror index path) as its plain names:
    refused when absolute, empty, or with a '..', '.' or empty component."""
    if not isinstance(relative, str) or not relative or relative.startswith("/") or "\0" in relative:
        raise UnsafePath(where if where is not None else repr(relative),
                         f"the {what} {_short(str(relative))!r} is not a relative path beneath its folder")
    parts = relative.split("/")
    for part in parts:
        plain_name(part, f"component of the {what} {_short(relative)!r}", where)
    return tuple(parts)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def _refusal(base: Path, parts: Sequence[str], index: int, exc: OSError) -> OSError:
    """Why opening parts[index] beneath `base` failed, in words; an ordinary OSError stays itself."""
    path = base.joinpath(*parts[:index + 1])
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return exc
        if stat.S_ISLNK(mode):
            return UnsafePath(path, "is a symbolic link; links inside the storage root are never followed "
                                    "(remove it, or put the real folder or file there)")
        if not stat.S_ISDIR(mode) and index < len(parts) - 1:
            return UnsafePath(path, "is not a folder")
    return exc


def open_dir(base: Path, parts: Sequence[str] = ()) -> int:
    """A descriptor of base/parts...; `base` is trusted (followed), each part must be a plain name and a
    real folder (a symlink is refused). The caller closes it."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, part in enumerate(parts):
            plain_name(part, "folder name", base.joinpath(*parts[:index + 1]))
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refusal(base, parts, index, exc) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def opened(base: Path, parts: Sequence[str], what: str = "file") -> Iterator[BinaryIO]:
    """The regular file base/parts... opened for reading, no symlink followed on the way below `base`;
    a symlink, FIFO, device or folder there is refused with UnsafePath naming it."""
    *folders, name = parts
    path = base.joinpath(*parts)
    plain_name(name, f"{what} name", path)
    folder = open_dir(base, folders)
    try:
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=folder)
        except OSError as exc:
            raise _refusal(base, parts, len(parts) - 1, exc) from None
    finally:
        os.close(folder)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafePath(path, f"is {describe_mode(mode)}, not a regular file; it is never read")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def read_bounded(base: Path, parts: Sequence[str], limit: int, what: str = "file") -> bytes:
    """The whole of a small file read beneath `base` (see `opened`), refused above `limit` bytes
    without reading it."""
    with opened(base, parts, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise UnsafePath(base.joinpath(*parts), f"is {size} bytes, more than a {what} can be "
                                                    f"({limit >> 20} MiB); it is not read")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafePath(base.joinpath(*parts), f"grew past {limit >> 20} MiB while it was read; it is not used")
    return data


def entry_problem(path: Path, want_dir: bool) -> str | None:
    """Why an entry found by listing a folder of ours is not usable (a symlink, or not the kind of
    entry expected), or None when it is."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "is gone"
    if stat.S_ISLNK(mode):
        return "is a symbolic link; links inside the storage root are never followed (remove it)"
    if want_dir and not stat.S_ISDIR(mode):
        return f"is {describe_mode(mode)}, not a folder"
    if not want_dir and not stat.S_ISREG(mode):
        return f"is {describe_mode(mode)}, not a regular file"
    return None


def private_folder(base: Path, parts: Sequence[str]) -> Path:
    """Create base/parts... (each missing folder 0700, each one chmodded 0700 through its descriptor),
    refusing a symlink or non-folder on the way: nothing outside `base` is created or chmodded."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, part in enumerate(parts):
            plain_name(part, "folder name", base.joinpath(*parts[:index + 1]))
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refusal(base, parts, index, exc) from None
            os.close(fd)
            fd = child
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return base.joinpath(*parts)


def describe_mode(mode: int) -> str:
    for test, words in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return words
    return "of an unknown kind"


def relative_parts(base: Path, path: Path, what: str = "path") -> tuple[str, ...]:
    """The plain names leading from `base` to `path` (lexically; '..' and absolute escapes refused)."""
    try:
        relative = PurePosixPath(path).relative_to(PurePosixPath(base))
    except ValueError:
        raise UnsafePath(path, f"the {what} is not beneath {base}") from None
    return plain_parts(str(relative), what, path) if relative.parts else ()
