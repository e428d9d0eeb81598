"""doctor's check of MinIO: the server answers with our credentials."""
from __future__ import annotations

from core import clients
from core.component import Check, failed_check
from core.config import Settings


def check_minio(settings: Settings) -> Check:
    if not settings.minio.enabled:
        return Check("minio", "off", "disabled in the config")
    try:
        buckets = clients.minio_client(settings.minio).list_buckets()
    except Exception as exc:  # noqa: BLE001
        return failed_check("minio", exc, "check minio.endpoint and MINIO_USER / MINIO_PASSWORD")
    return Check("minio", "ok", f"{settings.minio.endpoint}: {len(buckets)} buckets")
