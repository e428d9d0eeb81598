"""Retention: hard-link promotions, GFS selection and pruning, all in a tmp_path storage root."""
from __future__ import annotations

import errno
import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from actors.actions.retention import (
    PointInfo,
    month_name,
    promote,
    prune,
    select,
    storage_bytes,
    week_name,
)
from core.atomic import atomic_file
from core.checks import verify_artifacts
from core.component import PermanentError
from core.config import RetentionSettings, Settings
from core.manifest import Artifact, ComponentRecord
from core.points import Point, Storage

UTC = timezone.utc
KIB = 1024


def make_point(storage: Storage, at: datetime, status: str = "complete", size: int = 10 * KIB) -> Point:
    """A daily point with one artifact per component: complete (both ok), partial (one failed),
    failed (both failed) or interrupted (nothing recorded, nobody at work on it)."""
    point = storage.new_point(["mysql", "search"], at=at)
    outcomes = {"complete": ("ok", "ok"), "partial": ("ok", "failed"), "failed": ("failed", "failed")}
    if status == "interrupted":
        return point
    for component, outcome in zip(("mysql", "search"), outcomes[status]):
        artifacts = []
        if outcome == "ok":
            with atomic_file(point.path(f"{component}.bin")) as out:
                out.write(os.urandom(size))
            artifacts.append(Artifact(name=f"{component}.bin", bytes=out.result.bytes, sha256=out.result.sha256))
        point.save_record(ComponentRecord(component=component, status=outcome, started_at=at, finished_at=at,
                                          error=None if outcome == "ok" else "RuntimeError: boom",
                                          artifacts=artifacts))
    assert point.status() == status
    return point


def settings_for(root: Path, daily: int = 7, weekly: int = 4, monthly: int = 12) -> Settings:
    return Settings(storage_root=root, retention=RetentionSettings(daily=daily, weekly=weekly, monthly=monthly))


def refs(storage: Storage) -> list[str]:
    return [p.ref for p in storage.points()]


def audit_lines(storage: Storage) -> list[dict]:
    """The audit log's deletions (backups and prunes are audited too)."""
    path = storage.root / "logs" / "audit.log"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [line for line in lines if line["action"] in ("delete", "cleanup")]


def info(tier: str, name: str, status: str, created_at: datetime) -> PointInfo:
    return PointInfo(tier=tier, name=name, status=status, created_at=created_at)


def by_ref(decisions) -> dict[str, str]:
    return {d.ref: d.reason for d in decisions}


# --- promotion --------------------------------------------------------------------------------

def test_a_complete_daily_point_is_promoted_by_hard_links_at_no_extra_cost(tmp_path):
    storage = Storage(tmp_path / "backups")
    daily = make_point(storage, datetime(2026, 11, 24, 3, 0, tzinfo=UTC))

    promoted = promote(storage, daily)

    assert [p.ref for p in promoted] == ["weekly/2026-W48", "monthly/2026-11"]
    for copy in promoted:
        for name in ("mysql.bin", "search.bin"):
            assert (copy.folder / name).stat().st_ino == (daily.folder / name).stat().st_ino
        assert (copy.folder / "manifest.json").stat().st_ino != (daily.folder / "manifest.json").stat().st_ino
        assert stat.S_IMODE(copy.folder.stat().st_mode) == 0o700
        assert not (copy.folder / ".records").exists() and not (copy.folder / ".work.lock").exists()
        manifest = copy.manifest()
        assert (manifest.tier, manifest.name) == (copy.tier, copy.name)
        assert manifest.promoted_from == "daily/2026-11-24"
        assert manifest.point_id == daily.manifest().point_id
        assert manifest.components == daily.manifest().components
        assert copy.status() == "complete"
        assert all(verify_artifacts(copy, record) == [] for record in manifest.components.values())
    assert daily.manifest().tier == "daily" and daily.manifest().promoted_from is None
    # The artifacts cost nothing more; only each copy's own (new) manifest.json takes blocks.
    manifests = sum((copy.folder / "manifest.json").stat().st_blocks * 512 for copy in promoted)
    assert storage_bytes(storage) == daily.du_bytes() + manifests
    assert manifests <= 2 * 8 * KIB < daily.du_bytes()
    assert not [p for tier in ("weekly", "monthly") for p in (storage.root / tier).iterdir() if p.name.startswith(".")]


def test_promoting_twice_changes_nothing_and_the_first_point_of_a_week_stays_its_promotion(tmp_path):
    storage = Storage(tmp_path / "backups")
    monday = make_point(storage, datetime(2026, 11, 23, 3, 0, tzinfo=UTC))
    tuesday = make_point(storage, datetime(2026, 11, 24, 3, 0, tzinfo=UTC))

    assert len(promote(storage, monday)) == 2
    assert promote(storage, monday) == []
    assert promote(storage, tuesday) == []
    assert storage.point("weekly/2026-W48").manifest().promoted_from == "daily/2026-11-23"


def test_a_partial_failed_or_interrupted_point_is_never_promoted(tmp_path):
    storage = Storage(tmp_path / "backups")
    for day, status in enumerate(("partial", "failed", "interrupted"), start=2):
        point = make_point(storage, datetime(2026, 11, day, 3, 0, tzinfo=UTC), status)
        assert promote(storage, point) == []
    running = storage.new_point(["mysql"], at=datetime(2026, 11, 9, 3, 0, tzinfo=UTC))
    with running.working():
        assert running.status() == "running"
        assert promote(storage, running) == []
    assert refs(storage) == ["daily/2026-11-02", "daily/2026-11-03", "daily/2026-11-04", "daily/2026-11-09"]


def test_a_disabled_tier_gets_no_promotion(tmp_path):
    storage = Storage(tmp_path / "backups")
    point = make_point(storage, datetime(2026, 11, 24, 3, 0, tzinfo=UTC))
    assert [p.ref for p in promote(storage, point, policy=RetentionSettings(weekly=0))] == ["monthly/2026-11"]


def test_week_names_follow_the_iso_calendar():
    assert week_name(datetime(2026, 11, 24)) == "2026-W48"
    assert week_name(datetime(2027, 1, 1)) == "2026-W53"  # a Friday: still the last ISO week of 2026
    assert month_name(datetime(2027, 1, 1)) == "2027-01"


# --- pruning storage --------------------------------------------------------------------------

def test_thirty_days_of_daily_points_leave_seven_daily_and_weekly_and_monthly_within_limits(tmp_path):
    storage = Storage(tmp_path / "backups")
    first = datetime(2026, 10, 20, 2, 30, tzinfo=UTC)
    days = [first + timedelta(days=n) for n in range(30)]
    for at in days:
        promote(storage, make_point(storage, at, size=KIB))
    settings = settings_for(storage.root)
    now = days[-1] + timedelta(hours=1)
    before = refs(storage)
    weeks = sorted({week_name(d) for d in days})
    assert len(weeks) > 4

    planned = prune(storage, settings, dry_run=True, now=now)

    assert refs(storage) == before  # a dry run deletes nothing
    assert audit_lines(storage) == []
    done = prune(storage, settings, dry_run=False, now=now)
    assert [(d.ref, d.action, d.reason) for d in done] == [(d.ref, d.action, d.reason) for d in planned]

    assert [p.name for p in storage.points("daily")] == [d.strftime("%Y-%m-%d") for d in days[-7:]]
    assert [p.name for p in storage.points("weekly")] == weeks[-4:]
    assert [p.name for p in storage.points("monthly")] == ["2026-10", "2026-11"]
    for point in storage.points():
        assert all(verify_artifacts(point, r) == [] for r in point.manifest().components.values())
    deleted = [d for d in done if d.delete]
    assert len(deleted) == 23 + len(weeks) - 4
    assert [line["target"] for line in audit_lines(storage)] == [d.ref for d in deleted]
    # A second pass finds nothing more to delete.
    assert not any(d.delete for d in prune(storage, settings, dry_run=False, now=now))
    # Nothing of the deleted points is left: every file under the tiers belongs to a kept point, and the
    # inodes are exactly those the kept points link to (no orphaned data).
    kept = {p.folder for p in storage.points()}
    inodes_kept, inodes_found = set(), set()
    for point in storage.points():
        inodes_kept |= {f.stat().st_ino for f in point.folder.rglob("*") if f.is_file()}
    for tier in ("daily", "weekly", "monthly"):
        for entry in (storage.root / tier).iterdir():
            assert entry in kept, f"{entry} is not a kept point"
        inodes_found |= {f.stat().st_ino for f in (storage.root / tier).rglob("*") if f.is_file()}
    assert inodes_found == inodes_kept


def test_each_deletion_writes_one_audit_line_with_time_action_point_and_reason(tmp_path):
    storage = Storage(tmp_path / "backups")
    for day in (1, 2, 3):
        make_point(storage, datetime(2026, 11, day, 3, 0, tzinfo=UTC))

    decisions = prune(storage, settings_for(storage.root, daily=1), dry_run=False,
                      now=datetime(2026, 11, 3, 4, 0, tzinfo=UTC))

    lines = audit_lines(storage)
    assert [(line["action"], line["target"]) for line in lines] == [("delete", "daily/2026-11-01"), ("delete", "daily/2026-11-02")]
    assert all(line["reason"] == "delete: older than the 1 newest daily points" for line in lines)
    assert all(datetime.fromisoformat(line["time"]).tzinfo is not None for line in lines)
    assert [d.ref for d in decisions if not d.delete] == ["daily/2026-11-03"]
    assert stat.S_IMODE((storage.root / "logs" / "audit.log").stat().st_mode) == 0o600


def test_deleting_a_daily_point_leaves_its_weekly_promotion_readable_with_the_same_bytes(tmp_path):
    storage = Storage(tmp_path / "backups")
    old = make_point(storage, datetime(2026, 11, 23, 3, 0, tzinfo=UTC))
    content = (old.folder / "mysql.bin").read_bytes()
    promote(storage, old)
    promote(storage, make_point(storage, datetime(2026, 11, 24, 3, 0, tzinfo=UTC)))

    decisions = prune(storage, settings_for(storage.root, daily=1), dry_run=False,
                      now=datetime(2026, 11, 24, 4, 0, tzinfo=UTC))

    assert [d.ref for d in decisions if d.delete] == ["daily/2026-11-23"]
    assert not old.folder.exists()
    weekly = storage.point("weekly/2026-W48")
    assert (weekly.folder / "mysql.bin").read_bytes() == content
    assert all(verify_artifacts(weekly, r) == [] for r in weekly.manifest().components.values())
    assert not [p for p in (storage.root / "daily").iterdir() if p.name.startswith(".")]


def test_the_newest_complete_point_survives_when_every_newer_point_is_partial(tmp_path):
    storage = Storage(tmp_path / "backups")
    good = make_point(storage, datetime(2026, 11, 1, 3, 0, tzinfo=UTC))
    for day in range(2, 7):
        make_point(storage, datetime(2026, 11, day, 3, 0, tzinfo=UTC), "partial")

    decisions = prune(storage, settings_for(storage.root, daily=1, weekly=0, monthly=0), dry_run=False,
                      now=datetime(2026, 11, 6, 4, 0, tzinfo=UTC))

    assert good.folder.exists() and good.status() == "complete"
    assert by_ref(decisions)["daily/2026-11-06"].startswith("keep: partial point within the daily window")
    assert by_ref(decisions)["daily/2026-11-02"] == (
        "delete: partial point outside the daily window (the 1 newest days)")
    assert refs(storage) == ["daily/2026-11-01", "daily/2026-11-06"]


def test_the_newest_complete_point_survives_even_when_its_tier_is_disabled(tmp_path):
    storage = Storage(tmp_path / "backups")
    good = make_point(storage, datetime(2026, 11, 1, 3, 0, tzinfo=UTC))
    promote(storage, good)
    good.folder.rename(tmp_path / "moved-away")  # only the promotions are left
    make_point(storage, datetime(2026, 11, 2, 3, 0, tzinfo=UTC), "partial")

    decisions = prune(storage, settings_for(storage.root, daily=1, weekly=0, monthly=0), dry_run=False,
                      now=datetime(2026, 11, 2, 4, 0, tzinfo=UTC))

    # The weekly and monthly copies share created_at; the finer tier counts as the newest.
    assert by_ref(decisions)["weekly/2026-W44"] == "keep: newest complete point (never deleted)"
    assert by_ref(decisions)["monthly/2026-11"] == "delete: the monthly tier is disabled (retention.monthly = 0)"
    assert refs(storage) == ["daily/2026-11-02", "weekly/2026-W44"]


@pytest.mark.fault('clock jump: a point dated in the future',
                   "retention keeps it without counting it, so today's points are not deleted")
def test_a_point_dated_in_the_future_does_not_get_todays_points_deleted(tmp_path):
    storage = Storage(tmp_path / "backups")
    make_point(storage, datetime(2026, 11, 23, 3, 0, tzinfo=UTC))
    today = make_point(storage, datetime(2026, 11, 24, 3, 0, tzinfo=UTC))
    future = make_point(storage, datetime(2031, 1, 1, 3, 0, tzinfo=UTC))  # written while the clock was wrong

    decisions = prune(storage, settings_for(storage.root, daily=1), dry_run=False,
                      now=datetime(2026, 11, 24, 4, 0, tzinfo=UTC))

    assert today.folder.exists() and future.folder.exists()
    assert by_ref(decisions)["daily/2031-01-01"].startswith("keep: dated in the future")
    assert refs(storage) == ["daily/2026-11-24", "daily/2031-01-01"]


def test_leftovers_of_interrupted_deletions_and_promotions_are_never_points_and_are_cleaned(tmp_path):
    storage = Storage(tmp_path / "backups")
    point = make_point(storage, datetime(2026, 11, 24, 3, 0, tzinfo=UTC))
    promote(storage, point)
    for leftover in (storage.root / "daily" / ".deleting-2026-11-20-abcd1234",
                     storage.root / "weekly" / ".2026-W49.tmp-abcd1234"):
        leftover.mkdir()
        (leftover / "manifest.json").write_text((point.folder / "manifest.json").read_text())

    planned = prune(storage, settings_for(storage.root), dry_run=True, now=datetime(2026, 11, 24, 4, 0, tzinfo=UTC))
    assert [d.ref for d in planned] == ["daily/2026-11-24", "weekly/2026-W48", "monthly/2026-11"]
    assert not any(d.delete for d in planned)

    prune(storage, settings_for(storage.root), dry_run=False, now=datetime(2026, 11, 24, 4, 0, tzinfo=UTC))
    assert not [p for tier in ("daily", "weekly") for p in (storage.root / tier).iterdir() if p.name.startswith(".")]
    assert [line["action"] for line in audit_lines(storage)] == ["cleanup", "cleanup"]


def test_storage_bytes_counts_each_hard_linked_file_once(tmp_path):
    storage = Storage(tmp_path / "backups")
    first = make_point(storage, datetime(2026, 11, 23, 3, 0, tzinfo=UTC))
    second = make_point(storage, datetime(2026, 11, 30, 3, 0, tzinfo=UTC))
    promote(storage, first)
    promote(storage, second)
    copies = [p for p in storage.points() if p.tier != "daily"]
    manifests = sum((p.folder / "manifest.json").stat().st_blocks * 512 for p in copies)
    assert [p.ref for p in copies] == ["weekly/2026-W48", "weekly/2026-W49", "monthly/2026-11"]
    assert storage_bytes(storage) == first.du_bytes() + second.du_bytes() + manifests


# --- pure selection ---------------------------------------------------------------------------

POLICY = RetentionSettings(daily=7, weekly=4, monthly=12)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_several_points_of_one_day_count_as_one_day_and_the_newest_complete_one_is_kept():
    day = datetime(2026, 11, 24, tzinfo=UTC)
    points = [
        info("daily", "2026-11-24", "complete", day.replace(hour=1)),
        info("daily", "2026-11-24_020000", "partial", day.replace(hour=2)),
        info("daily", "2026-11-24_030000", "complete", day.replace(hour=3)),
        info("daily", "2026-11-24_040000", "failed", day.replace(hour=4)),
    ] + [info("daily", f"2026-11-{d:02d}", "complete", datetime(2026, 11, d, 1, tzinfo=UTC)) for d in range(17, 24)]

    reasons = by_ref(select(points, POLICY, NOW))

    assert reasons["daily/2026-11-24_030000"] == "keep: one of the 7 newest daily points"
    assert reasons["daily/2026-11-24"] == (
        "delete: an older complete point of 2026-11-24; the newer daily/2026-11-24_030000 of that day is kept")
    assert reasons["daily/2026-11-24_020000"] == (
        "delete: partial point superseded by the newer complete daily/2026-11-24_030000 of the same day")
    assert reasons["daily/2026-11-24_040000"].startswith("keep: failed point within the daily window")
    # Same-day points took one day, not four: six older days stay, the seventh-oldest goes.
    assert [d for d in range(17, 24) if reasons[f"daily/2026-11-{d:02d}"].startswith("keep")] == list(range(18, 24))
    assert reasons["daily/2026-11-17"] == "delete: older than the 7 newest daily points"


def test_decisions_say_why_and_come_in_the_order_given():
    points = [info("daily", f"2026-11-{d:02d}", "complete", datetime(2026, 11, d, 1, tzinfo=UTC)) for d in range(1, 21)]
    points.insert(3, info("daily", "2026-11-03_120000", "interrupted", datetime(2026, 11, 3, 12, tzinfo=UTC)))
    points.append(info("daily", "2026-11-21", "running", datetime(2026, 11, 21, 1, tzinfo=UTC)))
    points.append(info("daily", "2026-10-01", "running", datetime(2026, 10, 1, 1, tzinfo=UTC)))

    decisions = select(points, POLICY, NOW)

    assert [d.point for d in decisions] == points
    reasons = by_ref(decisions)
    assert reasons["daily/2026-11-20"] == "keep: one of the 7 newest daily points"
    assert reasons["daily/2026-11-13"] == "delete: older than the 7 newest daily points"
    assert reasons["daily/2026-11-03_120000"] == (
        "delete: interrupted point older than the newest complete one, outside the daily window (the 7 newest days)")
    assert reasons["daily/2026-10-01"].startswith("keep: running")
    assert reasons["daily/2026-11-21"].startswith("keep: running")
    assert all(d.reason.startswith(d.action + ":") for d in decisions)


def test_weekly_and_monthly_keep_their_newest_complete_points_and_zero_disables_a_tier():
    weekly = [info("weekly", f"2026-W{w}", "complete", datetime.fromisocalendar(2026, w, 1).replace(tzinfo=UTC)) for w in range(40, 47)]
    monthly = [info("monthly", f"2026-{m:02d}", "complete", datetime(2026, m, 1, tzinfo=UTC)) for m in range(1, 12)]
    newest = info("daily", "2026-11-24", "complete", datetime(2026, 11, 24, 1, tzinfo=UTC))

    reasons = by_ref(select(weekly + monthly + [newest], RetentionSettings(daily=7, weekly=4, monthly=0), NOW))

    assert [w.name for w in weekly if reasons[w.ref].startswith("keep")] == ["2026-W43", "2026-W44", "2026-W45", "2026-W46"]
    assert reasons["weekly/2026-W42"] == "delete: older than the 4 newest weekly points"
    assert reasons["weekly/2026-W46"] == "keep: one of the 4 newest weekly points"
    assert all(reasons[m.ref] == "delete: the monthly tier is disabled (retention.monthly = 0)" for m in monthly)


def test_the_newest_complete_point_is_never_deleted_even_by_a_disabled_tier():
    points = [info("monthly", "2026-11", "complete", datetime(2026, 11, 2, tzinfo=UTC)),
              info("monthly", "2026-10", "complete", datetime(2026, 10, 2, tzinfo=UTC)),
              info("daily", "2026-11-24", "partial", datetime(2026, 11, 24, tzinfo=UTC))]

    reasons = by_ref(select(points, RetentionSettings(daily=1, weekly=0, monthly=0), NOW))

    assert reasons["monthly/2026-11"] == "keep: newest complete point (never deleted)"
    assert reasons["monthly/2026-10"] == "delete: the monthly tier is disabled (retention.monthly = 0)"
    assert reasons["daily/2026-11-24"].startswith("keep: partial point within the daily window")


def test_future_points_are_kept_and_not_counted_and_a_naive_now_is_taken_as_utc():
    points = [info("daily", "2026-11-24", "complete", datetime(2026, 11, 24, 1, tzinfo=UTC)),
              info("daily", "2026-11-25", "complete", datetime(2026, 11, 25, 1, tzinfo=UTC)),
              info("daily", "2026-11-26", "complete", datetime(2026, 11, 26, 1, tzinfo=UTC)),
              info("weekly", "2026-W53", "complete", datetime(2026, 12, 28, 1, tzinfo=UTC))]

    reasons = by_ref(select(points, RetentionSettings(daily=1, weekly=1, monthly=1), datetime(2026, 11, 24, 12, 0)))

    assert reasons["daily/2026-11-24"] == "keep: one of the 1 newest daily points"
    assert reasons["daily/2026-11-25"].startswith("keep: dated in the future")
    assert reasons["weekly/2026-W53"].startswith("keep: dated in the future")


def test_a_promotion_that_fails_halfway_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    storage = Storage(tmp_path / "backups")
    point = make_point(storage, datetime(2026, 11, 24, 3, 0, tzinfo=UTC))
    real_link = os.link
    calls = []

    def link_then_fill_the_disk(src, dst, **kwargs):  # the second file meets a full disk
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_link(src, dst, **kwargs)

    monkeypatch.setattr("actors.actions.retention.os.link", link_then_fill_the_disk)
    with pytest.raises(OSError, match="No space left"):
        promote(storage, point)
    assert list((storage.root / "weekly").iterdir()) == []

    def no_hard_links(src, dst, **kwargs):  # e.g. a share mounted without hard-link support
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr("actors.actions.retention.os.link", no_hard_links)
    with pytest.raises(PermanentError, match="hard links"):
        promote(storage, point)
    assert list((storage.root / "weekly").iterdir()) == []

    monkeypatch.undo()
    assert [p.ref for p in promote(storage, point)] == ["weekly/2026-W48", "monthly/2026-11"]
