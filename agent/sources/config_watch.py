"""Watches RAGFlow's docker/ folder: one on_change(paths) call per burst of edits to the watched files.

watchdog's observer thread only queues raw events (a handler that raised would kill it); a worker thread
matches them against the patterns, debounces and calls on_change. An editor's save (a swap file, a
backup `.env~`, a temp file renamed over `.env`) comes out as one change of `.env`: temp and swap names are
ignored, and a rename counts for the watched name it lands on or leaves.

Patterns have Path.glob's meaning relative to the folder, as in actors/config/backup.py: '*' stays within
one path segment ('*.yml' is top level only, 'nginx/*.conf' is inside nginx/), '**' spans any number.
The watched list is the daily tar's: core/ragflow_folder.py derives it from RAGFlow's compose files, the
configured patterns are additions; a change of a compose file derives it again.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from core.component import PermanentError
from core.ragflow_folder import is_compose_file, kept_patterns

log = logging.getLogger("ragflow_backup.sources.config")

# What can change a file's content, mode or existence. Opened / closed-without-write events come from mere
# reads, our own commit's included, and would make every commit trigger the next one.
EVENT_TYPES = [FileCreatedEvent, FileModifiedEvent, FileAttribEvent, FileClosedEvent, FileDeletedEvent,
               FileMovedEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
MAX_DELAY_FACTOR = 10  # a burst that never goes quiet is still delivered after this many debounce periods
MIN_RETRY_SECONDS = 1.0
_STOP = object()


def matches(path: str, pattern: str) -> bool:
    """Does the relative POSIX `path` match `pattern` the way Path.glob would select it?"""
    return _match(PurePosixPath(path).parts, PurePosixPath(pattern).parts)


def _match(parts: tuple[str, ...], pats: tuple[str, ...]) -> bool:
    if not pats:
        return not parts
    if pats[0] == "**":
        return any(_match(parts[i:], pats[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pats[0]) and _match(parts[1:], pats[1:])


class _Queueing(FileSystemEventHandler):
    """Runs in watchdog's observer thread: queue and nothing else (Queue.put on an unbounded queue can't fail)."""

    def __init__(self, events: queue.Queue):
        self._events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._events.put(event)


class ConfigWatcher:
    """Calls on_change(sorted relative paths) once per burst, after `debounce_seconds` without a new event.

    A failing on_change is logged and its burst retried once, a little later; nothing stops the watcher.
    """

    def __init__(self, folder: Path, patterns: Iterable[str], ignore: Iterable[str], debounce_seconds: float,
                 on_change: Callable[[list[str]], None]):
        self.folder = Path(folder)
        self.configured = list(patterns)
        self.patterns = list(patterns)  # the derived list once started
        self.ignore = list(ignore)
        self.debounce = float(debounce_seconds)
        self.on_change = on_change
        self.last_error: str | None = None
        self._root = os.path.abspath(self.folder)
        self._known: set[str] = set()  # watched files that exist, as of the last delivered burst
        self._events: queue.Queue = queue.Queue()
        self._observer: Observer | None = None
        self._worker: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return bool(self._observer and self._observer.is_alive() and self._worker and self._worker.is_alive())

    def start(self) -> None:
        if not self.folder.is_dir():
            raise PermanentError(f"cannot watch {self.folder}: not a folder; set ragflow_dir to RAGFlow's docker/ "
                                 f"folder (the one holding .env and docker-compose.yml)")
        for pattern in self.configured:
            if PurePosixPath(pattern).is_absolute():
                raise PermanentError(f"config_files.patterns: {pattern!r} must be relative to {self.folder}")
        self.patterns = kept_patterns(self.folder, self.configured)
        self._known = self._scan()
        observer = Observer()
        try:
            observer.schedule(_Queueing(self._events), self._root, recursive=True, event_filter=EVENT_TYPES)
        except OSError as exc:  # typically ENOSPC: the inotify watch limit
            raise OSError(exc.errno, f"cannot watch {self.folder}: {exc.strerror} (if the inotify limit is "
                                     f"reached, raise the sysctl fs.inotify.max_user_watches)") from exc
        observer.start()
        self._observer = observer
        self._worker = threading.Thread(target=self._run, name="config-watch", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching; a burst still waiting for its quiet period is delivered now (one attempt)."""
        deadline = time.monotonic() + timeout
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        if self._worker is not None:
            self._events.put(_STOP)
            self._worker.join(max(0.0, deadline - time.monotonic()))

    def watched(self) -> list[str]:
        """The watched files present now, sorted."""
        return sorted(self._scan())

    # ------------------------------------------------------------ the worker thread

    def _run(self) -> None:
        pending: set[str] = set()
        first = last = hold_until = 0.0
        retrying = False
        while True:
            timeout = None
            if pending:
                due = max(hold_until, min(last + self.debounce, first + self.debounce * MAX_DELAY_FACTOR))
                timeout = max(0.0, due - time.monotonic())
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                event = None
            if event is _STOP:
                if pending:
                    self._deliver(pending)
                return
            if event is not None:
                paths = self._paths(event)
                if paths:
                    now = time.monotonic()
                    first = first if pending else now
                    pending |= paths
                    last = now
                continue
            burst, pending = pending, set()
            delivered = self._deliver(burst)
            if not delivered and retrying:
                log.error("config watch: gave up on %s; the next change or daily backup commits it", sorted(burst))
            if delivered or retrying:
                retrying = False
                continue
            retrying = True  # once more, later, together with whatever changes meanwhile
            pending |= burst
            first = last = time.monotonic()
            hold_until = first + max(self.debounce, MIN_RETRY_SECONDS)

    def _deliver(self, burst: set[str]) -> bool:
        """Call on_change with what really changed; False when it raised."""
        if any(is_compose_file(path) for path in burst):  # a mount added or dropped: derive the list again
            self.patterns = kept_patterns(self.folder, self.configured)
        before = self._known
        exists = {path for path in burst if os.path.lexists(os.path.join(self._root, path))}
        self._known = (before - burst) | exists
        # A file created and removed within one burst (an editor's temp that matches) changed nothing.
        paths = sorted(path for path in burst if path in exists or path in before)
        if not paths:
            return True
        try:
            self.on_change(paths)
            return True
        except Exception as exc:  # noqa: BLE001 - e.g. Redis down while enqueueing: never stop watching
            self.last_error = f"on_change({paths}) failed: {type(exc).__name__}: {exc}"
            log.warning("config watch: %s", self.last_error, exc_info=True)
            return False

    def _paths(self, event: FileSystemEvent) -> set[str]:
        """The watched files an event touches (a folder event: every watched file that was or is below it)."""
        if event.is_directory and event.event_type == "modified":
            return set()
        found: set[str] = set()
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            rel = self._relative(raw)
            if rel is None:
                continue
            if event.is_directory:
                found |= {path for path in self._known if path.startswith(rel + "/")} | self._scan(under=rel)
            elif self._watched(rel):
                found.add(rel)
        return found

    def _relative(self, raw: str | bytes) -> str | None:
        if not raw:
            return None
        rel = os.path.relpath(os.fsdecode(raw), self._root)
        return None if rel == "." or rel == ".." or rel.startswith("../") else PurePosixPath(rel).as_posix()

    def _watched(self, rel: str) -> bool:
        name = PurePosixPath(rel).name
        if any(fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(rel, pat) for pat in self.ignore):
            return False
        return any(matches(rel, pattern) for pattern in self.patterns)

    def _scan(self, under: str = "") -> set[str]:
        """Watched files present now (below `under` only, when given)."""
        found = set()
        for pattern in self.patterns:
            for match in self.folder.glob(pattern):
                rel = match.relative_to(self.folder).as_posix()
                if (not under or rel.startswith(under + "/")) and not match.is_dir() and self._watched(rel):
                    found.add(rel)
        return found
