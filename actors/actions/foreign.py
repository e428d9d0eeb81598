"""What a restore from another installation's storage root (core/source_root.py) needs of this
installation's services first: the source's snapshot repository, known to this search server, read only.

A search point holds only a record; the chunks are in the snapshot repository the source's search server
wrote (a shared folder both servers list in path.repo). A second server must never write a repository
another one owns (Elasticsearch and OpenSearch say so of fs repositories), so it is registered here with
`readonly: true`; actors/search/restore.py then finds it registered and restores from it.
"""
from __future__ import annotations

import os
import re

from actors.minio.plan import scope_prefix
from actors.search.backup import SnapshotRepo
from core import clients
from core.component import PermanentError
from core.config import Settings
from core.mirror_store import MirrorStore
from core.points import Point
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
