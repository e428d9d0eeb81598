"""Verify a point: every component's artifacts against the manifest, and each component's own checks."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from actors.actions.runs import describe
from actors.components import component
from core import audit
from core.checks import verify_artifacts
from core.config import Settings
from core.encryption import check_files, decrypted, is_encrypted
from core.points import Point
from core.safe_paths import UnsafePath


@dataclass
class ComponentCheck:
    component: str
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    point: str
    status: str
    components: list[ComponentCheck]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "complete" and all(check.ok for check in self.components)

    def problems(self) -> list[str]:
        found = [] if self.status == "complete" else [f"the point is {self.status}, not complete"]
        return found + [f"{c.component}: {p}" for c in self.components for p in c.problems]


def verify_point(settings: Settings, point: Point, identity: Path | None = None) -> VerifyReport:
    """Every component's checks. An encrypted artifact is checked as ciphertext (size, SHA-256) without
    a key; with `identity` it is also decrypted into a private folder and checked like a plain one."""

    try:
        encrypted = is_encrypted(point)
    except Exception:  # noqa: BLE001 - an unreadable manifest: _verify reports it as a finding
        return _verify(settings, point, lambda name, record: [])
    if encrypted and identity is None:
        return _verify(settings, point, lambda name, record: verify_artifacts(point, record))
    original = point.manifest()
    if check_files(point, original.components.values()):  # never decrypted nor read: reported per component
        return _verify(settings, point, lambda name, record: verify_artifacts(point, record) or check_files(
            point, [record]))
    with decrypted(settings, point, identity) as plain:
        ciphertexts = (lambda name: verify_artifacts(point, original.components[name])) if plain is not point else (
            lambda name: [])
        return _verify(settings, plain, lambda name, record: ciphertexts(name) + component(name).verify(
            settings, plain, record), ref=point.ref, status=point.status())


def _verify(settings: Settings, point: Point, check_component, ref: str | None = None,
            status: str | None = None) -> VerifyReport:
    started = time.monotonic()
    try:
        manifest = point.manifest()
    except UnsafePath as exc:  # a symlink, FIFO, absurd size or another point's manifest: never used
        check = ComponentCheck("manifest", problems=[str(exc)])
        return VerifyReport(point.ref, "unreadable", [check], time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - edited or truncated by hand: a finding, not a crash
        check = ComponentCheck("manifest", problems=[
            f"{point.folder / 'manifest.json'} is unreadable ({type(exc).__name__}); it was changed after the "
            "backup: restore it from a copy, or take a new backup"])
        return VerifyReport(point.ref, "unreadable", [check], time.monotonic() - started)
    checks = []
    for name in manifest.requested:
        check = ComponentCheck(name)
        began = time.monotonic()
        record = manifest.components.get(name)
        if record is None:
            check.problems.append("no record: the backup never finished this component")
        elif record.status != "ok":
            check.problems.append(f"failed at backup time: {record.error}")
        else:
            try:
                check.problems += check_component(name, record)
            except Exception as exc:  # noqa: BLE001 - a verify that cannot run is a finding too
                check.problems.append(f"could not be verified: {describe(exc)}")
        check.seconds = time.monotonic() - began
        checks.append(check)
    report = VerifyReport(ref or point.ref, status or point.status(), checks, time.monotonic() - started)

    audit.record(settings.storage_root, "verify", point.ref, "ok" if report.ok else "problems",
                 problems=report.problems()[:20])
    return report


def newest_point(storage) -> Point | None:
    """The newest daily point by creation time, whatever its status."""
    daily = storage.points("daily")
    return max(daily, key=lambda p: p.manifest().created_at) if daily else None
