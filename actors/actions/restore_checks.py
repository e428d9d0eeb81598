"""What a restore checks before it changes anything (before even its safety point): the identity file
reads, every component asked for is in the point with its artifacts sound (size, SHA-256, container), and
then what each component finds wrong (core/face.py: restore_problems): the Redis dump reads to its end, a
knowledge base asked for is in the point at all, the mirror index can say what MinIO held at that moment.

A restore that failed on one of these after its safety point would have to roll back, and a rollback of
something that was never there can fail too ("restore failed ... AND its rollback failed" with nothing
changed): so each problem is found here and named, and nothing is touched.
"""
from __future__ import annotations

import re
from pathlib import Path

from actors.actions.restore_plan import Plan
from actors.components import COMPONENTS
from core.checks import verify_artifacts
from core.component import PermanentError
from core.config import Settings
from core.face import RestoreRequest

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


def problems_before_restore(settings: Settings, plan: Plan, identity: Path | None) -> list[str]:
    """Everything wrong with `plan` that can be known up front."""
    point, kb = plan.point, plan.kb
    problems = check_identity(identity) if settings.encryption.enabled else []
    if kb is not None and not KB_ID.fullmatch(kb):
        problems.append(f"{kb!r} is not a knowledge base id (32 lower-case hex digits, as in RAGFlow's "
                        "knowledgebase.id)")
        kb = None
    manifest = point.manifest() if point is not None else None
    for name in plan.components:
        record = None
        if COMPONENTS[name].in_points:  # else it comes from its own store (the mirror), not from the point
            if point is None or manifest is None:
                continue
            record = manifest.components.get(name)
            if record is None or record.status != "ok":
                problems.append(f"{name} is not in {point.ref} (no successful {name} backup there)")
                continue
            found = verify_artifacts(point, record)
            problems += [f"{name}: {problem}" for problem in found]
            if found:
                continue
        request = RestoreRequest(point=point, record=record, kb=kb, target=plan.targets.get(name), at=plan.at,
                                 exact=plan.exact and not kb)
        problems += COMPONENTS[name].restore_problems(settings, request)
    return problems


def check_before_restore(settings: Settings, plan: Plan, identity: Path | None) -> None:
    problems = problems_before_restore(settings, plan, identity)
    if problems:
        where = plan.point.ref if plan.point else "the mirror"
        raise PermanentError(f"cannot restore from {where}: " + "; ".join(problems) + "; nothing was changed")
