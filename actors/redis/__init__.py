"""RAGFlow's Redis DB: every key's DUMP payload with its TTL, streamed to a gzip file (keys.py), an exact
restore's removals (exact.py), doctor's check (checks.py).

`COMPONENT` is the face every component shares (core/face.py); actors/components.py lists it.
Imports: `core` and this package's own modules; never another component, the actions or the actors
(checked by `lint-imports`).
"""
from __future__ import annotations

import logging

from actors.redis import checks, exact, keys
from core.component import Check, ComponentResult
from core.config import Settings
from core.face import RestoreRequest
from core.manifest import ComponentRecord
from core.points import Point


class Redis:
    name = keys.NAME
    in_points = True
    restorable = True
    restore_rank = 4  # restore order: config, mysql, search, minio, redis (RAGFlow's settings first, Redis last)
    per_kb = False  # holds a knowledge base's own part

    def enabled(self, settings: Settings) -> bool:
        return settings.redis.enabled

    def backup(self, settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
        return keys.backup(settings, point, log)

    def verify(self, settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
        return keys.verify(settings, point, record)

    def restore(self, settings: Settings, request: RestoreRequest) -> int:
        """Every key of the point into the configured DB, replacing what is there; the number restored. Exact: the
        keys the point lacks are removed too (those the safety point holds; actors/redis/exact.py)."""
        dump = request.point.path(keys.ARTIFACT)
        restored = keys.restore_keys(settings, dump, replace=True)
        if not request.exact:
            return restored
        return exact.remove_keys_not_in(settings, dump, request.held_by, restored,
                                        request.log or logging.getLogger("ragflow_backup.restore.redis"))

    def restore_problems(self, settings: Settings, request: RestoreRequest) -> list[str]:
        return checks.dump_problems(request.point) if request.kb is None else []

    def has_data(self, settings: Settings) -> bool:
        return True

    def drill(self, settings: Settings, point: Point, token: str) -> tuple[bool, str]:
        problems = keys.verify(settings, point, point.manifest().components[self.name])
        # Restoring needs a spare Redis DB, which we cannot assume: the dump is read through instead.
        return not problems, "; ".join(problems) or "every key's payload read back (not restored: no scratch DB assumed)"

    def checks(self, settings: Settings) -> list[Check]:
        return [checks.check_redis(settings)]


COMPONENT = Redis()
