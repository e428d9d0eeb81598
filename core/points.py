"""The storage root and its backup points.

    <root>/daily/YYYY-MM-DD[_HHMMSS]/   a point: artifacts, manifest.json, backup.log
    <root>/weekly/YYYY-Www/             hard-link promotions of daily points
    <root>/monthly/YYYY-MM/
    <root>/logs/backup_history.log      one JSON line per finished run
    <root>/locks/                       one lock per component

A point may be pinned: `.pin.json` beside its manifest (the manifest is sealed and never rewritten) names the pin;
retention never deletes a pinned point (actors/actions/retention.py). A dot-file, so promotions do not copy it.

A point's components each leave a record in `.records/`; the manifest is rebuilt from them after
each one, and the point is complete only when every requested component succeeded.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from stat import S_ISREG
from typing import Literal

from core import audit, locks
from core.atomic import TEMP_MARK, append_line, write_bytes_atomic
from core.layout import DECRYPTED, LOCKS, LOGS, OFFSITE, STATE, Layout
from core.manifest import MANIFEST, ComponentRecord, Manifest, RagflowVersion, now, write_manifest
from core.redact import RedactingFilter
from core.safe_paths import MANIFEST_MAX, UnsafePath, entry_problem, opened, plain_name, private_folder, read_bounded

Tier = Literal["daily", "weekly", "monthly", "safety"]
TIERS: tuple[Tier, ...] = ("daily", "weekly", "monthly")  # retention's tiers
SAFETY: Tier = "safety"  # taken before a restore, for its rollback; outside retention
RECORDS = ".records"
WORK_LOCK = ".work.lock"
FINALIZE_LOCK = ".finalize.lock"
BACKUP_LOG = "backup.log"
PIN = ".pin.json"
PIN_MAX = 4096  # ours is ~100 bytes; the storage root is untrusted
PIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
MADE = (*TIERS, SAFETY, LOGS, LOCKS)  # created by prepare
SCRATCH = (STATE, DECRYPTED, OFFSITE)  # created when first needed


class Storage:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.layout = Layout(self.root)

    def prepare(self) -> Storage:
        """Create the folders of the layout; a symlink (or a file) in place of one is refused, naming it:
        nothing is created, written or chmodded through it. The root itself may be a symlink."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in SCRATCH:
            problem = entry_problem(self.layout.folder(name), want_dir=True)
            if problem and problem != "is gone":
                raise UnsafePath(self.layout.folder(name), problem)
        for name in MADE:
            private_folder(self.root, (name,))
        os.chmod(self.root, 0o700)
        return self

    @property
    def history_log(self) -> Path:
        return self.layout.history_log

    def component_lock(self, component: str) -> Path:
        return self.layout.component_lock(component)

    def new_point(self, requested: list[str], at: datetime | None = None, tier: Tier = "daily",
                  ragflow: RagflowVersion | None = None) -> Point:
        """Create a running point; a second daily run on the same day gets the time in its name."""
        self.prepare()
        at = at or now()
        name = at.strftime("%Y-%m-%d") if tier == "daily" else at.strftime("%Y-%m-%d_%H%M%S")
        folder = self.layout.point_folder(tier, name)
        for fmt in ("%Y-%m-%d_%H%M%S", "%Y-%m-%d_%H%M%S_%f"):
            if not os.path.lexists(folder):
                break
            name = at.strftime(fmt)
            folder = self.layout.point_folder(tier, name)
        if os.path.lexists(folder):  # planted (or a third run in the same microsecond): never reused
            raise UnsafePath(folder, "exists already; a new point is never written into an existing folder")
        private_folder(self.root, (tier, name, RECORDS))
        manifest = Manifest(point_id=uuid.uuid4().hex, tier=tier, name=name, status="running",
                            created_at=at, requested=list(requested), ragflow=ragflow)
        write_manifest(folder, manifest)
        return Point(self, folder)

    def point(self, ref: str) -> Point:
        """A point by 'daily/2026-11-24', '2026-11-24' (daily) or a path (the operator's). Names are
        checked (plain, bounded length) and no symlink inside the root is followed."""
        if not isinstance(ref, str) or not ref.strip() or "\0" in ref:
            raise UnsafePath(repr(ref), "is not a point reference (daily/2026-11-24, 2026-11-24 or a folder)")
        parts = ref.strip("/").split("/") if not ref.startswith("/") else []
        if ".." in ref.split("/"):
            raise UnsafePath(ref, "a point reference never contains '..'")
        if len(parts) in (1, 2) and (len(parts) == 1 or parts[0] in (*TIERS, SAFETY)):
            tier, name = parts if len(parts) == 2 else ("daily", parts[0])
            plain_name(name, "point name", f"point '{tier}/{name[:80]}'")
            point = Point(self, self.layout.point_folder(tier, name))
        else:
            point = Point(self, Path(os.path.abspath(ref)))
        try:
            with opened(*point.anchor(MANIFEST), "manifest"):
                pass
        except (FileNotFoundError, NotADirectoryError):
            raise LookupError(f"no backup point '{ref}' under {self.root} (see `ragflow-backup list`)") from None
        except UnsafePath:
            raise
        except OSError as exc:  # e.g. a path longer than any can be: said, never a traceback
            raise LookupError(f"backup point '{ref[:120]}' cannot be opened: {exc.strerror}") from None
        return point

    def points(self, tier: Tier | None = None) -> list[Point]:
        """All points, oldest first within each tier; folders without a manifest are ignored, and so is
        anything unsafe (a symlink, a manifest that is not a regular file): see `unsafe_entries`."""
        found = []
        for name in (tier,) if tier else TIERS:
            folder = self.layout.folder(name)
            if entry_problem(folder, want_dir=True):
                continue
            # Dot-folders are half-built promotions or interrupted deletes, never points.
            found += [Point(self, p) for p in sorted(folder.iterdir())
                      if not p.name.startswith(".") and entry_problem(p, want_dir=True) is None
                      and entry_problem(p / MANIFEST, want_dir=False) is None]
        return found

    def unsafe_entries(self, tier: Tier | None = None) -> list[tuple[Path, str]]:
        """What `points` leaves out because it is not safe to use: (path, what is wrong)."""
        found = []
        for name in ((tier,) if tier else (*MADE, *SCRATCH)):
            folder = self.layout.folder(name)
            problem = entry_problem(folder, want_dir=True)
            if problem and problem != "is gone":
                found.append((folder, problem))
            if problem or name not in (*TIERS, SAFETY):
                continue
            for entry in sorted(folder.iterdir()):
                if entry.name.startswith("."):
                    continue
                problem = entry_problem(entry, want_dir=True)
                if problem is None:
                    problem = entry_problem(entry / MANIFEST, want_dir=False)
                    if problem in (None, "is gone"):
                        continue
                    entry = entry / MANIFEST
                found.append((entry, problem))
        return found


@dataclass(frozen=True)
class Pin:
    """A point kept past retention: its name (e.g. 'pre-upgrade-v0.27.0-20261130-0230') and when it was pinned."""

    name: str
    pinned_at: datetime


def pin_name(name: str) -> str:
    """`name` when it can name a pin (letters, digits, '.', '_', '+', '-'; at most 100), else ValueError saying so."""
    if not isinstance(name, str) or not PIN_NAME.fullmatch(name):
        raise ValueError(f"pin name {str(name)[:120]!r} is not usable: 1 to 100 letters, digits, '.', '_', '+' or '-', "
                         "starting with a letter or digit")
    return name


class PointLogHandler(logging.FileHandler):
    """A point's backup.log: a line that cannot be written (the storage root full) is dropped with one short
    note on stderr, not a traceback per line; the outcome itself is reported by the run."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if not self.failed:
            self.failed = True
            sys.stderr.write(f"note: {self.baseFilename} cannot be written (lines dropped); see the run's outcome\n")


@dataclass
class Point:
    storage: Storage
    folder: Path

    @property
    def tier(self) -> str:
        return self.folder.parent.name

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def ref(self) -> str:
        return f"{self.tier}/{self.name}"

    def anchor(self, *names: str) -> tuple[Path, tuple[str, ...]]:
        """(trusted folder, plain names beneath it) of this point's folder (or of `names` in it): the
        storage root and the names below it, or, for a point outside the root (an operator's path), the
        point folder itself."""
        root = self.storage.root
        try:
            parts = self.folder.relative_to(root).parts
        except ValueError:
            return self.folder, tuple(names)
        return root, (*parts, *names)

    def open(self, name: str, what: str = "artifact"):
        """A file of this point opened for reading; a symlink, FIFO or device there is refused."""
        return opened(*self.anchor(plain_name(name, f"{what} name", self.folder / str(name)[:120])), what)

    def manifest(self) -> Manifest:
        """The manifest, read with a size bound and never through a symlink; one that names another
        point than the folder it lies in is refused."""
        manifest = Manifest.model_validate_json(read_bounded(*self.anchor(MANIFEST), MANIFEST_MAX, "manifest"))
        if self.tier in (*TIERS, SAFETY) and (manifest.tier, manifest.name) != (self.tier, self.name):
            raise UnsafePath(self.folder / MANIFEST, f"names the point {manifest.tier}/{manifest.name[:80]}, but it lies "
                                                     f"in {self.ref}: it was copied or planted there")
        return manifest

    def status(self) -> str:
        """The manifest's status, or 'interrupted' for a running point nobody works on any more."""
        status = self.manifest().status
        if status == "running" and not locks.is_held(self.folder / WORK_LOCK):
            return "interrupted"
        return status

    def pin(self, name: str) -> Pin:
        """Pin this point as `name` (replacing an earlier pin), written atomically beside the manifest."""
        pin = Pin(pin_name(name), now())
        folder = private_folder(*self.anchor())  # refused when the point folder is a symlink
        write_bytes_atomic(folder / PIN, json.dumps({"name": pin.name, "pinned_at": pin.pinned_at.isoformat()}).encode())
        return pin

    def unpin(self) -> bool:
        """Remove the pin; False when there was none."""
        folder = private_folder(*self.anchor())
        try:
            os.unlink(folder / PIN)
        except FileNotFoundError:
            return False
        return True

    def pinned(self) -> Pin | None:
        """The pin, or None. The file is read back from the storage root, so it is checked: a pin file that is
        not ours (too big, a link, not JSON, a bad name) raises UnsafePath naming it; retention keeps such a point."""
        try:
            data = read_bounded(*self.anchor(PIN), PIN_MAX, "pin file")
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            fields = json.loads(data)
            pin = Pin(pin_name(fields["name"]), datetime.fromisoformat(fields["pinned_at"]))
        except (ValueError, KeyError, TypeError):
            raise UnsafePath(self.folder / PIN, "is not a pin file this tool wrote (not JSON, or fields missing or "
                                                "wrong); `unpin` the point, or remove the file by hand") from None
        return pin

    def path(self, name: str) -> Path:
        """An artifact's path; names are ours, but refuse anything that would leave the folder."""
        if name.startswith("."):
            raise UnsafePath(self.folder / name, "an artifact name never starts with '.'")
        return self.folder / plain_name(name, "artifact name", self.folder)

    def working(self):
        """Held (shared) by every component at work on this point, so a dead run can be recognised."""
        return locks.shared(self.folder / WORK_LOCK)

    def logger(self, component: str) -> logging.Logger:
        """A logger that also writes to this point's backup.log."""
        logger = logging.getLogger(f"ragflow_backup.point.{self.name}.{component}")
        target = str(self.folder / BACKUP_LOG)
        if not any(getattr(h, "baseFilename", None) == target for h in logger.handlers):
            handler = PointLogHandler(target)
            os.chmod(target, 0o600)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
            handler.addFilter(RedactingFilter())  # client errors quote URLs with passwords
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
        return logger

    def records_folder(self) -> Path:
        """`.records/` of this point, refused (UnsafePath) when it is a symlink: nothing written through it."""
        base, parts = self.anchor(RECORDS)
        return private_folder(base, parts)

    def save_record(self, record: ComponentRecord) -> Manifest:
        """Keep one component's outcome and rebuild the manifest; finish the point when all are in."""
        write_bytes_atomic(self.records_folder() / f"{record.component}.json",
                           record.model_dump_json(indent=2).encode())
        with locks.exclusive(self.folder / FINALIZE_LOCK, f"finalizing {self.ref}", wait=True):
            manifest = self.manifest()
            for path in sorted((self.folder / RECORDS).glob("*.json")):
                saved = ComponentRecord.model_validate_json(path.read_text())
                manifest.components[saved.component] = saved
            before = manifest.status
            manifest.status = manifest.decide_status()
            changed = manifest.status != before and manifest.status != "running"
            if changed:
                manifest.finished_at = now()
            write_manifest(self.folder, manifest)
            if changed:
                self._remove_orphaned_temp_files()
                self.log_history(manifest)

                try:
                    audit.record(self.storage.root, "backup", self.ref, manifest.status,
                                 components={n: r.status for n, r in manifest.components.items()})
                except OSError as exc:  # the point is finished and says so; the audit line is lost, say so
                    self.logger("audit").error("could not write the audit line of %s: %s", self.ref, exc)
        return manifest

    def remove_unclaimed_artifacts(self, claimed: set[str]) -> None:
        """Remove the files of this point that no saved record names (a failed component's leftovers, to make
        room for outcomes a full storage root could not take). Only for a run that alone writes the point."""
        keep = claimed | {MANIFEST, BACKUP_LOG}
        for path in self.folder.iterdir():
            if path.is_file() and not path.is_symlink() and not path.name.startswith(".") and path.name not in keep:
                path.unlink(missing_ok=True)

    def first_attempt(self, component: str) -> datetime:
        """When the first attempt at backing up `component` into this point began: noted in `.records/` by that
        attempt, read back by the worker's retries, so that a final failure's record starts when the work did.
        The note is untrusted (the storage root): one that is not a moment with a zone is noted afresh."""
        name = f"{component}.first-attempt"
        try:
            noted = datetime.fromisoformat(read_bounded(*self.anchor(RECORDS, name), 64, "note").decode("ascii"))
            if noted.tzinfo is not None:
                return noted
        except (OSError, ValueError, UnicodeDecodeError):
            pass
        began = now()
        try:
            write_bytes_atomic(self.records_folder() / name, began.isoformat().encode())
        except OSError:
            pass  # a storage root that cannot take the note (full) is met when the outcome is saved (actors/actions/runs.py)
        return began

    def forget_record(self, component: str) -> None:
        """Remove a component's saved outcome (one that could not be completed: storage full)."""
        (self.folder / RECORDS / f"{component}.json").unlink(missing_ok=True)

    def in_history(self) -> bool:
        """Does logs/backup_history.log hold this point's line?"""
        try:
            with self.storage.history_log.open("rb") as handle:
                mark = f'"point": {json.dumps(self.ref)},'.encode()
                return any(mark in line for line in handle)
        except FileNotFoundError:
            return False

    def log_history(self, manifest: Manifest | None = None, status: str | None = None) -> bool:
        """Append this point's line to the history unless it is there; False when the storage root cannot take
        it now (full: the next run writes it, see actors/actions/runs.py catch_up_history)."""
        manifest = manifest or self.manifest()
        if self.in_history():
            return True
        try:
            self._log_history(manifest, status)
        except OSError as exc:
            logging.getLogger("ragflow_backup.points").error("could not write the history line of %s: %s", self.ref,
                                                            exc)
            return False
        return True

    def _remove_orphaned_temp_files(self) -> None:
        """Once a point is finished nobody writes into it: temp files left by a killed run can go."""
        for path in self.folder.glob(f".*{TEMP_MARK}*"):
            if path.is_file():
                path.unlink(missing_ok=True)

    def _log_history(self, manifest: Manifest, status: str | None = None) -> None:
        line = {
            "time": manifest.finished_at.isoformat() if manifest.finished_at else now().isoformat(),
            "point": self.ref,
            "status": status or manifest.status,
            "seconds": round((manifest.finished_at - manifest.created_at).total_seconds(), 3) if manifest.finished_at else None,
            "bytes": manifest.added_bytes,
            "components": {name: rec.status for name, rec in manifest.components.items()},
            "errors": {name: rec.error for name, rec in manifest.components.items() if rec.error},
        }
        append_line(self.storage.history_log, json.dumps(line))

    def du_bytes(self, seen: set[tuple[int, int]] | None = None) -> int:
        """Bytes on disk, counting a hard-linked file once across calls sharing `seen`."""
        seen = set() if seen is None else seen
        total = 0
        if entry_problem(self.folder, want_dir=True):
            return 0
        for folder, _, files in os.walk(self.folder):  # never follows a symlink
            for name in files:
                stat = os.lstat(os.path.join(folder, name))
                if S_ISREG(stat.st_mode) and (stat.st_dev, stat.st_ino) not in seen:
                    seen.add((stat.st_dev, stat.st_ino))
                    total += stat.st_blocks * 512
        return total
