"""MySQL / MariaDB: a streamed, compressed mysqldump (backup.py), restored into a scratch database first
(restore.py, with objects.py and sandbox.py for views, routines and definers; replay.py applies the archived
binlog up to a second when the restore asks for one), doctor's checks (checks.py).

`COMPONENT` is the face every component shares (core/face.py); actors/components.py lists it.
Imports: `core` and this package's own modules; never another component, the actions or the actors
(checked by `lint-imports`).
"""
from __future__ import annotations

import logging
from functools import partial
from typing import Any

from actors.mysql import backup, checks, load, restore
from core import clients, scratch_restore
from core.component import Check, ComponentResult
from core.config import Settings
from core.face import RestoreRequest
from core.manifest import ComponentRecord
from core.points import Point


class MySQL:
    name = backup.NAME
    in_points = True
    restorable = True
    restore_rank = 1  # restore order: config, mysql, search, minio, redis (RAGFlow's settings first, Redis last)
    per_kb = True  # holds a knowledge base's own part

    def enabled(self, settings: Settings) -> bool:
        return settings.mysql.enabled

    def backup(self, settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
        return backup.backup(settings, point, log)

    def verify(self, settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
        return backup.verify(settings, point, record)

    def restore(self, settings: Settings, request: RestoreRequest) -> Any:
        return scratch_restore.requested(request, partial(restore.restore, settings),
                                         partial(restore.restore_kb, settings), replay_plan=request.replay)

    def restore_problems(self, settings: Settings, request: RestoreRequest) -> list[str]:
        return checks.kb_problems(request.point, request.record, request.kb) if request.kb is not None else []

    def has_data(self, settings: Settings) -> bool:
        """A dropped database has nothing to lose."""
        with clients.mysql_connection(settings.mysql, database="") as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s", (settings.mysql.database,))
            return cur.fetchone()[0] == 1

    def drill(self, settings: Settings, point: Point, token: str) -> tuple[bool, str]:
        record = point.manifest().components[self.name]
        return scratch_restore.drilled(load.scratch_name(settings.mysql.database, "drill", token),
                                       lambda target: restore.restore(settings, point, record, target_database=target),
                                       partial(load.drop_database, settings))

    def checks(self, settings: Settings) -> list[Check]:
        return [checks.check_mysql(settings)]


COMPONENT = MySQL()
