"""GFS retention: promote complete daily points to weekly/monthly, and prune what the policy lets go.

Promotions are hard-link copies (zero extra bytes): deleting a daily point later leaves its weekly
and monthly copies whole, because the data lives on as long as one link does.

Selection (`select`) is pure and counts points, never ages: a clock that jumped forward cannot make
good points look old, and points dated in the future are kept and left out of every count. The
newest complete point of the whole storage is never deleted, whatever the policy says.
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal, Protocol

from actors.binlog.retention import prune_archive
from core import audit, locks
from core.atomic import TEMP_MARK, fsync_dir, private_dir
from core.component import PermanentError
from core.config import Settings
from core.layout import BINLOG_ARCHIVE, LOCKS
from core.manifest import MANIFEST, write_manifest
from core.manifest import now as utc_now
from core.points import TIERS, Point, Storage
from core.safe_paths import entry_problem, private_folder

DELETING_MARK = ".deleting-"
RETENTION_LOCK = "retention.lock"
TIER_RANK = {tier: rank for rank, tier in enumerate(TIERS)}  # daily first: preferred on equal times
PROBLEM_STATUSES = ("partial", "failed", "interrupted")

Action = Literal["keep", "delete"]


class Policy(Protocol):
    daily: int
    weekly: int
    monthly: int


@dataclass(frozen=True)
class PointInfo:
    """What selection needs to know about a point; built from a manifest or by hand in tests."""

    tier: str
    name: str
    status: str  # complete | partial | failed | interrupted | running (anything else is kept)
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"{self.tier}/{self.name}"

    @property
    def day(self) -> date:
        """The calendar day a daily point belongs to: its folder name's date, as a person reads it."""
        try:
            return date.fromisoformat(self.name[:10])
        except ValueError:
            return self.created_at.date()

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return (_aware(self.created_at), self.name)


@dataclass(frozen=True)
class Decision:
    point: PointInfo
    action: Action
    reason: str  # a sentence starting with "keep:" or "delete:"

    @property
    def delete(self) -> bool:
        return self.action == "delete"

    @property
    def ref(self) -> str:
        return self.point.ref

    def __str__(self) -> str:
        return f"{self.ref}: {self.reason}"


def _aware(moment: datetime) -> datetime:
    """Naive times are taken as UTC, so comparing never raises and never shifts by the local zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# --- promotion --------------------------------------------------------------------------------

def week_name(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()  # the ISO year: 2027-01-01 may be in 2026-W53
    return f"{year}-W{week:02d}"


def month_name(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def _lock(storage: Storage) -> AbstractContextManager[None]:
    folder = storage.layout.private(LOCKS)
    # Promotion and pruning never run at once: a leftover temp folder seen under it is truly stale.
    return locks.exclusive(folder / RETENTION_LOCK, "retention", wait=True)


def promote(storage: Storage, point: Point, at: datetime | None = None,
            policy: Policy | None = None) -> list[Point]:
    """Promote a complete daily point to weekly/<ISO week> and monthly/<YYYY-MM> where those are free.

    `at` names the week and month (default: the point's created_at). A tier whose policy count is 0
    is skipped. Anything but a complete daily point is never promoted. Returns the new points.
    """
    if point.tier != "daily" or point.status() != "complete":
        return []
    manifest = point.manifest()
    moment = at or manifest.created_at
    targets = [("weekly", week_name(moment)), ("monthly", month_name(moment))]
    created: list[Point] = []
    with _lock(storage):
        for tier, name in targets:
            if policy is not None and getattr(policy, tier) == 0:
                continue
            final = storage.layout.point_folder(tier, name)
            if os.path.lexists(final):  # already promoted (or something we must not overwrite)
                continue
            created.append(_link_copy(storage, point, tier, name))
    return created


def _link_copy(storage: Storage, point: Point, tier: str, name: str) -> Point:
    """Build the copy under a temp name in the tier folder, then rename it into place."""
    tier_folder = private_folder(storage.root, (tier,))
    final = tier_folder / name
    temp = tier_folder / f".{name}{TEMP_MARK}{secrets.token_hex(4)}"
    try:
        private_dir(temp)
        _link_tree(point.folder, temp)
        manifest = point.manifest().model_copy(update={"tier": tier, "name": name, "promoted_from": point.ref})
        write_manifest(temp, manifest)  # a new file, written atomically: the daily's stays untouched
        fsync_dir(temp)
        os.rename(temp, final)
        fsync_dir(tier_folder)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return Point(storage, final)


def _link_tree(source: Path, target: Path, top: bool = True) -> None:
    """Hard-link every file of `source` into `target`, skipping internal dot-entries and the
    point's own manifest (the copy gets a new one)."""
    for entry in sorted(source.iterdir()):
        if entry.name.startswith(".") or (top and entry.name == MANIFEST):
            continue
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink():
            private_dir(destination)
            _link_tree(entry, destination, top=False)
            fsync_dir(destination)
            continue
        try:
            os.link(entry, destination, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise  # a full disk or an I/O error is not a missing feature
            raise PermanentError(
                f"cannot hard-link {entry} to {destination} ({exc.strerror}): weekly and monthly "
                "promotions need a file system with hard links under the storage root"
            ) from exc


# --- selection --------------------------------------------------------------------------------

def select(points: list[PointInfo], policy: Policy, now: datetime) -> list[Decision]:
    """Decide keep/delete for every point, with the reason, in the order given."""
    if policy.daily < 1:
        raise ValueError("retention.daily must be at least 1")
    now = _aware(now)
    decided: dict[str, Decision] = {}

    present = []
    for info in points:
        if info.status == "running":
            decided[info.ref] = Decision(info, "keep", "keep: running (a backup is at work on it; never deleted)")
        elif info.status not in ("complete", *PROBLEM_STATUSES):
            decided[info.ref] = Decision(info, "keep", f"keep: status {info.status!r} is not understood; left for a person to look at")
        elif _aware(info.created_at) > now:
            decided[info.ref] = Decision(info, "keep", (
                f"keep: dated in the future ({_aware(info.created_at).isoformat()}, now {now.isoformat()}); "
                "the clock may have jumped, so it is kept and not counted"))
        else:
            present.append(info)

    daily = [p for p in present if p.tier == "daily"]
    decided.update(_select_daily(daily, policy.daily))
    for tier in ("weekly", "monthly"):
        decided.update(_select_tier([p for p in present if p.tier == tier], tier, getattr(policy, tier)))
    # Points in folders retention does not know (should not happen) are left alone.
    for info in present:
        decided.setdefault(info.ref, Decision(info, "keep", f"keep: tier {info.tier!r} is not managed by retention"))

    # Whatever the policy, the newest complete point stays: the last good backup is never lost.
    complete = [p for p in present if p.status == "complete"]
    if complete:
        newest = max(complete, key=lambda p: (p.sort_key[0], -TIER_RANK.get(p.tier, 99), p.name))
        if decided[newest.ref].delete:
            decided[newest.ref] = Decision(newest, "keep", "keep: newest complete point (never deleted)")
    return [decided[info.ref] for info in points]


def _select_daily(points: list[PointInfo], count: int) -> dict[str, Decision]:
    """Keep the newest complete point of each of the `count` newest complete days; problem points
    stay while they are within the `count` newest days (any status) for diagnosis."""
    decided: dict[str, Decision] = {}
    newest_complete_of_day: dict[date, PointInfo] = {}
    for info in sorted(points, key=lambda p: p.sort_key):
        if info.status == "complete":
            newest_complete_of_day[info.day] = info  # ascending order: the last one wins
    kept_days = sorted(newest_complete_of_day, reverse=True)[:count]
    window = sorted({p.day for p in points}, reverse=True)[:count]
    newest_complete = max((p for p in points if p.status == "complete"), key=lambda p: p.sort_key, default=None)

    for info in points:
        day_best = newest_complete_of_day.get(info.day)
        superseded = day_best is not None and day_best is not info and info.sort_key < day_best.sort_key
        if info.status == "complete":
            if info.day not in kept_days:
                decided[info.ref] = Decision(info, "delete", f"delete: older than the {count} newest daily points")
            elif info is day_best:
                decided[info.ref] = Decision(info, "keep", f"keep: one of the {count} newest daily points")
            else:
                decided[info.ref] = Decision(info, "delete", (
                    f"delete: an older complete point of {info.day}; the newer daily/{day_best.name} of that day is kept"))
        elif superseded:
            decided[info.ref] = Decision(info, "delete", (
                f"delete: {info.status} point superseded by the newer complete daily/{day_best.name} of the same day"))
        elif info.day in window:
            decided[info.ref] = Decision(info, "keep", (
                f"keep: {info.status} point within the daily window (the {count} newest days), kept for diagnosis"))
        elif newest_complete is not None and info.sort_key < newest_complete.sort_key:
            decided[info.ref] = Decision(info, "delete", (
                f"delete: {info.status} point older than the newest complete one, outside the daily window "
                f"(the {count} newest days)"))
        else:
            decided[info.ref] = Decision(info, "delete", (
                f"delete: {info.status} point outside the daily window (the {count} newest days)"))
    return decided


def _select_tier(points: list[PointInfo], tier: str, count: int) -> dict[str, Decision]:
    decided: dict[str, Decision] = {}
    if count == 0:
        for info in points:
            decided[info.ref] = Decision(info, "delete", f"delete: the {tier} tier is disabled (retention.{tier} = 0)")
        return decided
    complete = sorted((p for p in points if p.status == "complete"), key=lambda p: p.sort_key, reverse=True)
    kept = {p.ref for p in complete[:count]}
    for info in points:
        if info.status != "complete":
            # Promotions are copies of complete points; anything else here cannot be restored from.
            decided[info.ref] = Decision(info, "delete", f"delete: {info.status} point in the {tier} tier (only complete points are promoted)")
        elif info.ref in kept:
            decided[info.ref] = Decision(info, "keep", f"keep: one of the {count} newest {tier} points")
        else:
            decided[info.ref] = Decision(info, "delete", f"delete: older than the {count} newest {tier} points")
    return decided


# --- applying ---------------------------------------------------------------------------------

def point_info(point: Point) -> PointInfo:
    """A point as selection sees it; an unreadable manifest gives status 'unreadable' (kept)."""
    try:
        manifest = point.manifest()
        return PointInfo(point.tier, point.name, point.status(), manifest.created_at)
    except Exception:  # noqa: BLE001 - a broken manifest must not stop retention, nor get the point deleted
        mtime = datetime.fromtimestamp(os.lstat(point.folder).st_mtime, timezone.utc)
        return PointInfo(point.tier, point.name, "unreadable", mtime)


def _real_points(storage: Storage) -> list[Point]:
    # Temp promotions and half deletions carry a leading dot; they are never points.
    return [p for p in storage.points() if not p.name.startswith(".")]


def prune(storage: Storage, settings: Settings, dry_run: bool = True, now: datetime | None = None) -> list[Decision]:
    """Select by settings.retention and, unless dry_run, delete what is marked delete. Returns all
    decisions (in dry run too)."""
    moment = now or utc_now()
    if dry_run:
        decisions = select([point_info(p) for p in _real_points(storage)], settings.retention, moment)
        return decisions + _binlog_files(storage, settings, decisions, True) + _unsafe(storage)
    with _lock(storage):
        _finish_leftovers(storage)
        decisions = select([point_info(p) for p in _real_points(storage)], settings.retention, moment)
        for decision in decisions:
            if decision.delete:
                _delete(storage, decision)
        decisions += _binlog_files(storage, settings, decisions, False)
        decisions += _unsafe(storage)

    audit.record(storage.root, "prune", None, "done", deleted=[d.ref for d in decisions if d.delete],
                 kept=sum(1 for d in decisions if not d.delete))
    return decisions


def _binlog_files(storage: Storage, settings: Settings, decisions: list[Decision], dry_run: bool) -> list[Decision]:
    """The archived binlog files older than a replay from the oldest kept daily point needs (actors/binlog/):
    they go, each listed like a point. Nothing goes while no kept daily point has binlog coordinates."""
    starts = []
    for decision in decisions:
        if decision.delete or decision.point.tier != "daily" or decision.point.status != "complete":
            continue
        try:
            record = storage.point(decision.ref).manifest().components.get("mysql")
        except Exception:  # noqa: BLE001 - an unreadable point gives no coordinates; it keeps nothing from going
            continue
        coordinates = record.details.get("binlog") if record is not None and record.status == "ok" else None
        if isinstance(coordinates, dict) and isinstance(coordinates.get("file"), str):
            starts.append((_aware(decision.point.created_at), decision.ref, coordinates["file"]))
    if not starts:
        return []
    _, ref, keep_from = min(starts)
    why = f"older than {keep_from}, where a replay from {ref} (the oldest kept daily point) starts"
    return [Decision(PointInfo(BINLOG_ARCHIVE, entry.name, "binlog", entry.first_event or utc_now()), "delete",
                     f"delete: {why}") for entry in prune_archive(settings, keep_from, why, dry_run)]


def _unsafe(storage: Storage) -> list[Decision]:
    """What is planted in the tier folders (symlinks, files, manifests that are links): kept, never
    followed nor deleted, and reported so a person removes it."""
    found = []
    for path, problem in storage.unsafe_entries():
        try:
            parts = path.relative_to(storage.root).parts
        except ValueError:
            parts = (path.name,)
        if not parts or parts[0] not in TIERS:
            continue
        mtime = datetime.fromtimestamp(os.lstat(path).st_mtime, timezone.utc)
        info = PointInfo(parts[0], "/".join(parts[1:]) or "(the tier folder)", "unsafe", mtime)
        found.append(Decision(info, "keep", f"keep: {path} {problem}; never followed nor deleted: remove it by hand"))
    return found


def _audit(storage: Storage, action: str, point: str, reason: str) -> None:

    audit.record(storage.root, action, point, "done", reason=reason)


def _delete(storage: Storage, decision: Decision) -> None:
    point = Point(storage, storage.layout.point_folder(decision.point.tier, decision.point.name))
    if entry_problem(point.folder, want_dir=True) or point.status() == "running":
        return  # replaced by a link since it was read, or someone picked it up: leave it
    # Renamed away first: an interrupted delete leaves a dot-folder, never a half point under its name.
    doomed = point.folder.with_name(f"{DELETING_MARK}{point.name}-{secrets.token_hex(4)}")
    os.rename(point.folder, doomed)
    fsync_dir(doomed.parent)
    # Logged once the point is gone from view; a failing rmtree is finished by the next prune.
    _audit(storage, "delete", decision.ref, decision.reason)
    shutil.rmtree(doomed)


def _finish_leftovers(storage: Storage) -> None:
    """Remove half deletions and half promotions a crash left behind (we hold the retention lock)."""
    for tier in TIERS:
        folder = storage.layout.folder(tier)
        if entry_problem(folder, want_dir=True):
            continue
        for entry in folder.iterdir():
            if entry.name.startswith(".") and (entry.name.startswith(DELETING_MARK) or TEMP_MARK in entry.name):
                if entry_problem(entry, want_dir=True) == "is gone":
                    continue
                if entry_problem(entry, want_dir=True):  # a link (or file) under our name: only it goes
                    entry.unlink()
                else:
                    shutil.rmtree(entry)
                _audit(storage, "cleanup", f"{tier}/{entry.name}", "leftover of an interrupted deletion or promotion")


def storage_bytes(storage: Storage) -> int:
    """Bytes on disk under the tier folders, each hard-linked file counted once (like du)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for tier in TIERS:
        folder = storage.layout.folder(tier)
        if entry_problem(folder, want_dir=True) is None:
            total += sum(Point(storage, entry).du_bytes(seen) for entry in sorted(folder.iterdir())
                         if entry_problem(entry, want_dir=True) is None)
    return total
