"""The errors and results every component may raise or return; its face is core/face.py.

`backup` writes its artifacts into the point with `core.atomic.atomic_file` (temp name, fsync,
check, rename) and returns what it wrote. It raises PermanentError for what retrying cannot fix (a
wrong password, a missing database, no path.repo); any other exception counts as transient and the
run is retried with backoff.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from core.manifest import Artifact


class PermanentError(Exception):
    """Retrying will not help: the message says what is wrong and how to fix it."""


class NothingChanged(PermanentError):
    """A component's restore refused before its first write: there is nothing of it to roll back."""


@contextmanager
def before_first_write() -> Iterator[None]:
    """Around a restore's steps that leave its target as it was (staging in a scratch database or under temporary
    index names, checks, a transaction that is rolled back): a refusal there is NothingChanged, so the restore
    does not roll back a target it never changed (actors/actions/restore.py)."""
    try:
        yield
    except NothingChanged:
        raise
    except PermanentError as exc:
        raise NothingChanged(str(exc)) from exc


@dataclass
class ComponentResult:
    artifacts: list[Artifact] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


Status = Literal["ok", "warn", "fail", "off"]


@dataclass
class Check:
    """One line of `doctor`: what was found and, when something is wrong, how to fix it."""
    name: str
    status: Status
    detail: str
    fix: str = ""


def failed_check(name: str, exc: Exception, fix: str) -> Check:
    # Client errors carry no secrets we hand them, but keep the message to its first line.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return Check(name, "fail", f"{type(exc).__name__}: {text}", fix)


def off_check(name: str, unsupported: str) -> Check:
    """A disabled part's line: why RAGFlow's .env puts it out of reach (`unsupported`), else the config's word."""
    return Check(name, "off", unsupported or "disabled in the config")
