"""Locks that die with their holder: fcntl locks are released by the kernel when a process exits,
even on SIGKILL, so a crashed worker can never hold one forever."""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.atomic import FILE_MODE

POLL_SECONDS = 0.2  # how often a bounded wait tries the lock again (flock itself has no deadline)


class Busy(RuntimeError):
    """Someone else holds the lock."""


def holder(fd: int) -> tuple[str, str]:
    """(pid, note) the holder wrote into the lock file; ("unknown", "") when it wrote nothing yet. The file lies
    in the storage root (untrusted): the note is cut short and kept to printable text."""
    text = os.pread(fd, 512, 0).decode(errors="replace").strip()
    pid, _, note = text.partition(" ")
    return (pid if pid.isdigit() else "unknown"), "".join(c for c in note[:200] if c.isprintable())


def _take(fd: int, wait: bool, wait_seconds: float) -> bool:
    """Try for the lock: blocking (`wait`), for up to `wait_seconds`, or once. True when taken."""
    if wait:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
        time.sleep(POLL_SECONDS)


@dataclass
class Held:
    """An exclusive lock held: its file says our pid, and may carry a note for the next holder."""

    fd: int
    previous: str  # what the last holder left in the file: "PID [NOTE]", "" when new

    def note(self, text: str) -> None:
        """Leave `text` after our pid (one line, a few bytes: it fits the page the pid took)."""
        os.pwrite(self.fd, f"{os.getpid()} {text}".encode(), 0)


@contextmanager
def exclusive(path: Path, what: str, wait: bool = False, wait_seconds: float = 0) -> Iterator[Held]:
    """Hold an exclusive lock on `path`: at once, after waiting as long as it takes (`wait`), or after waiting
    up to `wait_seconds`; else raise Busy naming `what`, the holder's pid and what it noted it is doing."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        if not _take(fd, wait, wait_seconds):
            pid, note = holder(fd)
            waited = f" after waiting {wait_seconds:g}s" if wait_seconds else ""
            raise Busy(f"{what} is already running (pid {pid}){f' - {note}' if note else ''}{waited}; "
                       "wait for it to finish")
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
