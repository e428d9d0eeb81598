"""What a restore checks before it changes anything (before even its safety point): the identity file
reads, every component asked for is in the point with its artifacts sound (size, SHA-256, container), the
Redis dump reads to its end, and a knowledge base asked for is in the point at all.

A restore that failed on one of these after its safety point would have to roll back, and a rollback of
something that was never there can fail too ("restore failed ... AND its rollback failed" with nothing
changed): so each problem is found here and named, and nothing is touched.
"""
from __future__ import annotations

import re
from pathlib import Path

from actors.components import COMPONENTS
from core.checks import verify_artifacts
from core.component import PermanentError
from core.config import Settings
from core.points import Point

KB_ID = re.compile(r"[0-9a-f]{32}")  # RAGFlow's knowledgebase.id: uuid1().hex


def check_identity(identity: Path | None) -> list[str]:
    if identity is None:
        return []
    try:
        with open(identity, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        return [f"the identity file {identity} cannot be read ({exc.strerror or exc})"]
    return []


def problems_before_restore(settings: Settings, point: Point | None, components: list[str], kb: str | None,
                            identity: Path | None) -> list[str]:
    """Everything wrong with a restore of `components` (and `kb`) from `point` that can be known up front."""
    problems = check_identity(identity) if settings.encryption.enabled else []
    if kb is not None and not KB_ID.fullmatch(kb):
        problems.append(f"{kb!r} is not a knowledge base id (32 lower-case hex digits, as in RAGFlow's "
                        "knowledgebase.id)")
    if point is None:
        return problems
    manifest = point.manifest()
    for name in components:
        if not COMPONENTS[name].in_points:
            continue  # objects come from the mirror, not from the point
        record = manifest.components.get(name)
        if record is None or record.status != "ok":
            problems.append(f"{name} is not in {point.ref} (no successful {name} backup there)")
            continue
        found = verify_artifacts(point, record)
        problems += [f"{name}: {problem}" for problem in found]
        if found:
            continue
        problems += COMPONENTS[name].restore_problems(settings, point, record, kb if kb is None or KB_ID.fullmatch(kb) else None)
    return problems


def check_before_restore(settings: Settings, point: Point | None, components: list[str], kb: str | None,
                         identity: Path | None) -> None:
    problems = problems_before_restore(settings, point, components, kb, identity)
    if problems:
        where = point.ref if point else "the mirror"
        raise PermanentError(f"cannot restore from {where}: " + "; ".join(problems) + "; nothing was changed")
