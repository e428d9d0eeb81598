"""doctor's check of MinIO: the server answers with our credentials, and how fast changes reach the mirror."""
from __future__ import annotations

from datetime import datetime

from croniter import croniter

from core import clients
from core.component import Check, failed_check, off_check
from core.config import Settings
from core.ragflow_deployment import read_deployment


def unsupported_reason(settings: Settings) -> str:
    """Why RAGFlow's .env puts the object store out of our reach ('' when it does not)."""
    found = read_deployment(settings.ragflow_env())
    if found.storage_mirrored:
        return ""
    return f"STORAGE_IMPL={found.storage_impl} is not supported (MinIO and S3-compatible stores are)"


def reconcile_interval_seconds(settings: Settings) -> float | None:
    """The longest gap between two scheduled reconciles over the next day: the mirror's RPO without events."""
    if not settings.schedule.reconcile:
        return None
    ticks = croniter(settings.schedule.reconcile, datetime.now())
    times = [ticks.get_next(datetime) for _ in range(2)]
    while (times[-1] - times[0]).total_seconds() < 86400 and len(times) < 2000:
        times.append(ticks.get_next(datetime))
    return max((b - a).total_seconds() for a, b in zip(times, times[1:]))


def mirror_rpo(settings: Settings) -> str:
    """How much of the store a loss can take, in words, for doctor and status."""
    if settings.minio.events:
        return "bucket notifications: changes mirrored within seconds; reconcile heals missed events"
    interval = reconcile_interval_seconds(settings)
    if interval is None:
        return "minio.events is false and schedule.reconcile is off: nothing mirrors the store"
    return (f"minio.events is false: reconcile alone mirrors, RPO {interval / 60:.0f} min "
            f"(schedule.reconcile '{settings.schedule.reconcile}')")


def check_minio(settings: Settings) -> Check:
    if not settings.minio.enabled:
        return off_check("minio", unsupported_reason(settings))
    client = clients.minio_client(settings.minio)
    if settings.minio.events:
        try:  # refused by the client itself, without a request, for Amazon S3 endpoints
            client.listen_bucket_notification("ragflow-backup-probe")
        except ValueError as exc:
            return Check("minio", "fail", f"{settings.minio.endpoint}: {exc}",
                         "set minio.events: false: the scheduled reconcile alone then mirrors the store")
    try:
        buckets = client.list_buckets()
    except Exception as exc:  # noqa: BLE001
        return failed_check("minio", exc, "check minio.endpoint and MINIO_USER / MINIO_PASSWORD")
    detail = f"{settings.minio.endpoint}: {len(buckets)} buckets; {mirror_rpo(settings)}"
    if not settings.minio.events and not settings.schedule.reconcile:
        return Check("minio", "fail", detail, "set schedule.reconcile (e.g. '*/15 * * * *') or minio.events: true")
    return Check("minio", "ok", detail)
