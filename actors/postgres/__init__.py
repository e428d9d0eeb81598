"""PostgreSQL (RAGFlow's metadata database when DB_TYPE=postgres): pg_dump's custom format with rows counted in
the dump's own snapshot (backup.py), loaded as untrusted input into a scratch database (load.py; pg_restore here or
in the container: loader.py), swapped in by a database rename or one knowledge base copied back (restore.py),
doctor's checks (checks.py).

`COMPONENT` is the face every component shares (core/face.py); actors/components.py lists it.
Imports: `core` and this package's own modules; never another component, the actions or the actors.
"""
from __future__ import annotations

import logging
from contextlib import closing
from functools import partial
from typing import Any

import psycopg

from actors.postgres import backup, checks, load, restore
from actors.postgres.session import connect, connect_failure
from core import scratch_restore
from core.component import Check, ComponentResult
from core.config import Settings
from core.face import RestoreRequest
from core.manifest import ComponentRecord
from core.points import Point


class Postgres:
    name = backup.NAME
    in_points = True
    restorable = True
    restore_rank = 1  # with mysql: after config, before search, minio and redis
    per_kb = True

    def enabled(self, settings: Settings) -> bool:
        return settings.postgres.enabled

    def backup(self, settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
        return backup.backup(settings, point, log)

    def verify(self, settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
        return backup.verify(settings, point, record)

    def restore(self, settings: Settings, request: RestoreRequest) -> Any:
        return scratch_restore.requested(request, partial(restore.restore, settings),
                                         partial(restore.restore_kb, settings))

    def restore_problems(self, settings: Settings, request: RestoreRequest) -> list[str]:
        return checks.kb_problems(settings, request.point, request.kb) if request.kb is not None else []

    def has_data(self, settings: Settings) -> bool:
        """A dropped database has nothing to lose."""
        try:
            conn = connect(settings.postgres, load.MAINTENANCE_DB)
        except psycopg.Error as exc:  # said as what to fix, not as a traceback
            raise connect_failure(exc, settings.postgres) from None
        with closing(conn):
            return load.database_exists(conn, settings.postgres.database)

    def drill(self, settings: Settings, point: Point, token: str) -> tuple[bool, str]:
        record = point.manifest().components[self.name]
        return scratch_restore.drilled(load.scratch_name(settings.postgres.database, "drill", token),
                                       lambda target: restore.restore(settings, point, record, target_database=target),
                                       partial(load.drop_database, settings, missing_ok=True))

    def checks(self, settings: Settings) -> list[Check]:
        return checks.check_postgres(settings)


COMPONENT = Postgres()
