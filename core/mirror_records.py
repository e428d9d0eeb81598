"""What the mirror's index says of an object (core/mirror_store.py), and the index's time stamps."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from core.component import PermanentError

STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width UTC, so text comparison orders times


def utc(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def stamp(when: datetime | None) -> str | None:
    return None if when is None else utc(when).strftime(STAMP)


class DamagedIndex(PermanentError, ValueError):
    """The mirror index holds what no mirror of ours wrote (it is read back from the storage root: untrusted)."""

    ADVICE = "it was changed outside ragflow-backup (the mirror's offsite copies: `offsite snapshots`)"


def parse_stamp(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.strptime(text, STAMP).replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        raise DamagedIndex(f"the mirror index holds {str(text)[:40]!r} where a time belongs: "
                           f"{DamagedIndex.ADVICE}") from None


@dataclass(frozen=True)
class Entry:
    """What the mirror knows of one current object (`path` and `mirrored_at` are filled in by the store)."""

    size: int
    etag: str
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    last_modified: datetime | None = None
    md5: str | None = None  # of the mirrored bytes, computed while downloading
    seen_at: datetime | None = None  # when the source was looked at: older news never overwrites newer
    mirrored_at: datetime | None = None
    path: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)  # content headers: actors/minio/headers.py


@dataclass(frozen=True)
class Brief:
    """Just enough of a current object to tell whether a listing entry is already mirrored."""

    etag: str
    size: int
    file: str  # its absolute path, as text: a reconcile checks many per second (os.path.isfile)
    last_modified: str | None = None  # as the index has it (STAMP): a listing may give it finer

    def holds(self, etag: str, size: int) -> bool:
        """Does the mirror hold the version a listing describes (same ETag and size, its file there)?"""
        return (self.etag, self.size) == (etag, size) and os.path.isfile(self.file)


@dataclass(frozen=True)
class ObjectRef:
    key: str
    path: Path  # the file holding the bytes
    size: int
    etag: str
    content_type: str | None
    metadata: dict[str, str]
    valid_from: datetime | None  # the source's last_modified
    md5: str | None
    headers: dict[str, str]  # content headers (Content-Encoding, ...); {} for rows older than the column


@dataclass(frozen=True)
class Version(ObjectRef):
    superseded_at: datetime
    reason: str  # 'overwritten' | 'deleted'


__all__ = ["STAMP", "Brief", "DamagedIndex", "Entry", "ObjectRef", "Version", "parse_stamp", "stamp", "utc"]
