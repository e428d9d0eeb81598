"""Locks that die with their holder: fcntl locks are released by the kernel when a process exits,
even on SIGKILL, so a crashed worker can never hold one forever."""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.atomic import FILE_MODE


class Busy(RuntimeError):
    """Someone else holds the lock."""


@dataclass
class Held:
    """An exclusive lock held: its file says our pid, and may carry a note for the next holder."""

    fd: int
    previous: str  # what the last holder left in the file: "PID [NOTE]", "" when new

    def note(self, text: str) -> None:
        """Leave `text` after our pid (one line, a few bytes: it fits the page the pid took)."""
        os.pwrite(self.fd, f"{os.getpid()} {text}".encode(), 0)


@contextmanager
def exclusive(path: Path, what: str, wait: bool = False) -> Iterator[Held]:
    """Hold an exclusive lock on `path`; raise Busy naming `what` and the holder's pid if taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = (os.pread(fd, 32, 0).decode(errors="replace").split() or ["unknown"])[0]
            raise Busy(f"{what} is already running (pid {holder}); wait for it to finish") from None
        previous = os.pread(fd, 512, 0).decode(errors="replace").strip()
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield Held(fd, previous)
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def shared(path: Path) -> Iterator[None]:
    """A shared lock: many holders at once; an exclusive taker knows someone is still at work."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def is_held(path: Path) -> bool:
    """True while some process holds any lock on `path`."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
