"""The offsite copy: a restic repository (encrypted, deduplicated) on a USB disk, another NAS, S3 or SFTP
(the wrapper is core/restic.py; this module has the jobs: copy, forget, check, fetch, status).

What goes there, each as restic snapshots tagged so they can be found without the local storage:

    kind=point        a complete daily point folder     tags point=daily/2026-11-24, tier=daily, component=mysql, ...
                      a pinned point also pin=<name> and pinned=true: offsite retention keeps it (--keep-tag)
    kind=mirror       the MinIO mirror (objects, versions, a consistent copy of its index)
    kind=config_repo  the Git history of RAGFlow's config files (.env included: it leaves only encrypted)
    kind=binlog       MySQL's binlog archive (a frozen view: the files its index lists, and the index)
    kind=search_repo  Elasticsearch/OpenSearch's snapshot repository (search.repository_path), when the agent
                      can read it (same host): the chunks a point's search record only names. A frozen view
                      (hard links) made while the search component's lock is held, so no snapshot is written
                      mid-copy (its files are immutable; index-N / index.latest name the state); restic
                      stores only new segments. With the interval snapshots' records (search_intervals/).
                      Tagged repository=<search.repository>. When it cannot be read, the copy is skipped and
                      the reason kept in state/offsite.json (`status`, `offsite status` say it).

Every job is audited and its last result kept in state/offsite.json; our jobs take turns on the
repository (a local lock), so a forget --prune never meets our own backup.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from actors.actions.offsite_choice import STAMP, choose_point, point_at, search_repo_for_moment
from actors.actions.offsite_leftovers import claimed_fetch
from actors.actions.offsite_pins import release_gone
from actors.actions.restore import newest_complete
from actors.actions.retention import UNREADABLE_PIN, pin_of
from actors.binlog.frozen import freeze
from actors.binlog.index import load_index
from core import audit, locks
from core.atomic import private_dir, sweep_stale, write_bytes_atomic
from core.config import Settings
from core.layout import OFFSITE_RESTORE, SEARCH_INTERVALS_IN_REPO_COPY
from core.manifest import MANIFEST
from core.mirror_paths import INDEX_FILE
from core.points import Point, Storage
from core.restic import OffsiteError, OffsitePermanent, Restic, Snapshot
from core.safe_paths import UnsafePath, entry_problem, opened, relative_parts

__all__ = ["OffsiteError", "OffsitePermanent", "Restic", "Snapshot", "copy_point", "copy_mirror", "forget", "check",
           "fetched", "status", "last_runs", "search_repo_skipped"]

log = logging.getLogger("ragflow_backup.offsite")

KINDS = ("point", "mirror", "config_repo", "binlog", "search_repo")
SEARCH_REPO_SKIPPED = "offsite-search-repo:skipped"  # state/offsite.json: why the last copy left it out


@contextmanager
def serialised(settings: Settings) -> Iterator[None]:
    """One of our restic jobs at a time against the repository (forget --prune needs it alone)."""
    path = settings.layout.made_lock("offsite.lock")
    with locks.exclusive(path, "an offsite job", wait=True):
        yield


# ---------------------------------------------------------------- jobs


@contextmanager
def audited(settings: Settings, action: str, target: str | None, **details: Any) -> Iterator[dict[str, Any]]:
    """One audit line per offsite job, with its result (`extra` filled in by the job)."""

    extra: dict[str, Any] = {}
    try:
        yield extra
    except Exception as exc:
        audit.record(settings.storage_root, action, target, "failed", error=str(exc)[:500], **details)
        _remember(settings, action, target, "failed", str(exc)[:500])
        raise
    audit.record(settings.storage_root, action, target, "ok", **details, **extra)
    _remember(settings, action, target, "ok")


STATE_FILE = "offsite.json"


def _remember(settings: Settings, action: str, target: str | None, result: str, error: str | None = None) -> None:
    """The last ok and the last failed run of each offsite job, for `status` and the metrics (which must
    not wait on a remote repository nor read the whole audit log)."""

    path = settings.layout.made_state_file(STATE_FILE)
    try:
        state = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        state = {}
    state[f"{action}:{result}"] = {"time": datetime.now(timezone.utc).isoformat(), "target": target, "error": error}
    write_bytes_atomic(path, json.dumps(state, indent=2).encode())


def last_runs(settings: Settings) -> dict[str, dict[str, Any]]:
    """{"offsite-copy:ok": {"time": ..., "target": ...}, "offsite-copy:failed": {...}, "offsite-check:ok": ...}"""
    path = settings.layout.state_file(STATE_FILE)
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def copy_point(settings: Settings, point: Point) -> str | None:
    """Send a complete point to the repository (once: a point already there is not sent again)."""
    manifest = point.manifest()
    if manifest.status != "complete":
        raise OffsitePermanent(f"{point.ref} is {manifest.status}: only complete points go offsite")
    with audited(settings, "offsite-copy", point.ref, repository=settings.offsite.repository) as extra, \
            serialised(settings):
        restic = Restic(settings)
        restic.init()
        there = [s for s in restic.snapshots("point") if s.point == point.ref]
        if there:
            log.info("%s is already in the offsite repository", point.ref)
            extra["snapshot"] = "already there"
            for snap in there:  # pinned or unpinned since it was copied
                _retag(restic, snap, point)
            return None
        tags = {"kind": "point", "point": point.ref, "tier": point.tier, "component": sorted(manifest.components),
                "point_id": manifest.point_id, **pin_tags(point)}
        snapshot = restic.backup(point.folder, tags, when=manifest.created_at)
        extra["snapshot"] = snapshot
    log.info("%s copied offsite as snapshot %s", point.ref, snapshot[:8])
    return snapshot


PINNED = "pinned=true"  # the tag offsite retention keeps (`restic forget --keep-tag`)


def pin_tags(point: Point) -> dict[str, str]:
    """The tags of a pinned point's snapshot: its pin's name and the tag retention keeps; {} when not pinned.
    A pin file that cannot be read still pins (as locally, actors/actions/retention.py); a pin's name never holds
    a comma (core/points.py's PIN_NAME), which restic would split a tag at."""
    name = pin_of(point)
    if name is None:
        return {}
    return {"pin": "unreadable" if name.startswith(UNREADABLE_PIN) else name, "pinned": "true"}


def _retag(restic: Restic, snap: Snapshot, point: Point) -> bool:
    """Make a point's snapshot carry the point's pin now (pinned or unpinned after the copy); True if re-tagged."""
    want = {f"{key}={value}" for key, value in pin_tags(point).items()}
    have = {f"{key}={value}" for key in ("pin", "pinned") for value in snap.tags.get(key, [])}
    if want == have:
        return False
    restic.retag(snap, sorted(want - have), sorted(have - want))
    log.info("offsite snapshot %s of %s re-tagged: %s", snap.id[:8], point.ref,
             f"pinned as {pin_of(point)}" if want else "no longer pinned")
    return True


def sync_pins(settings: Settings, restic: Restic, refs: list[str] | None = None) -> int:
    """Re-tag the snapshots of the points here whose pin changed since they were copied (all, or `refs`); the
    number re-tagged. A point no longer here (unpinned while the repository was away, then taken by local
    retention) is let go offsite only when this root's audit log says it was unpinned (actors/actions/offsite_pins.py)."""
    storage = Storage(settings.storage_root)
    changed = 0
    gone = []
    for snap in restic.snapshots("point"):
        if not snap.point or (refs is not None and snap.point not in refs):
            continue
        try:
            point = storage.point(snap.point)  # the tag is read back from the repository: checked like any name
        except UnsafePath:
            continue
        except LookupError:
            gone.append(snap)
            continue
        if point.folder.is_dir():
            changed += _retag(restic, snap, point)
    return changed + len(release_gone(settings.storage_root, restic, gone))


def retag_point(settings: Settings, point: Point) -> None:
    """After `pin` / `unpin`: re-tag the point's offsite snapshot, if it was copied."""
    with audited(settings, "offsite-tag", point.ref, repository=settings.offsite.repository), serialised(settings):
        sync_pins(settings, Restic(settings), [point.ref])


def copy_mirror(settings: Settings) -> list[str]:
    """The MinIO mirror (a consistent copy of it), the config history and the binlog archive, as snapshots of
    their own."""
    done: list[str] = []
    with audited(settings, "offsite-copy", "mirror", repository=settings.offsite.repository) as extra, \
            serialised(settings):
        extra["snapshots"] = done
        restic = Restic(settings)
        restic.init()
        if settings.minio.enabled:
            root = settings.layout.mirror
            if (root / INDEX_FILE).is_file():
                with mirror_snapshot(settings, root) as frozen:
                    done.append(restic.backup(frozen, {"kind": "mirror"}))
        repo = settings.layout.config_repo
        if repo.is_dir():
            done.append(restic.backup(repo, {"kind": "config_repo"}))
        index = load_index(settings.layout)  # MySQL's binlog archive (actors/binlog/), as its index describes it
        if index.files:
            frozen = freeze(settings.layout, index, settings.layout.offsite_frozen_binlog())
            try:
                done.append(restic.backup(frozen, {"kind": "binlog"}))
            finally:
                shutil.rmtree(frozen, ignore_errors=True)
        if settings.search.enabled:
            snapshot = copy_search_repo(settings, restic)
            if snapshot:
                done.append(snapshot)
    return done


def search_repo_problem(settings: Settings) -> str | None:
    """Why this agent cannot copy the search server's snapshot repository offsite (None: it can)."""
    path = Path(settings.search.repository_path)
    if not path.is_dir() or path.is_symlink():
        return (f"search.repository_path {path} is not a folder on this machine (the search server's own path, "
                "e.g. inside its container): mount that folder at the same path where the agent runs, or copy it "
                "yourself; until then an offsite copy alone cannot bring the chunks back")
    if not os.access(path, os.R_OK | os.X_OK):
        return (f"search.repository_path {path} is not readable by the agent (uid {os.getuid()}): give it read "
                "access (e.g. a group both share)")
    if not any(path.glob("index-*")):
        return f"search.repository_path {path} holds no snapshot yet (no index-N file): the next backup makes one"
    return None


def copy_search_repo(settings: Settings, restic: Restic) -> str | None:
    """The snapshot repository as a snapshot of its own (kind=search_repo), while no search backup runs; None
    (and the reason kept for `status`) when the agent cannot read it."""
    problem = search_repo_problem(settings)
    if problem:
        log.warning("the search snapshot repository is not copied offsite: %s", problem)
        _remember(settings, "offsite-search-repo", settings.search.repository_path, "skipped", problem)
        return None
    # A frozen view (hard links: moments; a copy across file systems) made while the search lock is held, so
    # no backup writes a snapshot meanwhile; backups go on while restic sends it (a blob the repository's
    # own retention deletes meanwhile lives on in its link).
    frozen = settings.layout.offsite_frozen_search()
    shutil.rmtree(frozen, ignore_errors=True)  # what a killed copy left
    private_dir(frozen)
    try:
        what = "an offsite copy of the search snapshot repository"
        with locks.exclusive(settings.layout.made_lock(settings.layout.component_lock("search").name), what, wait=True):
            _link_tree(Path(settings.search.repository_path), frozen)
            _link_interval_records(settings, frozen)
            newest = newest_complete(Storage(settings.storage_root))  # its search snapshot is in the view
        tags = {"kind": "search_repo", "repository": settings.search.repository}
        if newest is not None:  # when the newest point it holds was taken (restic splits tags at commas only)
            tags["newest_point_at"] = newest.manifest().created_at.astimezone(timezone.utc).strftime(STAMP)
        snapshot = restic.backup(frozen, tags)
    finally:
        shutil.rmtree(frozen, ignore_errors=True)
    _forget_skip(settings)
    log.info("search snapshot repository %s copied offsite as snapshot %s", settings.search.repository_path,
             snapshot[:8])
    return snapshot


def _link_interval_records(settings: Settings, frozen: Path) -> None:
    """The interval records (search_intervals/) into the repository's frozen view (core/layout.py): under the same
    lock, each names a snapshot the view holds (a record goes before its snapshot), for restore --at from offsite."""
    records = settings.layout.search_intervals
    if records.is_dir() and not records.is_symlink():
        _link_tree(records, frozen / SEARCH_INTERVALS_IN_REPO_COPY)


def _forget_skip(settings: Settings) -> None:
    path = settings.layout.state_file(STATE_FILE)
    state = last_runs(settings)
    if state.pop(SEARCH_REPO_SKIPPED, None) is not None:
        write_bytes_atomic(path, json.dumps(state, indent=2).encode())


def search_repo_skipped(settings: Settings) -> str | None:
    """The reason the last offsite copy left the search snapshot repository out (None: it did not)."""
    entry = last_runs(settings).get(SEARCH_REPO_SKIPPED)
    return entry.get("error") if isinstance(entry, dict) else None


@contextmanager
def mirror_snapshot(settings: Settings, root: Path) -> Iterator[Path]:
    """A frozen view of the mirror: its files hard-linked (zero bytes) and its index copied, both while
    the index's write lock is held, so the copy never names a file that moved on meanwhile."""
    frozen = settings.layout.offsite_frozen_mirror()
    shutil.rmtree(frozen, ignore_errors=True)  # what a killed copy left
    private_dir(frozen)
    # One connection holds the write lock (writers wait; the mirror's tasks retry) while a second one
    # reads the committed index: SQLite's backup cannot read through a connection that holds the lock.
    holder = sqlite3.connect(root / INDEX_FILE, timeout=60, isolation_level=None)
    reader = sqlite3.connect(root / INDEX_FILE, timeout=60, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        try:
            target = sqlite3.connect(frozen / INDEX_FILE)
            reader.backup(target)
            target.close()
            _link_tree(root, frozen)
        finally:
            holder.execute("ROLLBACK")
    finally:
        reader.close()
        holder.close()
    try:
        yield frozen
    finally:
        shutil.rmtree(frozen, ignore_errors=True)


def _link_tree(source: Path, target: Path) -> None:
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        rel = here.relative_to(source)
        if rel.parts and rel.parts[0] == ".tmp":
            dirs.clear()
            continue
        private_dir(target / rel)
        for name in files:
            if name.startswith(INDEX_FILE) or entry_problem(here / name, want_dir=False):
                continue  # a symlink, FIFO or device planted in the mirror is never followed offsite
            try:
                os.link(here / name, target / rel / name)
            except OSError:
                shutil.copy2(here / name, target / rel / name)


def forget(settings: Settings) -> dict[str, str]:
    """Apply the offsite policy (defaults: the local one) to each kind of snapshot, and prune; pinned points'
    snapshots are kept whatever their age."""
    policy = settings.offsite.retention
    local = settings.retention
    daily, weekly, monthly = (policy.daily or local.daily, local.weekly if policy.weekly is None else policy.weekly,
                              local.monthly if policy.monthly is None else policy.monthly)
    with audited(settings, "offsite-forget", settings.offsite.repository, keep=[daily, weekly, monthly]), \
            serialised(settings):
        restic = Restic(settings)
        sync_pins(settings, restic)  # a point pinned or unpinned since its copy: tagged as it is now, first
        return {kind: restic.forget(kind, daily, weekly, monthly, keep_tags=(PINNED,)) for kind in KINDS}


def check(settings: Settings, read_data: bool = False) -> str:
    subset = settings.offsite.read_data_subset if read_data else None
    with audited(settings, "offsite-check", settings.offsite.repository, read_data_subset=subset), \
            serialised(settings):
        return Restic(settings).check(subset)


# ---------------------------------------------------------------- restore


@contextmanager
def fetched(settings: Settings, point_ref: str | None, mirror: bool = True, search_repo: bool = True,
            at: datetime | None = None, search_here: Callable[[Path], bool] | None = None,
            ) -> Iterator[tuple[Path, Path | None, Path | None]]:
    """Bring a point (the newest copy of the MinIO mirror, and the copy of the search snapshot repository that
    holds the point's snapshot) back from the repository into a private folder under the storage root (created
    if it is gone), yield (point folder, mirror folder, search repository folder), and remove them afterwards.
    `at`: see point_at. The search repository's copy is untrusted like the rest: actors/actions/foreign.py checks
    it before any search server sees it. `search_here(point folder)`: True when this search server holds the
    point's snapshot already, so the repository's copy is not fetched (a restore into the installation that
    took it)."""

    restic = Restic(settings)
    snaps = restic.snapshots()
    chosen = point_at(snaps, at) if at is not None and point_ref in (None, "", "latest") else choose_point(snaps, point_ref)
    Storage(settings.storage_root).prepare()
    sweep_stale(settings.layout.offsite, f"{OFFSITE_RESTORE}*")
    token, held = secrets.token_hex(4), ExitStack()  # claimed first: the next restore removes it once killed
    held.enter_context(claimed_fetch(settings.layout, token))
    try:
        staging = settings.layout.offsite_restore_staging(token)
    except BaseException:
        held.close()
        raise
    try:
        folder = restic.restore(chosen, staging / "point")
        # The snapshot's path comes from the repository: it must name a real folder beneath the staging
        # folder (no '..', no symlink on the way) holding a manifest that is a regular file.
        try:
            with opened(staging / "point", (*relative_parts(staging / "point", folder, "offsite snapshot path"),
                                            MANIFEST), "manifest"):
                pass
        except (UnsafePath, FileNotFoundError, NotADirectoryError) as exc:
            raise OffsitePermanent(f"snapshot {chosen.id[:8]} of the offsite repository is not a usable point: "
                                   f"{exc if isinstance(exc, UnsafePath) else 'it holds no manifest.json'}") from None
        mirror_root = None
        mirrors = [s for s in snaps if s.kind == "mirror"]
        if mirror and mirrors:
            mirror_root = restic.restore(mirrors[-1], staging / "mirror")
        search_root = None
        wanted = search_repo and "search" in chosen.tags.get("component", []) \
            and not (search_here is not None and search_here(folder))
        repo_copy = search_repo_for_moment(snaps, chosen, at) if wanted else None
        if repo_copy is not None:
            search_root = restic.restore(repo_copy, staging / "search")
            try:
                walked = staging / "search"
                for part in relative_parts(staging / "search", search_root, "offsite snapshot path"):
                    walked = walked / part
                    if walked.is_symlink():  # restic restores links as links: never followed
                        raise UnsafePath(walked, "a symbolic link on the way to the search repository's copy")
            except UnsafePath as exc:
                raise OffsitePermanent(f"snapshot {repo_copy.id[:8]} of the offsite repository is not a usable "
                                       f"search repository: {exc}") from None
        privatise(staging)
        log.info("fetched %s (snapshot %s) from the offsite repository", chosen.point, chosen.id[:8])
        yield folder, mirror_root, search_root
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        held.close()


def privatise(root: Path) -> None:
    """Folders 0700 and files 0600 under `root` (restic restores the modes and parents it saw)."""
    os.chmod(root, 0o700)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            if not os.path.islink(os.path.join(folder, name)):  # a link is never followed (nor chmodded)
                os.chmod(os.path.join(folder, name), 0o700)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


# ---------------------------------------------------------------- status


@dataclass
class ComponentCopy:
    component: str
    last_copy: datetime | None  # the time of the newest snapshot holding it
    point: str | None
    lag_seconds: float | None  # against the newest local complete point (or now for the mirror)


def status(settings: Settings) -> tuple[list[ComponentCopy], dict[str, Any], int]:
    """Last copy per component, its lag, the repository's size and snapshot count."""

    restic = Restic(settings)
    snaps = restic.snapshots()
    local = newest_complete(Storage(settings.storage_root)) if settings.storage_root.is_dir() else None
    local_time = local.manifest().created_at if local else None
    rows = []
    components = sorted({c for s in snaps if s.kind == "point" for c in s.tags.get("component", [])})
    for name in components:
        newest = max((s for s in snaps if s.kind == "point" and name in s.tags.get("component", [])), key=lambda s: s.time)
        lag = max(0.0, (local_time - newest.time).total_seconds()) if local_time else None
        rows.append(ComponentCopy(name, newest.time, newest.point, lag))
    now = datetime.now(timezone.utc)
    for kind, label in (("mirror", "minio"), ("config_repo", "config history"), ("binlog", "mysql binlog"),
                        ("search_repo", "search snapshot repository")):
        ofkind = [s for s in snaps if s.kind == kind]
        if ofkind:
            rows.append(ComponentCopy(label, ofkind[-1].time, None, (now - ofkind[-1].time).total_seconds()))
    return rows, restic.stats(), len(snaps)
