"""Before a restore overwrites or removes live objects, this installation's mirror holds them as they are now.

A restore's way back (`restore --rollback`, and the automatic rollback of a failed restore) is the mirror as
it was when the restore began. An object written since the mirror last saw its bucket (the agent stopped, an
event not yet handled, a reconcile not yet run) would be overwritten or removed with no copy anywhere; so the
keys the plan replaces or removes are compared with the mirror's current rows, and those it does not hold as
listed are copied first (actors/minio/mirror.py's mirror_objects). One that cannot be copied refuses the restore
before anything is written.
"""
from __future__ import annotations

from actors.minio.listing import PAGE
from actors.minio.mirror import mirror_objects
from actors.minio.plan import RestorePlan
from core.component import NothingChanged
from core.config import Settings
from core.mirror_store import MirrorStore

BATCH = 256  # keys fetched before one commit: their temp files wait on disk meanwhile


def unheld(plan: RestorePlan, keeper: MirrorStore) -> dict[str, list[str]]:
    """bucket -> the keys the plan overwrites or removes in a live bucket that `keeper` does not hold as listed."""
    found: dict[str, list[str]] = {}
    for bp in plan.buckets:
        if bp.target != bp.bucket:  # a drill's buckets: not the live data
            continue
        keys = [key for key in (*bp.put, *bp.remove) if key in bp.live]
        missing = []
        for start in range(0, len(keys), PAGE):  # one index query a page (SQLite bounds a query's parameters)
            page = keys[start:start + PAGE]
            held = keeper.brief(bp.bucket, page)
            missing += [key for key in page if key not in held or not held[key].holds(*bp.live[key])]
        if missing:
            found[bp.bucket] = missing
    return found


def keep_live_objects(keeper_settings: Settings, plan: RestorePlan, keeper: MirrorStore) -> int:
    """Copy into `keeper` what the plan would replace or remove and it does not hold; how many were looked at.
    Each key is then as the source has it now (copied, or gone from the source meanwhile: nothing to keep).
    NothingChanged if one cannot be (the restore has written nothing yet)."""
    copied = 0
    for bucket, keys in unheld(plan, keeper).items():
        try:
            for start in range(0, len(keys), BATCH):  # each batch fetched, then committed together
                mirror_objects(keeper_settings, bucket, keys[start:start + BATCH], keeper)
        except Exception as exc:  # noqa: BLE001 - any failure: the restore must not go on
            raise NothingChanged(
                f"nothing was restored: {len(keys)} object(s) of bucket {bucket} that the restore would overwrite or "
                f"remove (e.g. {keys[0]!r}) are not in the MinIO mirror yet and could not be copied there "
                f"({type(exc).__name__}: {exc}); without that copy `restore --rollback` could not bring them back. "
                f"Check that MinIO at {keeper_settings.minio.endpoint} answers, then run the restore again") from None
        copied += len(keys)
    return copied


__all__ = ["keep_live_objects", "unheld"]
