"""What a restore from another installation's storage root (core/source_root.py) needs of this
installation's services first: the source's snapshot repository, known to this search server, read only.

A search point holds only a record; the chunks are in the snapshot repository the source's search server
wrote (a shared folder both servers list in path.repo). A second server must never write a repository
another one owns (Elasticsearch and OpenSearch say so of fs repositories), so it is registered here with
`readonly: true`; actors/search/restore.py then finds it registered and restores from it.

From the offsite repository (`fetched_repository`), the copy of the source's snapshot repository restic
brought back into this root's staging is checked (plain folders and regular files only, nothing followed),
copied beside this config's own repository (its parent must be in the server's path.repo), registered read
only under a distinct name for the restore's length, then unregistered and removed.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from actors.actions.offsite_leftovers import claimed, new_name, place_of
from actors.minio.plan import scope_prefix
from actors.search.backup import SnapshotRepo
from actors.search.restore import REGISTERED_AS
from core import clients
from core.component import PermanentError
from core.config import Settings
from core.mirror_store import MirrorStore
from core.points import Point
from core.safe_paths import entry_problem
from core.source_root import shown

REPOSITORY_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")  # the manifest is untrusted


def register_source_repository(settings: Settings, point: Point) -> str | None:
    """Register the point's snapshot repository on this config's search server, read only, unless it is
    registered already at the same place; a line for the operator (None: the point took no snapshot)."""
    record = point.manifest().components.get("search")
    if record is None or record.status != "ok" or not record.details.get("snapshot"):
        return None
    name, location = record.details.get("repository"), record.details.get("repository_path")
    if not isinstance(name, str) or not REPOSITORY_NAME.fullmatch(name) or not isinstance(location, str) \
            or not os.path.isabs(location):
        raise PermanentError(f"{point.ref}: its search record names no usable snapshot repository "
                             f"({shown(name)!r} at {shown(location)!r}); choose another point")
    search = settings.search
    client = clients.search_client(search)
    repo = SnapshotRepo(client, search.engine, name)
    current = repo.location()
    if current is not None:
        if os.path.normpath(current) != os.path.normpath(location):
            raise PermanentError(f"this search server has a snapshot repository '{name}' at {current}, but the "
                                 f"source's is at {location}: remove or rename that one, then run the restore again")
        return f"snapshot repository {name} at {location} is known to this search server already"
    spec = {"type": "fs", "settings": {"location": location, "readonly": True}}
    try:
        if search.engine == "elasticsearch":
            client.snapshot.create_repository(name=name, repository=spec)
        else:
            client.snapshot.create_repository(repository=name, body=spec)
    except Exception as exc:  # noqa: BLE001 - said with what to do; nothing was restored yet
        raise PermanentError(f"cannot register the source's snapshot repository '{name}' at {location} on "
                             f"{search.engine} ({type(exc).__name__}: {shown(exc)}): the folder must be reachable by "
                             "this server and listed in its path.repo (a shared or copied folder); nothing was "
                             "changed") from None
    return f"registered the source's snapshot repository {name} at {location} on this search server, read only"


def _recorded_repository(point: Point) -> str | None:
    """The repository name the point's search record names (checked: the manifest is untrusted); None: no snapshot."""
    record = point.manifest().components.get("search")
    if record is None or record.status != "ok" or not record.details.get("snapshot"):
        return None
    name = record.details.get("repository")
    if not isinstance(name, str) or not REPOSITORY_NAME.fullmatch(name):
        raise PermanentError(f"{point.ref}: its search record names no usable snapshot repository ({shown(name)!r}); "
                             "choose another point")
    return name


def _copy_checked(source: Path, target: Path) -> int:
    """Copy the fetched repository `source` into the new folder `target`: folders 0755 and files 0644 (the
    search server runs as another user), refusing anything but plain folders and regular files; the files copied."""
    if source.is_symlink() or not source.is_dir():  # a link on the way there is refused by offsite.py's fetched
        raise PermanentError(f"the search repository fetched from the offsite repository ({source}) is not a "
                             "folder; no search index was touched")
    copied = 0
    for folder, dirs, files in os.walk(source):  # os.walk never descends into a symlinked folder
        here = Path(folder)
        rel = here.relative_to(source)
        for name in [*dirs, *files]:
            problem = entry_problem(here / name, want_dir=name in dirs)
            if problem:
                raise PermanentError(f"the search repository fetched from the offsite repository holds "
                                     f"{shown(rel / name)}, which {problem}: a snapshot repository holds only "
                                     "folders and files; no search index was touched")
        for name in dirs:
            (target / rel / name).mkdir(mode=0o755)
            os.chmod(target / rel / name, 0o755)
        for name in files:
            shutil.copyfile(here / name, target / rel / name, follow_symlinks=False)
            os.chmod(target / rel / name, 0o644)
            copied += 1
    return copied


def _holds_snapshot(repo: SnapshotRepo, point: Point) -> bool:
    """True when `repo` is registered here and holds the point's very snapshot (its recorded uuid)."""
    details = point.manifest().components["search"].details
    try:
        if repo.location() is None:
            return False
        info = repo.info(str(details["snapshot"]))
    except Exception:  # noqa: BLE001 - not reachable or not there: the fetched copy is used, and says why
        return False
    return info is not None and info.get("state") == "SUCCESS" and info.get("uuid") == details.get("uuid")


def snapshot_is_here(settings: Settings, point: Point) -> bool:
    """True when this config's search server already has the point's very snapshot (a restore from offsite into
    the installation that took it): the offsite copy of the snapshot repository would go unused, so a restore
    does not fetch it. Checked on the server (registered, state SUCCESS, the recorded uuid), never assumed from
    names; anything unclear is False (the copy is fetched)."""
    search = settings.search
    if not search.enabled:
        return False
    try:
        name = _recorded_repository(point)
        return name is not None and _holds_snapshot(SnapshotRepo(clients.search_client(search), search.engine, name),
                                                    point)
    except Exception:  # noqa: BLE001 - an unusable record or an unreachable server: fetched, and said later
        return False


@contextmanager
def fetched_repository(settings: Settings, point: Point, copy: Path | None) -> Iterator[str | None]:
    """The source's snapshot repository, fetched from the offsite repository into `copy` (this root's staging),
    made known to this config's search server read only for the restore's length; yields a line for the
    operator (None: the point took no snapshot). Without a copy, says what to do."""
    source_name = _recorded_repository(point)
    if source_name is None:
        yield None
        return
    search = settings.search
    client = clients.search_client(search)
    if _holds_snapshot(SnapshotRepo(client, search.engine, source_name), point):  # restoring our own point
        yield f"the point's snapshot is in this search server's repository {source_name} already"
        return
    if copy is None:
        raise PermanentError(f"the offsite repository holds no copy of the search snapshot repository (kind "
                             f"search_repo) for {point.ref}: the source's agent could not read it (its `status` "
                             "says why). Copy the source's search.repository_path folder here and use `restore "
                             "--from-root`, or leave search out (-C mysql -C minio ...); no search index was touched")
    name = new_name()
    place = place_of(settings, name)
    with ExitStack() as held:
        try:  # claimed before the folder exists, so the next restore's cleanup (offsite_leftovers.py) never takes it
            held.enter_context(claimed(place))
            place.mkdir(mode=0o755)
        except OSError as exc:
            raise PermanentError(f"cannot make {place} for the fetched search repository ({exc.strerror}): the "
                                 f"folder holding search.repository_path must be writable by the agent and in the "
                                 "search server's path.repo; no search index was touched") from None
        yield from _registered_copy(settings, client, copy, source_name, name, place)


def _registered_copy(settings: Settings, client, copy: Path, source_name: str, name: str,
                     place: Path) -> Iterator[str]:
    """`copy` checked into `place`, registered as `name` for the restore's length (the one yield), then neither."""
    search = settings.search
    repo = SnapshotRepo(client, search.engine, name)
    registered = False
    try:
        os.chmod(place, 0o755)
        files = _copy_checked(copy, place)
        spec = {"type": "fs", "settings": {"location": str(place), "readonly": True}}
        try:
            if search.engine == "elasticsearch":
                client.snapshot.create_repository(name=name, repository=spec)
            else:
                client.snapshot.create_repository(repository=name, body=spec)
        except Exception as exc:  # noqa: BLE001 - said with what to do; nothing was restored yet
            raise PermanentError(f"cannot register the fetched search repository at {place} on {search.engine} "
                                 f"({type(exc).__name__}: {shown(exc)}): its folder {place.parent} must be in this "
                                 "server's path.repo; no search index was touched") from None
        registered = True
        REGISTERED_AS[source_name] = name
        yield (f"fetched the source's search snapshot repository ({files} files) into {place}, registered as {name} "
               "on this search server, read only")
    finally:
        REGISTERED_AS.pop(source_name, None)
        if registered:
            try:
                repo.unregister()
            except Exception:  # noqa: BLE001 - the next restore (or doctor) unregisters it: offsite_leftovers.py
                pass
        shutil.rmtree(place, ignore_errors=True)


def refuse_unknown_buckets(settings: Settings, mirrored: list[str]) -> None:
    """A whole MinIO restore puts every bucket of this MinIO back as the mirror knew it: a bucket the
    source installation never had cannot be (actors/minio/plan.py), so it is said before anything changes."""
    if settings.minio.bucket:  # single-bucket mode: the one bucket (core/source_root.py refuse_unmappable)
        return
    try:
        here = sorted(bucket.name for bucket in clients.minio_client(settings.minio).list_buckets())
    except Exception as exc:  # noqa: BLE001 - said with where; nothing was restored yet
        raise PermanentError(f"cannot list the buckets of this MinIO ({settings.minio.endpoint}): "
                             f"{type(exc).__name__}: {shown(exc)}; is it up? Nothing was changed") from None
    unknown = [name for name in here if name not in set(mirrored)]
    if unknown:
        raise PermanentError(f"this MinIO ({settings.minio.endpoint}) holds {len(unknown)} bucket(s) the source "
                             f"installation never had ({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}): "
                             "a restore from another installation brings every bucket back as the source had it; "
                             "remove them first, or leave MinIO out (-C config -C mysql -C search -C redis); "
                             "nothing was changed")


def refuse_other_prefix(settings: Settings, store: MirrorStore) -> None:
    """Single-bucket mode with minio.prefix_path: a restore brings back only the keys under this config's
    prefix, so a source that kept its objects under another prefix would restore none, silently. Said here."""
    bucket, prefix = settings.minio.bucket, scope_prefix(settings)
    if not bucket or not prefix:
        return
    first = next(iter(store.keys(bucket)), None)
    if first is not None and not first.startswith(prefix):
        theirs = first.split("/", 1)[0] + "/" if "/" in first else "(no prefix)"
        raise PermanentError(f"the source installation kept its objects of bucket {bucket} under {shown(theirs)!r}, "
                             f"this config's minio.prefix_path is {prefix!r}: none would be restored. Set "
                             "minio.prefix_path (and MINIO_PREFIX_PATH in RAGFlow's .env) to the source's; "
                             "nothing was changed")
