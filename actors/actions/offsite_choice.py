"""Which snapshots of the offsite repository a restore takes: the point (by name, newest, or the newest made at
or before a moment) and the copy of the search snapshot repository that holds the point's snapshot.

Snapshots and their tags are read back from the repository: untrusted; a tag that does not parse counts as none.
"""
from __future__ import annotations

from datetime import datetime, timezone

from core.restic import OffsitePermanent, Snapshot


def choose_point(snaps: list[Snapshot], ref: str | None) -> Snapshot:
    points = [s for s in snaps if s.kind == "point"]
    if not points:
        raise OffsitePermanent("the offsite repository holds no backup point yet (`ragflow-backup offsite snapshots`)")
    if ref in (None, "", "latest"):
        return points[-1]
    wanted = {ref, f"daily/{ref}"}
    found = [s for s in points if s.point in wanted]
    if not found:
        names = ", ".join(sorted({s.point or "?" for s in points})[-10:])
        raise OffsitePermanent(f"no point {ref!r} in the offsite repository; it holds {names}")
    return found[-1]


STAMP = "%Y%m%dT%H%M%SZ"  # a search_repo copy's newest_point_at tag


def _newest_point_at(copy: Snapshot) -> datetime | None:
    try:  # read back from the repository: a tag that does not parse counts as none
        return datetime.strptime(copy.tags.get("newest_point_at", [""])[0], STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def point_at(snaps: list[Snapshot], at: datetime) -> Snapshot:
    """`restore --at T --from offsite` without --point: the newest point made at or before T."""
    points = [s for s in snaps if s.kind == "point" and s.time <= at]
    if not points:
        raise OffsitePermanent(f"the offsite repository holds no point made at or before {at.isoformat()}")
    return points[-1]


def search_repo_for_moment(snaps: list[Snapshot], point: Snapshot, at: datetime | None) -> Snapshot | None:
    """The first copy made at or after T holding the point's snapshot, so also the interval snapshots up to T
    (their records ride in it); without T, or no such copy, choose_search_repo's."""
    if at is not None:
        fits = [s for s in snaps if s.kind == "search_repo" and s.time >= at and (made := _newest_point_at(s))
                is not None and made >= point.time.replace(microsecond=0)]
        if fits:
            return fits[0]
    return choose_search_repo(snaps, point)


def choose_search_repo(snaps: list[Snapshot], point: Snapshot) -> Snapshot | None:
    """The first copy of the search snapshot repository made once the point was complete (its newest_point_at
    is the point's time or later: it holds the point's snapshot; a later copy may have lost it to the
    repository's own retention), else the newest."""
    copies = [s for s in snaps if s.kind == "search_repo"]
    since = point.time.replace(microsecond=0)
    after = [s for s in copies if (at := _newest_point_at(s)) is not None and at >= since]
    return after[0] if after else (copies[-1] if copies else None)
