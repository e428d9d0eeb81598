"""The restore drill: restore the newest complete point into scratch targets (another database, renamed
indices, a scratch folder), compare counts and checksums with the manifest, clean up, and report the
time against the requirements' 30-minute restore objective.

With `staging`, the services the config's `staging:` section names (core/staging.py) receive the point instead,
under their live names, and keep it (a staging RAGFlow to look at); each one's recovery time is recorded with
what the manifest expected and what was found. A staging search server restores from production's snapshot
repository, registered there read only (actors/actions/foreign.py): it must list that folder in its path.repo.
The others are drilled on production under scratch names.
The config files are always checked in a scratch folder: a staging RAGFlow keeps its own docker/ settings.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from actors.actions.foreign import register_source_repository
from actors.actions.restore import audit, newest_complete
from actors.actions.runs import describe
from actors.components import COMPONENTS
from core.component import PermanentError
from core.config import Settings
from core.encryption import decrypted
from core.face import RestoreRequest
from core.manifest import ComponentRecord
from core.points import Point, Storage
from core.staging import staged_services, staging_settings

OBJECTIVE_SECONDS = 30 * 60
SCRATCH = "scratch names on production"
CHECKED = "checked, not restored"  # what is never restored by itself (the binlog archive): its own drill checks it
STAGING = "staging"
log = logging.getLogger("ragflow_backup.drill")


@dataclass
class DrillItem:
    component: str
    ok: bool
    seconds: float
    detail: str
    target: str = SCRATCH  # where it was restored
    expected: int | None = None  # rows, chunks, objects, keys or files the manifest (or the mirror) counts
    found: int | None = None  # of them, counted after the restore


@dataclass
class DrillReport:
    point: str
    components: list[DrillItem] = field(default_factory=list)
    seconds: float = 0.0
    objective_seconds: int = OBJECTIVE_SECONDS
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    point_created_at: datetime | None = None
    ragflow: Any = None  # the point's RagflowVersion (core/manifest.py), as recorded
    tool_version: str | None = None

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.components) and self.seconds <= self.objective_seconds


def run_drill(settings: Settings, identity: Path | None = None, staging: bool = False) -> DrillReport:
    """An encrypted point is drilled after decrypting it with `identity` (without one, the drill fails
    and says so: the agent holds no key). `staging`: into the config's staging services."""

    staged = staging_settings(settings) if staging else None  # refused before anything is done
    point = newest_complete(Storage(settings.storage_root))
    if point is None:
        raise PermanentError("no complete backup point to drill with yet: run `ragflow-backup backup` first")
    with decrypted(settings, point, identity) as plain:
        return _drill(settings, plain, staged)


def _tally(result: Any, record: ComponentRecord | None) -> tuple[bool, int | None, int | None]:
    """(matches, expected, found) of a component's restore result (each kind counts its own way)."""
    if isinstance(result, int) and record is not None:  # redis: keys restored
        expected = record.counts.get("keys")
        return expected == result, expected, result
    expected, found = getattr(result, "expected", None), getattr(result, "found", None)
    if isinstance(expected, dict) and isinstance(found, dict):
        return expected == found and result.ok, sum(expected.values()), sum(found.values())
    if isinstance(expected, int) and isinstance(found, int):
        return expected == found and result.ok, expected, found
    return bool(getattr(result, "ok", False)), None, None


def _into_staging(staged: Settings, point: Point, name: str) -> DrillItem:
    manifest = point.manifest()
    record = manifest.components.get(name) if COMPONENTS[name].in_points else None
    began = time.monotonic()
    if name == "search":  # production's repository, read only: the staging server never writes into it
        register_source_repository(staged, point)
    result = COMPONENTS[name].restore(staged, RestoreRequest(point=point, record=record, at=manifest.created_at,
                                                             log=log))
    ok, expected, found = _tally(result, record)
    detail = f"restored into the staging {name} ({expected} expected, {found} found)"
    return DrillItem(name, ok, time.monotonic() - began, detail, STAGING, expected, found)


def _drill(settings: Settings, point: Point, staged: Settings | None = None) -> DrillReport:
    token = uuid.uuid4().hex[:6]
    manifest = point.manifest()
    report = DrillReport(point.ref, point_created_at=manifest.created_at, ragflow=manifest.ragflow,
                         tool_version=manifest.tool.get("version"))
    started = time.monotonic()
    into_staging = staged_services(staged) if staged is not None else []
    # What the point holds, then what is kept outside points (the MinIO mirror) when enabled. The binlog archive is
    # never restored by itself (a MySQL restore replays it), but its drill is the one scheduled check of its files
    # against its index: it stays, said as checked rather than restored.
    names = [name for name in manifest.components if name in COMPONENTS and COMPONENTS[name].in_points]
    names += [name for name, c in COMPONENTS.items() if not c.in_points and c.enabled(settings)]
    for name in names:
        began = time.monotonic()
        try:
            if name in into_staging:
                report.components.append(_into_staging(staged, point, name))
                continue
            ok, detail = COMPONENTS[name].drill(settings, point, token)
        except Exception as exc:  # noqa: BLE001 - a drill reports every failure
            ok, detail = False, describe(exc)
        where = STAGING if name in into_staging else SCRATCH if COMPONENTS[name].restorable else CHECKED
        report.components.append(DrillItem(name, ok, time.monotonic() - began, detail, where))
    report.seconds = time.monotonic() - started
    audit(settings, "drill", "ok" if report.ok else "failed", point=point.ref, seconds=round(report.seconds, 1),
          staging=into_staging, failures={item.component: item.detail for item in report.components if not item.ok})
    return report
