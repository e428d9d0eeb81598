"""The archive kept continuously: the streamer's staged bytes checked into `<storage_root>/mysql_binlog/`.

Each poll copies the whole events the streamer fetched since the last one onto the archived copy (written at
the archived size, fsynced), then writes the index (core/atomic.py): the index vouches only for what was fsynced
before it, so a crash between the two leaves bytes the next start truncates and fetches again. A file is
complete once the server closed it (a Rotate or Stop event) or the streamer moved past it.

On start (and after any failure, with backoff) the archive resumes from its newest file: an incomplete one is
fetched again from its start and the overlap compared byte for byte with the archived copy; files the server
purged before they were archived are recorded in the index as a gap (and notified once), never skipped silently.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from actors.binlog.events import scan
from actors.binlog.index import ArchivedFile, ArchiveIndex, FileName, RecordedGap, ServerIdentity, load_index, save_index
from actors.binlog.retention import archive_lock, drop_before, take_request
from actors.binlog.source import BinlogSource, open_source
from core import locks
from core.atomic import fsync_dir
from core.component import PermanentError
from core.config import Settings
from core.layout import Layout
from core.points import Storage
from core.safe_paths import relative_parts

log = logging.getLogger("ragflow_backup.binlog")

READ_CHUNK = 8 << 20  # bytes read from staging at once (docker mode reads through the API)
CHUNKS_PER_POLL = 16  # at most 128 MiB per file per poll: the index is written (and the lag known) meanwhile
SYNC_SAVE_SECONDS = 10  # an idle archive writes its index (the moment it was last in sync) this often
BACKOFF = (1, 2, 5, 10, 30, 60)
LOG_BIN_RECHECK = 600
MISSING_NAMES_KEPT = 1000

Notify = Callable[[str, str, str], None]  # (key, title, body) of a failure to tell the operator about


class LogBinOff(PermanentError):
    """The server writes no binary log: nothing to archive (checked again every LOG_BIN_RECHECK seconds)."""


class SequenceChanged(PermanentError):
    """The server's binary log is not the one archived (RESET MASTER, a new server)."""


@dataclass
class ArchiverState:
    """What health, metrics and status read of a running archive."""
    connected: bool = False
    last_error: str = ""
    restarts: int = 0
    lag_seconds: float | None = None
    archived_bytes: int = 0
    gaps: int = 0
    log_bin_off: bool = False
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def live(self) -> dict[str, Any]:
        """What only the running agent knows, merged into the archive's summary."""
        return {"streaming": self.connected, "lag_seconds": self.lag_seconds, "restarts": self.restarts,
                "last_error": self.last_error, "log_bin_off": self.log_bin_off}


def server_identity(source: BinlogSource, sequence_start: str) -> ServerIdentity:
    [(server_id, log_bin, version)] = source.query("SELECT @@server_id, @@log_bin, @@version")
    if log_bin not in ("1", "ON"):
        raise LogBinOff(f"MySQL at {source.where} writes no binary log (log_bin is off): start it with "
                             f"--log-bin (and --binlog-format=ROW), or set binlog.enabled: false")
    if "mariadb" in version.lower():
        [(domain,)] = source.query("SELECT @@gtid_domain_id")
        return ServerIdentity(server_id=int(server_id), gtid_domain=int(domain), sequence_start=sequence_start)
    [(uuid,)] = source.query("SELECT @@server_uuid")
    return ServerIdentity(server_id=int(server_id), server_uuid=uuid, sequence_start=sequence_start)


def server_logs(source: BinlogSource) -> list[tuple[str, int]]:
    """SHOW BINARY LOGS as (name, size), oldest first."""
    return [(row[0], int(row[1])) for row in source.query("SHOW BINARY LOGS")]


def same_server(a: ServerIdentity, b: ServerIdentity) -> bool:
    return (a.server_id, a.server_uuid, a.gtid_domain) == (b.server_id, b.server_uuid, b.gtid_domain)


def missing_between(before: str, after: str) -> list[str]:
    """The names of the files between two of one sequence (binlog.000003, binlog.000006 -> 000004, 000005)."""
    first, last = FileName.of(before), FileName.of(after)
    if first is None or last is None or first.base != last.base:
        return []
    width = len(after) - len(last.base) - 1
    numbers = range(first.number + 1, min(last.number, first.number + 1 + MISSING_NAMES_KEPT))
    return [f"{last.base}.{n:0{width}d}" for n in numbers]


class Archiver:
    """One archive of one server: `run` keeps it until `stop` is set, restarting the streamer with backoff."""

    def __init__(self, settings: Settings, notify: Notify | None = None,
                 open_source: Callable[[Settings], BinlogSource] = open_source):
        self.settings = settings
        self.layout: Layout = settings.layout
        self.folder = self.layout.binlog_archive
        self.notify = notify or (lambda key, title, body: None)
        self.open_source = open_source
        self.state = ArchiverState()
        self.hashes: dict[str, Any] = {}  # running sha256 of each archived copy being appended to
        self.verified: dict[str, int] = {}  # bytes of a re-fetched file found equal to the archived copy
        self.seen: set[str] = set()  # staged names so far: a new one is a rotation

    # ------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                with locks.exclusive(archive_lock(self.layout), "the binlog archive"), \
                        self.open_source(self.settings) as source:
                    self.session(source, stop)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the archive must outlive any one failure
                self.state.connected = False
                self.state.last_error = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else repr(exc)
                self.state.restarts += 1
                log.warning("binlog archive: %s", self.state.last_error)
                if isinstance(exc, SequenceChanged):
                    self.notify("binlog-sequence", "ragflow-backup: the MySQL binary log archive stopped",
                                self.state.last_error)
                failures += 1
                if isinstance(exc, LogBinOff):  # the config's default meets a server without one: not a failure
                    self.state.log_bin_off = True
                    stop.wait(LOG_BIN_RECHECK)
                    continue
            stop.wait(BACKOFF[min(failures, len(BACKOFF) - 1)] if failures else 0.1)

    def session(self, source: BinlogSource, stop: threading.Event) -> None:
        """One life of the streamer: resume, then copy what it fetches until it stops or `stop` is set."""
        index = load_index(self.layout)
        logs = server_logs(source)
        if not logs:
            raise PermanentError(f"MySQL at {source.where} lists no binary log files (SHOW BINARY LOGS)")
        identity = server_identity(source, logs[0][0])
        first, identity = self.resume_point(index, logs, identity)
        self.folder_ready()
        resumed = index.file(first)
        verify_upto = {first: resumed.size} if resumed is not None and resumed.size else {}
        self.verified, self.seen, self.hashes = {}, set(), {}
        source.start(first)
        self.state.connected, self.state.last_error, self.state.log_bin_off = True, "", False
        log.info("binlog archive: streaming from %s (%s) at %s", first, source.tool, source.where)
        last_saved = datetime.now(timezone.utc)
        while not stop.wait(self.settings.binlog.poll_seconds):
            changed = self.check_in(index, source, identity, verify_upto)
            asked = datetime.now(timezone.utc)
            logs = server_logs(source)
            changed |= self.note_sync(index, logs, asked)
            request = take_request(self.layout)  # retention's, left for us since we hold the index
            if request is not None:
                drop_before(self.layout, index, *request)
            if changed or (asked - last_saved).total_seconds() >= SYNC_SAVE_SECONDS:
                save_index(self.layout, index)
                last_saved = asked
            self.state.archived_bytes = sum(entry.size for entry in index.files)
            self.state.gaps = len(index.gaps)
            if not source.running():
                raise ConnectionError(f"the binlog streamer stopped: {source.failure() or 'no reason given'}")

    def folder_ready(self) -> Path:
        return self.layout.private(*relative_parts(self.layout.root, self.folder, "binlog archive"))

    # ------------------------------------------------------------ where to resume, and gaps

    def resume_point(self, index: ArchiveIndex, logs: list[tuple[str, int]],
                     identity: ServerIdentity) -> tuple[str, ServerIdentity]:
        """The file to stream from, and the identity of the sequence it belongs to; gaps recorded on the way."""
        names = [name for name, _ in logs]
        last = index.files[-1] if index.files else None
        if last is None:
            first = self.first_for_new_archive(names)
            return first, identity.model_copy(update={"sequence_start": first})
        if not same_server(last.server, identity):
            return self.new_sequence(index, names, identity, f"the server changed (server_id/uuid/GTID domain "
                                                             f"{last.server.server_id} -> {identity.server_id})")
        kept = last.server
        if last.name in names:
            if not last.complete:
                return last.name, kept
            position = names.index(last.name)
            if position + 1 < len(names):
                return names[position + 1], kept
            return last.name, kept  # closed but still the newest: fetch it again, compared byte for byte
        newer = [name for name in names if _after(name, last.name)]
        if newer and len(newer) == len(names):
            missing = missing_between(last.name, newer[0])
            lost = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
            tail = "" if last.complete else f"the end of {last.name} (archived up to byte {last.size})"
            self.gap(index, newer[0], missing,
                     f"the server purged {' and '.join(part for part in (tail, lost) if part)} before it was "
                     f"archived (the agent was away longer than the server keeps its binary log)")
            return newer[0], kept
        return self.new_sequence(index, names, identity, f"the server's binary log no longer holds {last.name} and "
                                                         f"starts again at {names[0]} (RESET MASTER?)")

    def first_for_new_archive(self, names: list[str]) -> str:
        """A new archive starts at the newest point's dump coordinates when the server still has that file (so the
        point can be replayed from at once), else at the server's newest file: never the whole history."""
        found = []
        for point in Storage(self.layout.root).points():
            try:
                manifest = point.manifest()
            except Exception:  # noqa: BLE001 - an unreadable point is no starting place
                continue
            record = manifest.components.get("mysql")
            coordinates = record.details.get("binlog") if record is not None and record.status == "ok" else None
            if isinstance(coordinates, dict) and coordinates.get("file") in names:
                found.append((manifest.created_at, str(coordinates["file"])))
        return max(found)[1] if found else names[-1]

    def new_sequence(self, index: ArchiveIndex, names: list[str], identity: ServerIdentity,
                     why: str) -> tuple[str, ServerIdentity]:
        clash = [name for name in names if index.file(name) is not None]
        if clash:
            raise SequenceChanged(f"{why}; its file {clash[0]} has the name of an archived file of the old sequence. "
                                  f"Move {self.folder} aside (it still serves restores up to "
                                  f"{_newest(index)}) and restart the agent to start a new archive")
        fresh = identity.model_copy(update={"sequence_start": names[0]})
        self.gap(index, names[0], [], why)
        return names[0], fresh

    def gap(self, index: ArchiveIndex, before: str, missing: list[str], reason: str) -> None:
        recorded = RecordedGap(before=before, missing=missing, reason=reason, detected_at=datetime.now(timezone.utc))
        if index.record_gap(recorded):
            save_index(self.layout, index)
            log.warning("binlog archive: a gap before %s: %s", before, reason)
            self.notify(f"binlog-gap:{before}", "ragflow-backup: a gap in the MySQL binary log archive",
                        f"{reason}. Restores to moments in the gap are refused; take a backup now (ragflow-backup "
                        f"backup) so restores to moments from now on have a point to replay from.")

    def check_rotation(self, index: ArchiveIndex, logs: list[tuple[str, int]]) -> None:
        """On each rotation: every file of the sequence the archive still lacks must be on the server."""
        names = {name for name, _ in logs}
        for previous, current in zip(index.files, index.files[1:]):
            if same_server(previous.server, current.server) and not index.follows(previous, current):
                missing = [name for name in missing_between(previous.name, current.name) if name not in names]
                if missing:
                    self.gap(index, current.name, missing, "files purged before they were archived")

    # ------------------------------------------------------------ checking bytes in

    def check_in(self, index: ArchiveIndex, source: BinlogSource, identity: ServerIdentity,
                 verify_upto: dict[str, int]) -> bool:
        staged = source.staged()
        ordered = sorted((name for name in staged if FileName.of(name)), key=lambda n: FileName.of(n).number)
        changed = False
        for position, name in enumerate(ordered):
            if name in verify_upto:
                if not self.compare_overlap(index, source, name, staged[name], verify_upto):
                    continue
            for _ in range(CHUNKS_PER_POLL):  # a backlog (a new archive, a restart) catches up within a few polls
                if not self.copy_new(index, source, identity, name, staged[name]):
                    break
                changed = True
            entry = index.file(name)
            later = position + 1 < len(ordered)
            if entry is not None and later and not entry.complete and entry.size == staged[name]:
                index.put(entry.model_copy(update={"complete": True, "synced_at": None}))
                changed = True
        if set(ordered) - self.seen:
            if self.seen:  # the server rotated: anything of the sequence it purged meanwhile is a gap
                self.check_rotation(index, server_logs(source))
            self.seen |= set(ordered)
        return changed

    def compare_overlap(self, index: ArchiveIndex, source: BinlogSource, name: str, staged: int,
                        verify_upto: dict[str, int]) -> bool:
        """Compare the re-fetched start of `name` with the archived copy; True once all of it matched."""
        entry = index.file(name)
        assert entry is not None
        done = self.verified.get(name, 0)
        end = min(staged, entry.size)
        with open(self.folder / name, "rb") as archived:
            while done < end:
                length = min(READ_CHUNK, end - done)
                fetched = source.read(name, done, length)
                archived.seek(done)
                if not fetched or archived.read(len(fetched)) != fetched:
                    raise SequenceChanged(f"the server's {name} differs from the archived copy at byte {done}: the "
                                          f"server's binary log was re-initialised (RESET MASTER) or replaced")
                done += len(fetched)
        self.verified[name] = done
        if done >= entry.size:
            del verify_upto[name]
            return True
        return False

    def copy_new(self, index: ArchiveIndex, source: BinlogSource, identity: ServerIdentity, name: str,
                 staged: int) -> bool:
        entry = index.file(name)
        archived = entry.size if entry is not None else 0
        if staged <= archived:
            return False
        data = source.read(name, archived, min(READ_CHUNK, staged - archived))
        found = scan(data, at_file_start=archived == 0)
        if found.whole == 0:
            return False
        digest = self.append(name, archived, data[:found.whole], entry)
        update = {"size": archived + found.whole, "sha256": digest, "last_event": found.last or (entry and
                                                                                             entry.last_event)}
        if entry is None:
            entry = ArchivedFile(name=name, size=0, sha256=hashlib.sha256().hexdigest(), first_event=found.first,
                                 complete=False, server=identity)
        index.put(entry.model_copy(update={**update, "complete": entry.complete or found.closed,
                                           "first_event": entry.first_event or found.first}))
        return True

    def append(self, name: str, archived: int, data: bytes, entry: ArchivedFile | None) -> str:
        """Write `data` at `archived` in the archived copy (a crash's unvouched tail cut first), fsync; the
        sha256 of the copy so far."""
        path = self.folder / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size < archived:
                raise PermanentError(f"the archived binlog file {path} is {size} bytes, shorter than the "
                                     f"{archived} its index vouches for: it was truncated. Move it aside and "
                                     f"restart the agent: what the server still has is fetched again")
            hasher = self.hashes.get(name)
            if hasher is None:
                hasher = hashlib.sha256()
                done = 0
                while done < archived:
                    block = os.pread(fd, min(READ_CHUNK, archived - done), done)
                    hasher.update(block)
                    done += len(block)
                if entry is not None and hasher.hexdigest() != entry.sha256:
                    raise PermanentError(f"the archived binlog file {path} does not match its checksum in the "
                                         f"index: it was changed. Move it aside and restart the agent")
            if size > archived:
                os.ftruncate(fd, archived)
            os.pwrite(fd, data, archived)
            os.fsync(fd)
        finally:
            os.close(fd)
        if archived == 0:
            fsync_dir(self.folder)
        hasher.update(data)
        self.hashes[name] = hasher
        return hasher.hexdigest()

    def note_sync(self, index: ArchiveIndex, logs: list[tuple[str, int]], asked: datetime) -> bool:
        """Compare the server's newest file with the archive's: in sync means every byte is archived."""
        if not logs or not index.files:
            return False
        name, size = logs[-1]
        live = index.files[-1]
        newest = live.reaches()
        if live.name == name and live.size >= size:
            self.state.lag_seconds = 0.0
            if not live.complete:
                index.put(live.model_copy(update={"synced_at": asked}))
            return False
        self.state.lag_seconds = (asked - newest).total_seconds() if newest else None
        return False


def _after(name: str, other: str) -> bool:
    a, b = FileName.of(name), FileName.of(other)
    return a is not None and b is not None and a.base == b.base and a.number > b.number


def _newest(index: ArchiveIndex) -> str:
    spans = index.spans()
    return spans[-1].end.isoformat() if spans else "no moment"
