"""An exact MinIO restore (`upgrade rollback`, `restore --exact`): a bucket created after the restore time is
removed once its objects are (a plain restore empties it and keeps it), so the store has the buckets it had then.

Only RAGFlow's own buckets: in multi-bucket mode those named by an id (a knowledge base's, a folder's: 32 hex
digits, as RAGFlow names them), never the bucket `minio.bucket` names (single-bucket mode) nor any other. And only
when the mirror holds every object the restore removed from it as current (so the restore's rollback, the mirror
as it was when the restore began, brings the bucket back with them); otherwise the bucket is left and said.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from actors.minio.plan import KB_ID, BucketPlan, MinioRestoreResult
from core.config import Settings
from core.mirror_store import MirrorStore


def removable(settings: Settings, bp: BucketPlan, store: MirrorStore) -> bool:
    """May an exact restore remove this bucket (checked before anything is written)?"""
    if settings.minio.bucket or not bp.born_after or bp.target != bp.bucket or not KB_ID.match(bp.bucket):
        return False
    held = store.state_at(bp.bucket, datetime.now(timezone.utc))
    return all(key in held for key in bp.remove)


def remove_buckets(client, settings: Settings, plans: list[BucketPlan], allowed: set[str],
                   result: MinioRestoreResult, log: logging.Logger) -> None:
    """Remove the emptied buckets created after the restore time that `allowed` names; the others are left."""
    for bp in plans:
        if not bp.born_after:
            continue
        if bp.bucket in allowed:
            client.remove_bucket(bp.target)
            result.removed_buckets.append(bp.target)
        else:
            result.left_buckets.append(bp.target)
    if result.removed_buckets or result.left_buckets:
        log.info("minio: %d buckets created after %s removed%s", len(result.removed_buckets), result.at.isoformat(),
                 f"; left {', '.join(result.left_buckets)} (not RAGFlow's by name, or objects the mirror does not "
                 "hold)" if result.left_buckets else "")
