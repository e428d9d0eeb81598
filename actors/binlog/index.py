"""The binlog archive's index: which of the server's files the archive holds, what each is, and where the
archive cannot replay through (core/pitr.py's words).

The index lives in the archive folder (core/layout.py's `binlog_archive`) as `index.json`, written atomically
(core/atomic.py). It is read back as untrusted input: bounded in size, every name a plain name
(core/safe_paths.py), every field type-checked; a damaged index is a PermanentError naming the file and the fix.

Continuity is never assumed: two files follow each other only when they come from the same server sequence
(same server identity), their numbers are consecutive and no gap is recorded between them. A server
re-initialised (RESET MASTER, a new server) starts a new sequence: that is a gap, not a continuation.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.atomic import digest_of_file, write_bytes_atomic
from core.component import PermanentError
from core.layout import Layout
from core.pitr import ArchiveGap, BinlogCoordinates, ReplayPlan, Span
from core.safe_paths import UnsafePath, opened, plain_name, read_bounded, relative_parts

INDEX_NAME = "index.json"
INDEX_MAX = 16 << 20  # a week of files is a few hundred entries (~100 KiB); far larger is planted or broken
FORMAT = 1
SEQUENCE_NAME = re.compile(r"^(?P<base>.+)\.(?P<number>[0-9]{1,10})$")


class ServerIdentity(BaseModel):
    """Which server sequence a file belongs to. MySQL names itself by server_uuid, MariaDB by its GTID domain
    (and server_id); `sequence_start` is the first file of the sequence the archive saw (a RESET MASTER starts
    numbering again, so a sequence restarted under the same server is a new identity)."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    server_id: int
    server_uuid: str | None = None
    gtid_domain: int | None = None
    sequence_start: str

    @field_validator("sequence_start")
    @classmethod
    def _plain(cls, value: str) -> str:
        return plain_name(value, "sequence start")


class ArchivedFile(BaseModel):
    """One binlog file in the archive, stored under the server's own name. `complete` once the server
    rotated past it; the live file is the one still appended to. `synced_at` (live file only): the moment the
    archive last held every byte the server had written, so quiet minutes are restorable too."""
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    first_event: AwareDatetime | None = None
    last_event: AwareDatetime | None = None
    complete: bool
    server: ServerIdentity
    synced_at: AwareDatetime | None = None

    @field_validator("name")
    @classmethod
    def _plain_sequence_name(cls, value: str) -> str:
        plain_name(value, "binlog file name")
        if not SEQUENCE_NAME.match(value):
            raise ValueError(f"the binlog file name {value!r} is not <base>.<number>")
        return value

    def reaches(self) -> datetime | None:
        """The newest moment this file makes restorable."""
        moments = [m for m in (self.last_event, self.synced_at) if m is not None]
        return max(moments) if moments else None


class RecordedGap(BaseModel):
    """Files the archive never got (purged by the server first, or the agent was down longer than the
    expiry): the gap lies just before the file `before` (None: after the newest archived file)."""
    model_config = ConfigDict(extra="forbid", strict=True)
    before: str | None
    missing: list[str] = Field(default_factory=list, max_length=100_000)
    reason: str = Field(max_length=2000)
    detected_at: AwareDatetime

    @field_validator("before")
    @classmethod
    def _plain_before(cls, value: str | None) -> str | None:
        return None if value is None else plain_name(value, "binlog file name")

    @field_validator("missing")
    @classmethod
    def _plain_missing(cls, value: list[str]) -> list[str]:
        return [plain_name(name, "binlog file name") for name in value]


class ArchiveIndex(BaseModel):
    """The index as a whole: files in server order (oldest first), and the gaps recorded."""
    model_config = ConfigDict(extra="forbid", strict=True)
    format: Literal[1] = FORMAT
    files: list[ArchivedFile] = Field(default_factory=list, max_length=1_000_000)
    gaps: list[RecordedGap] = Field(default_factory=list, max_length=1_000_000)

    # ------------------------------------------------------------ reading

    def file(self, name: str) -> ArchivedFile | None:
        return next((entry for entry in self.files if entry.name == name), None)

    def follows(self, previous: ArchivedFile, current: ArchivedFile) -> bool:
        """Whether `current` continues `previous` with nothing missing in between."""
        if previous.server != current.server:
            return False
        before, after = FileName.of(previous.name), FileName.of(current.name)
        if before is None or after is None or before.base != after.base or after.number != before.number + 1:
            return False
        return not any(gap.before == current.name for gap in self.gaps)

    def runs(self) -> list[list[ArchivedFile]]:
        """The files cut into runs that follow each other without a gap."""
        runs: list[list[ArchivedFile]] = []
        for entry in self.files:
            if runs and self.follows(runs[-1][-1], entry):
                runs[-1].append(entry)
            else:
                runs.append([entry])
        return runs

    def spans(self) -> list[Span]:
        """The restorable stretches of time, oldest first; the time between two spans is a gap."""
        spans = []
        for run in self.runs():
            span = span_of(run)
            if span is not None:
                spans.append(span)
        return spans

    def replay_plan(self, start: BinlogCoordinates, stop_at: datetime, database: str, folder: Path) -> ReplayPlan:
        """The archived files to replay from `start` (a point's dump coordinates) through `stop_at`, each
        re-checked on disk against this index; ArchiveGap naming the nearest restorable moments otherwise."""
        stop_at = _aware(stop_at)
        name = plain_name(start.file, "binlog file name of the point's coordinates")
        runs = self.runs()
        at = next((i for i, run in enumerate(runs) if any(entry.name == name for entry in run)), None)
        run = runs[at] if at is not None else None
        if run is None:
            before, after = self._nearest(stop_at)
            raise ArchiveGap(f"the binlog file {name} the point starts from is not in the archive at {folder} "
                             f"(purged by the server before it was archived, or removed); a restore can only reach "
                             f"moments the archive covers", before, after)
        files = run[next(i for i, entry in enumerate(run) if entry.name == name):]
        if start.position > files[0].size:
            raise ArchiveGap(f"the point's binlog position {name}:{start.position} lies past the archived copy's "
                             f"{files[0].size} bytes: the archive has not caught up with the point yet", None, None)
        chosen = []
        for entry in files:
            chosen.append(entry)
            reaches = entry.reaches()
            if reaches is not None and reaches >= stop_at:
                break
        else:
            span = span_of(run)
            later = [found for other in runs[at + 1:] if (found := span_of(other)) is not None]
            after = later[0].start if later else None
            end = span.end if span else None
            raise ArchiveGap(f"{stop_at.isoformat()} is past what the archive can replay from {name}: it reaches "
                             f"{end.isoformat() if end else 'no event yet'}"
                             + (f", and a gap follows until {after.isoformat()}" if after else ""), end, after)
        paths = tuple(_checked(folder, entry) for entry in chosen)
        return ReplayPlan(files=paths, start=BinlogCoordinates(name, start.position), stop_at=stop_at,
                          database=database)

    def _nearest(self, moment: datetime) -> tuple[datetime | None, datetime | None]:
        spans = self.spans()
        before = max((s.end for s in spans if s.end <= moment), default=None)
        after = min((s.start for s in spans if s.start >= moment), default=None)
        return before, after

    # ------------------------------------------------------------ changing (the archive component's)

    def put(self, entry: ArchivedFile) -> None:
        """Add a file at the end, or replace the entry of the same name (the live file grew or completed)."""
        for i, existing in enumerate(self.files):
            if existing.name == entry.name and existing.server == entry.server:
                self.files[i] = entry
                return
        self.files.append(entry)

    def record_gap(self, gap: RecordedGap) -> bool:
        """Record a gap once; False when the same gap was already recorded."""
        if any(existing.before == gap.before and existing.missing == gap.missing for existing in self.gaps):
            return False
        self.gaps.append(gap)
        return True


def span_of(run: list[ArchivedFile]) -> Span | None:
    """The stretch of time one run of files (see ArchiveIndex.runs) covers; None before its first event."""
    firsts = [entry.first_event for entry in run if entry.first_event is not None]
    ends = [moment for entry in run if (moment := entry.reaches()) is not None]
    if not firsts or not ends:
        return None
    return Span(start=min(firsts), end=max(ends))


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"the moment {moment.isoformat()} has no time zone")
    return moment.astimezone(timezone.utc)


def _checked(folder: Path, entry: ArchivedFile) -> Path:
    """The archived copy of `entry`, its first `size` bytes checked against the index (the live copy may have
    grown since the index was written; what the index vouches for is what a replay may rely on)."""
    path = folder / entry.name
    try:
        with opened(folder, (entry.name,), "binlog file") as handle:
            data_size = handle.seek(0, 2)
            handle.seek(0)
            if data_size < entry.size or (entry.complete and data_size != entry.size):
                raise ArchiveGap(f"the archived binlog file {path} is {data_size} bytes, the index says "
                                 f"{entry.size}: it was changed or truncated; replay refuses it", None, None)
            digest = digest_of_file(_Prefix(handle, entry.size))
    except FileNotFoundError:
        raise ArchiveGap(f"the archived binlog file {path} is missing although the index lists it; replay cannot "
                         f"cross it", None, None) from None
    if digest != entry.sha256:
        raise ArchiveGap(f"the archived binlog file {path} does not match its checksum in the index: it was "
                         f"changed or damaged; replay refuses it", None, None)
    return path


class _Prefix:
    """The first `limit` bytes of a binary file, for digest_of_file."""

    def __init__(self, handle: BinaryIO, limit: int):
        self.handle, self.left = handle, limit

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.handle.read(self.left if size < 0 else min(size, self.left))
        self.left -= len(data)
        return data


# ------------------------------------------------------------ the file


def index_path(layout: Layout) -> Path:
    return layout.binlog_archive / INDEX_NAME


def load_index(layout: Layout) -> ArchiveIndex:
    """The archive's index; an empty one when the archive (or its index) does not exist yet."""
    parts = relative_parts(layout.root, layout.binlog_archive, "binlog archive") + (INDEX_NAME,)
    where = index_path(layout)
    try:
        data = read_bounded(layout.root, parts, INDEX_MAX, "binlog archive index")
    except FileNotFoundError:
        return ArchiveIndex()
    except UnsafePath as exc:
        raise PermanentError(f"the binlog archive's index {where} cannot be read: {exc.problem}. "
                             f"{_FIX}") from None
    try:
        return ArchiveIndex.model_validate_json(data, strict=True)  # JSON mode: ISO text for datetimes only
    except (ValueError, ValidationError, UnsafePath) as exc:
        first = str(exc).strip().splitlines()
        raise PermanentError(f"the binlog archive's index {where} is damaged ({' '.join(first[:3])[:400]}). "
                             f"{_FIX}") from None


_FIX = ("Move it aside and restart the agent: it archives the server's binlog files again from those the server "
        "still has, and what it cannot fetch again is shown as a gap.")


def save_index(layout: Layout, index: ArchiveIndex) -> Path:
    """Write the index atomically (temp name, fsync, rename), the archive folder made 0700 first."""
    layout.private(*relative_parts(layout.root, layout.binlog_archive, "binlog archive"))
    path = index_path(layout)
    write_bytes_atomic(path, index.model_dump_json(indent=1).encode())
    return path


@dataclass(frozen=True)
class FileName:
    """A binlog file name split into its base and number (`binlog.000042` -> ('binlog', 42))."""
    base: str
    number: int

    @classmethod
    def of(cls, name: str) -> FileName | None:
        match = SEQUENCE_NAME.match(name)
        return cls(match["base"], int(match["number"])) if match else None
