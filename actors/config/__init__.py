"""RAGFlow's docker/ folder: the files its compose setup reads, archived daily and kept in a git history
(backup.py), restored with their modes (restore.py), doctor's check (checks.py).

`COMPONENT` is the face every component shares (core/face.py); actors/components.py lists it.
Imports: `core` and this package's own modules; never another component, the actions or the actors
(checked by `lint-imports`).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from actors.config import backup, checks, restore
from core.component import Check, ComponentResult
from core.config import Settings
from core.face import RestoreRequest
from core.manifest import ComponentRecord
from core.points import Point


class ConfigFiles:
    name = backup.NAME
    in_points = True
    restorable = True
    restore_rank = 0  # restore order: config, mysql, search, minio, redis (RAGFlow's settings first, Redis last)
    per_kb = False  # holds a knowledge base's own part

    def enabled(self, settings: Settings) -> bool:
        return settings.config_files.enabled and settings.ragflow_dir is not None

    def backup(self, settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
        return backup.backup(settings, point, log)

    def verify(self, settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
        return backup.verify(settings, point, record)

    def restore(self, settings: Settings, request: RestoreRequest) -> Any:
        """Into ragflow_dir, or into the folder `request.target`."""
        target = Path(request.target) if request.target else None
        return restore.restore(settings, point=request.point, record=request.record, target_dir=target, log=request.log)

    def restore_problems(self, settings: Settings, request: RestoreRequest) -> list[str]:
        return []

    def has_data(self, settings: Settings) -> bool:
        return bool(settings.ragflow_dir and settings.ragflow_dir.is_dir() and backup.collect_files(settings))

    def drill(self, settings: Settings, point: Point, token: str) -> tuple[bool, str]:
        record = point.manifest().components[self.name]
        scratch = Path(tempfile.mkdtemp(prefix=f"ragflow-backup-drill-{token}-"))
        try:
            result = restore.restore(settings, point=point, record=record, target_dir=scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        ok = result.found == result.expected and not result.problems
        return ok, (f"{result.found}/{result.expected} files with their checksums"
                    + (f"; {'; '.join(result.problems)}" if result.problems else ""))

    def checks(self, settings: Settings) -> list[Check]:
        return [checks.check_config_files(settings)]


COMPONENT = ConfigFiles()
