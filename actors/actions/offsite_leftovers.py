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
from core.locks import Busy

FOLDER_PREFIX = "ragflow-backup-"  # + the registration's name
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
    if settings.search.enabled:
        client = clients.search_client(settings.search)
        every = response_body(client.snapshot.get_repository())
        for name, entry in every.items():
            location = (entry.get("settings") or {}).get("location") if isinstance(entry, dict) else None
            if _ours(name) and entry.get("type") == "fs" and isinstance(location, str) \
                    and os.path.normpath(location) == os.path.normpath(place_of(settings, name)):
                registered[name] = location
    return folders, registered


def remove_leftovers(settings: Settings) -> list[str]:
    """Remove what killed restores from offsite left (folders, registrations, orphan lock files) and is not in use;
    a line per thing removed or left in use. Raises what listing the search server's repositories raises."""
    folders, registered = leftover_names(settings)
    said = []
    for name in sorted(folders | set(registered)):
        place = place_of(settings, name)
        try:
            with claimed(place):
                if name in registered:
                    SnapshotRepo(clients.search_client(settings.search), settings.search.engine, name).unregister()
                    said.append(f"unregistered the search repository {name} a killed restore from offsite left")
                if name in folders:
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


def leftover_checks(settings: Settings) -> list[Check]:
    """doctor's row: what killed restores from offsite left, removed now (none: no row; the search server
    unreachable: no row either, its own check says so)."""
    if not settings.search.enabled:
        return []
    try:
        said = remove_leftovers(settings)
    except Exception:  # noqa: BLE001 - reachability is the search check's to report
        return []
    return [Check("offsite restore leftovers", "ok", "; ".join(said))] if said else []
