"""The face every component module in `actors/` shares, and the errors it may raise.

A component module (actors/mysql.py, actors/search.py, ...) defines:

    NAME: str
    def backup(settings: Settings, point: Point, log: logging.Logger) -> ComponentResult
    def verify(settings: Settings, point: Point, record: ComponentRecord) -> list[str]   # problems, [] when sound

`backup` writes its artifacts into the point with `core.atomic.atomic_file` (temp name, fsync,
check, rename) and returns what it wrote. It raises PermanentError for what retrying cannot fix (a
wrong password, a missing database, no path.repo); any other exception counts as transient and the
run is retried with backoff.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.manifest import Artifact


class PermanentError(Exception):
    """Retrying will not help: the message says what is wrong and how to fix it."""


@dataclass
class ComponentResult:
    artifacts: list[Artifact] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
