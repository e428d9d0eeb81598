"""An exact Redis restore (`upgrade rollback`, `restore --exact`): after the point's keys are restored, the keys
of the configured DB that the point does not have are removed, so the DB is the point's again.

Only keys the safety point's dump holds are removed (`held_by`, taken by the restore action before any change):
a key written after the safety point was taken is left and said. Only the configured DB is ever looked at.
"""
from __future__ import annotations

import base64
import logging
from pathlib import Path

from actors.redis.keys import ARTIFACT, SCAN_BATCH, classified, read_dump, redis_client
from core.checks import CorruptArtifact
from core.component import PermanentError
from core.config import Settings
from core.points import Point


class RestoredKeys(int):
    """The number of keys restored (an int, as every reader of a Redis restore's result counts it), with what an
    exact restore removed and left."""

    removed: int = 0
    left: int = 0  # not in the point, and not in the safety point either: kept


def keys_of(path: Path) -> set[bytes]:
    """Every key name of a dump (read as a stream, checked as it is read)."""
    try:
        _, records = read_dump(path)
        return {base64.b64decode(item["key"], validate=True) for item in records}
    except (CorruptArtifact, ValueError) as exc:
        raise PermanentError(f"{path}: {exc}; no key was removed") from None


def remove_keys_not_in(settings: Settings, dump: Path, held_by: Point | None, restored: int,
                       log: logging.Logger) -> RestoredKeys:
    """Delete the configured DB's keys that `dump` lacks and `held_by`'s dump holds; the restored count with the
    removals."""
    result = RestoredKeys(restored)
    wanted = keys_of(dump)
    held_path = held_by.path(ARTIFACT) if held_by is not None else None
    held = keys_of(held_path) if held_path is not None and held_path.is_file() else set()
    config = settings.redis
    client = redis_client(config)
    with classified(config):
        extra = [key for key in client.scan_iter(count=SCAN_BATCH) if key not in wanted]
        removable = [key for key in extra if key in held]
        for start in range(0, len(removable), SCAN_BATCH):
            client.delete(*removable[start:start + SCAN_BATCH])
    result.removed, result.left = len(removable), len(extra) - len(removable)
    log.info("redis db %d: %d keys the point does not have removed (the safety point %s holds them)%s", config.db,
             result.removed, held_by.ref if held_by else "-",
             f"; {result.left} left: not in the safety point (written since)" if result.left else "")
    return result
