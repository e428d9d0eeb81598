"""What a restore from offsite leaves on the search server's side when it is killed, found and removed.

A restore from the offsite repository copies the fetched search snapshot repository into a folder beside
search.repository_path (`ragflow-backup-offsite_<8 hex>`) and registers it read only as `offsite_<8 hex>`
(actors/actions/foreign.py `fetched_repository`); its `finally` unregisters and removes both. A SIGKILL skips that
`finally`: the folder (a copy of every chunk) and the registration stay. The next restore and `doctor` remove them.

Ours by name and by place only: a folder of exactly that name in the folder holding search.repository_path (never
followed if a link), and a registration of exactly that name whose fs location is that very folder. In use means
its lock is held: a restore takes `<folder>.lock` (beside it, so two installations sharing the search server see
one another's) before it makes the folder and keeps it until both are gone; fcntl locks die with their holder
(core/locks.py), so a killed restore's lock is free. A lock file with no folder (killed between the two) is
removed once an hour old: a restore that has just created its lock file holds it a moment later.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from actors.search.backup import SnapshotRepo, response_body
from core import clients, locks
from core.component import Check
from core.config import Settings
from core.layout import OFFSITE_RESTORE, Layout
from core.locks import Busy
from core.safe_paths import UnsafePath
from core.source_root import shown

FOLDER_PREFIX = "ragflow-backup-"  # + the registration's name
TOKEN = re.compile(r"[0-9a-f]{8}")
REGISTERED = re.compile(r"offsite_[0-9a-f]{8}")
LOCK_SUFFIX = ".lock"
ORPHAN_LOCK_SECONDS = 3600


def new_name() -> str:
    return f"offsite_{secrets.token_hex(4)}"


def place_of(settings: Settings, name: str) -> Path:
    """The folder a fetched repository registered as `name` is copied into."""
    return Path(settings.search.repository_path).parent / f"{FOLDER_PREFIX}{name}"


def lock_of(place: Path) -> Path:
    return place.with_name(place.name + LOCK_SUFFIX)


@contextmanager
def claimed(place: Path) -> Iterator[None]:
    """Held while a restore uses `place` (taken before the folder is made): a cleaner leaves it alone."""
    lock = lock_of(place)
    with locks.exclusive(lock, f"a restore using {place}"):
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)  # still held: a cleaner that opened it meanwhile finds it busy


@contextmanager
def claimed_fetch(layout: Layout, token: str) -> Iterator[None]:
    """Held by an offsite fetch (actors/actions/offsite.py `fetched`) from before its staging folder 'restore-<token>'
    exists until it is removed: a killed fetch's (the point in the clear) is then removed by the next restore."""
    lock = layout.offsite_restore_lock(token)
    with locks.exclusive(lock, "an offsite fetch"):
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)


def remove_fetched(layout: Layout) -> list[str]:
    """The staging folders of killed offsite fetches under the storage root, removed unless their lock is held."""
    said = []
    for entry in sorted(layout.offsite.glob(f"{OFFSITE_RESTORE}*")) if layout.offsite.is_dir() else []:
        token = entry.name.removeprefix(OFFSITE_RESTORE)
        if not TOKEN.fullmatch(token) or entry.is_symlink() or not entry.is_dir():
            continue  # lock files, and anything not ours by name (swept after a day: core/atomic.py sweep_stale)
        try:
            with claimed_fetch(layout, token):
                if not entry.is_dir():  # its own restore removed it as we took the lock
                    continue
                shutil.rmtree(entry)
            said.append(f"removed {entry}, the copy of a point a killed restore from offsite fetched")
        except Busy:
            continue  # a restore from offsite is fetching into it
        except (OSError, UnsafePath) as exc:
            said.append(f"could not remove {entry}, the copy of a point a killed restore from offsite fetched "
                        f"({exc}); remove it by hand")
    return said


def _ours(name: str) -> bool:
    return REGISTERED.fullmatch(name) is not None


def leftover_names(settings: Settings) -> tuple[set[str], dict[str, str]]:
    """(names of folders here that look ours, {name: location} of registrations that look ours and point here)."""
    parent = Path(settings.search.repository_path).parent
    folders = set()
    if parent.is_dir():
        for entry in parent.iterdir():
            name = entry.name.removeprefix(FOLDER_PREFIX)
            if entry.name.startswith(FOLDER_PREFIX) and _ours(name) and entry.is_dir() and not entry.is_symlink():
                folders.add(name)
    registered = {}
    every = response_body(clients.search_client(settings.search).snapshot.get_repository())
    for name, entry in every.items():
        location = (entry.get("settings") or {}).get("location") if isinstance(entry, dict) else None
        if _ours(name) and entry.get("type") == "fs" and isinstance(location, str) \
                and os.path.normpath(location) == os.path.normpath(place_of(settings, name)):
            registered[name] = location
    return folders, registered


def remove_search_leftovers(settings: Settings) -> list[str]:
    """The folders, registrations and orphan lock files beside search.repository_path that killed restores left,
    removed unless in use; a line per thing removed or left in use. Raises what the search server raises."""
    folders, registered = leftover_names(settings)
    said = []
    for name in sorted(folders | set(registered)):
        place = place_of(settings, name)
        try:
            with claimed(place):  # re-checked once held: its own restore may have just removed both
                repo = SnapshotRepo(clients.search_client(settings.search), settings.search.engine, name)
                if name in registered and repo.location() is not None:
                    repo.unregister()
                    said.append(f"unregistered the search repository {name} a killed restore from offsite left")
                if name in folders and place.is_dir() and not place.is_symlink():
                    shutil.rmtree(place)
                    said.append(f"removed {place}, the search repository copy a killed restore from offsite left")
        except Busy:
            said.append(f"left {place} alone: a restore from offsite is using it")
    parent = Path(settings.search.repository_path).parent
    for lock in parent.glob(f"{FOLDER_PREFIX}offsite_*{LOCK_SUFFIX}") if parent.is_dir() else []:
        name = lock.name.removeprefix(FOLDER_PREFIX).removesuffix(LOCK_SUFFIX)
        if not _ours(name) or lock.is_symlink() or not lock.is_file() or place_of(settings, name).exists():
            continue
        try:
            if time.time() - lock.stat().st_mtime < ORPHAN_LOCK_SECONDS:
                continue
            with claimed(place_of(settings, name)):
                pass  # removed on the way out
        except (Busy, FileNotFoundError):
            continue
    return said


def remove_leftovers(settings: Settings) -> tuple[list[str], str | None]:
    """Everything killed restores from offsite left and no restore uses, removed: (a line per thing removed or left
    in use, why the search server's side could not be looked at or None)."""
    said = remove_fetched(settings.layout)
    if not settings.search.enabled:
        return said, None
    try:
        return said + remove_search_leftovers(settings), None
    except Exception as exc:  # noqa: BLE001 - said; a search restore reports the server itself
        return said, (f"could not look for what a killed restore from offsite left on {settings.search.engine} "
                      f"({type(exc).__name__}: {shown(exc)})")


def leftover_checks(settings: Settings) -> list[Check]:
    """doctor's row: what killed restores from offsite left, removed now (nothing found: no row)."""
    said, problem = remove_leftovers(settings)
    if problem:
        return [Check("offsite restore leftovers", "warn", "; ".join([*said, problem]),
                      "make the search server reachable; the next restore or doctor removes them")]
    return [Check("offsite restore leftovers", "ok", "; ".join(said))] if said else []
