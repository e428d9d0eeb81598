"""Elasticsearch / OpenSearch: a snapshot into a filesystem repository (backup.py), restored through
staged copies (restore.py, restore_api.py), an exact restore's removals (exact.py), doctor's check (checks.py),
snapshots between points for `restore --at` (interval.py).

`COMPONENT` is the face every component shares (core/face.py); actors/components.py lists it.
Imports: `core` and this package's own modules; never another component, the actions or the actors
(checked by `lint-imports`).
"""
from __future__ import annotations

import logging
from typing import Any

from actors.search import backup, checks, exact, interval, restore
from core.component import Check, ComponentResult
from core.config import Settings
from core.face import RestoreRequest
from core.manifest import ComponentRecord
from core.points import Point


class Search:
    name = backup.NAME
    in_points = True
    restorable = True
    restore_rank = 2  # restore order: config, mysql, search, minio, redis (RAGFlow's settings first, Redis last)
    per_kb = True  # holds a knowledge base's own part

    def enabled(self, settings: Settings) -> bool:
        return settings.search.enabled

    def backup(self, settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
        result = backup.backup(settings, point, log)
        # Interval snapshots past their window go nightly too (with snapshot_interval_minutes 0 nothing else
        # would delete them); trouble here must not fail a good backup.
        try:
            result.details["deleted_interval_snapshots"] = interval.prune(settings, log)
        except Exception as exc:  # noqa: BLE001
            log.warning("interval snapshot retention skipped: %s", exc)
        return result

    def verify(self, settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
        return backup.verify(settings, point, record)

    def restore(self, settings: Settings, request: RestoreRequest) -> Any:
        """In place, or as new indices named with the prefix `request.target` (nothing live touched)."""
        if request.kb:
            return restore.restore_kb(settings, request.point, request.record, request.kb, log=request.log)
        rename = restore.prefixed(str(request.target)) if request.target else None
        result = restore.restore(settings, request.point, request.record, rename=rename, log=request.log)
        if request.exact and rename is None:  # the indices the point lacks go too (those the safety point holds)
            return exact.remove_indices_not_in(settings, request.record, request.held_by, result,
                                               request.log or logging.getLogger("ragflow_backup.restore.search"))
        return result

    def restore_problems(self, settings: Settings, request: RestoreRequest) -> list[str]:
        return []

    def has_data(self, settings: Settings) -> bool:
        return True

    def drill(self, settings: Settings, point: Point, token: str) -> tuple[bool, str]:
        record = point.manifest().components[self.name]
        prefix = f"drill-{token}-"
        try:
            result = restore.restore(settings, point, record, rename=restore.prefixed(prefix))
        finally:
            restore.cleanup_temporary(settings, prefix)
        return result.ok, f"{sum(result.found.values())} docs in {len(result.found)} indices as {prefix}* (deleted)"

    def checks(self, settings: Settings) -> list[Check]:
        return [checks.check_search(settings), *checks.check_intervals(settings)]


COMPONENT = Search()
