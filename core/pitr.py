"""Point-in-time recovery's shared words: what the MySQL binlog archive (actors/binlog/) hands a MySQL
restore (actors/mysql/) through the restore action (actors/actions/restore.py), so that neither component
imports the other.

A point's MySQL dump records the binlog coordinates of its snapshot (the manifest's `binlog`); the archive
knows which of its files continue from there without a gap; the restore loads the dump into its scratch
database, replays those files from the coordinates up to the moment asked, checks, then swaps.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.component import PermanentError


@dataclass(frozen=True)
class BinlogCoordinates:
    """A place in the server's binary log: a file as the server names it (a plain name) and a byte offset."""
    file: str
    position: int


@dataclass(frozen=True)
class Span:
    """A stretch of time the archive can replay through without a gap (both ends included, aware datetimes)."""
    start: datetime
    end: datetime


@dataclass(frozen=True)
class ReplayPlan:
    """Replay the archived binlog from `start` (a point's dump coordinates) through `stop_at`.

    `files` are archived copies in server order, the first being `start.file`, each already checked against
    the archive's index (size and checksum). Events committed at or before `stop_at` (to the second) are
    applied; only `database`'s events are, and they go into the scratch database the restore names."""
    files: tuple[Path, ...]
    start: BinlogCoordinates
    stop_at: datetime
    database: str


class ArchiveGap(PermanentError):
    """The archive cannot replay up to the moment asked: a file the server purged before it was archived, a
    span the agent was down for longer than the server's expiry, or a moment past the newest archived event.
    `before` and `after` are the nearest restorable moments on each side (None when there is none)."""

    def __init__(self, message: str, before: datetime | None = None, after: datetime | None = None):
        super().__init__(message)
        self.before = before
        self.after = after
