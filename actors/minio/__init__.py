"""MinIO: a continuous mirror of every object with its versions (mirror.py: mirror_object, reconcile, whose
copies run in copies.py and read a GET's headers with headers.py;
upkeep.py: versions pruned, a sample verified), restored to any moment from the mirror (restore.py),
doctor's check (checks.py). The mirror is kept by events and reconciles, not by backup runs: it is no part
of a point (`in_points`).

`COMPONENT` is the face every component shares (core/face.py); actors/components.py lists it.
Imports: `core` and this package's own modules; never another component, the actions or the actors
(checked by `lint-imports`).
"""
from __future__ import annotations

import logging
from typing import Any

from actors.minio import checks, plan, restore, upkeep
from core.component import Check, ComponentResult, PermanentError
from core.config import Settings
from core.face import RestoreRequest
from core.manifest import ComponentRecord
from core.points import Point

SAMPLE = 50  # objects the drill compares with the source


class Minio:
    name = "minio"
    in_points = False
    restorable = True
    restore_rank = 3  # restore order: config, mysql, search, minio, redis (RAGFlow's settings first, Redis last)
    per_kb = True  # holds a knowledge base's own part

    def enabled(self, settings: Settings) -> bool:
        return settings.minio.enabled

    def backup(self, settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
        raise PermanentError("the MinIO mirror is kept by events and reconciles, not by a backup run")

    def verify(self, settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
        return upkeep.verify_sample(settings, sample=SAMPLE)

    def restore(self, settings: Settings, request: RestoreRequest) -> Any:
        """The buckets as they were at `request.at`, into buckets prefixed with `request.target` if given."""
        if request.kb:
            return restore.restore_kb(settings, request.kb, request.at, log=request.log, keeper=request.keeper)
        return restore.restore(settings, request.at, target_bucket_prefix=str(request.target or ""), log=request.log,
                               exact=request.exact, keeper=request.keeper)

    def restore_problems(self, settings: Settings, request: RestoreRequest) -> list[str]:
        """What the mirror index says of the objects at `request.at` that could not be put back."""
        if request.at is None:
            return []
        try:
            return plan.index_problems(settings, request.at, request.kb)
        except PermanentError as exc:  # the mirror folder itself refused
            return [str(exc)]

    def has_data(self, settings: Settings) -> bool:
        return True

    def drill(self, settings: Settings, point: Point, token: str) -> tuple[bool, str]:
        problems = upkeep.verify_sample(settings, sample=SAMPLE)
        return not problems, "; ".join(problems) or f"{SAMPLE} sampled mirror objects match the source and their MD5"

    def checks(self, settings: Settings) -> list[Check]:
        return [checks.check_minio(settings)]


COMPONENT = Minio()
