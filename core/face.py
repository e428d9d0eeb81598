"""The face every component shares (`Component`) and what a restore asks of one (`RestoreRequest`).

A component is one sub-package of `actors/` (mysql, search, redis, config, minio) whose `__init__`
defines `COMPONENT`, an object with this face; actors/components.py lists them all, and the backup
runs, the workers, restore, the drill, doctor, status and metrics all read that one registry. Its
errors and results are in core/component.py.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from core.component import Check, ComponentResult
from core.config import Settings
from core.manifest import ComponentRecord
from core.pitr import ReplayPlan
from core.points import Point


@dataclass(frozen=True)
class RestoreRequest:
    """What one component is asked to restore; each component reads what applies to it.

    `target` is where to, when not in place: a database (mysql), an index prefix (search), a bucket
    prefix (minio), a folder (config). `at` is the moment to go back to (minio's mirror). `replay` is the
    archived binlog a MySQL restore applies after loading the point, to reach `at` (core/pitr.py).

    `exact` (a whole-state restore, `upgrade rollback`, `restore --exact`): also remove what the point does not
    have, within what RAGFlow owns, and only what `held_by` (the safety point taken first) holds.

    `keeper` (a restore into the live store, not its rollback): this installation's settings, whose MinIO mirror
    as at the restore's start is the way back; what the restore replaces is copied there first."""
    point: Point | None = None
    record: ComponentRecord | None = None
    kb: str | None = None
    target: str | Path | None = None
    at: datetime | None = None
    log: logging.Logger | None = None
    replay: ReplayPlan | None = None
    exact: bool = False
    held_by: Point | None = None
    keeper: Settings | None = None


class Component(Protocol):
    name: str
    in_points: bool  # False for the MinIO mirror: kept continuously, restored from the mirror, not a point
    # False for the binlog archive: kept continuously like the mirror (so not `in_points`), but never restored by
    # itself: a MySQL restore replays it (`restore --at`). Whole plans, `restore -C` and the drill leave it out.
    restorable: bool
    restore_rank: int  # restores run in ascending rank
    per_kb: bool  # holds a knowledge base's own part (restore --kb)

    def enabled(self, settings: Settings) -> bool:
        """Is it configured to be backed up?"""

    def backup(self, settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
        """Write this component's artifacts into the point."""

    def verify(self, settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
        """Problems with what the point holds of it; [] when sound."""

    def restore(self, settings: Settings, request: RestoreRequest) -> Any:
        """Restore a point (or one knowledge base of it, `request.kb`); the component's own result."""

    def restore_problems(self, settings: Settings, request: RestoreRequest) -> list[str]:
        """What is wrong with restoring it as `request` asks, found before any change (and before the safety
        point): for a component in points, `request.point` and `request.record` are set and its artifacts
        already sound; `request.kb` is a well-formed knowledge-base id or None; `settings` say where the
        component's tools run."""

    def has_data(self, settings: Settings) -> bool:
        """Is there anything live a restore would replace (and a safety point should keep)?"""

    def drill(self, settings: Settings, point: Point, token: str) -> tuple[bool, str]:
        """Restore into scratch space (named with `token`), check, clean up: (ok, what was done)."""

    def checks(self, settings: Settings) -> list[Check]:
        """doctor's pre-flight checks of this component's service."""
