"""doctor's check of RAGFlow's Redis DB, and whether a point's dump reads to its end, before a restore."""
from __future__ import annotations

from actors.redis.keys import ARTIFACT, check_readable
from core import clients
from core.component import Check, PermanentError, failed_check
from core.config import Settings
from core.points import Point


def check_redis(settings: Settings) -> Check:
    if not settings.redis.enabled:
        return Check("redis", "off", "optional; enable redis.enabled to back up RAGFlow's Redis DB")
    try:
        client = clients.redis_client(settings.redis)
        version = client.info("server")["redis_version"]
        keys = client.dbsize()
    except Exception as exc:  # noqa: BLE001
        return failed_check("redis", exc, "check redis.host/port and REDIS_PASSWORD")
    return Check("redis", "ok", f"Redis {version}, DB {settings.redis.db} holds {keys} keys")


def dump_problems(point: Point) -> list[str]:
    try:
        check_readable(point.folder / ARTIFACT)
    except PermanentError as exc:
        return [str(exc).removesuffix("; nothing was restored")]
    return []
