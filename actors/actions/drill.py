"""The restore drill: restore the newest complete point into scratch targets (another database, renamed
indices, a scratch folder), compare counts and checksums with the manifest, clean up, and report the
time against the requirements' 30-minute restore objective."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from actors.actions.restore import audit, newest_complete
from actors.actions.runs import describe
from actors.components import COMPONENTS
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
    # What the point holds, then what is kept outside points (the MinIO mirror) when enabled.
    names = [name for name in point.manifest().components if name in COMPONENTS and COMPONENTS[name].in_points]
    names += [name for name, c in COMPONENTS.items() if not c.in_points and c.enabled(settings)]
    for name in names:
        began = time.monotonic()
        try:
            ok, detail = COMPONENTS[name].drill(settings, point, token)
        except Exception as exc:  # noqa: BLE001 - a drill reports every failure
            ok, detail = False, describe(exc)
        report.components.append(DrillItem(name, ok, time.monotonic() - began, detail))
    report.seconds = time.monotonic() - started
    audit(settings, "drill", "ok" if report.ok else "failed", point=point.ref, seconds=round(report.seconds, 1),
          failures={item.component: item.detail for item in report.components if not item.ok})
    return report
