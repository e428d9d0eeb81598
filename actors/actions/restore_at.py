"""`restore --at T`: what each component comes back to, and why (what `--dry-run` prints).

MySQL: the newest complete point whose dump finished at or before T and whose binlog coordinates the archive
(actors/binlog/index.py) continues without a gap up to T; its dump is loaded, then the archive replayed to T
(actors/mysql/replay.py). A gap on the way is refused, naming the nearest moments the archive can reach. With
no archive (not enabled, or nothing archived yet) MySQL comes back to the point's time, and that is said.
Search: the newest snapshot at or before T, the point's or an interval one taken after it (actors/search/
interval.py), and the documents changed between it and T are listed after the restore
(actors/search/changed_documents.py); the chunks of documents deleted in between are removed from the restored
indices (actors/actions/restore_stray.py). MinIO: the mirror as at T. Config: the history's commit at or before T.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from actors.binlog.index import load_index
from actors.config.restore import commit_at
from actors.search.interval import interval_snapshots, newest_at_or_before
from core.component import PermanentError
from core.config import Settings
from core.layout import SEARCH_INTERVALS_IN_REPO_COPY
from core.manifest import ComponentRecord
from core.pitr import ArchiveGap, BinlogCoordinates, ReplayPlan
from core.points import Point


@dataclass(frozen=True)
class SearchFrom:
    """An interval snapshot newer than the point's, restored for search in its stead."""
    point: Point  # its record's folder, read as a point's
    record: ComponentRecord
    taken_at: datetime


@dataclass
class AtChoice:
    point: Point | None
    replay: ReplayPlan | None = None
    config_commit: str | None = None
    search_from: SearchFrom | None = None
    moments: dict[str, str] = field(default_factory=dict)  # component -> "<moment> (<why>)"


def _when(moment: datetime) -> str:
    return moment.astimezone().isoformat(timespec="seconds")


def _coordinates(point: Point) -> tuple[BinlogCoordinates, str] | None:
    """The point's dump coordinates and database, from its manifest (untrusted: type-checked)."""
    record = point.manifest().components.get("mysql")
    details = record.details if record is not None else {}
    binlog, database = details.get("binlog"), details.get("database")
    if not isinstance(binlog, dict) or not isinstance(database, str) or not database:
        return None
    file, position = binlog.get("file"), binlog.get("position")
    if not isinstance(file, str) or not isinstance(position, int) or isinstance(position, bool) or position < 4:
        return None
    return BinlogCoordinates(file, position), database


def refusal(gap: ArchiveGap, at: datetime) -> PermanentError:
    sides = [f"{label} {_when(moment)}" for label, moment in (("before", gap.before), ("after", gap.after))
             if moment is not None]
    nearest = f"the nearest moments MySQL can be restored to: {', '.join(sides)}" if sides else \
        "the archive reaches no moment near it"
    return PermanentError(f"restore --at {_when(at)} cannot bring MySQL back to that second: {gap}; {nearest} "
                          f"(`ragflow-backup timeline` shows the spans). Nothing was changed")


def mysql_at(settings: Settings, candidates: list[tuple[datetime, Point]], at: datetime
             ) -> tuple[Point | None, ReplayPlan | None]:
    """The point and replay plan for MySQL at `at` (see the module docstring); (newest point, None) when there
    is no archive. `candidates` are the complete points (created_at, point)."""
    newest_first = sorted((item for item in candidates if item[0] <= at), key=lambda item: item[0], reverse=True)
    with_mysql = [point for _, point in newest_first if _mysql_finished(point) is not None
                  and _mysql_finished(point) <= at]
    index = load_index(settings.layout)
    if not index.files:  # as before the archive: the newest point (one with MySQL when there is one)
        return (with_mysql[0] if with_mysql else newest_first[0][1] if newest_first else None), None
    first_gap: ArchiveGap | None = None
    for point in with_mysql:
        found = _coordinates(point)
        if found is None:
            continue
        start, database = found
        try:
            return point, index.replay_plan(start, at, database, settings.layout.binlog_archive)
        except ArchiveGap as gap:
            first_gap = first_gap or gap
    if first_gap is None:
        spans = index.spans()
        first_gap = ArchiveGap("no complete point made before it has binlog coordinates the archive holds",
                               max((s.end for s in spans if s.end <= at), default=None),
                               min((s.start for s in spans if s.start >= at), default=None))
    raise refusal(first_gap, at)


def _mysql_finished(point: Point) -> datetime | None:
    record = point.manifest().components.get("mysql")
    return record.finished_at if record is not None and record.status == "ok" else None


def search_from_copy(settings: Settings, point: Point, copy: Path, at: datetime) -> tuple[SearchFrom, str] | None:
    """`restore --at T --from offsite`: the newest interval snapshot whose record came in the fetched copy of the
    search repository (actors/actions/offsite.py) begun after the point's snapshot and done by T, as SearchFrom and
    the plan's line for search; None when there is none. The records are untrusted: one naming another
    repository than the point's (which the restore would ask the server for) is passed over."""
    record = point.manifest().components.get("search")
    if record is None or record.status != "ok":
        return None
    same = {"repository": record.details.get("repository"), "repository_path": record.details.get("repository_path")}
    fits = [item for item in interval_snapshots(settings, root=copy / SEARCH_INTERVALS_IN_REPO_COPY)
            if item.taken_at > record.started_at and item.done_at <= at
            and {key: item.record().details.get(key) for key in same} == same]
    if not fits:
        return None
    later = fits[-1]
    return (SearchFrom(later.as_point(point.storage), later.record(), later.taken_at),
            f"{_when(later.taken_at)} (interval snapshot at {_when(later.taken_at)}, {later.name}, from the offsite "
            "copy; documents changed after it are listed)")


def choose(settings: Settings, candidates: list[tuple[datetime, Point]], at: datetime, wanted: list[str]) -> AtChoice:
    """The point, the replay plan, the config commit and the moment each wanted component comes back to."""
    if "mysql" in wanted and settings.mysql.enabled:
        point, replay = mysql_at(settings, candidates, at)
    else:
        older = [item for item in candidates if item[0] <= at]
        point, replay = (max(older, key=lambda item: item[0])[1] if older else None), None
    choice = AtChoice(point, replay)
    manifest = point.manifest() if point else None
    if "mysql" in wanted and manifest and "mysql" in manifest.components:
        dumped = manifest.components["mysql"].finished_at
        choice.moments["mysql"] = (f"{_when(at)} (point {point.ref} + binlog to {_when(at)})" if replay else
                                   f"{_when(dumped)} (point {point.ref}: no binlog archive, so MySQL comes back to "
                                   f"the point's time, not {_when(at)})")
    if "search" in wanted and manifest and "search" in manifest.components:
        taken = manifest.components["search"].started_at
        later = newest_at_or_before(settings, at, after=taken)
        if later is not None:
            choice.search_from = SearchFrom(later.as_point(point.storage), later.record(), later.taken_at)
            choice.moments["search"] = (f"{_when(later.taken_at)} (interval snapshot at {_when(later.taken_at)}, "
                                        f"{later.name}; documents changed after it are listed)")
        else:
            choice.moments["search"] = (f"{_when(taken)} (snapshot of point {point.ref}; documents changed after "
                                        f"it are listed)")
    if "minio" in wanted:
        choice.moments["minio"] = f"{_when(at)} (mirror at {_when(at)})"
    if "config" in wanted and settings.config_files.enabled and settings.ragflow_dir is not None:
        found = commit_at(settings, at)
        if found is not None:
            choice.config_commit = found[0]
            choice.moments["config"] = f"{_when(found[1])} (commit {found[0][:12]} at {_when(found[1])})"
        elif manifest and "config" in manifest.components:
            choice.moments["config"] = f"{_when(manifest.created_at)} (point {point.ref}: no commit at or before it)"
    if "postgres" in wanted and manifest and "postgres" in manifest.components:  # no WAL archive to replay
        choice.moments["postgres"] = (f"{_when(manifest.components['postgres'].finished_at)} (point {point.ref}: "
                                      f"no WAL archive, so PostgreSQL comes back to the point's time, not {_when(at)})")
    if "redis" in wanted and manifest and "redis" in manifest.components:
        choice.moments["redis"] = f"{_when(manifest.components['redis'].finished_at)} (point {point.ref})"
    return choice
