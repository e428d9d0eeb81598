"""The mirror's upkeep, apart from keeping it in line (mirror.py): versions pruned to their retention and
budget, and a sample of mirrored objects checked against the source and re-hashed."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from minio.error import S3Error

from actors.minio.body import CHUNK
from actors.minio.mirror import GONE, open_store, source_client
from core.atomic import digest_of
from core.config import Settings
from core.mirror_store import DamagedIndex, MirrorStore


def prune_versions(settings: Settings, now: datetime | None = None, store: MirrorStore | None = None) -> int:
    """Drop mirror versions superseded more than version_retention_days ago, then the oldest until the
    rest fit in version_budget_percent of the mirror's current bytes."""
    store = store or open_store(settings)
    percent = settings.minio.version_budget_percent
    budget = None if percent is None else int(store.stats()["bytes"] * percent / 100)
    return store.prune_versions((now or datetime.now(timezone.utc)) - timedelta(days=settings.minio.version_retention_days), budget)


def verify_sample(settings: Settings, sample: int = 50, store: MirrorStore | None = None) -> list[str]:
    """Compare a random sample of mirrored objects with the source and re-hash their files.

    A key changed or deleted at the source is reported as lag (only when older than
    notify.mirror_lag_seconds: newer changes are normal lag); a file that no longer matches the
    MD5 recorded when it was copied is corruption.
    """
    store = store or open_store(settings)
    client, problems = source_client(settings), []
    lag_limit = datetime.now(timezone.utc) - timedelta(seconds=settings.notify.mirror_lag_seconds)
    for bucket, key in store.sample(sample) if sample > 0 else []:
        where = f"s3://{bucket}/{key}"
        try:
            entry = store.entry(bucket, key)
        except DamagedIndex as exc:
            problems.append(f"{where}: {exc}")
            continue
        if entry is None:
            continue  # removed meanwhile
        if entry.path is None or not entry.path.is_file():
            problems.append(f"the mirror file of {where} is missing ({entry.path}); run a reconcile to fetch it again")
            continue
        if entry.path.stat().st_size != entry.size:
            problems.append(f"the mirror file of {where} has {entry.path.stat().st_size} bytes, {entry.size} expected "
                            "(corruption); delete it and run a reconcile")
        elif entry.md5 and digest_of(entry.path, "md5", CHUNK) != entry.md5:
            problems.append(f"the mirror file of {where} no longer matches the MD5 it was copied with (corruption); "
                            "delete it and run a reconcile")
        try:
            stat = client.stat_object(bucket, key)
        except S3Error as exc:
            if exc.code in GONE:
                problems.append(f"{where} was deleted at the source but is still current in the mirror (lag)")
                continue
            problems.append(f"MinIO could not stat {where} ({exc.code}: {exc.message})")
            continue
        except Exception as exc:  # noqa: BLE001 - the source is unreachable: one sentence is enough
            problems.append(f"MinIO at {settings.minio.endpoint} could not be reached ({type(exc).__name__}: {exc})")
            break
        if (stat.etag, stat.size) != (entry.etag, entry.size) and stat.last_modified and stat.last_modified < lag_limit:
            problems.append(f"{where} changed at the source at {stat.last_modified:%Y-%m-%d %H:%M:%S} UTC and the "
                            "mirror still has the older copy (lag, not corruption)")
    return problems
