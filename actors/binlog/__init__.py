"""MySQL's binary log archived continuously (issue 15, the producer side), for restores to any second.

The agent runs the archive (archiver.py: the streamer of source.py, staged bytes checked in, gaps found);
index.py is the archive's index, which a MySQL restore reads through core/pitr.py's words; events.py reads
binlog event headers; checks.py is doctor's. It is kept continuously, not by backup runs: no part of a point
(`in_points`), and restored only as the replay step of a MySQL restore.

`COMPONENT` is the face every component shares (core/face.py); actors/components.py lists it.
Imports: `core` and this package's own modules; never another component, the actions or the actors
(checked by `lint-imports`).
"""
from __future__ import annotations

import logging
from typing import Any

from actors.binlog import checks
from core.component import Check, ComponentResult, PermanentError
from core.config import Settings
from core.face import RestoreRequest
from core.manifest import ComponentRecord
from core.points import Point


class Binlog:
    name = "binlog"
    in_points = False
    restorable = False  # the archive a MySQL restore replays (restore --at): never restored by itself
    restore_rank = 2  # never restored by itself: a MySQL restore (rank 1) replays it
    per_kb = False

    def enabled(self, settings: Settings) -> bool:
        return settings.mysql.enabled and settings.binlog.enabled

    def backup(self, settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
        raise PermanentError("the binlog archive is kept by the agent, not by a backup run")

    def verify(self, settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
        return checks.archive_problems(settings.layout)

    def restore(self, settings: Settings, request: RestoreRequest) -> Any:
        # Never asked (`restorable` is False: restore plans leave it out); said should anything ask.
        raise PermanentError("the binlog archive is not restored by itself: a MySQL restore replays it "
                             "(`ragflow-backup restore --at T`)")

    def restore_problems(self, settings: Settings, request: RestoreRequest) -> list[str]:
        return []

    def has_data(self, settings: Settings) -> bool:
        return False

    def drill(self, settings: Settings, point: Point, token: str) -> tuple[bool, str]:
        problems = checks.archive_problems(settings.layout)
        return not problems, "; ".join(problems) or "every archived binlog file matches the archive's index"

    def checks(self, settings: Settings) -> list[Check]:
        return checks.check_binlog(settings)


COMPONENT = Binlog()
