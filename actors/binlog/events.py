"""Reading a binlog file's event headers (the same in MySQL 5.6+/8 and MariaDB): where whole events end, their
times, the server that wrote them, and whether the file was closed (a Rotate or Stop event last).

A file starts with the 4-byte magic; each event starts with a 19-byte header: timestamp (4), type (1),
server_id (4), event length (4), next position (4), flags (2), all little-endian. Only headers are read; the
archive copies bytes, it never rewrites them.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timezone

MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIIIH")
ROTATE, STOP, FORMAT_DESCRIPTION = 4, 3, 15
MAX_EVENT = 1 << 30  # max_allowed_packet's ceiling: a longer event is not a binlog


class NotABinlog(ValueError):
    """The bytes are not a binlog file (no magic, or an event header that cannot be)."""


@dataclass
class Scan:
    """What `scan` found in a stretch of whole events."""
    whole: int  # bytes of the stretch that are whole events (a partial event at the end is left for later)
    first: datetime | None = None
    last: datetime | None = None
    server_id: int | None = None
    closed: bool = False  # a Rotate or Stop event ended the file: nothing more is written to it
    events: int = 0


def scan(data: bytes | memoryview, at_file_start: bool) -> Scan:
    """Walk the event headers of `data`, which begins at an event boundary (or at the file's start)."""
    view = memoryview(data)
    offset = 0
    if at_file_start:
        if len(view) < len(MAGIC):
            return Scan(whole=0)
        if bytes(view[:4]) != MAGIC:
            raise NotABinlog("the file does not start with the binlog magic bytes")
        offset = 4
    found = Scan(whole=offset)
    while offset + HEADER.size <= len(view):
        stamp, kind, server_id, length, _next, _flags = HEADER.unpack_from(view, offset)
        if length < HEADER.size or length > MAX_EVENT:
            raise NotABinlog(f"an event at byte {offset} claims {length} bytes, which no binlog event has")
        if offset + length > len(view):
            break
        offset += length
        found.whole, found.events = offset, found.events + 1
        if stamp:  # artificial events carry no time
            moment = datetime.fromtimestamp(stamp, timezone.utc)
            found.first = found.first or moment
            found.last = moment
        if kind == FORMAT_DESCRIPTION or found.server_id is None:
            found.server_id = server_id
        if kind in (ROTATE, STOP):
            found.closed = True
    return found
