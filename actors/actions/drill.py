"""The restore drill: restore the newest complete point into scratch targets (another database, renamed
indices, a scratch folder), compare counts and checksums with the manifest, clean up, and report the
time against the requirements' 30-minute restore objective."""
from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from actors import config_restore, mysql_restore, redis_keys, search_restore
from actors.actions.restore import audit, newest_complete
from actors.actions.runs import describe
from actors.minio_mirror import verify_sample
from actors.mysql_restore import drop_database, scratch_name
from actors.search_restore import cleanup_temporary, prefixed
from core.component import PermanentError
from core.config import Settings
from core.encryption import decrypted
from core.points import Point, Storage

OBJECTIVE_SECONDS = 30 * 60


@dataclass
class DrillItem:
    component: str
    ok: bool
    seconds: float
    detail: str


@dataclass
class DrillReport:
    point: str
    components: list[DrillItem] = field(default_factory=list)
    seconds: float = 0.0
    objective_seconds: int = OBJECTIVE_SECONDS

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.components) and self.seconds <= self.objective_seconds


def _mysql(settings: Settings, point: Point, token: str) -> tuple[bool, str]:

    record = point.manifest().components["mysql"]
    target = scratch_name(settings.mysql.database, "drill", token)
    try:
        result = mysql_restore.restore(settings, point, record, target_database=target)
    finally:
        drop_database(settings, target)
    return result.expected == result.found, f"{sum(result.found.values())} rows in {len(result.found)} tables into {target} (dropped)"


def _search(settings: Settings, point: Point, token: str) -> tuple[bool, str]:

    record = point.manifest().components["search"]
    prefix = f"drill-{token}-"
    try:
        result = search_restore.restore(settings, point, record, rename=prefixed(prefix))
    finally:
        cleanup_temporary(settings, prefix)
    return result.ok, f"{sum(result.found.values())} docs in {len(result.found)} indices as {prefix}* (deleted)"


def _config(settings: Settings, point: Point, token: str) -> tuple[bool, str]:

    record = point.manifest().components["config"]
    scratch = Path(tempfile.mkdtemp(prefix=f"ragflow-backup-drill-{token}-"))
    try:
        result = config_restore.restore(settings, point=point, record=record, target_dir=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ok = result.found == result.expected and not result.problems
    return ok, f"{result.found}/{result.expected} files with their checksums" + (f"; {'; '.join(result.problems)}" if result.problems else "")


def _redis(settings: Settings, point: Point, token: str) -> tuple[bool, str]:

    problems = redis_keys.verify(settings, point, point.manifest().components["redis"])
    # Restoring needs a spare Redis DB, which we cannot assume: the dump is read through instead.
    return not problems, "; ".join(problems) or "every key's payload read back (not restored: no scratch DB assumed)"


def _objects(settings: Settings, point: Point, token: str) -> tuple[bool, str]:

    problems = verify_sample(settings, sample=50)
    return not problems, "; ".join(problems) or "50 sampled mirror objects match the source and their MD5"


DRILLS: dict[str, Callable[[Settings, Point, str], tuple[bool, str]]] = {
    "config": _config, "mysql": _mysql, "search": _search, "redis": _redis,
}


def run_drill(settings: Settings, identity: Path | None = None) -> DrillReport:
    """An encrypted point is drilled after decrypting it with `identity` (without one, the drill fails
    and says so: the agent holds no key)."""

    point = newest_complete(Storage(settings.storage_root))
    if point is None:
        raise PermanentError("no complete backup point to drill with yet: run `ragflow-backup backup` first")
    with decrypted(settings, point, identity) as plain:
        return _drill(settings, plain)


def _drill(settings: Settings, point: Point) -> DrillReport:
    token = uuid.uuid4().hex[:6]
    report = DrillReport(point.ref)
    started = time.monotonic()
    steps = [(name, DRILLS[name]) for name in point.manifest().components if name in DRILLS]
    if settings.minio.enabled:
        steps.append(("minio", _objects))
    for name, step in steps:
        began = time.monotonic()
        try:
            ok, detail = step(settings, point, token)
        except Exception as exc:  # noqa: BLE001 - a drill reports every failure
            ok, detail = False, describe(exc)
        report.components.append(DrillItem(name, ok, time.monotonic() - began, detail))
    report.seconds = time.monotonic() - started
    audit(settings, "drill", "ok" if report.ok else "failed", point=point.ref, seconds=round(report.seconds, 1),
          failures={item.component: item.detail for item in report.components if not item.ok})
    return report
