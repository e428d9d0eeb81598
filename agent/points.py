"""The storage root and its backup points.

    <root>/daily/YYYY-MM-DD[_HHMMSS]/   a point: artifacts, manifest.json, backup.log
    <root>/weekly/YYYY-Www/             hard-link promotions of daily points
    <root>/monthly/YYYY-MM/
    <root>/logs/backup_history.log      one JSON line per finished run
    <root>/locks/                       one lock per component

A point's components each leave a record in `.records/`; the manifest is rebuilt from them after
each one, and the point is complete only when every requested component succeeded.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from agent import locks
from agent.atomic import TEMP_MARK, append_line, private_dir, write_bytes_atomic
from agent.manifest import (MANIFEST, ComponentRecord, Manifest, RagflowVersion, now, read_manifest,
                            write_manifest)

Tier = Literal["daily", "weekly", "monthly", "safety"]
TIERS: tuple[Tier, ...] = ("daily", "weekly", "monthly")  # retention's tiers
SAFETY: Tier = "safety"  # taken before a restore, for its rollback; outside retention
RECORDS = ".records"
WORK_LOCK = ".work.lock"
FINALIZE_LOCK = ".finalize.lock"
BACKUP_LOG = "backup.log"


class Storage:
    def __init__(self, root: Path):
        self.root = Path(root)

    def prepare(self) -> Storage:
        for folder in (*TIERS, SAFETY, "logs", "locks"):
            private_dir(self.root / folder)
        os.chmod(self.root, 0o700)
        return self

    @property
    def history_log(self) -> Path:
        return self.root / "logs" / "backup_history.log"

    def component_lock(self, component: str) -> Path:
        return self.root / "locks" / f"{component}.lock"

    def new_point(self, requested: list[str], at: datetime | None = None, tier: Tier = "daily",
                  ragflow: RagflowVersion | None = None) -> Point:
        """Create a running point; a second daily run on the same day gets the time in its name."""
        self.prepare()
        at = at or now()
        name = at.strftime("%Y-%m-%d") if tier == "daily" else at.strftime("%Y-%m-%d_%H%M%S")
        folder = self.root / tier / name
        for fmt in ("%Y-%m-%d_%H%M%S", "%Y-%m-%d_%H%M%S_%f"):
            if not folder.exists():
                break
            name = at.strftime(fmt)
            folder = self.root / tier / name
        private_dir(folder)
        private_dir(folder / RECORDS)
        manifest = Manifest(point_id=uuid.uuid4().hex, tier=tier, name=name, status="running",
                            created_at=at, requested=list(requested), ragflow=ragflow)
        write_manifest(folder, manifest)
        return Point(self, folder)

    def point(self, ref: str) -> Point:
        """A point by 'daily/2026-11-24', '2026-11-24' (daily) or a path."""
        candidates = [self.root / ref, self.root / "daily" / ref, Path(ref)]
        for folder in candidates:
            if (folder / MANIFEST).is_file():
                return Point(self, folder.resolve())
        raise LookupError(f"no backup point '{ref}' under {self.root} (see `ragflow-backup list`)")

    def points(self, tier: Tier | None = None) -> list[Point]:
        """All points, oldest first within each tier; folders without a manifest are ignored."""
        found = []
        for name in (tier,) if tier else TIERS:
            folder = self.root / name
            if folder.is_dir():
                # Dot-folders are half-built promotions or interrupted deletes, never points.
                found += [Point(self, p) for p in sorted(folder.iterdir())
                          if not p.name.startswith(".") and (p / MANIFEST).is_file()]
        return found


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

    def manifest(self) -> Manifest:
        return read_manifest(self.folder)

    def status(self) -> str:
        """The manifest's status, or 'interrupted' for a running point nobody works on any more."""
        status = self.manifest().status
        if status == "running" and not locks.is_held(self.folder / WORK_LOCK):
            return "interrupted"
        return status

    def path(self, name: str) -> Path:
        """An artifact's path; names are ours, but refuse anything that would leave the folder."""
        if "/" in name or name in ("", ".", "..") or name.startswith("."):
            raise ValueError(f"bad artifact name {name!r}")
        return self.folder / name

    def working(self):
        """Held (shared) by every component at work on this point, so a dead run can be recognised."""
        return locks.shared(self.folder / WORK_LOCK)

    def logger(self, component: str) -> logging.Logger:
        """A logger that also writes to this point's backup.log."""
        logger = logging.getLogger(f"ragflow_backup.point.{self.name}.{component}")
        target = str(self.folder / BACKUP_LOG)
        if not any(getattr(h, "baseFilename", None) == target for h in logger.handlers):
            handler = logging.FileHandler(target)
            os.chmod(target, 0o600)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
        return logger

    def save_record(self, record: ComponentRecord) -> Manifest:
        """Keep one component's outcome and rebuild the manifest; finish the point when all are in."""
        write_bytes_atomic(self.folder / RECORDS / f"{record.component}.json",
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
                self._log_history(manifest)
                from agent import audit

                audit.record(self.storage.root, "backup", self.ref, manifest.status,
                             components={n: r.status for n, r in manifest.components.items()})
        return manifest

    def _remove_orphaned_temp_files(self) -> None:
        """Once a point is finished nobody writes into it: temp files left by a killed run can go."""
        for path in self.folder.glob(f".*{TEMP_MARK}*"):
            if path.is_file():
                path.unlink(missing_ok=True)

    def _log_history(self, manifest: Manifest) -> None:
        line = {
            "time": manifest.finished_at.isoformat() if manifest.finished_at else None,
            "point": self.ref,
            "status": manifest.status,
            "seconds": round((manifest.finished_at - manifest.created_at).total_seconds(), 3) if manifest.finished_at else None,
            "bytes": manifest.total_bytes,
            "components": {name: rec.status for name, rec in manifest.components.items()},
            "errors": {name: rec.error for name, rec in manifest.components.items() if rec.error},
        }
        append_line(self.storage.history_log, json.dumps(line))

    def du_bytes(self, seen: set[tuple[int, int]] | None = None) -> int:
        """Bytes on disk, counting a hard-linked file once across calls sharing `seen`."""
        seen = set() if seen is None else seen
        total = 0
        for path in self.folder.rglob("*"):
            stat = path.lstat()
            if path.is_file() and (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_blocks * 512
        return total
